//! Runs the fault script: strikes nodes at the scripted times.
//!
//! Nodes are taken in a shuffled order fixed by the seed, and a node is
//! struck at most once by the whole script (unless named), so a rolling
//! fault moves on through the fleet instead of hitting a node twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::agent::Control;
use super::fault::{FaultSpec, NodeCount, Schedule};
use super::node::ActiveFault;
use super::SimConfig;

/// The order nodes are taken in, and who was taken.
struct Picker {
    order: Vec<usize>,
    next: usize,
    taken: HashSet<usize>,
}

impl Picker {
    fn take(&mut self, count: usize) -> Vec<usize> {
        let mut picked = Vec::with_capacity(count);
        while picked.len() < count && self.next < self.order.len() {
            let index = self.order[self.next];
            self.next += 1;
            if self.taken.insert(index) {
                picked.push(index);
            }
        }
        picked
    }
}

/// Strikes the nodes of every fault at its times, until `shutdown`.
pub async fn run(
    faults: Vec<FaultSpec>,
    config: Arc<SimConfig>,
    controls: Vec<mpsc::Sender<Control>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut order: Vec<usize> = (0..controls.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    let picker = Arc::new(Mutex::new(Picker {
        order,
        next: 0,
        taken: HashSet::new(),
    }));
    let controls = Arc::new(controls);
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for spec in faults {
        let picker = Arc::clone(&picker);
        let controls = Arc::clone(&controls);
        let config = Arc::clone(&config);
        let mut shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = run_fault(spec, origin, &config, &picker, &controls) => {}
                _ = shutdown.changed() => {}
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn run_fault(
    spec: FaultSpec,
    origin: Instant,
    config: &SimConfig,
    picker: &Mutex<Picker>,
    controls: &[mpsc::Sender<Control>],
) {
    let fault = ActiveFault {
        kind: spec.kind,
        after_restart: spec.after_restart,
    };
    match spec.schedule {
        Schedule::At(at) => {
            sleep_until(origin + at).await;
            strike(&spec.nodes, fault, config, picker, controls).await;
        }
        Schedule::Every {
            every,
            start,
            times,
        } => {
            let mut tick = 0;
            let mut next = origin + start;
            while times.is_none_or(|times| tick < times) {
                sleep_until(next).await;
                if strike(&spec.nodes, fault, config, picker, controls).await == 0 {
                    tracing::info!(kind = %spec.kind, "no healthy node left for the rolling fault");
                    return;
                }
                tick += 1;
                next += every;
            }
        }
    }
}

/// Strikes the nodes `count` selects; returns how many it struck.
async fn strike(
    count: &NodeCount,
    fault: ActiveFault,
    config: &SimConfig,
    picker: &Mutex<Picker>,
    controls: &[mpsc::Sender<Control>],
) -> usize {
    let indexes = match count {
        NodeCount::Named(names) => names
            .iter()
            .filter_map(|name| {
                let found = (0..controls.len()).find(|&index| config.node_name(index) == *name);
                if found.is_none() {
                    tracing::warn!(node = %name, "the fault script names a node the fleet does not have");
                }
                found
            })
            .collect(),
        _ => picker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(count.resolve(controls.len())),
    };
    tracing::info!(kind = %fault.kind, nodes = indexes.len(), "fault strikes");
    for &index in &indexes {
        if controls[index].send(Control::Strike(fault)).await.is_err() {
            tracing::warn!(node = %config.node_name(index), "the agent has ended; fault not delivered");
        }
    }
    indexes.len()
}
