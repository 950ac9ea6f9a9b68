//! The agent's configuration: `/etc/novamedic/agent.toml`, overridden by
//! command-line flags.
//!
//! Unknown keys are errors, so a typo cannot silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::health::Thresholds;
use novamedic_tls::{MaterialError, TlsFiles};
use serde::Deserialize;

/// Default location of the agent's config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/novamedic/agent.toml";

/// Default controller address.
pub const DEFAULT_CONTROLLER: &str = "https://127.0.0.1:7400";

/// Default paths of the node's certificate, its key and the CA.
pub const DEFAULT_TLS_CERT: &str = "/etc/novamedic/tls/node.crt";
pub const DEFAULT_TLS_KEY: &str = "/etc/novamedic/tls/node.key";
pub const DEFAULT_TLS_CA: &str = "/etc/novamedic/tls/ca.crt";

/// Default directory for the command ledger, restart budget and log position.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/novamedic-agent";

/// Settings of the RPC liveness probe, `[rpc_probe]` in agent.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcProbeSettings {
    pub enabled: bool,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// How long a probe waits for nova-compute's reply; also the call's
    /// expiration in the broker.
    pub timeout: Duration,
}

impl Default for RpcProbeSettings {
    fn default() -> Self {
        RpcProbeSettings {
            enabled: true,
            interval: Duration::from_secs(DEFAULT_RPC_PROBE_INTERVAL_SECONDS),
            timeout: Duration::from_secs(DEFAULT_RPC_PROBE_TIMEOUT_SECONDS),
        }
    }
}

/// Default `[rpc_probe] interval_seconds`: a wedged nova-compute shows
/// within half a minute plus the timeout, well before nova's own
/// `service_down_time` of 60 s, at one short connection per probe.
pub const DEFAULT_RPC_PROBE_INTERVAL_SECONDS: u64 = 30;

/// Default `[rpc_probe] timeout_seconds`, a margin for a nova-compute busy
/// with other RPC calls.
pub const DEFAULT_RPC_PROBE_TIMEOUT_SECONDS: u64 = 10;

/// The agent's settings after the file and the flags are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Name the node reports under; defaults to the host name.
    pub node: String,
    /// Controller URL, for example `https://controller:7400`.
    pub controller: String,
    /// The node's certificate, key, CA and CRL for mutual TLS; `None` for
    /// plain text (`[tls] enabled = false` or `--insecure-plaintext`).
    pub tls: Option<TlsFiles>,
    pub state_dir: PathBuf,
    pub report_interval: Duration,
    /// nova-compute's unit; `None` detects it among the known names.
    pub nova_compute_unit: Option<String>,
    /// How long a restarted unit must stay active to count as restarted.
    pub restart_settle: Duration,
    /// At most this many restarts per `restart_budget_window`, whatever the
    /// controller asks.
    pub restart_budget_max: u32,
    pub restart_budget_window: Duration,
    /// nova config files to read; empty reads those on nova-compute's command
    /// line, or `/etc/nova/nova.conf`.
    pub nova_config_files: Vec<PathBuf>,
    /// nova-compute's log file; `None` finds it (the `--log-file` on the
    /// command line, then the usual paths).
    pub nova_log_file: Option<PathBuf>,
    /// Directory of operator signature files for the log classifier, read in
    /// addition to the shipped catalogue.
    pub signatures_dir: PathBuf,
    pub rpc_probe: RpcProbeSettings,
    /// Resource thresholds below which the node is degraded.
    pub health: Thresholds,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node: default_node_name(),
            controller: DEFAULT_CONTROLLER.to_string(),
            tls: Some(default_tls_files()),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            report_interval: Duration::from_secs(10),
            nova_compute_unit: None,
            restart_settle: Duration::from_secs(15),
            restart_budget_max: 3,
            restart_budget_window: Duration::from_secs(3600),
            nova_config_files: Vec::new(),
            nova_log_file: None,
            signatures_dir: PathBuf::from(novamedic_logs::DEFAULT_OPERATOR_DIR),
            rpc_probe: RpcProbeSettings::default(),
            health: Thresholds::default(),
        }
    }
}

/// The file's keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    node: Option<String>,
    controller: Option<String>,
    state_dir: Option<PathBuf>,
    report_interval_seconds: Option<u64>,
    nova_compute_unit: Option<String>,
    restart_settle_seconds: Option<u64>,
    restart_budget: Option<RestartBudgetFile>,
    nova_config_files: Option<Vec<PathBuf>>,
    nova_log_file: Option<PathBuf>,
    signatures_dir: Option<PathBuf>,
    rpc_probe: Option<RpcProbeFile>,
    health: Option<HealthFile>,
    tls: Option<TlsFile>,
}

/// The `[health]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    min_free_disk_percent: Option<i64>,
    min_available_memory_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcProbeFile {
    enabled: Option<bool>,
    interval_seconds: Option<u64>,
    timeout_seconds: Option<u64>,
}

/// The `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    enabled: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    crl: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBudgetFile {
    max_restarts: Option<u32>,
    window_seconds: Option<u64>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: key `{key}` {expected}")]
    Value {
        path: PathBuf,
        key: &'static str,
        expected: String,
    },
    #[error("invalid {flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("invalid TLS setup: {0}")]
    Tls(#[from] MaterialError),
    #[error("controller URL {url:?} {message}")]
    Transport { url: String, message: String },
}

/// The TLS files at their default paths.
pub fn default_tls_files() -> TlsFiles {
    TlsFiles {
        cert: PathBuf::from(DEFAULT_TLS_CERT),
        key: PathBuf::from(DEFAULT_TLS_KEY),
        ca: PathBuf::from(DEFAULT_TLS_CA),
        crl: None,
    }
}

/// Builds the error for a command-line flag that fails the same check as
/// its config key.
pub fn flag_error(flag: &'static str, message: String) -> ConfigError {
    ConfigError::Flag { flag, message }
}

impl AgentConfig {
    /// Loads `path`. A missing file gives the defaults only when
    /// `required` is false (the default path may be absent on a dev machine).
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Self::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a config file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: AgentFile = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &err),
        })?;
        let value_error = |key, expected: &str| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            expected: expected.to_string(),
        };

        let mut config = AgentConfig::default();
        if let Some(node) = file.node {
            validate_node_name(&node).map_err(|message| value_error("node", &message))?;
            config.node = node;
        }
        if let Some(controller) = file.controller {
            validate_controller_url(&controller)
                .map_err(|message| value_error("controller", &message))?;
            config.controller = controller;
        }
        if let Some(state_dir) = file.state_dir {
            if !state_dir.is_absolute() {
                return Err(value_error("state_dir", "must be an absolute path"));
            }
            config.state_dir = state_dir;
        }
        if let Some(seconds) = file.report_interval_seconds {
            if !(1..=3600).contains(&seconds) {
                return Err(value_error(
                    "report_interval_seconds",
                    "must be between 1 and 3600",
                ));
            }
            config.report_interval = Duration::from_secs(seconds);
        }
        if let Some(unit) = file.nova_compute_unit {
            validate_unit_name(&unit)
                .map_err(|message| value_error("nova_compute_unit", &message))?;
            config.nova_compute_unit = Some(unit);
        }
        if let Some(seconds) = file.restart_settle_seconds {
            if seconds > 600 {
                return Err(value_error("restart_settle_seconds", "must be at most 600"));
            }
            config.restart_settle = Duration::from_secs(seconds);
        }
        if let Some(budget) = file.restart_budget {
            if let Some(max) = budget.max_restarts {
                config.restart_budget_max = max;
            }
            if let Some(seconds) = budget.window_seconds {
                if seconds == 0 {
                    return Err(value_error(
                        "restart_budget.window_seconds",
                        "must be greater than 0",
                    ));
                }
                config.restart_budget_window = Duration::from_secs(seconds);
            }
        }
        if let Some(files) = file.nova_config_files {
            if let Some(relative) = files.iter().find(|f| !f.is_absolute()) {
                return Err(value_error(
                    "nova_config_files",
                    &format!("must hold absolute paths, got {}", relative.display()),
                ));
            }
            config.nova_config_files = files;
        }
        if let Some(log_file) = file.nova_log_file {
            if !log_file.is_absolute() {
                return Err(value_error("nova_log_file", "must be an absolute path"));
            }
            config.nova_log_file = Some(log_file);
        }
        if let Some(dir) = file.signatures_dir {
            if !dir.is_absolute() {
                return Err(value_error("signatures_dir", "must be an absolute path"));
            }
            config.signatures_dir = dir;
        }
        if let Some(probe) = file.rpc_probe {
            config.rpc_probe =
                rpc_probe_settings(probe).map_err(|(key, expected)| ConfigError::Value {
                    path: path.to_path_buf(),
                    key,
                    expected,
                })?;
        }
        if let Some(health) = file.health {
            let percent = |key, value: Option<i64>, default: u8| match value {
                None => Ok(default),
                Some(value) => u8::try_from(value)
                    .ok()
                    .filter(|v| *v <= 100)
                    .ok_or_else(|| {
                        value_error(
                            key,
                            &format!("must be a percentage from 0 (check off) to 100, got {value}"),
                        )
                    }),
            };
            config.health = Thresholds {
                min_free_disk_percent: percent(
                    "health.min_free_disk_percent",
                    health.min_free_disk_percent,
                    config.health.min_free_disk_percent,
                )?,
                min_available_memory_percent: percent(
                    "health.min_available_memory_percent",
                    health.min_available_memory_percent,
                    config.health.min_available_memory_percent,
                )?,
            };
        }
        if let Some(tls) = file.tls {
            config.tls = match tls.enabled {
                Some(false) => None,
                _ => {
                    let defaults = default_tls_files();
                    Some(TlsFiles {
                        cert: tls.cert.unwrap_or(defaults.cert),
                        key: tls.key.unwrap_or(defaults.key),
                        ca: tls.ca.unwrap_or(defaults.ca),
                        crl: tls.crl,
                    })
                }
            };
        }
        Ok(config)
    }

    /// Checks, after the flags are applied, that the URL's scheme matches
    /// the TLS setting and that the TLS files are usable.
    pub fn check_transport(&self) -> Result<(), ConfigError> {
        let mismatch = |message: &str| ConfigError::Transport {
            url: self.controller.clone(),
            message: message.to_string(),
        };
        match &self.tls {
            Some(files) => {
                if !self.controller.starts_with("https://") {
                    return Err(mismatch(
                        "must start with https:// under mutual TLS; use http:// only with \
                         [tls] enabled = false or --insecure-plaintext",
                    ));
                }
                novamedic_tls::TlsMaterial::load(files)?;
            }
            None => {
                if !self.controller.starts_with("http://") {
                    return Err(mismatch(
                        "must start with http:// when TLS is off; remove [tls] enabled = false \
                         and --insecure-plaintext to use https://",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks `[rpc_probe]`: an interval of 1 to 3600 s and a timeout of 1 s
/// up to the interval, so two probes never overlap.
fn rpc_probe_settings(file: RpcProbeFile) -> Result<RpcProbeSettings, (&'static str, String)> {
    let mut settings = RpcProbeSettings::default();
    if let Some(enabled) = file.enabled {
        settings.enabled = enabled;
    }
    if let Some(seconds) = file.interval_seconds {
        if !(1..=3600).contains(&seconds) {
            return Err((
                "rpc_probe.interval_seconds",
                format!("must be between 1 and 3600, got {seconds}"),
            ));
        }
        settings.interval = Duration::from_secs(seconds);
    }
    if let Some(seconds) = file.timeout_seconds {
        if seconds == 0 {
            return Err((
                "rpc_probe.timeout_seconds",
                "must be at least 1".to_string(),
            ));
        }
        settings.timeout = Duration::from_secs(seconds);
    }
    if settings.timeout > settings.interval {
        return Err((
            "rpc_probe.timeout_seconds",
            format!(
                "must be at most rpc_probe.interval_seconds ({} s), got {} s; \
                 raise the interval or lower the timeout",
                settings.interval.as_secs(),
                settings.timeout.as_secs()
            ),
        ));
    }
    Ok(settings)
}

/// Returns a one-line description of a TOML error: the line number and
/// toml's own message, without its multi-line source excerpt.
pub fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_number = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_number - 1).unwrap_or("").trim();
            format!("line {line_number} `{line}`: {}", err.message())
        }
        None => err.message().to_string(),
    }
}

/// Checks a node name: a host name or FQDN of at most 253 bytes made of
/// letters, digits, dots, hyphens and underscores, as the controller
/// requires.
pub fn validate_node_name(node: &str) -> Result<(), String> {
    let valid_chars = node
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if node.is_empty() || node.len() > 253 || !valid_chars {
        return Err(format!(
            "must be a host name of 1 to 253 letters, digits, dots, hyphens or underscores, got {node:?}"
        ));
    }
    Ok(())
}

/// Checks a systemd service name such as `nova-compute.service`.
pub fn validate_unit_name(unit: &str) -> Result<(), String> {
    let valid_chars = unit.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b':' | b'\\')
    });
    if !unit.ends_with(".service") || unit.len() <= ".service".len() || !valid_chars {
        return Err(format!(
            "must be a full unit name ending in .service, for example nova-compute.service, got {unit:?}"
        ));
    }
    Ok(())
}

/// Checks that `url` is an https or http URL with a host.
pub fn validate_controller_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with https:// or http://, got {url:?}"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with(':') {
        return Err(format!("must name a host, got {url:?}"));
    }
    Ok(())
}

/// Returns the host name, which nova uses as the node name by default.
pub fn default_node_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("/etc/novamedic/agent.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.report_interval, Duration::from_secs(10));
        assert_eq!(config.restart_budget_max, 3);
        assert_eq!(config.restart_budget_window, Duration::from_secs(3600));
        assert_eq!(config.restart_settle, Duration::from_secs(15));
    }

    #[test]
    fn full_file_is_read() {
        let config = parse(
            r#"
            node = "compute-07"
            controller = "http://controller.example.net:7400"
            state_dir = "/srv/novamedic"
            report_interval_seconds = 5
            nova_compute_unit = "openstack-nova-compute.service"
            restart_settle_seconds = 3
            nova_config_files = ["/etc/nova/nova.conf"]
            nova_log_file = "/var/log/nova/nova-compute.log"
            signatures_dir = "/srv/novamedic/signatures"
            [restart_budget]
            max_restarts = 5
            window_seconds = 600
            "#,
        )
        .unwrap();
        assert_eq!(config.node, "compute-07");
        assert_eq!(config.report_interval, Duration::from_secs(5));
        assert_eq!(
            config.nova_compute_unit.as_deref(),
            Some("openstack-nova-compute.service")
        );
        assert_eq!(config.restart_budget_max, 5);
        assert_eq!(config.restart_budget_window, Duration::from_secs(600));
        assert_eq!(
            config.signatures_dir,
            PathBuf::from("/srv/novamedic/signatures")
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse("report_intervall_seconds = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/novamedic/agent.toml"), "{err}");
        assert!(err.contains("report_intervall_seconds"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_expectation() {
        let cases = [
            (
                "report_interval_seconds = 0",
                "report_interval_seconds",
                "between 1 and 3600",
            ),
            ("controller = \"controller:7400\"", "controller", "http://"),
            (
                "nova_compute_unit = \"nova-compute\"",
                "nova_compute_unit",
                ".service",
            ),
            ("state_dir = \"relative\"", "state_dir", "absolute"),
            ("signatures_dir = \"sigs\"", "signatures_dir", "absolute"),
            (
                "[restart_budget]\nwindow_seconds = 0",
                "restart_budget.window_seconds",
                "greater than 0",
            ),
        ];
        for (text, key, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn rpc_probe_defaults_and_values() {
        let defaults = parse("").unwrap().rpc_probe;
        assert!(defaults.enabled);
        assert_eq!(defaults.interval, Duration::from_secs(30));
        assert_eq!(defaults.timeout, Duration::from_secs(10));

        let probe = parse("[rpc_probe]\ninterval_seconds = 2\ntimeout_seconds = 2\n")
            .unwrap()
            .rpc_probe;
        assert_eq!(probe.interval, Duration::from_secs(2));
        assert_eq!(probe.timeout, Duration::from_secs(2));

        let probe = parse("[rpc_probe]\nenabled = false\n").unwrap().rpc_probe;
        assert!(!probe.enabled);
    }

    #[test]
    fn rpc_probe_bad_values_name_key() {
        let cases = [
            (
                "[rpc_probe]\ninterval_seconds = 0",
                "rpc_probe.interval_seconds",
                "between 1 and 3600",
            ),
            (
                "[rpc_probe]\ntimeout_seconds = 0",
                "rpc_probe.timeout_seconds",
                "at least 1",
            ),
            (
                "[rpc_probe]\ninterval_seconds = 5\ntimeout_seconds = 6",
                "rpc_probe.timeout_seconds",
                "at most rpc_probe.interval_seconds (5 s)",
            ),
            (
                "[rpc_probe]\ntimeout_seconds = 40",
                "rpc_probe.timeout_seconds",
                "at most rpc_probe.interval_seconds (30 s)",
            ),
        ];
        for (text, key, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = parse("[rpc_probe]\ninterval = 5").unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn health_thresholds_are_read_and_checked() {
        assert_eq!(parse("").unwrap().health, Thresholds::default());
        let health = parse("[health]\nmin_free_disk_percent = 0\n")
            .unwrap()
            .health;
        assert_eq!(health.min_free_disk_percent, 0);
        assert_eq!(health.min_available_memory_percent, 5);

        for (text, key) in [
            (
                "[health]\nmin_free_disk_percent = 101",
                "health.min_free_disk_percent",
            ),
            (
                "[health]\nmin_available_memory_percent = -1",
                "health.min_available_memory_percent",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains("from 0 (check off) to 100"), "{text}: {err}");
        }
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        let err = parse("report_interval_seconds = \"10s\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("report_interval_seconds"), "{err}");
    }

    #[test]
    fn missing_optional_file_gives_defaults() {
        let config = AgentConfig::load(Path::new("/nonexistent/agent.toml"), false).unwrap();
        assert_eq!(config, AgentConfig::default());
        assert!(AgentConfig::load(Path::new("/nonexistent/agent.toml"), true).is_err());
    }

    #[test]
    fn tls_table_is_read() {
        let config = parse(
            "[tls]\ncert = \"/t/n.crt\"\nkey = \"/t/n.key\"\nca = \"/t/ca.crt\"\ncrl = \"/t/ca.crl\"\n",
        )
        .unwrap();
        let expected = TlsFiles {
            cert: PathBuf::from("/t/n.crt"),
            key: PathBuf::from("/t/n.key"),
            ca: PathBuf::from("/t/ca.crt"),
            crl: Some(PathBuf::from("/t/ca.crl")),
        };
        assert_eq!(config.tls, Some(expected));
        assert_eq!(parse("").unwrap().tls, Some(default_tls_files()));
        assert_eq!(parse("[tls]\nenabled = false\n").unwrap().tls, None);
    }

    #[test]
    fn scheme_must_match_tls_setting() {
        let plaintext_https = AgentConfig {
            tls: None,
            ..AgentConfig::default()
        };
        let message = plaintext_https.check_transport().unwrap_err().to_string();
        assert!(
            message.contains("must start with http:// when TLS is off"),
            "{message}"
        );

        let tls_http = AgentConfig {
            controller: "http://127.0.0.1:7400".to_string(),
            ..AgentConfig::default()
        };
        let message = tls_http.check_transport().unwrap_err().to_string();
        assert!(message.contains("must start with https://"), "{message}");

        let missing_files = AgentConfig {
            tls: Some(TlsFiles {
                cert: PathBuf::from("/nonexistent/node.crt"),
                ..default_tls_files()
            }),
            ..AgentConfig::default()
        };
        let message = missing_files.check_transport().unwrap_err().to_string();
        assert!(
            message.contains("certificate file /nonexistent/node.crt: is missing"),
            "{message}"
        );
    }
}
