//! A fleet simulator: many simulated agents on one controller, over real
//! gRPC, with scripted faults.
//!
//! Every simulated node opens its own HTTP/2 connection and `Attach`
//! stream, sends a Hello and then a full `NodeReport` every interval (with
//! jitter), health evaluated by the agent's own `health::evaluate`. A
//! `RestartUnit` command gets a `CommandResult` after the configured
//! restart time and a new InvocationID; the fault script decides whether the
//! node is healthy afterwards. [`Recorder`] keeps every command with the
//! times that matter, and [`Summary`] reports them.
//!
//! The simulator runs on a tokio runtime of its own, so a blocking test or
//! benchmark can drive the controller's CLI beside it.

mod agent;
pub mod fault;
pub mod node;
mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use fault::{FaultKind, FaultSpec};
use node::SimNode;

/// Connections opened at once while the fleet connects, so a large fleet
/// does not overrun the controller's listen backlog.
const CONNECTS_IN_PARALLEL: usize = 256;

/// Everything a simulation needs besides its fault script.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Controller URL; `http://` for a plain-text controller.
    pub controller: String,
    /// Simulated nodes.
    pub nodes: usize,
    /// Node names are this prefix, a dash and a five-digit number.
    pub name_prefix: String,
    pub report_interval: Duration,
    /// Random share of the interval added or taken off each wait, 0 to 1.
    pub jitter: f64,
    /// Time a simulated restart takes before its result is sent.
    pub restart_time: Duration,
    /// How long to wait for the whole fleet to connect before faults start
    /// anyway.
    pub connect_timeout: Duration,
    /// Seed of the choice of faulty nodes.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            controller: "http://127.0.0.1:7400".to_string(),
            nodes: 10,
            name_prefix: "sim".to_string(),
            report_interval: Duration::from_secs(10),
            jitter: 0.1,
            restart_time: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(120),
            seed: 1,
        }
    }
}

impl SimConfig {
    pub fn node_name(&self, index: usize) -> String {
        format!("{}-{index:05}", self.name_prefix)
    }
}

/// A command as the simulated node received it. Times are milliseconds
/// since the fleet finished connecting, on the simulator's clock.
#[derive(Clone, Debug, Serialize)]
pub struct CommandRecord {
    pub node: String,
    pub kind: String,
    pub requested_by: String,
    pub received_ms: i64,
    /// When the node's current fault struck, if it has one.
    pub fault_since_ms: Option<i64>,
    /// When the node last sent a report before the command: the report that
    /// made the controller decide, for an automated restart.
    pub last_report_ms: Option<i64>,
    /// When the node first reported healthy after the command, if it did.
    pub recovered_ms: Option<i64>,
}

/// A fault the script gave a node.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub node: String,
    pub kind: FaultKind,
    pub at_ms: i64,
}

/// What the simulation did, at the end or so far.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    /// Agents that got a HelloAck at least once.
    pub connected: usize,
    /// Time from the first connect to the whole fleet connected (or the
    /// connect timeout).
    pub connect_ms: u64,
    pub reports_sent: u64,
    pub reconnects: u64,
    pub faults: Vec<FaultRecord>,
    pub commands: Vec<CommandRecord>,
}

impl Summary {
    /// Returns the number of commands per kind.
    pub fn commands_by_kind(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for command in &self.commands {
            *counts.entry(command.kind.clone()).or_default() += 1;
        }
        counts
    }

    /// Returns the number of commands per node, for nodes that got any.
    pub fn commands_per_node(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for command in &self.commands {
            *counts.entry(command.node.clone()).or_default() += 1;
        }
        counts
    }

    /// Logs the summary: totals, commands per kind and node, and each
    /// command's times.
    pub fn log(&self) {
        tracing::info!(
            nodes = self.nodes,
            connected = self.connected,
            connect_ms = self.connect_ms,
            reports_sent = self.reports_sent,
            reconnects = self.reconnects,
            faults = self.faults.len(),
            commands = self.commands.len(),
            "simulation summary"
        );
        for (kind, count) in self.commands_by_kind() {
            tracing::info!(kind = %kind, count, "commands per kind");
        }
        for (node, count) in self.commands_per_node() {
            tracing::info!(node = %node, count, "commands per node");
        }
        for command in &self.commands {
            tracing::info!(
                node = %command.node,
                kind = %command.kind,
                requested_by = %command.requested_by,
                received_ms = command.received_ms,
                fault_since_ms = ?command.fault_since_ms,
                last_report_ms = ?command.last_report_ms,
                recovered_ms = ?command.recovered_ms,
                "command"
            );
        }
    }
}

/// Collects what the agents see, shared by all of them.
#[derive(Debug)]
pub struct Recorder {
    connect_slots: Semaphore,
    started: Instant,
    ready: OnceLock<Instant>,
    /// Agents that got their first HelloAck.
    connected: AtomicU64,
    reports_sent: AtomicU64,
    reconnects: AtomicU64,
    log: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    nodes: HashMap<String, NodeLog>,
    faults: Vec<FaultRecord>,
    commands: Vec<CommandRecord>,
}

#[derive(Debug, Default)]
struct NodeLog {
    last_report_ms: Option<i64>,
    fault_since_ms: Option<i64>,
    /// Commands whose node has not reported healthy since.
    unrecovered: Vec<usize>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            connect_slots: Semaphore::new(CONNECTS_IN_PARALLEL),
            started: Instant::now(),
            ready: OnceLock::new(),
            connected: AtomicU64::new(0),
            reports_sent: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        }
    }

    /// Milliseconds since the fleet connected; negative before.
    fn now_ms(&self) -> i64 {
        let origin = *self.ready.get().unwrap_or(&self.started);
        let now = Instant::now();
        if now >= origin {
            now.duration_since(origin).as_millis() as i64
        } else {
            -(origin.duration_since(now).as_millis() as i64)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn report_sent(&self, node: &str, healthy: bool) {
        self.reports_sent.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let mut log = self.lock();
        let Log {
            nodes, commands, ..
        } = &mut *log;
        let entry = nodes.entry(node.to_string()).or_default();
        entry.last_report_ms = Some(now);
        if healthy {
            entry.fault_since_ms = None;
            for index in entry.unrecovered.drain(..) {
                commands[index].recovered_ms = Some(now);
            }
        }
    }

    fn fault_struck(&self, node: &str, kind: FaultKind) {
        let now = self.now_ms();
        let mut log = self.lock();
        log.nodes
            .entry(node.to_string())
            .or_default()
            .fault_since_ms = Some(now);
        log.faults.push(FaultRecord {
            node: node.to_string(),
            kind,
            at_ms: now,
        });
    }

    fn command_received(&self, node: &str, kind: &str, requested_by: &str) {
        let now = self.now_ms();
        let mut log = self.lock();
        let index = log.commands.len();
        let entry = log.nodes.entry(node.to_string()).or_default();
        entry.unrecovered.push(index);
        let record = CommandRecord {
            node: node.to_string(),
            kind: kind.to_string(),
            requested_by: requested_by.to_string(),
            received_ms: now,
            fault_since_ms: entry.fault_since_ms,
            last_report_ms: entry.last_report_ms,
            recovered_ms: None,
        };
        log.commands.push(record);
    }

    fn agent_connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed) as usize
    }

    fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// A simulation in progress, on its own runtime.
pub struct RunningFleet {
    runtime: tokio::runtime::Runtime,
    recorder: Arc<Recorder>,
    shutdown: watch::Sender<bool>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
    connected: usize,
    connect_ms: u64,
}

impl RunningFleet {
    /// Connects `config.nodes` agents, waits for all of them (or the
    /// connect timeout), then starts the fault script. Every agent is one
    /// task, plus the connection task tonic spawns for its channel.
    pub fn start(config: SimConfig, faults: Vec<FaultSpec>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("fleet-sim")
            .build()
            .context("cannot start the simulator's tokio runtime")?;
        let config = Arc::new(config);
        let recorder = Arc::new(Recorder::new());
        let (shutdown, shutdown_rx) = watch::channel(false);

        let mut agents = Vec::with_capacity(config.nodes);
        let mut controls = Vec::with_capacity(config.nodes);
        for index in 0..config.nodes {
            let node = SimNode::new(config.node_name(index), index as u64);
            let (control_tx, control_rx) = mpsc::channel(4);
            controls.push(control_tx);
            agents.push(runtime.spawn(agent::run_agent(
                node,
                Arc::clone(&config),
                Arc::clone(&recorder),
                control_rx,
                shutdown_rx.clone(),
            )));
        }

        let timeout = config.connect_timeout;
        let connected = runtime.block_on(async {
            let deadline = Instant::now() + timeout;
            while recorder.connected() < config.nodes && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recorder.connected()
        });
        let connect_ms = recorder.started.elapsed().as_millis() as u64;
        if connected < config.nodes {
            tracing::warn!(
                connected,
                nodes = config.nodes,
                timeout_s = timeout.as_secs(),
                "not every agent connected in time; starting the fault script anyway"
            );
        } else {
            tracing::info!(nodes = config.nodes, connect_ms, "fleet connected");
        }
        let _ = recorder.ready.set(Instant::now());
        runtime.spawn(schedule::run(
            faults,
            Arc::clone(&config),
            controls,
            shutdown_rx,
        ));
        Ok(RunningFleet {
            runtime,
            recorder,
            shutdown,
            agents,
            nodes: config.nodes,
            connected,
            connect_ms,
        })
    }

    /// Returns what happened so far.
    pub fn snapshot(&self) -> Summary {
        let log = self.recorder.lock();
        Summary {
            nodes: self.nodes,
            connected: self.connected,
            connect_ms: self.connect_ms,
            reports_sent: self.recorder.reports_sent.load(Ordering::Relaxed),
            reconnects: self.recorder.reconnects.load(Ordering::Relaxed),
            faults: log.faults.clone(),
            commands: log.commands.clone(),
        }
    }

    /// Runs `future` on the simulator's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Closes every stream and returns the summary.
    pub fn stop(mut self) -> Summary {
        let _ = self.shutdown.send(true);
        let agents = std::mem::take(&mut self.agents);
        self.runtime.block_on(async {
            for agent in agents {
                let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
            }
        });
        let summary = self.snapshot();
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        summary
    }
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the new soft limit. Every simulated agent uses one socket, and the
/// usual soft limit of 1024 ends a fleet of a thousand; the hard limit
/// (often 524288 under systemd, or whatever `ulimit -Hn` shows) is the
/// ceiling an unprivileged process may raise itself to.
pub fn raise_open_file_limit() -> Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)
            .context("cannot raise the open-file limit (RLIMIT_NOFILE) to its hard limit")?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}
