//! The controller's configuration file, `/etc/novamedic/controller.toml`.
//!
//! Every key is optional. Command-line flags override the file. An unknown
//! key is an error, so a typo never silently keeps a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use novamedic_tls::TlsFiles;
use serde::Deserialize;

use crate::alerting::config::{
    parse_alerting, parse_metrics, AlertingConfig, AlertingFile, Invalid, MetricsConfig,
    MetricsFile,
};
use crate::auth::Roles;
use crate::controller::RestartLimits;
use crate::policy::Policy;

/// Source name of the policy compiled into the controller.
pub const BUILT_IN_POLICY: &str = "built-in";

pub const DEFAULT_CONFIG_PATH: &str = "/etc/novamedic/controller.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_DB_PATH: &str = "/var/lib/novamedic/novamedic.db";
const DEFAULT_SHUTDOWN_DRAIN_SECONDS: u64 = 10;
pub const DEFAULT_TLS_CERT: &str = "/etc/novamedic/tls/controller.crt";
pub const DEFAULT_TLS_KEY: &str = "/etc/novamedic/tls/controller.key";
pub const DEFAULT_TLS_CA: &str = "/etc/novamedic/tls/ca.crt";

/// Security mode of the listener's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Mutual TLS: every client presents a certificate signed by the CA.
    MutualTls(TlsFiles),
    /// No encryption and no client authentication; every operator request
    /// is allowed. Only with `[tls] enabled = false` or
    /// `--insecure-plaintext`.
    Plaintext,
}

impl Transport {
    pub fn is_plaintext(&self) -> bool {
        matches!(self, Transport::Plaintext)
    }
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

/// Settings of `novamedic serve`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Address both gRPC services listen on.
    pub listen: SocketAddr,
    /// SQLite database file.
    pub db: PathBuf,
    pub restart: RestartLimits,
    /// Time open streams get to close at shutdown before they are cut.
    pub shutdown_drain: Duration,
    /// Policy file given in the configuration file; None reads the default
    /// path if it exists.
    pub policy_path: Option<PathBuf>,
    /// The self-healing policy, as `novamedic serve` loaded it.
    pub policy: Policy,
    /// Source of [`Self::policy`]: a path or "built-in".
    pub policy_source: String,
    pub transport: Transport,
    /// Operator API roles by certificate name.
    pub roles: Roles,
    pub alerting: AlertingConfig,
    pub metrics: MetricsConfig,
    /// The cloud whose Nova the controller polls; `None` polls nothing.
    pub openstack: Option<OpenStackSettings>,
}

/// The `[openstack]` table: which cloud to poll and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenStackSettings {
    /// Cloud name in clouds.yaml; `None` takes the `OS_*` variables of the
    /// controller's environment, or the only cloud in clouds.yaml.
    pub cloud: Option<String>,
    /// clouds.yaml to read instead of the standard search; a secure.yaml
    /// beside it is merged in.
    pub clouds_file: Option<PathBuf>,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    /// nova's `service_down_time`: a heartbeat older than this is stale.
    pub service_down_time: Duration,
    /// Polled data older than this many intervals is ignored by the policy.
    pub stale_after_polls: u32,
    /// Node names by Nova service host, for hosts whose name is neither
    /// the node's name nor its short name.
    pub host_names: BTreeMap<String, String>,
}

impl Default for OpenStackSettings {
    fn default() -> Self {
        OpenStackSettings {
            cloud: None,
            clouds_file: None,
            poll_interval: Duration::from_secs(DEFAULT_NOVA_POLL_SECONDS),
            request_timeout: Duration::from_secs(DEFAULT_NOVA_TIMEOUT_SECONDS),
            service_down_time: Duration::from_secs(DEFAULT_SERVICE_DOWN_TIME_SECONDS),
            stale_after_polls: DEFAULT_STALE_AFTER_POLLS,
            host_names: BTreeMap::new(),
        }
    }
}

impl OpenStackSettings {
    /// Age after which polled data no longer counts for the policy.
    pub fn stale_after(&self) -> Duration {
        self.poll_interval * self.stale_after_polls
    }
}

const DEFAULT_NOVA_POLL_SECONDS: u64 = 30;
const DEFAULT_NOVA_TIMEOUT_SECONDS: u64 = 10;
/// nova's own default for `[DEFAULT] service_down_time`.
const DEFAULT_SERVICE_DOWN_TIME_SECONDS: u64 = 60;
const DEFAULT_STALE_AFTER_POLLS: u32 = 3;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address is valid"),
            db: PathBuf::from(DEFAULT_DB_PATH),
            restart: RestartLimits::default(),
            shutdown_drain: Duration::from_secs(DEFAULT_SHUTDOWN_DRAIN_SECONDS),
            policy_path: None,
            policy: Policy::default(),
            policy_source: BUILT_IN_POLICY.to_string(),
            transport: Transport::MutualTls(default_tls_files()),
            roles: Roles::default(),
            alerting: AlertingConfig::default(),
            metrics: MetricsConfig::default(),
            openstack: None,
        }
    }
}

/// The file's keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// IP address and port, for example "127.0.0.1:7400".
    listen: Option<String>,
    db: Option<PathBuf>,
    default_restart_wait_seconds: Option<u64>,
    max_restart_wait_seconds: Option<u64>,
    shutdown_drain_seconds: Option<u64>,
    /// Self-healing policy file.
    policy: Option<PathBuf>,
    tls: Option<TlsFile>,
    roles: Option<RolesFile>,
    alerting: Option<AlertingFile>,
    metrics: Option<MetricsFile>,
    openstack: Option<OpenStackFile>,
}

/// The `[openstack]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenStackFile {
    cloud: Option<String>,
    clouds_file: Option<PathBuf>,
    poll_interval_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    service_down_time_seconds: Option<u64>,
    stale_after_polls: Option<u32>,
    host_names: Option<BTreeMap<String, String>>,
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

/// The `[roles]` table: certificate names (CN) per role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    operators: Option<Vec<String>>,
    viewers: Option<Vec<String>>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{key}` in {}: {value} is not {expected}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        value: String,
        expected: String,
    },
}

/// Loads the configuration. `explicit` is the path given with `--config`,
/// and that file must exist. Without it, the default path is read if it
/// exists, else the built-in defaults apply.
pub fn load(explicit: Option<&Path>) -> Result<ServerConfig, ConfigError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if explicit.is_none() && err.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no configuration file; using defaults");
            return Ok(ServerConfig::default());
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(&text, path)
}

/// Parses the text of a configuration file; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<ServerConfig, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
        path: path.to_path_buf(),
        message: err.to_string().trim_end().to_string(),
    })?;
    let defaults = ServerConfig::default();
    let invalid = |key, value: String, expected: &str| ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        value,
        expected: expected.to_string(),
    };

    let listen = match file.listen {
        None => defaults.listen,
        Some(text) => text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{text:?}"),
                "an IP address and port such as \"127.0.0.1:7400\" or \"[::1]:7400\"",
            )
        })?,
    };

    let max_wait_seconds = file
        .max_restart_wait_seconds
        .unwrap_or(defaults.restart.max_wait.as_secs());
    if max_wait_seconds == 0 {
        return Err(invalid(
            "max_restart_wait_seconds",
            "0".into(),
            "at least 1",
        ));
    }
    let default_wait_seconds = file.default_restart_wait_seconds.unwrap_or(
        defaults
            .restart
            .default_wait
            .as_secs()
            .min(max_wait_seconds),
    );
    if default_wait_seconds == 0 || default_wait_seconds > max_wait_seconds {
        return Err(invalid(
            "default_restart_wait_seconds",
            default_wait_seconds.to_string(),
            &format!("between 1 and max_restart_wait_seconds ({max_wait_seconds})"),
        ));
    }

    let transport = match file.tls.unwrap_or_default() {
        TlsFile {
            enabled: Some(false),
            ..
        } => Transport::Plaintext,
        tls => {
            let defaults = default_tls_files();
            Transport::MutualTls(TlsFiles {
                cert: tls.cert.unwrap_or(defaults.cert),
                key: tls.key.unwrap_or(defaults.key),
                ca: tls.ca.unwrap_or(defaults.ca),
                crl: tls.crl,
            })
        }
    };
    let from_invalid = |err: Invalid| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: err.key,
        value: err.value,
        expected: err.expected,
    };
    let alerting = parse_alerting(file.alerting.unwrap_or_default()).map_err(from_invalid)?;
    let metrics = parse_metrics(file.metrics.unwrap_or_default(), listen).map_err(from_invalid)?;
    let roles = file.roles.unwrap_or_default();
    let roles = Roles {
        operators: roles.operators.unwrap_or_default(),
        viewers: roles.viewers.unwrap_or_default(),
    };

    let openstack = match file.openstack {
        None => None,
        Some(table) => Some(openstack_settings(table, path)?),
    };

    Ok(ServerConfig {
        listen,
        transport,
        roles,
        alerting,
        metrics,
        openstack,
        db: file.db.unwrap_or(defaults.db),
        restart: RestartLimits {
            default_wait: Duration::from_secs(default_wait_seconds),
            max_wait: Duration::from_secs(max_wait_seconds),
        },
        shutdown_drain: file
            .shutdown_drain_seconds
            .map_or(defaults.shutdown_drain, Duration::from_secs),
        policy_path: file.policy,
        ..defaults
    })
}

/// Validates the `[openstack]` table.
fn openstack_settings(table: OpenStackFile, path: &Path) -> Result<OpenStackSettings, ConfigError> {
    let defaults = OpenStackSettings::default();
    let invalid = |key, value: String, expected: &str| ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        value,
        expected: expected.to_string(),
    };
    let seconds = |key, value: Option<u64>, default: Duration, range: (u64, u64)| {
        let value = value.unwrap_or(default.as_secs());
        if value < range.0 || value > range.1 {
            return Err(invalid(
                key,
                value.to_string(),
                &format!("between {} and {} seconds", range.0, range.1),
            ));
        }
        Ok(Duration::from_secs(value))
    };

    let poll_interval = seconds(
        "openstack.poll_interval_seconds",
        table.poll_interval_seconds,
        defaults.poll_interval,
        (5, 3_600),
    )?;
    let request_timeout = seconds(
        "openstack.request_timeout_seconds",
        table.request_timeout_seconds,
        defaults.request_timeout,
        (1, 300),
    )?;
    let service_down_time = seconds(
        "openstack.service_down_time_seconds",
        table.service_down_time_seconds,
        defaults.service_down_time,
        (10, 3_600),
    )?;

    if request_timeout >= poll_interval {
        return Err(invalid(
            "openstack.request_timeout_seconds",
            request_timeout.as_secs().to_string(),
            &format!(
                "shorter than poll_interval_seconds ({}), so one poll ends before the next",
                poll_interval.as_secs()
            ),
        ));
    }

    let stale_after_polls = table
        .stale_after_polls
        .unwrap_or(defaults.stale_after_polls);
    if !(1..=100).contains(&stale_after_polls) {
        return Err(invalid(
            "openstack.stale_after_polls",
            stale_after_polls.to_string(),
            "between 1 and 100",
        ));
    }

    if let Some(cloud) = table
        .cloud
        .as_deref()
        .filter(|cloud| cloud.trim().is_empty())
    {
        return Err(invalid(
            "openstack.cloud",
            format!("{cloud:?}"),
            "a cloud name from clouds.yaml; leave the key out to use the OS_* variables",
        ));
    }

    let host_names = table.host_names.unwrap_or_default();
    if let Some((host, node)) = host_names
        .iter()
        .find(|(host, node)| host.trim().is_empty() || node.trim().is_empty())
    {
        return Err(invalid(
            "openstack.host_names",
            format!("{host:?} = {node:?}"),
            "a Nova service host mapped to a novamedic node name, neither empty",
        ));
    }
    // One node's Nova service must be one record: with two, its state would
    // come from whichever host is found first, and an escalation could
    // disable the wrong service. So a repeated node is an error.
    let mut hosts_by_node: BTreeMap<&str, &str> = BTreeMap::new();
    for (host, node) in &host_names {
        if let Some(first) = hosts_by_node.insert(node.trim(), host) {
            return Err(invalid(
                "openstack.host_names",
                format!("{host:?} = {node:?}"),
                &format!(
                    "a node that no other host maps to, but {first:?} maps to {node:?} too; \
                     map each node to one Nova host"
                ),
            ));
        }
    }

    Ok(OpenStackSettings {
        cloud: table.cloud,
        clouds_file: table.clouds_file,
        poll_interval,
        request_timeout,
        service_down_time,
        stale_after_polls,
        host_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ServerConfig, ConfigError> {
        parse(text, Path::new("/etc/novamedic/controller.toml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse_text("").unwrap(), ServerConfig::default());
    }

    #[test]
    fn all_keys() {
        let config = parse_text(
            "listen = \"0.0.0.0:9000\"\ndb = \"/srv/nm.db\"\n\
             default_restart_wait_seconds = 30\nmax_restart_wait_seconds = 120\n\
             shutdown_drain_seconds = 3\n",
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.db, PathBuf::from("/srv/nm.db"));
        assert_eq!(config.restart.default_wait, Duration::from_secs(30));
        assert_eq!(config.restart.max_wait, Duration::from_secs(120));
        assert_eq!(config.shutdown_drain, Duration::from_secs(3));
    }

    #[test]
    fn tls_and_roles_keys() {
        let config = parse_text(
            "[tls]\ncert = \"/t/c.crt\"\nkey = \"/t/c.key\"\nca = \"/t/ca.crt\"\n\
             crl = \"/t/ca.crl\"\n[roles]\noperators = [\"alice\"]\nviewers = [\"bob\"]\n",
        )
        .unwrap();
        let expected = TlsFiles {
            cert: PathBuf::from("/t/c.crt"),
            key: PathBuf::from("/t/c.key"),
            ca: PathBuf::from("/t/ca.crt"),
            crl: Some(PathBuf::from("/t/ca.crl")),
        };
        assert_eq!(config.transport, Transport::MutualTls(expected));
        assert_eq!(config.roles.operators, vec!["alice".to_string()]);
        assert_eq!(config.roles.viewers, vec!["bob".to_string()]);
    }

    #[test]
    fn tls_disabled_is_plaintext() {
        let config = parse_text("[tls]\nenabled = false\n").unwrap();
        assert!(config.transport.is_plaintext());
    }

    #[test]
    fn small_max_lowers_default_wait() {
        let config = parse_text("max_restart_wait_seconds = 20").unwrap();
        assert_eq!(config.restart.default_wait, Duration::from_secs(20));
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        // (file text, fragments the message must contain)
        let cases: &[(&str, &[&str])] = &[
            (
                "lisen = \"127.0.0.1:1\"",
                &["controller.toml", "unknown field `lisen`", "listen"],
            ),
            (
                "listen = \"localhost\"",
                &[
                    "controller.toml",
                    "`listen`",
                    "\"localhost\"",
                    "IP address and port",
                ],
            ),
            ("listen = 7400", &["controller.toml", "listen", "string"]),
            (
                "default_restart_wait_seconds = \"sixty\"",
                &["default_restart_wait_seconds", "u64"],
            ),
            (
                "default_restart_wait_seconds = -1",
                &["default_restart_wait_seconds"],
            ),
            (
                "default_restart_wait_seconds = 0",
                &["`default_restart_wait_seconds`", "between 1 and"],
            ),
            (
                "default_restart_wait_seconds = 100\nmax_restart_wait_seconds = 50",
                &[
                    "`default_restart_wait_seconds`",
                    "100",
                    "max_restart_wait_seconds (50)",
                ],
            ),
            (
                "max_restart_wait_seconds = 0",
                &["`max_restart_wait_seconds`", "at least 1"],
            ),
            ("listen = ", &["controller.toml", "line 1"]),
        ];
        for (text, fragments) in cases {
            let message = parse_text(text).expect_err(text).to_string();
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{text:?}: {message:?} lacks {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn alerting_and_metrics_keys() {
        let config = parse_text(
            "[alerting]\nalertmanager_urls = [\"http://am-1:9093\", \"http://am-2:9093\"]\n\
             resend_interval_seconds = 30\ntimeout_seconds = 5\nmax_retries = 2\n\
             retry_backoff_ms = 200\nqueue_capacity = 10\n\
             generator_url = \"https://dash.example.org/\"\n\
             [alerting.mass_disconnect]\npercent = 30\nmin_nodes = 5\nwindow_seconds = 120\n\
             [[alerting.webhook]]\nurl = \"https://hooks.example.org/n\"\n\
             headers = { \"X-Source\" = \"novamedic\" }\n\
             header_files = { Authorization = \"/etc/novamedic/auth\" }\nresend = true\n\
             [metrics]\nlisten = \"127.0.0.1:9469\"\n",
        )
        .unwrap();
        let alerting = &config.alerting;
        assert_eq!(alerting.alertmanagers.len(), 2);
        assert_eq!(alerting.alertmanagers[1].as_str(), "http://am-2:9093/");
        assert_eq!(alerting.resend_interval, Duration::from_secs(30));
        assert_eq!(alerting.timeout, Duration::from_secs(5));
        assert_eq!(alerting.max_retries, 2);
        assert_eq!(alerting.retry_backoff, Duration::from_millis(200));
        assert_eq!(alerting.queue_capacity, 10);
        assert_eq!(alerting.mass_disconnect.percent, 30);
        assert_eq!(alerting.mass_disconnect.min_nodes, 5);
        assert_eq!(alerting.mass_disconnect.window, Duration::from_secs(120));
        assert_eq!(alerting.webhooks.len(), 1);
        assert_eq!(alerting.webhooks[0].headers["X-Source"], "novamedic");
        assert_eq!(
            alerting.webhooks[0].header_files["Authorization"],
            PathBuf::from("/etc/novamedic/auth")
        );
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9469".parse().unwrap())
        );
        assert_eq!(ServerConfig::default().metrics.listen, None);
    }

    #[test]
    fn repeated_alertmanager_url_is_sent_once() {
        let config = parse_text(
            "[alerting]\nalertmanager_urls = [\"http://am:9093\", \"http://am-2:9093\", \
             \"http://am:9093/\"]\n",
        )
        .unwrap();
        let urls: Vec<&str> = config
            .alerting
            .alertmanagers
            .iter()
            .map(|url| url.as_str())
            .collect();
        assert_eq!(urls, ["http://am:9093/", "http://am-2:9093/"]);
    }

    #[test]
    fn alerting_errors_name_key_and_expectation() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[alerting]\nalertmanager_urls = [\"am:9093\"]",
                &["`alerting.alertmanager_urls`", "\"am:9093\"", "http://"],
            ),
            (
                "[alerting]\nalertmanager_urls = [\"ftp://am\"]",
                &["`alerting.alertmanager_urls`", "http://"],
            ),
            (
                "[alerting]\nresend_interval_seconds = 0",
                &["`alerting.resend_interval_seconds`", "at least 1"],
            ),
            (
                "[alerting]\ntimeout_seconds = 0",
                &["`alerting.timeout_seconds`", "between 1 and 300"],
            ),
            (
                "[alerting]\nqueue_capacity = 0",
                &["`alerting.queue_capacity`", "at least 1"],
            ),
            (
                "[alerting]\nretry_backoff_ms = 1",
                &["`alerting.retry_backoff_ms`", "between 10"],
            ),
            (
                "[alerting]\nsend_interval = 3",
                &["unknown field `send_interval`"],
            ),
            (
                "[alerting.mass_disconnect]\npercent = 0",
                &["`alerting.mass_disconnect.percent`", "between 1 and 100"],
            ),
            (
                "[alerting.mass_disconnect]\nmin_nodes = 1",
                &["`alerting.mass_disconnect.min_nodes`", "at least 2"],
            ),
            (
                "[[alerting.webhook]]\nurl = \"https://h\"\nheaders = { \"Bad Name\" = \"x\" }",
                &["`alerting.webhook.headers`", "\"Bad Name\"", "header name"],
            ),
            (
                "[[alerting.webhook]]\nurl = \"https://h\"\nheaders = { A = \"x\" }\n\
                 header_files = { A = \"/f\" }",
                &["`alerting.webhook.header_files`", "one of the two tables"],
            ),
            (
                "[[alerting.webhook]]\nurl = \"https://h\"\nheaders = { Authorization = \"x\" }\n\
                 header_files = { authorization = \"/f\" }",
                &[
                    "`alerting.webhook.header_files`",
                    "\"authorization\"",
                    "already set in `headers`",
                ],
            ),
            (
                "[[alerting.webhook]]\nurl = \"https://h\"\nheaders = { X-A = \"x\", x-a = \"y\" }",
                &["`alerting.webhook.headers`", "case-insensitive"],
            ),
            (
                "[[alerting.webhook]]\nheaders = {}",
                &["missing field `url`"],
            ),
            (
                "[metrics]\nlisten = \"9469\"",
                &["`metrics.listen`", "\"9469\"", "IP address and port"],
            ),
            (
                "[metrics]\nlisten = \"127.0.0.1:0\"",
                &["`metrics.listen`", "fixed port"],
            ),
            (
                "[metrics]\nlisten = \"127.0.0.1:7400\"",
                &["`metrics.listen`", "other than the gRPC"],
            ),
        ];
        for (text, fragments) in cases {
            let message = parse_text(text).expect_err(text).to_string();
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{text:?}: {message:?} lacks {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn openstack_table_absent_means_no_cloud() {
        assert_eq!(
            parse_text("listen = \"127.0.0.1:1\"").unwrap().openstack,
            None
        );
    }

    #[test]
    fn openstack_table_defaults_and_keys() {
        let config = parse_text("[openstack]\n").unwrap();
        assert_eq!(config.openstack, Some(OpenStackSettings::default()));

        let config = parse_text(
            "[openstack]\ncloud = \"prod\"\nclouds_file = \"/etc/novamedic/clouds.yaml\"\n\
             poll_interval_seconds = 20\nrequest_timeout_seconds = 5\n\
             service_down_time_seconds = 90\nstale_after_polls = 4\n\
             [openstack.host_names]\n\"cn-1.nova.example.net\" = \"cn-1-mgmt\"\n",
        )
        .unwrap();
        let settings = config.openstack.expect("an [openstack] table");
        assert_eq!(settings.cloud.as_deref(), Some("prod"));
        assert_eq!(
            settings.clouds_file,
            Some(PathBuf::from("/etc/novamedic/clouds.yaml"))
        );
        assert_eq!(settings.poll_interval, Duration::from_secs(20));
        assert_eq!(settings.request_timeout, Duration::from_secs(5));
        assert_eq!(settings.service_down_time, Duration::from_secs(90));
        assert_eq!(settings.stale_after(), Duration::from_secs(80));
        assert_eq!(
            settings
                .host_names
                .get("cn-1.nova.example.net")
                .map(String::as_str),
            Some("cn-1-mgmt")
        );
    }

    #[test]
    fn openstack_errors_name_key_and_fix() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[openstack]\npoll_interval_seconds = 1",
                &[
                    "`openstack.poll_interval_seconds`",
                    "1",
                    "between 5 and 3600",
                ],
            ),
            (
                "[openstack]\npoll_interval_seconds = 10\nrequest_timeout_seconds = 10",
                &[
                    "`openstack.request_timeout_seconds`",
                    "shorter than poll_interval_seconds (10)",
                ],
            ),
            (
                "[openstack]\nstale_after_polls = 0",
                &["`openstack.stale_after_polls`", "between 1 and 100"],
            ),
            (
                "[openstack]\ncloud = \" \"",
                &["`openstack.cloud`", "OS_* variables"],
            ),
            (
                "[openstack.host_names]\n\"cn-1\" = \"\"",
                &["`openstack.host_names`", "\"cn-1\""],
            ),
            (
                "[openstack]\ncloud_name = \"x\"",
                &["unknown field `cloud_name`"],
            ),
            (
                "[openstack.host_names]\n\"cn-1\" = \"node-1\"\n\"cn-1.example.net\" = \"node-1\"",
                &[
                    "`openstack.host_names`",
                    "\"cn-1.example.net\" = \"node-1\"",
                    "\"cn-1\" maps to \"node-1\" too",
                ],
            ),
        ];
        for (text, fragments) in cases {
            let message = parse_text(text).expect_err(text).to_string();
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{text:?}: {message:?} lacks {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn header_value_stays_out_of_errors() {
        let message = parse_text(
            "[[alerting.webhook]]\nurl = \"https://h\"\nheaders = { A = \"secret\\n\" }",
        )
        .expect_err("a line feed is no header value")
        .to_string();
        assert!(message.contains("the value of \"A\""), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn packaged_file_parses_to_defaults() {
        let text = include_str!("../../packaging/config/controller.toml");
        let config = parse_text(text).unwrap();
        assert_eq!(config.alerting, AlertingConfig::default());
        assert_eq!(config.metrics, MetricsConfig::default());
    }

    #[test]
    fn missing_explicit_file_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.toml");
        let err = load(Some(&missing)).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }

    #[test]
    fn explicit_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:7411\"\n").unwrap();
        assert_eq!(
            load(Some(&path)).unwrap().listen,
            "127.0.0.1:7411".parse().unwrap()
        );
    }
}
