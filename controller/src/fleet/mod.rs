//! In-memory state of the fleet: per node its latest report, health, open
//! stream and pending commands.
//!
//! The fleet does no I/O. Its methods change state under a lock and return the
//! events the change caused; the caller persists them. Times are passed in, so
//! tests choose the clock.

mod changes;
pub mod kind;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use novamedic_proto::v1;
use novamedic_tls::PeerIdentity;
use tokio::sync::{mpsc, oneshot};

pub use changes::{stale_health, DEFAULT_REPORT_INTERVAL_MS, STALE_INTERVALS};

use crate::store::{HelloRecord, NewEvent, NodeRecord};

/// Sender half of an agent's stream down from the controller.
pub type StreamSender = mpsc::Sender<v1::ControllerMessage>;

/// All nodes known to the controller.
///
/// A std mutex guards the map: every critical section is a few map
/// operations with no `.await`, so an async mutex would only add cost.
#[derive(Debug)]
pub struct Fleet {
    nodes: Mutex<HashMap<String, NodeState>>,
    next_connection_id: AtomicU64,
}

#[derive(Debug)]
struct NodeState {
    hello: HelloRecord,
    first_seen_unix_ms: i64,
    last_seen_unix_ms: i64,
    /// Start of the stale clock when later than the last report: the
    /// controller's start for nodes loaded from the store, or the latest
    /// connect. A node is not declared stale while its agent had no chance
    /// to report.
    grace_start_unix_ms: i64,
    report: Option<v1::NodeReport>,
    health: v1::Health,
    connection: Option<Connection>,
    pending: HashMap<String, PendingCommand>,
    /// Log searches waiting for their results, by command id. Kept apart
    /// from `pending`: a search neither waits for nor blocks a restart.
    searches: HashMap<String, oneshot::Sender<v1::CommandResult>>,
}

#[derive(Debug)]
struct Connection {
    id: u64,
    sender: StreamSender,
    peer: StreamPeer,
}

/// Who opened an agent stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPeer {
    /// Remote IP address and port, or "unknown".
    pub address: String,
    /// The verified client certificate; `None` in plain-text mode.
    pub certificate: Option<PeerIdentity>,
}

#[derive(Debug)]
struct PendingCommand {
    requested_by: String,
    reply: oneshot::Sender<v1::CommandResult>,
}

/// The outcome of accepting an agent's Hello.
#[derive(Debug)]
pub struct Connected {
    /// Identifies this stream, so a replaced stream's cleanup leaves the
    /// newer one alone.
    pub connection_id: u64,
    /// True when a stream of the same node was still open and was replaced.
    pub replaced_open_stream: bool,
    pub events: Vec<NewEvent>,
}

/// A node's health after a report or a stale check, with the events it caused.
#[derive(Debug)]
pub struct HealthUpdate {
    pub node: String,
    pub health: v1::Health,
    pub events: Vec<NewEvent>,
}

/// A stream rejected because the node is connected under another
/// certificate.
#[derive(Debug, PartialEq, Eq)]
pub struct CertificateConflict {
    /// The certificate of the stream that stays open.
    pub connected: PeerIdentity,
    /// The remote address of the stream that stays open.
    pub connected_address: String,
}

/// A report that arrived on a stream that is no longer the node's current one.
#[derive(Debug, PartialEq, Eq)]
pub struct NotCurrent;

/// The stream and reply channel of a command the fleet accepted to send.
#[derive(Debug)]
pub struct CommandTicket {
    pub sender: StreamSender,
    pub unit: String,
    pub reply: oneshot::Receiver<v1::CommandResult>,
}

/// The stream and reply channel of a log search the fleet accepted to send.
#[derive(Debug)]
pub struct SearchTicket {
    pub sender: StreamSender,
    pub reply: oneshot::Receiver<v1::CommandResult>,
}

/// The reason a command cannot be sent to a node.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandRejection {
    UnknownNode,
    NotConnected {
        last_seen_unix_ms: i64,
    },
    NoUnit,
    MissingCapability {
        capability: &'static str,
        agent_version: String,
    },
    InProgress {
        command_id: String,
        requested_by: String,
    },
}

impl Fleet {
    /// Builds the fleet from stored nodes. `started_at_unix_ms` starts every
    /// node's stale clock, because none of them is connected yet.
    pub fn from_records(records: Vec<NodeRecord>, started_at_unix_ms: i64) -> Self {
        let nodes = records
            .into_iter()
            .map(|record| {
                let state = NodeState {
                    first_seen_unix_ms: record.first_seen_unix_ms,
                    last_seen_unix_ms: record.last_seen_unix_ms,
                    grace_start_unix_ms: started_at_unix_ms,
                    report: record.latest_report,
                    health: record.health,
                    connection: None,
                    pending: HashMap::new(),
                    searches: HashMap::new(),
                    hello: record.hello,
                };
                (state.hello.node.clone(), state)
            })
            .collect();
        Fleet {
            nodes: Mutex::new(nodes),
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// Registers an accepted plain-text stream; see
    /// [`Fleet::connect_with_certificate`].
    pub fn connect(&self, hello: HelloRecord, sender: StreamSender, now_unix_ms: i64) -> Connected {
        self.connect_with_certificate(hello, sender, StreamPeer::default(), now_unix_ms)
            .expect("a stream without a certificate never conflicts")
    }

    /// Registers an accepted stream. A stream the node still had open is
    /// replaced, and dropping its sender ends it, unless the open stream
    /// was opened with a different certificate: then the new stream is
    /// rejected and the open one stays.
    pub fn connect_with_certificate(
        &self,
        hello: HelloRecord,
        sender: StreamSender,
        peer: StreamPeer,
        now_unix_ms: i64,
    ) -> Result<Connected, CertificateConflict> {
        let node = hello.node.clone();
        let mut events = Vec::new();
        let mut nodes = self.lock();
        if let Some(open) = nodes.get(&node).and_then(|state| state.connection.as_ref()) {
            if let (Some(open_cert), Some(new_cert)) = (&open.peer.certificate, &peer.certificate) {
                if open_cert.fingerprint != new_cert.fingerprint {
                    return Err(CertificateConflict {
                        connected: open_cert.clone(),
                        connected_address: open.peer.address.clone(),
                    });
                }
            }
        }
        let connection_id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);

        let state = nodes.entry(node.clone()).or_insert_with(|| {
            events.push(changes::event(
                &node,
                kind::NODE_REGISTERED,
                "first contact from this node".to_string(),
                now_unix_ms,
            ));
            NodeState::new(hello.clone(), now_unix_ms)
        });
        let replaced_open_stream = state.connection.is_some();
        if replaced_open_stream {
            events.push(changes::event(
                &node,
                kind::STREAM_REPLACED,
                "a new stream replaced one that was still open".to_string(),
                now_unix_ms,
            ));
        }
        events.push(changes::event(
            &node,
            kind::AGENT_CONNECTED,
            connect_detail(&hello),
            now_unix_ms,
        ));

        state.hello = hello;
        state.grace_start_unix_ms = now_unix_ms;
        state.connection = Some(Connection {
            id: connection_id,
            sender,
            peer,
        });
        Ok(Connected {
            connection_id,
            replaced_open_stream,
            events,
        })
    }

    /// Forgets a closed stream and returns its `agent_disconnected` event, or
    /// `None` when a newer stream has already replaced it.
    pub fn disconnect(
        &self,
        node: &str,
        connection_id: u64,
        detail: String,
        now_unix_ms: i64,
    ) -> Option<NewEvent> {
        let mut nodes = self.lock();
        let state = nodes.get_mut(node)?;
        if state.connection.as_ref().map(|c| c.id) != Some(connection_id) {
            return None;
        }
        state.connection = None;
        // A search result returns on the stream the search went down, so its
        // waiter learns now that no result will come.
        state.searches.clear();
        Some(changes::event(
            node,
            kind::AGENT_DISCONNECTED,
            detail,
            now_unix_ms,
        ))
    }

    /// Stores a report that arrived on `connection_id` and returns the node's
    /// new health with the events the report caused.
    pub fn apply_report(
        &self,
        node: &str,
        connection_id: u64,
        report: v1::NodeReport,
        now_unix_ms: i64,
    ) -> Result<HealthUpdate, NotCurrent> {
        let mut nodes = self.lock();
        let state = nodes.get_mut(node).ok_or(NotCurrent)?;
        if state.connection.as_ref().map(|c| c.id) != Some(connection_id) {
            return Err(NotCurrent);
        }

        let health = report.health.clone().unwrap_or_default();
        let mut events = Vec::new();
        events.extend(changes::health_change(
            node,
            &state.health,
            &health,
            now_unix_ms,
        ));
        events.extend(changes::unit_changes(
            node,
            state.report.as_ref(),
            &report,
            now_unix_ms,
        ));

        state.health = health.clone();
        state.report = Some(report);
        state.last_seen_unix_ms = now_unix_ms;
        Ok(HealthUpdate {
            node: node.to_string(),
            health,
            events,
        })
    }

    /// Marks every node without a report for three intervals as STALE and
    /// returns the changes. A node already stale is left alone.
    pub fn mark_stale(&self, now_unix_ms: i64) -> Vec<HealthUpdate> {
        let mut nodes = self.lock();
        let mut updates = Vec::new();
        for (name, state) in nodes.iter_mut() {
            if state.health.status == v1::HealthStatus::Stale as i32 {
                continue;
            }
            let last_report_unix_ms = match state.last_seen_unix_ms {
                0 => state.first_seen_unix_ms,
                last_seen => last_seen,
            };
            let Some(stale) = stale_health(
                last_report_unix_ms,
                state.grace_start_unix_ms,
                state.hello.report_interval_ms,
                now_unix_ms,
            ) else {
                continue;
            };
            let events = changes::health_change(name, &state.health, &stale, now_unix_ms)
                .into_iter()
                .collect();
            state.health = stale.clone();
            updates.push(HealthUpdate {
                node: name.clone(),
                health: stale,
                events,
            });
        }
        updates
    }

    /// Returns the status of one node, `None` when it is unknown.
    pub fn status(&self, node: &str) -> Option<v1::NodeStatus> {
        self.lock().get(node).map(NodeState::status)
    }

    /// Returns the status of every node, ordered by name.
    /// Returns the number of known nodes.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Returns whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn statuses(&self) -> Vec<v1::NodeStatus> {
        let mut statuses: Vec<_> = self.lock().values().map(NodeState::status).collect();
        statuses.sort_by(|a, b| a.node.cmp(&b.node));
        statuses
    }

    /// Checks that a restart of nova-compute may go to `node` now and
    /// registers `command_id` as pending. Only one command per node may be
    /// pending, so two operators cannot restart the same unit at once. A
    /// restart with `reset_failed` needs an agent that announces it.
    pub fn begin_restart(
        &self,
        node: &str,
        command_id: &str,
        requested_by: &str,
        reset_failed: bool,
    ) -> Result<CommandTicket, CommandRejection> {
        let mut nodes = self.lock();
        let state = nodes.get_mut(node).ok_or(CommandRejection::UnknownNode)?;
        let Some(connection) = &state.connection else {
            return Err(CommandRejection::NotConnected {
                last_seen_unix_ms: state.last_seen_unix_ms,
            });
        };
        let mut needed = vec![novamedic_proto::CAPABILITY_RESTART_UNIT];
        if reset_failed {
            needed.push(novamedic_proto::CAPABILITY_RESET_FAILED);
        }
        for capability in needed {
            if !state.hello.capabilities.iter().any(|c| c == capability) {
                return Err(CommandRejection::MissingCapability {
                    capability,
                    agent_version: state.hello.agent_version.clone(),
                });
            }
        }
        if state.hello.unit.is_empty() {
            return Err(CommandRejection::NoUnit);
        }
        if let Some((id, pending)) = state.pending.iter().next() {
            return Err(CommandRejection::InProgress {
                command_id: id.clone(),
                requested_by: pending.requested_by.clone(),
            });
        }

        let (reply_tx, reply) = oneshot::channel();
        let ticket = CommandTicket {
            sender: connection.sender.clone(),
            unit: state.hello.unit.clone(),
            reply,
        };
        let pending = PendingCommand {
            requested_by: requested_by.to_string(),
            reply: reply_tx,
        };
        state.pending.insert(command_id.to_string(), pending);
        Ok(ticket)
    }

    /// Checks that a log search may go to `node` now and registers
    /// `command_id` as a search waiting for its result.
    pub fn begin_search(
        &self,
        node: &str,
        command_id: &str,
    ) -> Result<SearchTicket, CommandRejection> {
        let mut nodes = self.lock();
        let state = nodes.get_mut(node).ok_or(CommandRejection::UnknownNode)?;
        let Some(connection) = &state.connection else {
            return Err(CommandRejection::NotConnected {
                last_seen_unix_ms: state.last_seen_unix_ms,
            });
        };
        let capability = novamedic_proto::CAPABILITY_SEARCH_LOGS;
        if !state.hello.capabilities.iter().any(|c| c == capability) {
            return Err(CommandRejection::MissingCapability {
                capability,
                agent_version: state.hello.agent_version.clone(),
            });
        }
        let (reply_tx, reply) = oneshot::channel();
        let ticket = SearchTicket {
            sender: connection.sender.clone(),
            reply,
        };
        state.searches.insert(command_id.to_string(), reply_tx);
        Ok(ticket)
    }

    /// Hands a log search's answer to its waiting requester. Returns the
    /// result back when no search of that id waits on `node`.
    pub fn complete_search(
        &self,
        node: &str,
        result: v1::CommandResult,
    ) -> Option<v1::CommandResult> {
        let waiting = self
            .lock()
            .get_mut(node)
            .and_then(|state| state.searches.remove(&result.command_id));
        match waiting {
            Some(reply) => {
                // The requester may have given up a moment ago.
                let _ = reply.send(result);
                None
            }
            None => Some(result),
        }
    }

    /// Forgets a log search whose requester stopped waiting.
    pub fn abandon_search(&self, node: &str, command_id: &str) {
        if let Some(state) = self.lock().get_mut(node) {
            state.searches.remove(command_id);
        }
    }

    /// Forgets a pending command whose requester stopped waiting.
    pub fn abandon_command(&self, node: &str, command_id: &str) {
        if let Some(state) = self.lock().get_mut(node) {
            state.pending.remove(command_id);
        }
    }

    /// Hands a result to the requester waiting for it. Returns the
    /// requester's identity, or `None` when no requester waits for this command id.
    pub fn complete_command(&self, node: &str, result: v1::CommandResult) -> Option<String> {
        let pending = self
            .lock()
            .get_mut(node)?
            .pending
            .remove(&result.command_id)?;
        // The requester may have given up a moment ago; the result is stored
        // either way.
        let _ = pending.reply.send(result);
        Some(pending.requested_by)
    }

    /// Returns who requested a pending command, without completing it.
    pub fn pending_requester(&self, node: &str, command_id: &str) -> Option<String> {
        let nodes = self.lock();
        let pending = nodes.get(node)?.pending.get(command_id)?;
        Some(pending.requested_by.clone())
    }

    /// Drops every stream sender and pending command, which ends the agents'
    /// response streams and wakes every waiting requester. Returns an
    /// `agent_disconnected` event per closed stream. Used at shutdown.
    pub fn close_all(&self, detail: &str, now_unix_ms: i64) -> Vec<NewEvent> {
        let mut events = Vec::new();
        for (name, state) in self.lock().iter_mut() {
            if state.connection.take().is_some() {
                events.push(changes::event(
                    name,
                    kind::AGENT_DISCONNECTED,
                    detail.to_string(),
                    now_unix_ms,
                ));
            }
            state.pending.clear();
            state.searches.clear();
        }
        events
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeState>> {
        // A panic while holding the lock leaves only plain data behind, which
        // is still consistent enough to serve.
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NodeState {
    fn new(hello: HelloRecord, now_unix_ms: i64) -> Self {
        NodeState {
            hello,
            first_seen_unix_ms: now_unix_ms,
            last_seen_unix_ms: 0,
            grace_start_unix_ms: now_unix_ms,
            report: None,
            health: v1::Health::default(),
            connection: None,
            pending: HashMap::new(),
            searches: HashMap::new(),
        }
    }

    fn status(&self) -> v1::NodeStatus {
        v1::NodeStatus {
            node: self.hello.node.clone(),
            health: Some(self.health.clone()),
            last_seen_unix_ms: self.last_seen_unix_ms,
            connected: self.connection.is_some(),
            agent_version: self.hello.agent_version.clone(),
            protocol_version: self.hello.protocol_version,
            capabilities: self.hello.capabilities.clone(),
            report: self.report.clone(),
            first_seen_unix_ms: self.first_seen_unix_ms,
            report_interval_ms: self.hello.report_interval_ms,
            // Added by the operator API, which has the Nova view.
            nova: None,
        }
    }
}

fn connect_detail(hello: &HelloRecord) -> String {
    format!(
        "agent {} (protocol {}), unit {}, reports every {} ms, capabilities [{}]",
        hello.agent_version,
        hello.protocol_version,
        if hello.unit.is_empty() {
            "none found"
        } else {
            &hello.unit
        },
        hello.report_interval_ms,
        hello.capabilities.join(", "),
    )
}

#[cfg(test)]
mod tests;
