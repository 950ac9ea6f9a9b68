//! The steps that change the controller's state. Each applies a change to the
//! [`Fleet`] and then persists it with its events in one store transaction.
//!
//! Store failures on the agent path (hello, report, disconnect, stale) are
//! logged and do not break the agent's stream: the in-memory state keeps
//! serving operators. A command, however, is never sent unless it was
//! recorded first, because the events are the audit trail of who restarted
//! what.

mod restart;

use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::view::outcome_name;

pub use restart::RestartError;

use crate::clock::now_unix_ms;
use crate::fleet::{kind, Fleet, NotCurrent, StreamSender};
use crate::store::{HelloRecord, NewEvent, Store, StoreError};

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
}

impl Controller {
    /// Loads every stored node into a new fleet.
    pub async fn load(store: Store, limits: RestartLimits) -> Result<Self, StoreError> {
        let records = store.list_nodes().await?;
        tracing::info!(nodes = records.len(), db = %store.path().display(), "loaded the fleet");
        Ok(Controller {
            fleet: Fleet::from_records(records, now_unix_ms()),
            store,
            limits,
        })
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Registers an agent's accepted stream and returns its connection id.
    pub async fn accept_hello(&self, hello: HelloRecord, sender: StreamSender) -> u64 {
        let now = now_unix_ms();
        let connected = self.fleet.connect(hello.clone(), sender, now);
        if connected.replaced_open_stream {
            tracing::warn!(
                node = %hello.node,
                connection_id = connected.connection_id,
                "a new stream replaced the node's open stream"
            );
        }
        tracing::info!(
            node = %hello.node,
            agent_version = %hello.agent_version,
            connection_id = connected.connection_id,
            "agent connected"
        );
        let saved = self
            .store
            .upsert_hello(&hello, now, &connected.events)
            .await;
        log_store_failure(saved, &hello.node, "hello");
        connected.connection_id
    }

    /// Applies a report that arrived on `connection_id` and persists it.
    pub async fn accept_report(
        &self,
        node: &str,
        connection_id: u64,
        report: v1::NodeReport,
    ) -> Result<(), NotCurrent> {
        let now = now_unix_ms();
        let update = self
            .fleet
            .apply_report(node, connection_id, report.clone(), now)?;
        for event in &update.events {
            tracing::info!(node, kind = %event.kind, detail = %event.detail, "node changed");
        }
        let saved = self
            .store
            .save_report(node, &report, &update.health, now, &update.events)
            .await;
        log_store_failure(saved, node, "report");
        Ok(())
    }

    /// Records an agent's command result and hands it to the requester
    /// waiting for it, in that order, so a requester never receives an outcome
    /// that is not yet in the history.
    pub async fn accept_command_result(&self, node: &str, result: v1::CommandResult) {
        let outcome = outcome_name(result.outcome);
        tracing::info!(
            node,
            command_id = %result.command_id,
            outcome,
            detail = %result.detail,
            "command result"
        );
        let requested_by = self.requester_of(node, &result.command_id).await;
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
                command_id = %result.command_id,
                "result for a command that is unknown or already finished; recorded as an event only"
            ),
            Err(err) => log_store_failure(Err(err), node, "command result"),
        }
        self.fleet.complete_command(node, result);
    }

    /// Forgets a closed stream, unless a newer one replaced it.
    pub async fn close_stream(&self, node: &str, connection_id: u64, detail: String) {
        let Some(event) = self
            .fleet
            .disconnect(node, connection_id, detail, now_unix_ms())
        else {
            return;
        };
        tracing::info!(node, connection_id, detail = %event.detail, "agent disconnected");
        let saved = self.store.append_event(&event).await.map(|_| ());
        log_store_failure(saved, node, "disconnect");
    }

    /// Ends every agent stream and wakes every waiting requester, recording
    /// the disconnections. Used at shutdown.
    pub async fn close_all_streams(&self) {
        let events = self
            .fleet
            .close_all("the controller is shutting down", now_unix_ms());
        for event in events {
            let saved = self.store.append_event(&event).await.map(|_| ());
            log_store_failure(saved, &event.node, "disconnect");
        }
    }

    /// Marks nodes without recent reports as stale and persists the change.
    pub async fn mark_stale(&self) {
        for update in self.fleet.mark_stale(now_unix_ms()) {
            tracing::warn!(
                node = %update.node,
                reason = %update.health.reasons.join("; "),
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

    async fn requester_of(&self, node: &str, command_id: &str) -> String {
        if let Some(requester) = self.fleet.pending_requester(node, command_id) {
            return requester;
        }
        match self.store.get_command(command_id).await {
            Ok(Some(record)) => record.command.requested_by,
            Ok(None) => String::new(),
            Err(err) => {
                log_store_failure(Err(err), node, "command lookup");
                String::new()
            }
        }
    }
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
