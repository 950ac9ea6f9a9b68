//! The steps that change the controller's state. Each applies a change to the
//! [`Fleet`] and then persists it with its events in one store transaction.
//!
//! Store failures on the agent path (hello, report, disconnect, stale) are
//! logged and do not break the agent's stream: the in-memory state keeps
//! serving operators. A command, however, is never sent unless it was
//! recorded first, because the events are the audit trail of who restarted
//! what.

mod alerts;
mod logsearch;
mod metrics;
mod nova;
pub mod policy;
mod report_batch;
mod restart;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::view::outcome_name;
use novamedic_tls::PeerIdentity;

pub use logsearch::{SearchError, DEFAULT_SEARCH_WAIT, MAX_SEARCH_WAIT};
pub use report_batch::FLUSH_INTERVAL;
pub use restart::RestartError;

use crate::alerting::disconnect::MassDisconnect;
use crate::alerting::Alerter;
use crate::clock::now_unix_ms;
use crate::fleet::{kind, CertificateConflict, Fleet, NotCurrent, StreamPeer, StreamSender};
use crate::nova_view::NovaWatch;
use crate::policy::{Policy, PolicyState};
use crate::report_timing::ReportTiming;
use crate::store::{HelloRecord, LatestReport, NewEvent, Store, StoreError};
use policy::PolicyRunner;
use report_batch::ReportBatch;

/// Limits that shape restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartLimits {
    /// Wait used when a request sets wait_ms 0.
    pub default_wait: Duration,
    /// Maximum wait a request may set.
    pub max_wait: Duration,
}

impl Default for RestartLimits {
    fn default() -> Self {
        RestartLimits {
            default_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(900),
        }
    }
}

/// The fleet, its store, and the rules that keep both in step.
#[derive(Debug)]
pub struct Controller {
    fleet: Fleet,
    store: Store,
    limits: RestartLimits,
    /// Routine reports waiting for the next batched write.
    pending_reports: ReportBatch,
    policy: PolicyRunner,
    metrics: Arc<crate::metrics::Metrics>,
    alerter: Arc<Alerter>,
    disconnects: Mutex<MassDisconnect>,
    /// Nova's view of the fleet, when a cloud is configured.
    nova: Option<Arc<NovaWatch>>,
    report_timing: Arc<ReportTiming>,
}

impl Controller {
    /// Loads every stored node into a new fleet, and the policy's saved
    /// state. `policy_source` names where `policy` came from. Alerts for
    /// the saved state (nodes that need a human, a storm pause) are raised
    /// again at once.
    pub async fn load(
        store: Store,
        limits: RestartLimits,
        policy: Policy,
        policy_source: String,
        alerter: Arc<Alerter>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, StoreError> {
        let records = store.list_nodes().await?;
        tracing::info!(nodes = records.len(), db = %store.path().display(), "loaded the fleet");
        let state = match store.load_policy_state().await? {
            None => PolicyState::default(),
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|err| {
                // A state this controller cannot read must not stop it: start
                // with no memory, which only delays automated actions.
                tracing::error!(error = %err, "cannot read the saved policy state; starting afresh");
                PolicyState::default()
            }),
        };
        tracing::info!(mode = %policy.mode, source = %policy_source, "self-healing policy loaded");
        let disconnects = Mutex::new(MassDisconnect::new(
            alerter.config().mass_disconnect.clone(),
        ));
        let controller = Controller {
            fleet: Fleet::from_records(records, now_unix_ms()),
            store,
            limits,
            pending_reports: ReportBatch::default(),
            policy: PolicyRunner::new(policy, state, policy_source),
            metrics,
            alerter,
            disconnects,
            nova: None,
            report_timing: Arc::default(),
        };
        controller.sync_policy_alerts(controller.policy.engine.lock().await.state());
        Ok(controller)
    }

    /// Attaches Nova's view, polled elsewhere, to the policy and the
    /// operator API.
    pub fn with_nova(mut self, nova: Arc<NovaWatch>) -> Self {
        self.nova = Some(nova);
        self
    }

    pub fn nova(&self) -> Option<&Arc<NovaWatch>> {
        self.nova.as_ref()
    }

    /// Returns Nova's view of the node for operators, or the source's
    /// "no cloud configured" when there is none.
    pub fn nova_node_view(&self, node: &str) -> v1::NovaNodeView {
        match &self.nova {
            Some(nova) => nova.node_view(node),
            None => v1::NovaNodeView {
                source: Some(crate::nova_view::unconfigured_source()),
                ..v1::NovaNodeView::default()
            },
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the report latency samples, see [`crate::report_timing`].
    pub fn report_timing(&self) -> Arc<ReportTiming> {
        Arc::clone(&self.report_timing)
    }

    /// Registers an agent's accepted stream and returns its connection id.
    /// A node connected under another certificate keeps its stream; the new
    /// one is rejected and a `stream_rejected` event names both
    /// certificates.
    pub async fn accept_hello(
        &self,
        hello: HelloRecord,
        sender: StreamSender,
        peer: StreamPeer,
    ) -> Result<u64, CertificateConflict> {
        let now = now_unix_ms();
        let offered = peer
            .certificate
            .as_ref()
            .map_or_else(String::new, PeerIdentity::describe);
        let address = peer.address.clone();
        let connected = match self
            .fleet
            .connect_with_certificate(hello.clone(), sender, peer, now)
        {
            Ok(connected) => connected,
            Err(conflict) => {
                let detail = format!(
                    "rejected a stream from {address} with certificate {offered}: the node is \
                     connected from {} under certificate {}",
                    conflict.connected_address,
                    conflict.connected.describe()
                );
                self.record_rejected_stream(&hello.node, detail).await;
                return Err(conflict);
            }
        };
        if connected.replaced_open_stream {
            tracing::warn!(
                node = ?hello.node,
                connection_id = connected.connection_id,
                "a new stream replaced the node's open stream"
            );
        }
        tracing::info!(
            node = ?hello.node,
            agent_version = ?hello.agent_version,
            connection_id = connected.connection_id,
            "agent connected"
        );
        self.note_connect(&hello.node);
        let saved = self
            .store
            .upsert_hello(&hello, now, &connected.events)
            .await;
        log_store_failure(saved, &hello.node, "hello");
        Ok(connected.connection_id)
    }

    /// Records a `stream_rejected` event on `node` when the node is known;
    /// the history has no place for events of unknown nodes, so those are
    /// only logged.
    pub async fn record_rejected_stream(&self, node: &str, detail: String) {
        tracing::warn!(node, detail = ?detail, "agent stream rejected");
        if self.fleet.status(node).is_none() {
            return;
        }
        let event = NewEvent {
            time_unix_ms: now_unix_ms(),
            node: node.to_string(),
            kind: kind::STREAM_REJECTED.to_string(),
            detail,
            actor: String::new(),
            command_id: String::new(),
        };
        let saved = self.store.append_event(&event).await.map(|_| ());
        log_store_failure(saved, node, "stream rejection");
    }

    /// Applies a report that arrived on `connection_id`. A report with unit
    /// transitions or events is written at once with its events; a routine
    /// one waits for the next batched write (see [`report_batch`]). Returns
    /// the time the fleet in memory took the report.
    pub async fn accept_report(
        &self,
        node: &str,
        connection_id: u64,
        report: v1::NodeReport,
    ) -> Result<i64, NotCurrent> {
        let now = now_unix_ms();
        let has_transitions = !report.transitions.is_empty();
        let update = self
            .fleet
            .apply_report(node, connection_id, report.clone(), now)?;
        for event in &update.events {
            tracing::info!(node, kind = %event.kind, detail = ?event.detail, "node changed");
        }
        let latest = LatestReport {
            node: node.to_string(),
            report,
            health: update.health,
            arrived_at_unix_ms: now,
        };
        if has_transitions || !update.events.is_empty() {
            self.pending_reports.discard(node);
            self.save_report(&latest, &update.events).await;
        } else {
            self.pending_reports.hold(latest);
        }
        Ok(now)
    }

    async fn save_report(&self, latest: &LatestReport, events: &[NewEvent]) {
        let saved = self
            .store
            .save_report(
                &latest.node,
                &latest.report,
                &latest.health,
                latest.arrived_at_unix_ms,
                events,
            )
            .await;
        log_store_failure(saved, &latest.node, "report");
    }

    /// Writes every pending routine report in one transaction. After a
    /// failure the reports are kept for the next flush, unless newer ones
    /// arrived meanwhile.
    pub async fn flush_reports(&self) {
        let reports = self.pending_reports.take_all();
        if reports.is_empty() {
            return;
        }
        if let Err(err) = self.store.save_reports(&reports).await {
            tracing::error!(
                reports = reports.len(),
                error = %crate::error_chain(&err),
                "cannot write the batch of routine reports; keeping them for the next flush"
            );
            self.pending_reports.restore(reports);
        }
    }

    /// Records an agent's command result and hands it to the requester
    /// waiting for it, in that order, so a requester never receives an outcome
    /// that is not yet in the history. A result from a node other than the
    /// command's target, or for a command id never issued, changes no command
    /// and is recorded under its own event kind.
    pub async fn accept_command_result(&self, node: &str, result: v1::CommandResult) {
        let Some(result) = self.fleet.complete_search(node, result) else {
            return;
        };
        if result.log_search.is_some() {
            // A search whose requester gave up; searches are not stored.
            tracing::info!(node, command_id = ?result.command_id, "dropped a late log search result");
            return;
        }
        let outcome = outcome_name(result.outcome);
        tracing::info!(
            node,
            command_id = ?result.command_id,
            outcome,
            detail = ?result.detail,
            "command result"
        );
        let requested_by = match self.result_origin(node, &result.command_id).await {
            ResultOrigin::Target { requested_by } => requested_by,
            ResultOrigin::OtherNode { target } => {
                tracing::warn!(
                    node,
                    target_node = ?target,
                    command_id = ?result.command_id,
                    "ignoring a command result from a node that is not the command's target"
                );
                let detail = format!(
                    "result for command of node {target} sent by {node}, ignored: {}",
                    result_detail(&result)
                );
                self.record_stray_result(node, &result, kind::COMMAND_RESULT_REJECTED, detail)
                    .await;
                return;
            }
            ResultOrigin::Unknown => {
                tracing::warn!(
                    node,
                    command_id = ?result.command_id,
                    "result for a command id this controller never issued; recorded as an event only"
                );
                let detail = format!("unknown command id: {}", result_detail(&result));
                self.record_stray_result(node, &result, kind::COMMAND_RESULT_UNMATCHED, detail)
                    .await;
                return;
            }
        };
        let event = NewEvent {
            time_unix_ms: now_unix_ms(),
            node: node.to_string(),
            kind: kind::COMMAND_RESULT.to_string(),
            detail: result_detail(&result),
            actor: requested_by,
            command_id: result.command_id.clone(),
        };
        match self
            .store
            .finish_command(&result, outcome, event.time_unix_ms, &event)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                node,
                command_id = ?result.command_id,
                "result for a command that is already finished; recorded as an event only"
            ),
            Err(err) => log_store_failure(Err(err), node, "command result"),
        }
        self.fleet.complete_command(node, result);
    }

    /// Stores a result that completes no command as an event without actor.
    async fn record_stray_result(
        &self,
        node: &str,
        result: &v1::CommandResult,
        kind: &str,
        detail: String,
    ) {
        let event = NewEvent {
            time_unix_ms: now_unix_ms(),
            node: node.to_string(),
            kind: kind.to_string(),
            detail,
            actor: String::new(),
            command_id: result.command_id.clone(),
        };
        let saved = self.store.append_event(&event).await.map(|_| ());
        log_store_failure(saved, node, "stray command result");
    }

    /// Forgets a closed stream, unless a newer one replaced it.
    pub async fn close_stream(&self, node: &str, connection_id: u64, detail: String) {
        let Some(event) = self
            .fleet
            .disconnect(node, connection_id, detail, now_unix_ms())
        else {
            return;
        };
        tracing::info!(node, connection_id, detail = ?event.detail, "agent disconnected");
        self.note_disconnect(node);
        if let Some(latest) = self.pending_reports.take(node) {
            self.save_report(&latest, &[]).await;
        }
        let saved = self.store.append_event(&event).await.map(|_| ());
        log_store_failure(saved, node, "disconnect");
    }

    /// Ends every agent stream and wakes every waiting requester, recording
    /// the disconnections. Used at shutdown.
    pub async fn close_all_streams(&self) {
        let events = self
            .fleet
            .close_all("the controller is shutting down", now_unix_ms());
        self.flush_reports().await;
        for event in events {
            let saved = self.store.append_event(&event).await.map(|_| ());
            log_store_failure(saved, &event.node, "disconnect");
        }
    }

    /// Marks nodes without recent reports as stale and persists the change.
    pub async fn mark_stale(&self) {
        for update in self.fleet.mark_stale(now_unix_ms()) {
            tracing::warn!(
                node = ?update.node,
                reason = ?update.health.reasons.join("; "),
                "node is stale"
            );
            let saved = self
                .store
                .save_health(&update.node, &update.health, &update.events)
                .await;
            log_store_failure(saved, &update.node, "stale health");
        }
    }

    /// Returns at most `limit` events, newest first.
    pub async fn list_events(
        &self,
        node: Option<&str>,
        limit: u32,
    ) -> Result<Vec<v1::Event>, StoreError> {
        self.store.list_events(node, limit).await
    }

    /// Finds which command a result from `node` belongs to. When the store
    /// cannot answer, the result is taken as the sending node's own, as the
    /// fleet's pending commands are keyed by node anyway.
    async fn result_origin(&self, node: &str, command_id: &str) -> ResultOrigin {
        if let Some(requested_by) = self.fleet.pending_requester(node, command_id) {
            return ResultOrigin::Target { requested_by };
        }
        match self.store.get_command(command_id).await {
            Ok(Some(record)) if record.command.node != node => ResultOrigin::OtherNode {
                target: record.command.node,
            },
            Ok(Some(record)) => ResultOrigin::Target {
                requested_by: record.command.requested_by,
            },
            Ok(None) => ResultOrigin::Unknown,
            Err(err) => {
                log_store_failure(Err(err), node, "command lookup");
                ResultOrigin::Target {
                    requested_by: String::new(),
                }
            }
        }
    }
}

/// Whose command an agent's result answers.
enum ResultOrigin {
    /// A command issued to the sending node.
    Target { requested_by: String },
    /// A command issued to another node.
    OtherNode { target: String },
    /// No command with that id was ever issued.
    Unknown,
}

fn result_detail(result: &v1::CommandResult) -> String {
    let mut detail = format!(
        "{} after {} ms",
        outcome_name(result.outcome),
        result.duration_ms
    );
    if !result.detail.is_empty() {
        detail.push_str(": ");
        detail.push_str(&result.detail);
    }
    if result.replayed {
        detail.push_str(" (replayed result of an earlier execution)");
    }
    detail
}

fn log_store_failure(result: Result<(), StoreError>, node: &str, what: &'static str) {
    if let Err(err) = result {
        tracing::error!(
            node,
            what,
            error = %crate::error_chain(&err),
            "cannot persist a change; the in-memory state is ahead of the database"
        );
    }
}
