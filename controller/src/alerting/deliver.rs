//! Delivery to one receiver: a bounded queue that drops its oldest entry
//! when full, and a task that posts what is queued with retries and
//! back-off.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::Serialize;
use tokio::sync::Notify;

use super::config::{AlertingConfig, WebhookConfig};
use super::{Alert, Notification, Status};
use crate::metrics::Metrics;

/// Alerts per Alertmanager request; the API takes a list.
const ALERTMANAGER_BATCH: usize = 64;

/// Drops of a full queue that make one log line.
const DROP_LOG_EVERY: u64 = 100;

/// Maximum wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A receiver that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot build the HTTP client for alerting")]
    Client(#[source] reqwest::Error),
    #[error("invalid Alertmanager URL {url}: cannot append /api/v2/alerts to it")]
    AlertmanagerUrl { url: String },
    #[error(
        "cannot read the value of header {header} for webhook {url} from {}; create the \
         file or remove it from `header_files`", path.display()
    )]
    HeaderFile {
        header: String,
        url: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the header file {} of header {header} for webhook {url} is empty; write the value \
         into it", path.display()
    )]
    EmptyHeaderFile {
        header: String,
        url: String,
        path: std::path::PathBuf,
    },
    #[error(
        "the value of header {header} for webhook {url}, read from {}, is not a valid header \
         value; it must be one line of visible ASCII characters", path.display()
    )]
    HeaderValue {
        header: String,
        url: String,
        path: std::path::PathBuf,
    },
}

/// The API a receiver speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverKind {
    /// `POST /api/v2/alerts` with a JSON list of alerts.
    Alertmanager,
    /// One JSON object per alert, posted to the configured URL.
    Webhook,
}

/// One receiver and its queue.
#[derive(Debug)]
pub struct Receiver {
    kind: ReceiverKind,
    /// The URL posted to.
    url: Url,
    /// `url` without credentials, query or fragment, for logs.
    shown_url: String,
    headers: HeaderMap,
    client: reqwest::Client,
    queue: Mutex<VecDeque<Notification>>,
    capacity: usize,
    queued: Notify,
    /// Notifications dropped so far, to log only some of them.
    dropped: AtomicU64,
    max_retries: u32,
    retry_backoff: Duration,
    /// Whether re-sends of active alerts go here too.
    pub(super) takes_resends: bool,
    resend_interval: Duration,
    generator_url: Option<String>,
    metrics: Arc<Metrics>,
}

/// Builds the client all receivers share.
pub fn http_client(config: &AlertingConfig) -> Result<reqwest::Client, ReceiverError> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(concat!("novamedic/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ReceiverError::Client)
}

impl Receiver {
    pub fn alertmanager(
        base: &Url,
        client: reqwest::Client,
        config: &AlertingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ReceiverError> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| ReceiverError::AlertmanagerUrl { url: shown(base) })?
            .pop_if_empty()
            .extend(["api", "v2", "alerts"]);
        Ok(Self::build(
            ReceiverKind::Alertmanager,
            url,
            HeaderMap::new(),
            client,
            config,
            metrics,
        )
        .with_resends(true))
    }

    pub fn webhook(
        webhook: &WebhookConfig,
        client: reqwest::Client,
        config: &AlertingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ReceiverError> {
        let headers = webhook_headers(webhook)?;
        Ok(Self::build(
            ReceiverKind::Webhook,
            webhook.url.clone(),
            headers,
            client,
            config,
            metrics,
        )
        .with_resends(webhook.resend))
    }

    fn build(
        kind: ReceiverKind,
        url: Url,
        headers: HeaderMap,
        client: reqwest::Client,
        config: &AlertingConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Receiver {
            kind,
            shown_url: shown(&url),
            url,
            headers,
            client,
            queue: Mutex::new(VecDeque::new()),
            capacity: config.queue_capacity,
            queued: Notify::new(),
            dropped: AtomicU64::new(0),
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
            takes_resends: false,
            resend_interval: config.resend_interval,
            generator_url: config.generator_url.as_ref().map(Url::to_string),
            metrics,
        }
    }

    fn with_resends(mut self, takes_resends: bool) -> Self {
        self.takes_resends = takes_resends;
        self
    }

    /// Queues a notification, dropping the oldest one when the queue is
    /// full, because the newest state of an alert matters more than an old
    /// one. A receiver that takes re-sends gets active alerts again later.
    pub(super) fn push(&self, notification: Notification) {
        let dropped = {
            let mut queue = self.lock();
            let dropped = if queue.len() >= self.capacity {
                queue.pop_front()
            } else {
                None
            };
            queue.push_back(notification);
            dropped
        };
        if let Some(dropped) = dropped {
            self.record_drop(&dropped);
        }
        self.queued.notify_one();
    }

    /// Counts a dropped notification and logs the first and every
    /// [`DROP_LOG_EVERY`]th one.
    fn record_drop(&self, dropped: &Notification) {
        self.metrics.alert_dropped(self.kind.as_str());
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if total % DROP_LOG_EVERY != 1 {
            return;
        }
        tracing::warn!(
            receiver = self.kind.as_str(),
            url = %self.shown_url,
            alertname = dropped.alert.name,
            node = ?dropped.alert.node,
            capacity = self.capacity,
            dropped_total = total,
            "alert queue full; dropped its oldest notification (logged for the first and every \
             100th drop)"
        );
    }

    /// Posts queued notifications until the task is aborted.
    pub(super) async fn deliver_forever(self: Arc<Self>) {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                self.queued.notified().await;
                continue;
            }
            self.deliver(&batch).await;
        }
    }

    fn take_batch(&self) -> Vec<Notification> {
        let size = match self.kind {
            ReceiverKind::Alertmanager => ALERTMANAGER_BATCH,
            ReceiverKind::Webhook => 1,
        };
        let mut queue = self.lock();
        let size = size.min(queue.len());
        queue.drain(..size).collect()
    }

    async fn deliver(&self, batch: &[Notification]) {
        let body = match self.kind {
            ReceiverKind::Alertmanager => serde_json::to_vec(
                &batch
                    .iter()
                    .map(|n| self.alertmanager_alert(n))
                    .collect::<Vec<_>>(),
            ),
            ReceiverKind::Webhook => serde_json::to_vec(&self.webhook_alert(&batch[0])),
        }
        .expect("alerts serialise to JSON");

        let mut backoff = self.retry_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.post(body.clone()).await {
                Ok(()) => {
                    for notification in batch {
                        self.metrics
                            .alert_sent(self.kind.as_str(), notification.status.as_str());
                    }
                    tracing::debug!(receiver = self.kind.as_str(), url = %self.shown_url, alerts = batch.len(), "alerts delivered");
                    return;
                }
                Err(error) if attempt > self.max_retries => {
                    for _ in batch {
                        self.metrics.alert_failed(self.kind.as_str());
                    }
                    tracing::error!(
                        receiver = self.kind.as_str(),
                        url = %self.shown_url,
                        alerts = batch.len(),
                        attempts = attempt,
                        error = %error,
                        resent_later = self.takes_resends,
                        "cannot deliver alerts; giving up on them"
                    );
                    return;
                }
                Err(error) => {
                    tracing::warn!(
                        receiver = self.kind.as_str(),
                        url = %self.shown_url,
                        attempt,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %error,
                        "alert delivery failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| crate::error_chain(&err.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(200).collect();
        Err(format!("HTTP {status}: {text}"))
    }

    /// Builds one element of Alertmanager's `postableAlerts`. A firing
    /// alert ends four resend intervals ahead, so Alertmanager closes it by
    /// itself if the controller stops sending; a resolved one ends now.
    fn alertmanager_alert<'a>(&'a self, notification: &'a Notification) -> AlertmanagerAlert<'a> {
        let ends_at_unix_ms = match notification.status {
            Status::Firing => notification.at_unix_ms + 4 * self.resend_interval.as_millis() as i64,
            Status::Resolved => notification.at_unix_ms,
        };
        AlertmanagerAlert {
            labels: notification.alert.labels(),
            annotations: annotations(&notification.alert),
            starts_at: rfc3339(notification.alert.starts_at_unix_ms),
            ends_at: rfc3339(ends_at_unix_ms),
            generator_url: self.generator_url.as_deref(),
        }
    }

    fn webhook_alert<'a>(&'a self, notification: &'a Notification) -> WebhookAlert<'a> {
        let alert = &notification.alert;
        WebhookAlert {
            version: "1",
            status: notification.status,
            alertname: alert.name,
            node: alert.node.as_deref(),
            severity: alert.severity.as_str(),
            labels: alert.labels(),
            annotations: annotations(alert),
            starts_at: rfc3339(alert.starts_at_unix_ms),
            ends_at: (notification.status == Status::Resolved)
                .then(|| rfc3339(notification.at_unix_ms)),
            sent_at: rfc3339(notification.at_unix_ms),
            generator_url: self.generator_url.as_deref(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Notification>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerAlert<'a> {
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, &'a str>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

/// The webhook's JSON object; README.md documents its fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert<'a> {
    version: &'static str,
    status: Status,
    alertname: &'static str,
    node: Option<&'a str>,
    severity: &'static str,
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, &'a str>,
    starts_at: String,
    ends_at: Option<String>,
    sent_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: Option<&'a str>,
}

fn annotations(alert: &Alert) -> BTreeMap<&'static str, &str> {
    BTreeMap::from([
        ("summary", alert.summary.as_str()),
        ("description", alert.description.as_str()),
    ])
}

fn rfc3339(unix_ms: i64) -> String {
    novamedic_proto::view::rfc3339_from_unix_ms(unix_ms).unwrap_or_else(|| unix_ms.to_string())
}

/// Returns the URL without user information, query or fragment.
pub(super) fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Builds a webhook's headers, reading the values kept in files. Every
/// value is marked sensitive, so it never shows in debug output.
fn webhook_headers(webhook: &WebhookConfig) -> Result<HeaderMap, ReceiverError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &webhook.headers {
        let mut value = HeaderValue::from_str(value).expect("checked when the config was read");
        value.set_sensitive(true);
        headers.insert(header_name(name), value);
    }
    for (name, path) in &webhook.header_files {
        let text = std::fs::read_to_string(path).map_err(|source| ReceiverError::HeaderFile {
            header: name.clone(),
            url: shown(&webhook.url),
            path: path.clone(),
            source,
        })?;
        let text = text.trim_end_matches(['\r', '\n']);
        // An empty file is most likely a secret not yet written, and an
        // empty Authorization header would only fail at the first alert.
        if text.trim().is_empty() {
            return Err(ReceiverError::EmptyHeaderFile {
                header: name.clone(),
                url: shown(&webhook.url),
                path: path.clone(),
            });
        }
        let mut value = HeaderValue::from_str(text).map_err(|_| ReceiverError::HeaderValue {
            header: name.clone(),
            url: shown(&webhook.url),
            path: path.clone(),
        })?;
        value.set_sensitive(true);
        headers.insert(header_name(name), value);
    }
    Ok(headers)
}

fn header_name(name: &str) -> HeaderName {
    HeaderName::from_bytes(name.as_bytes()).expect("checked when the config was read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::{Severity, NODE_NEEDS_HUMAN};

    fn notification(node: &str) -> Notification {
        Notification {
            alert: Alert {
                name: NODE_NEEDS_HUMAN,
                node: Some(node.to_string()),
                severity: Severity::Critical,
                summary: String::new(),
                description: String::new(),
                starts_at_unix_ms: 0,
            },
            status: Status::Firing,
            at_unix_ms: 0,
        }
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let config = AlertingConfig {
            queue_capacity: 2,
            ..AlertingConfig::default()
        };
        let metrics = Arc::new(Metrics::default());
        let receiver = Receiver::alertmanager(
            &"http://127.0.0.1:9093".parse().unwrap(),
            http_client(&config).unwrap(),
            &config,
            Arc::clone(&metrics),
        )
        .unwrap();
        for node in ["cn-1", "cn-2", "cn-3"] {
            receiver.push(notification(node));
        }
        let queued: Vec<_> = receiver
            .take_batch()
            .into_iter()
            .map(|n| n.alert.node.unwrap())
            .collect();
        assert_eq!(queued, ["cn-2", "cn-3"]);
        let mut out = crate::metrics::Exposition::default();
        metrics.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains(
                "novamedic_alert_notifications_dropped_total{receiver=\"alertmanager\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn alertmanager_path_is_appended() {
        let config = AlertingConfig::default();
        for (base, expected) in [
            ("http://am:9093", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            ("https://am/prefix/", "https://am/prefix/api/v2/alerts"),
        ] {
            let receiver = Receiver::alertmanager(
                &base.parse().unwrap(),
                http_client(&config).unwrap(),
                &config,
                Arc::new(Metrics::default()),
            )
            .unwrap();
            assert_eq!(receiver.url.as_str(), expected, "{base}");
        }
    }

    #[test]
    fn shown_url_hides_credentials() {
        let url: Url = "https://user:pw@hooks.example.org/h?token=x"
            .parse()
            .unwrap();
        assert_eq!(shown(&url), "https://hooks.example.org/h");
    }

    #[test]
    fn webhook_header_values_are_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, "Bearer abc\n").unwrap();
        let webhook = WebhookConfig {
            url: "http://127.0.0.1:1/h".parse().unwrap(),
            headers: BTreeMap::from([("X-A".to_string(), "b".to_string())]),
            header_files: BTreeMap::from([("Authorization".to_string(), path)]),
            resend: false,
        };
        let headers = webhook_headers(&webhook).unwrap();
        assert_eq!(headers["authorization"], "Bearer abc");
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-a"].is_sensitive());
        assert!(!format!("{headers:?}").contains("abc"));

        let missing = WebhookConfig {
            header_files: BTreeMap::from([(
                "Authorization".to_string(),
                dir.path().join("absent"),
            )]),
            ..webhook
        };
        let err = webhook_headers(&missing).unwrap_err().to_string();
        assert!(
            err.contains("absent") && err.contains("Authorization"),
            "{err}"
        );
    }

    #[test]
    fn empty_header_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("empty", ""), ("blank", " \n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let webhook = WebhookConfig {
                url: "http://127.0.0.1:1/h".parse().unwrap(),
                headers: BTreeMap::new(),
                header_files: BTreeMap::from([("Authorization".to_string(), path.clone())]),
                resend: false,
            };
            let err = webhook_headers(&webhook).unwrap_err();
            assert!(
                matches!(err, ReceiverError::EmptyHeaderFile { .. }),
                "{name}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("Authorization"), "{message}");
        }
    }
}
