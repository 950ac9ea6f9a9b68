//! The `[alerting]` and `[metrics]` tables of the controller's configuration
//! file, read by [`crate::config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// Alert receivers and delivery settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingConfig {
    /// Alertmanager base URLs; every one gets every alert, as an HA pair
    /// expects.
    pub alertmanagers: Vec<Url>,
    pub webhooks: Vec<WebhookConfig>,
    /// Interval at which active alerts are sent again.
    pub resend_interval: Duration,
    /// Time limit of one HTTP request, connection included.
    pub timeout: Duration,
    /// Retries after a failed request, each after twice the previous wait.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub retry_backoff: Duration,
    /// Notifications each receiver may have waiting; when full, the oldest
    /// is dropped and counted.
    pub queue_capacity: usize,
    /// Link sent as `generatorURL`, for example the controller's dashboard.
    pub generator_url: Option<Url>,
    pub mass_disconnect: MassDisconnectRule,
}

/// A generic JSON webhook receiver.
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Url,
    /// Header values given in the file.
    pub headers: BTreeMap<String, String>,
    /// Header values read from files at start, for secrets such as an
    /// `Authorization` value.
    pub header_files: BTreeMap<String, PathBuf>,
    /// Whether active alerts are also sent again every resend interval.
    /// Off by default, so a chat channel gets one message per change.
    pub resend: bool,
}

impl std::fmt::Debug for WebhookConfig {
    // Header values may be credentials, so only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("header_files", &self.header_files)
            .field("resend", &self.resend)
            .finish()
    }
}

/// When many agents disconnecting at once makes one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MassDisconnectRule {
    /// Share of the known nodes, in percent, whose streams must close
    /// within `window`.
    pub percent: u32,
    /// Minimum number of nodes, whatever the share.
    pub min_nodes: u32,
    pub window: Duration,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            retry_backoff: Duration::from_secs(1),
            queue_capacity: 1_000,
            generator_url: None,
            mass_disconnect: MassDisconnectRule::default(),
        }
    }
}

impl Default for MassDisconnectRule {
    // A 60 s window covers the spread of one network cut: the controller
    // notices each lost stream within 50 s, when its HTTP/2 ping (every
    // 30 s, `server::KEEPALIVE_INTERVAL`) gets no reply in 20 s.
    fn default() -> Self {
        MassDisconnectRule {
            percent: 20,
            min_nodes: 3,
            window: Duration::from_secs(60),
        }
    }
}

/// The `[metrics]` settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address of the `/metrics` listener; None serves no metrics.
    pub listen: Option<SocketAddr>,
}

/// The `[alerting]` table, all keys optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertingFile {
    alertmanager_urls: Option<Vec<String>>,
    #[serde(default)]
    webhook: Vec<WebhookFile>,
    resend_interval_seconds: Option<u64>,
    timeout_seconds: Option<u64>,
    max_retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    queue_capacity: Option<usize>,
    generator_url: Option<String>,
    mass_disconnect: Option<MassDisconnectFile>,
}

/// One `[[alerting.webhook]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_files: BTreeMap<String, PathBuf>,
    #[serde(default)]
    resend: bool,
}

/// The `[alerting.mass_disconnect]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MassDisconnectFile {
    percent: Option<u32>,
    min_nodes: Option<u32>,
    window_seconds: Option<u64>,
}

/// The `[metrics]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsFile {
    listen: Option<String>,
}

/// A value that is not valid: its key, the value as written, and what is
/// expected instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub key: &'static str,
    pub value: String,
    pub expected: String,
}

fn invalid(key: &'static str, value: impl std::fmt::Display, expected: &str) -> Invalid {
    Invalid {
        key,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

pub(crate) fn parse_alerting(file: AlertingFile) -> Result<AlertingConfig, Invalid> {
    let defaults = AlertingConfig::default();
    let mut alertmanagers: Vec<Url> = Vec::new();
    for text in file.alertmanager_urls.unwrap_or_default() {
        let url = http_url("alerting.alertmanager_urls", &text)?;
        // A repeated URL is harmless, since Alertmanager merges identical
        // alerts, so it is dropped with a warning instead of stopping the
        // controller.
        if alertmanagers.contains(&url) {
            tracing::warn!(
                url = %super::deliver::shown(&url),
                "alerting.alertmanager_urls lists this URL twice; sending to it once"
            );
            continue;
        }
        alertmanagers.push(url);
    }
    let webhooks = file
        .webhook
        .into_iter()
        .map(parse_webhook)
        .collect::<Result<Vec<_>, _>>()?;
    warn_repeated_webhooks(&webhooks);

    let resend_seconds = file
        .resend_interval_seconds
        .unwrap_or(defaults.resend_interval.as_secs());
    if resend_seconds == 0 {
        return Err(invalid(
            "alerting.resend_interval_seconds",
            0,
            "at least 1 (Alertmanager resolves an alert that is not sent again in time)",
        ));
    }
    let timeout_seconds = file.timeout_seconds.unwrap_or(defaults.timeout.as_secs());
    if !(1..=300).contains(&timeout_seconds) {
        return Err(invalid(
            "alerting.timeout_seconds",
            timeout_seconds,
            "between 1 and 300",
        ));
    }
    let max_retries = file.max_retries.unwrap_or(defaults.max_retries);
    if max_retries > 20 {
        return Err(invalid("alerting.max_retries", max_retries, "at most 20"));
    }
    let backoff_ms = file
        .retry_backoff_ms
        .unwrap_or(defaults.retry_backoff.as_millis() as u64);
    if !(10..=600_000).contains(&backoff_ms) {
        return Err(invalid(
            "alerting.retry_backoff_ms",
            backoff_ms,
            "between 10 and 600000 (ten minutes)",
        ));
    }
    let queue_capacity = file.queue_capacity.unwrap_or(defaults.queue_capacity);
    if queue_capacity == 0 {
        return Err(invalid("alerting.queue_capacity", 0, "at least 1"));
    }
    let generator_url = file
        .generator_url
        .map(|text| http_url("alerting.generator_url", &text))
        .transpose()?;

    Ok(AlertingConfig {
        alertmanagers,
        webhooks,
        resend_interval: Duration::from_secs(resend_seconds),
        timeout: Duration::from_secs(timeout_seconds),
        max_retries,
        retry_backoff: Duration::from_millis(backoff_ms),
        queue_capacity,
        generator_url,
        mass_disconnect: parse_mass_disconnect(file.mass_disconnect.unwrap_or_default())?,
    })
}

fn parse_webhook(file: WebhookFile) -> Result<WebhookConfig, Invalid> {
    let url = http_url("alerting.webhook.url", &file.url)?;
    for name in file.headers.keys().chain(file.header_files.keys()) {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(
                "alerting.webhook.headers",
                format!("{name:?}"),
                "an HTTP header name (letters, digits and -)",
            ));
        }
    }
    for (name, value) in &file.headers {
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            // The value itself may be a secret, so only its name is shown.
            return Err(invalid(
                "alerting.webhook.headers",
                format!("the value of {name:?}"),
                "a header value of visible ASCII characters and spaces",
            ));
        }
    }
    // Header names are case-insensitive, so `Authorization` and
    // `authorization` are one header and only one of the values would be
    // sent. Which one is not obvious from the file, so this is an error.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let names = (file.headers.keys().map(|name| (name, "headers")))
        .chain(file.header_files.keys().map(|name| (name, "header_files")));
    for (name, table) in names {
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), table) {
            return Err(invalid(
                if table == "headers" {
                    "alerting.webhook.headers"
                } else {
                    "alerting.webhook.header_files"
                },
                format!("{name:?}"),
                &format!(
                    "a header not already set in `{first}` (names are case-insensitive); set \
                     each header once, in one of the two tables"
                ),
            ));
        }
    }
    Ok(WebhookConfig {
        url,
        headers: file.headers,
        header_files: file.header_files,
        resend: file.resend,
    })
}

/// Warns about webhooks with the same URL: each would get every
/// notification, which may be meant (different headers) but is more likely
/// a copied entry.
fn warn_repeated_webhooks(webhooks: &[WebhookConfig]) {
    for (index, webhook) in webhooks.iter().enumerate() {
        if webhooks[..index]
            .iter()
            .any(|earlier| earlier.url == webhook.url)
        {
            tracing::warn!(
                url = %super::deliver::shown(&webhook.url),
                "two [[alerting.webhook]] entries have this URL; it gets every notification twice"
            );
        }
    }
}

fn parse_mass_disconnect(file: MassDisconnectFile) -> Result<MassDisconnectRule, Invalid> {
    let defaults = MassDisconnectRule::default();
    let percent = file.percent.unwrap_or(defaults.percent);
    if !(1..=100).contains(&percent) {
        return Err(invalid(
            "alerting.mass_disconnect.percent",
            percent,
            "between 1 and 100",
        ));
    }
    let min_nodes = file.min_nodes.unwrap_or(defaults.min_nodes);
    if min_nodes < 2 {
        return Err(invalid(
            "alerting.mass_disconnect.min_nodes",
            min_nodes,
            "at least 2 (one node's disconnect is not a mass disconnect)",
        ));
    }
    let window_seconds = file.window_seconds.unwrap_or(defaults.window.as_secs());
    if !(1..=3_600).contains(&window_seconds) {
        return Err(invalid(
            "alerting.mass_disconnect.window_seconds",
            window_seconds,
            "between 1 and 3600",
        ));
    }
    Ok(MassDisconnectRule {
        percent,
        min_nodes,
        window: Duration::from_secs(window_seconds),
    })
}

pub(crate) fn parse_metrics(
    file: MetricsFile,
    grpc_listen: SocketAddr,
) -> Result<MetricsConfig, Invalid> {
    let Some(text) = file.listen else {
        return Ok(MetricsConfig::default());
    };
    let listen: SocketAddr = text.parse().map_err(|_| {
        invalid(
            "metrics.listen",
            format!("{text:?}"),
            "an IP address and port such as \"127.0.0.1:9469\"",
        )
    })?;
    if listen.port() == 0 {
        return Err(invalid(
            "metrics.listen",
            format!("{text:?}"),
            "an address with a fixed port, which Prometheus can be pointed at",
        ));
    }
    if listen == grpc_listen {
        return Err(invalid(
            "metrics.listen",
            format!("{text:?}"),
            "an address other than the gRPC `listen` address",
        ));
    }
    Ok(MetricsConfig {
        listen: Some(listen),
    })
}

/// Parses an absolute http or https URL.
fn http_url(key: &'static str, text: &str) -> Result<Url, Invalid> {
    let expected = "an absolute http:// or https:// URL such as \"http://127.0.0.1:9093\"";
    let url = Url::parse(text).map_err(|_| invalid(key, format!("{text:?}"), expected))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(key, format!("{text:?}"), expected));
    }
    Ok(url)
}
