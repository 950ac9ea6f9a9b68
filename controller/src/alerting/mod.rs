//! Alerts for states a human must act on, sent to Alertmanager's v2 API and
//! to generic JSON webhooks.
//!
//! The controller states which alerts are active (see [`Alerter::reconcile`]).
//! The alerter sends an alert when it becomes active and sends it resolved
//! when it is no longer active. While it stays active, it is sent again every
//! resend interval to Alertmanager, and to webhooks that ask for it. Delivery runs on its own tasks behind bounded queues, so a
//! slow or absent receiver never holds up the policy or the gRPC services.

pub mod config;
mod deliver;
pub mod disconnect;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::clock::now_unix_ms;
use crate::metrics::Metrics;
use config::AlertingConfig;
pub use deliver::ReceiverError;
use deliver::{Receiver, ReceiverKind};

/// `alertname` of a node the policy handed to a human.
pub const NODE_NEEDS_HUMAN: &str = "NovamedicNodeNeedsHuman";
/// `alertname` of the storm guard's fleet-wide pause.
pub const RESTART_STORM: &str = "NovamedicRestartStorm";
/// `alertname` of many agents disconnecting at once.
pub const AGENTS_DISCONNECTED: &str = "NovamedicAgentsDisconnected";

/// Value of the `service` label on every alert.
pub const SERVICE: &str = "nova-compute";

/// An alert's urgency, sent as the `severity` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// An alert: what is wrong, where, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The `alertname` label, one of the constants of this module.
    pub name: &'static str,
    /// The node, or None for a fleet-wide alert (no `node` label).
    pub node: Option<String>,
    pub severity: Severity,
    pub summary: String,
    /// The evidence, in an operator's words.
    pub description: String,
    /// When the condition began, Unix time in milliseconds. It stays the
    /// same across re-sends, so receivers see one episode.
    pub starts_at_unix_ms: i64,
}

impl Alert {
    fn key(&self) -> (&'static str, String) {
        (self.name, self.node.clone().unwrap_or_default())
    }

    /// Returns the alert's labels as Alertmanager groups and routes them.
    pub fn labels(&self) -> BTreeMap<&'static str, String> {
        let mut labels = BTreeMap::from([
            ("alertname", self.name.to_string()),
            ("severity", self.severity.as_str().to_string()),
            ("service", SERVICE.to_string()),
        ]);
        if let Some(node) = &self.node {
            labels.insert("node", node.clone());
        }
        labels
    }
}

/// Whether a notification announces or ends an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert to deliver, at one time.
#[derive(Clone, Debug)]
struct Notification {
    alert: Alert,
    status: Status,
    /// When it was queued; the end time of a resolved alert.
    at_unix_ms: i64,
}

/// The active alerts and the receivers they go to.
#[derive(Debug)]
pub struct Alerter {
    config: AlertingConfig,
    active: Mutex<BTreeMap<(&'static str, String), Alert>>,
    receivers: Vec<Arc<Receiver>>,
}

impl Alerter {
    /// Builds the receivers of `config`. Header files are read here, so a
    /// missing secret stops the start instead of every delivery.
    pub fn new(config: &AlertingConfig, metrics: Arc<Metrics>) -> Result<Self, ReceiverError> {
        let client = deliver::http_client(config)?;
        let mut receivers = Vec::new();
        for url in &config.alertmanagers {
            receivers.push(Arc::new(Receiver::alertmanager(
                url,
                client.clone(),
                config,
                Arc::clone(&metrics),
            )?));
        }
        for webhook in &config.webhooks {
            receivers.push(Arc::new(Receiver::webhook(
                webhook,
                client.clone(),
                config,
                Arc::clone(&metrics),
            )?));
        }
        Ok(Alerter {
            config: config.clone(),
            active: Mutex::new(BTreeMap::new()),
            receivers,
        })
    }

    /// Builds an alerter without receivers; it still tracks active alerts.
    pub fn disabled() -> Self {
        Alerter {
            config: AlertingConfig::default(),
            active: Mutex::new(BTreeMap::new()),
            receivers: Vec::new(),
        }
    }

    pub fn config(&self) -> &AlertingConfig {
        &self.config
    }

    /// Starts one delivery task per receiver and the re-send task. The
    /// caller aborts them at shutdown.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self
            .receivers
            .iter()
            .map(|receiver| tokio::spawn(Arc::clone(receiver).deliver_forever()))
            .collect();
        if !self.receivers.is_empty() {
            tasks.push(tokio::spawn(Arc::clone(self).resend_forever()));
            tracing::info!(
                alertmanagers = self.config.alertmanagers.len(),
                webhooks = self.config.webhooks.len(),
                resend_interval_seconds = self.config.resend_interval.as_secs(),
                "alerting enabled"
            );
        }
        tasks
    }

    /// Makes `desired` the active alerts among those named in `names`: a new
    /// alert is sent as firing, one no longer desired is sent as resolved,
    /// and an alert whose text changed is sent again with the new text.
    pub fn reconcile(&self, names: &[&'static str], desired: Vec<Alert>) {
        let now = now_unix_ms();
        let mut desired: BTreeMap<_, _> = desired.into_iter().map(|a| (a.key(), a)).collect();
        let mut notifications = Vec::new();
        {
            let mut active = self.lock();
            let ended: Vec<_> = active
                .keys()
                .filter(|key| names.contains(&key.0) && !desired.contains_key(*key))
                .cloned()
                .collect();
            for key in ended {
                let alert = active.remove(&key).expect("key was just listed");
                notifications.push(notification(alert, Status::Resolved, now));
            }
            for (key, alert) in std::mem::take(&mut desired) {
                if active.get(&key) != Some(&alert) {
                    notifications.push(notification(alert.clone(), Status::Firing, now));
                    active.insert(key, alert);
                }
            }
        }
        for notification in notifications {
            tracing::info!(
                alertname = notification.alert.name,
                node = ?notification.alert.node,
                status = notification.status.as_str(),
                summary = %notification.alert.summary,
                "alert"
            );
            self.enqueue(&notification, false);
        }
    }

    /// Returns the number of active alerts by `alertname`.
    pub fn active_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for (name, _) in self.lock().keys() {
            *counts.entry(*name).or_insert(0) += 1;
        }
        counts
    }

    /// Queues `notification` for every receiver, or for those that take
    /// re-sends when it is one.
    fn enqueue(&self, notification: &Notification, resend: bool) {
        for receiver in &self.receivers {
            if !resend || receiver.takes_resends {
                receiver.push(notification.clone());
            }
        }
    }

    /// Sends every active alert again at each interval, so Alertmanager
    /// keeps it open while it lasts.
    async fn resend_forever(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.resend_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = now_unix_ms();
            let active: Vec<Alert> = self.lock().values().cloned().collect();
            for alert in active {
                self.enqueue(&notification(alert, Status::Firing, now), true);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), Alert>> {
        // The map is replaced in whole steps, so a panic elsewhere cannot
        // leave it half-changed.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn notification(alert: Alert, status: Status, at_unix_ms: i64) -> Notification {
    Notification {
        alert,
        status,
        at_unix_ms,
    }
}

impl ReceiverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Alertmanager => "alertmanager",
            ReceiverKind::Webhook => "webhook",
        }
    }
}
