//! The nova config files nova-compute uses, read the way oslo.config reads
//! them.
//!
//! Files come from nova-compute's command line (`--config-file`,
//! `--config-dir`), else from the agent's `nova_config_files`, else
//! `/etc/nova/nova.conf` and, if present, `/etc/nova/nova-compute.conf`. A
//! file that cannot be read is skipped with a warning, so the agent falls
//! back to nova's defaults instead of failing.
//!
//! NOTE: paths are read in the agent's mount namespace. When nova-compute
//! runs in a container (Kolla), its `--config-file` paths are inside the
//! container, and the host file at the same path, if any, is what is read.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::AgentConfig;

/// nova's default `[DEFAULT] state_path`.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/nova";

/// nova's default `[DEFAULT] instances_path`, before substitution.
const DEFAULT_INSTANCES_PATH: &str = "$state_path/instances";

const DEFAULT_CONFIG_FILE: &str = "/etc/nova/nova.conf";
const DEFAULT_COMPUTE_CONFIG_FILE: &str = "/etc/nova/nova-compute.conf";

/// Log file name oslo.log uses under `--log-dir` when no log file is set.
const DEFAULT_LOG_FILE_NAME: &str = "nova-compute.log";

/// Substitutions nested deeper than this are left as they are, which stops
/// a reference cycle such as `a = $b`, `b = $a`.
const MAX_SUBSTITUTION_DEPTH: usize = 8;

/// oslo.messaging's default `[DEFAULT] control_exchange`, which nova keeps.
pub const DEFAULT_CONTROL_EXCHANGE: &str = "nova";

/// The options of nova's config that address nova-compute's RPC server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessagingSettings {
    /// `[DEFAULT] transport_url`, with credentials; `None` when unset.
    pub transport_url: Option<String>,
    pub control_exchange: String,
    /// `[DEFAULT] host`; `None` means nova's default, the host name.
    pub host: Option<String>,
    pub tls: RabbitTls,
}

/// Hides the transport URL, which contains the broker password.
impl std::fmt::Debug for MessagingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingSettings")
            .field(
                "transport_url",
                &self.transport_url.as_ref().map(|_| "<redacted>"),
            )
            .field("control_exchange", &self.control_exchange)
            .field("host", &self.host)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `[oslo_messaging_rabbit]` TLS options (`ssl`, `ssl_ca_file`,
/// `ssl_cert_file`, `ssl_key_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RabbitTls {
    pub enabled: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Reads a boolean as oslo.config does: true, yes, on or 1, in any case.
fn parse_bool(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

/// Options that nova-compute's command line sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLineOptions {
    /// `--config-file` files and the `*.conf` files of `--config-dir`
    /// directories, in command-line order.
    pub config_files: Vec<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
}

/// nova's configuration as nova-compute sees it.
#[derive(Debug, Clone, Default)]
pub struct NovaConfig {
    /// Files read, in order; later ones override earlier ones.
    files: Vec<PathBuf>,
    /// Raw values by (section, key), before `$` substitution.
    values: HashMap<(String, String), String>,
    command_line: CommandLineOptions,
    /// Operator-facing warnings about files that could not be read.
    warnings: Vec<String>,
}

impl NovaConfig {
    /// Reads the files nova-compute uses. `nova_argv` is nova-compute's
    /// command line when its process was found.
    pub fn load(nova_argv: Option<&[String]>, agent: &AgentConfig) -> Self {
        let command_line = nova_argv.map(parse_command_line).unwrap_or_default();
        let files = if !command_line.config_files.is_empty() {
            command_line.config_files.clone()
        } else if !agent.nova_config_files.is_empty() {
            agent.nova_config_files.clone()
        } else {
            default_config_files()
        };
        let mut config = Self::from_files(&files);
        config.command_line = command_line;
        config
    }

    /// Reads `files` in order. Unreadable files give a warning and are
    /// skipped.
    pub fn from_files(files: &[PathBuf]) -> Self {
        let mut config = NovaConfig {
            files: files.to_vec(),
            ..Default::default()
        };
        for file in files {
            match fs::read_to_string(file) {
                Ok(text) => config.merge(&text),
                Err(err) => config.warnings.push(unreadable_warning(file, &err)),
            }
        }
        config
    }

    /// Parses INI text and lets its values override the ones read so far.
    pub fn merge(&mut self, text: &str) {
        for (section, key, value) in parse_ini(text) {
            self.values.insert((section, key), value);
        }
    }

    /// Returns the value of `key` in `section` with `$option` references
    /// substituted; `None` when no file sets it.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let raw = self.raw(section, key)?;
        Some(self.substitute(raw, 0))
    }

    /// Returns nova's `[DEFAULT] instances_path`, `$state_path/instances`
    /// by default.
    pub fn instances_path(&self) -> PathBuf {
        let raw = self
            .raw("DEFAULT", "instances_path")
            .unwrap_or(DEFAULT_INSTANCES_PATH);
        PathBuf::from(self.substitute(raw, 0))
    }

    /// Returns nova-compute's log file, as oslo.log chooses it: the
    /// command line's `--log-file`/`--log-dir` before `[DEFAULT] log_file`/
    /// `log_dir`. A relative log file is under the log dir, and a log dir
    /// alone means `DIR/nova-compute.log`. `None` when nova logs to stderr
    /// (the journal).
    pub fn log_file(&self) -> Option<PathBuf> {
        let from_file = |keys: [&str; 2]| {
            keys.iter()
                .find_map(|key| self.get("DEFAULT", key))
                .map(PathBuf::from)
        };
        let log_file = self
            .command_line
            .log_file
            .clone()
            .or_else(|| from_file(["log_file", "logfile"]));
        let log_dir = self
            .command_line
            .log_dir
            .clone()
            .or_else(|| from_file(["log_dir", "logdir"]));
        match (log_file, log_dir) {
            (Some(file), Some(dir)) => Some(dir.join(file)),
            (Some(file), None) => Some(file),
            (None, Some(dir)) => Some(dir.join(DEFAULT_LOG_FILE_NAME)),
            (None, None) => None,
        }
    }

    /// Returns the messaging settings nova-compute's RPC server uses: the
    /// raw `transport_url` (which contains the broker password, so it must not
    /// be logged), the control exchange, the service host name and the
    /// RabbitMQ TLS options.
    pub fn messaging(&self) -> MessagingSettings {
        let rabbit = |key: &str| self.get("oslo_messaging_rabbit", key);
        let tls_enabled = rabbit("ssl")
            .or_else(|| rabbit("rabbit_use_ssl"))
            .is_some_and(|value| parse_bool(&value));
        MessagingSettings {
            transport_url: self.get("DEFAULT", "transport_url"),
            control_exchange: self
                .get("DEFAULT", "control_exchange")
                .unwrap_or_else(|| DEFAULT_CONTROL_EXCHANGE.to_string()),
            host: self.get("DEFAULT", "host").filter(|host| !host.is_empty()),
            tls: RabbitTls {
                enabled: tls_enabled,
                ca_file: rabbit("ssl_ca_file")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                cert_file: rabbit("ssl_cert_file")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                key_file: rabbit("ssl_key_file")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            },
        }
    }

    /// Files read, in order, including those that could not be read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Problems an operator should fix, one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn raw(&self, section: &str, key: &str) -> Option<&str> {
        let section = normalize_section(section);
        self.values
            .get(&(section, key.to_string()))
            .map(String::as_str)
    }

    /// Replaces `$name`, `${name}` and `${section.name}` with the option's
    /// value (bare names are in `[DEFAULT]`, as in oslo.config), and `$$`
    /// with `$`. An unknown option is left as it is.
    fn substitute(&self, value: &str, depth: usize) -> String {
        if depth >= MAX_SUBSTITUTION_DEPTH || !value.contains('$') {
            return value.to_string();
        }
        let mut output = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find('$') {
            output.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let (reference, consumed) = match split_reference(after) {
                Some(found) => found,
                None => {
                    output.push('$');
                    rest = after.strip_prefix('$').unwrap_or(after);
                    continue;
                }
            };
            match self.reference_value(reference, depth) {
                Some(replacement) => output.push_str(&replacement),
                None => output.push_str(&rest[start..start + 1 + consumed]),
            }
            rest = &after[consumed..];
        }
        output.push_str(rest);
        output
    }

    fn reference_value(&self, reference: &str, depth: usize) -> Option<String> {
        let (section, key) = reference.split_once('.').unwrap_or(("DEFAULT", reference));
        let raw = self.raw(section, key).or(match (section, key) {
            ("DEFAULT", "state_path") => Some(DEFAULT_STATE_PATH),
            ("DEFAULT", "instances_path") => Some(DEFAULT_INSTANCES_PATH),
            _ => None,
        })?;
        Some(self.substitute(raw, depth + 1))
    }
}

/// Splits the option name off text that followed a `$`: `{name}rest` or
/// `name_1/rest`. Returns the name and the bytes it took; `None` for `$$` or a
/// lone `$`.
fn split_reference(after: &str) -> Option<(&str, usize)> {
    if let Some(braced) = after.strip_prefix('{') {
        let end = braced.find('}')?;
        return Some((&braced[..end], end + 2));
    }
    let end = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    (end > 0).then(|| (&after[..end], end))
}

fn default_config_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(DEFAULT_CONFIG_FILE)];
    if Path::new(DEFAULT_COMPUTE_CONFIG_FILE).exists() {
        files.push(PathBuf::from(DEFAULT_COMPUTE_CONFIG_FILE));
    }
    files
}

fn unreadable_warning(file: &Path, err: &std::io::Error) -> String {
    let fix = if err.kind() == std::io::ErrorKind::PermissionDenied {
        "; nova's config is usually root:nova mode 0640, so add the user the agent runs as to \
         group nova (usermod -aG nova USER) and restart the agent"
    } else {
        ""
    };
    format!(
        "cannot read nova config file {}: {err}{fix}; using nova's defaults for the settings it holds",
        file.display()
    )
}

/// Reads the options of nova-compute's command line that choose its config
/// and log files. Both `--opt value` and `--opt=value` are accepted.
pub fn parse_command_line(argv: &[String]) -> CommandLineOptions {
    let mut options = CommandLineOptions::default();
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if !matches!(
            name,
            "--config-file"
                | "--config-dir"
                | "--log-file"
                | "--logfile"
                | "--log-dir"
                | "--logdir"
        ) {
            continue;
        }
        let Some(value) = inline_value.or_else(|| args.next().cloned()) else {
            break;
        };
        let value = PathBuf::from(value);
        match name {
            "--config-file" => options.config_files.push(value),
            "--config-dir" => options.config_files.extend(conf_files_in(&value)),
            "--log-file" | "--logfile" => options.log_file = Some(value),
            _ => options.log_dir = Some(value),
        }
    }
    options
}

/// Returns the `*.conf` files of `dir`, sorted by name as oslo.config reads
/// them. An unreadable directory gives none, with a warning.
fn conf_files_in(dir: &Path) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot list nova's --config-dir");
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
        .collect();
    files.sort();
    files
}

/// Parses oslo.config INI text into (section, key, value) in file order,
/// following oslo.config's `iniparser`.
///
/// Lines starting with `#` or `;` are comments, and a `#` later in a line is
/// part of the value. Keys and values are split at the first `=` or `:`. A
/// line starting with a space or tab continues the previous value (joined
/// with a newline), and a blank or comment line ends it. Quotes around a
/// whole value are removed. Section names other than `DEFAULT` are
/// lowercased, as oslo.config matches groups. Lines before the first section
/// header are ignored.
pub fn parse_ini(text: &str) -> Vec<(String, String, String)> {
    let mut entries: Vec<(String, String, String)> = Vec::new();
    let mut section: Option<String> = None;
    let mut in_value = false;

    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            in_value = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some(entry)) = (in_value, entries.last_mut()) {
                entry.2.push('\n');
                entry.2.push_str(line.trim_start());
            }
            continue;
        }
        in_value = false;

        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = Some(normalize_section(name));
            continue;
        }
        if line.starts_with(['#', ';']) {
            continue;
        }
        let (Some(section), Some(split)) = (&section, line.find(['=', ':'])) else {
            continue;
        };
        let key = line[..split].trim().to_string();
        let value = unquote(line[split + 1..].trim()).to_string();
        entries.push((section.clone(), key, value));
        in_value = true;
    }
    entries
}

/// Returns the section name oslo.config matches on: `DEFAULT` as it is,
/// any other lowercased.
fn normalize_section(name: &str) -> String {
    if name == "DEFAULT" {
        name.to_string()
    } else {
        name.to_lowercase()
    }
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn config(text: &str) -> NovaConfig {
        let mut config = NovaConfig::default();
        config.merge(text);
        config
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn ini_syntax() {
        let config = config(
            "ignored = before any section\n\
             [DEFAULT]\n\
             # comment\n\
             ; another comment\n\
             state_path = /srv/nova\n\
             my_ip: 10.0.0.5\n\
             debug = true # not a comment in oslo.config\n\
             quoted = \"/a b\"\n\
             pci_alias = {\"name\": \"a\"}\n\
             \x20 {\"name\": \"b\"}\n\
             \t# indented, so part of the value\n\
             multi = first\n\
             # a comment ends a value\n\
             \x20 orphan continuation\n\
             [LibVirt]\n\
             virt_type=kvm\n\
             Virt_Type = qemu\n",
        );
        assert_eq!(
            config.get("DEFAULT", "state_path").as_deref(),
            Some("/srv/nova")
        );
        assert_eq!(config.get("DEFAULT", "my_ip").as_deref(), Some("10.0.0.5"));
        assert_eq!(
            config.get("DEFAULT", "debug").as_deref(),
            Some("true # not a comment in oslo.config")
        );
        assert_eq!(config.get("DEFAULT", "quoted").as_deref(), Some("/a b"));
        assert_eq!(
            config.get("DEFAULT", "pci_alias").as_deref(),
            Some("{\"name\": \"a\"}\n{\"name\": \"b\"}\n# indented, so part of the value")
        );
        assert_eq!(config.get("DEFAULT", "multi").as_deref(), Some("first"));
        assert_eq!(config.get("libvirt", "virt_type").as_deref(), Some("kvm"));
        assert_eq!(config.get("libvirt", "Virt_Type").as_deref(), Some("qemu"));
        assert_eq!(config.get("LIBVIRT", "virt_type").as_deref(), Some("kvm"));
        assert_eq!(config.get("DEFAULT", "ignored"), None);
        assert_eq!(config.get("DEFAULT", "missing"), None);
    }

    #[test]
    fn instances_path_defaults_and_substitution() {
        let cases = [
            ("", "/var/lib/nova/instances"),
            ("[DEFAULT]\nstate_path = /srv/nova\n", "/srv/nova/instances"),
            (
                "[DEFAULT]\ninstances_path = /mnt/nfs/instances\n",
                "/mnt/nfs/instances",
            ),
            (
                "[DEFAULT]\ninstances_path = $state_path/vms\n",
                "/var/lib/nova/vms",
            ),
            (
                "[DEFAULT]\nstate_path = /data\ninstances_path = ${state_path}/vms\n",
                "/data/vms",
            ),
            (
                "[DEFAULT]\ninstances_path = ${DEFAULT.state_path}/x\n",
                "/var/lib/nova/x",
            ),
            ("[DEFAULT]\ninstances_path = /odd$$dir\n", "/odd$dir"),
            ("[DEFAULT]\ninstances_path = $undefined/x\n", "$undefined/x"),
            (
                "[DEFAULT]\nstate_path = $instances_path\ninstances_path = $state_path\n",
                "$state_path",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                config(text).instances_path(),
                PathBuf::from(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn later_files_override_earlier() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(
            dir.path(),
            "nova.conf",
            "[DEFAULT]\nstate_path = /a\nlog_dir = /var/log/nova\n",
        );
        let second = write(
            dir.path(),
            "nova-compute.conf",
            "[DEFAULT]\nstate_path = /b\n",
        );
        let config = NovaConfig::from_files(&[first, second]);
        assert_eq!(config.instances_path(), PathBuf::from("/b/instances"));
        assert_eq!(
            config.get("DEFAULT", "log_dir").as_deref(),
            Some("/var/log/nova")
        );
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn command_line_files_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("nova.conf.d");
        fs::create_dir(&conf_dir).unwrap();
        write(&conf_dir, "20-b.conf", "");
        write(&conf_dir, "10-a.conf", "");
        write(&conf_dir, "README", "");
        let line = format!(
            "/usr/bin/python3 /usr/bin/nova-compute --config-file /etc/nova/nova.conf \
             --config-dir={} --config-file=/etc/nova/nova-compute.conf --log-file /var/log/nova/nova-compute.log",
            conf_dir.display()
        );
        let options = parse_command_line(&args(&line));
        assert_eq!(
            options.config_files,
            vec![
                PathBuf::from("/etc/nova/nova.conf"),
                conf_dir.join("10-a.conf"),
                conf_dir.join("20-b.conf"),
                PathBuf::from("/etc/nova/nova-compute.conf"),
            ]
        );
        assert_eq!(
            options.log_file,
            Some(PathBuf::from("/var/log/nova/nova-compute.log"))
        );
    }

    #[test]
    fn command_line_wins_over_agent_config() {
        let dir = tempfile::tempdir().unwrap();
        let from_argv = write(
            dir.path(),
            "argv.conf",
            "[DEFAULT]\nstate_path = /from-argv\n",
        );
        let from_agent = write(
            dir.path(),
            "agent.conf",
            "[DEFAULT]\nstate_path = /from-agent\n",
        );
        let agent = AgentConfig {
            nova_config_files: vec![from_agent.clone()],
            ..AgentConfig::default()
        };
        let argv = args(&format!(
            "nova-compute --config-file {}",
            from_argv.display()
        ));

        let config = NovaConfig::load(Some(&argv), &agent);
        assert_eq!(
            config.instances_path(),
            PathBuf::from("/from-argv/instances")
        );
        assert_eq!(config.files(), [from_argv]);

        let config = NovaConfig::load(None, &agent);
        assert_eq!(
            config.instances_path(),
            PathBuf::from("/from-agent/instances")
        );

        let config = NovaConfig::load(None, &AgentConfig::default());
        assert_eq!(config.files()[0], PathBuf::from(DEFAULT_CONFIG_FILE));
    }

    #[test]
    fn log_file_choices() {
        let cases: [(&str, &str, Option<&str>); 6] = [
            ("nova-compute", "", None),
            (
                "nova-compute --log-dir /var/log/nova",
                "",
                Some("/var/log/nova/nova-compute.log"),
            ),
            (
                "nova-compute --log-file=/tmp/n.log",
                "[DEFAULT]\nlog_dir = /var/log/nova\n",
                Some("/tmp/n.log"),
            ),
            (
                "nova-compute",
                "[DEFAULT]\nlog_dir = /var/log/nova\nlog_file = compute.log\n",
                Some("/var/log/nova/compute.log"),
            ),
            (
                "nova-compute",
                "[DEFAULT]\nlog_file = /srv/log/nova.log\n",
                Some("/srv/log/nova.log"),
            ),
            (
                "nova-compute --logdir /x",
                "[DEFAULT]\nlog_dir = /y\n",
                Some("/x/nova-compute.log"),
            ),
        ];
        for (line, text, expected) in cases {
            let mut config = config(text);
            config.command_line = parse_command_line(&args(line));
            assert_eq!(
                config.log_file(),
                expected.map(PathBuf::from),
                "{line} / {text}"
            );
        }
    }

    #[test]
    fn messaging_settings_and_defaults() {
        let defaults = config("").messaging();
        assert_eq!(defaults.transport_url, None);
        assert_eq!(defaults.control_exchange, "nova");
        assert_eq!(defaults.host, None);
        assert_eq!(defaults.tls, RabbitTls::default());

        let settings = config(
            "[DEFAULT]\n\
             transport_url = rabbit://nova:s3cret@rabbit1:5672/nova\n\
             control_exchange = openstack\n\
             host = compute-07\n\
             [oslo_messaging_rabbit]\n\
             ssl = True\n\
             ssl_ca_file = /etc/ssl/rabbit-ca.pem\n\
             ssl_cert_file = /etc/ssl/client.pem\n\
             ssl_key_file = /etc/ssl/client.key\n",
        )
        .messaging();
        assert_eq!(
            settings.transport_url.as_deref(),
            Some("rabbit://nova:s3cret@rabbit1:5672/nova")
        );
        assert_eq!(settings.control_exchange, "openstack");
        assert_eq!(settings.host.as_deref(), Some("compute-07"));
        assert!(settings.tls.enabled);
        assert_eq!(
            settings.tls.ca_file,
            Some(PathBuf::from("/etc/ssl/rabbit-ca.pem"))
        );
        assert_eq!(
            settings.tls.cert_file,
            Some(PathBuf::from("/etc/ssl/client.pem"))
        );
        assert_eq!(
            settings.tls.key_file,
            Some(PathBuf::from("/etc/ssl/client.key"))
        );
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cret"), "{debug}");

        let legacy = config("[oslo_messaging_rabbit]\nrabbit_use_ssl = yes\n").messaging();
        assert!(legacy.tls.enabled);
        let off = config("[oslo_messaging_rabbit]\nssl = false\n").messaging();
        assert!(!off.tls.enabled);
    }

    #[test]
    fn missing_file_warns_and_uses_defaults() {
        let config = NovaConfig::from_files(&[PathBuf::from("/nonexistent/nova.conf")]);
        assert_eq!(
            config.instances_path(),
            PathBuf::from("/var/lib/nova/instances")
        );
        assert_eq!(config.warnings().len(), 1);
        assert!(
            config.warnings()[0].contains("/nonexistent/nova.conf"),
            "{:?}",
            config.warnings()
        );
    }

    #[test]
    fn unreadable_file_names_group_fix() {
        if rustix::process::geteuid().is_root() {
            println!(
                "skipped: root reads files of any mode, so permission denied cannot be tested"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "nova.conf", "[DEFAULT]\nstate_path = /secret\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();

        let config = NovaConfig::from_files(std::slice::from_ref(&path));
        assert_eq!(
            config.instances_path(),
            PathBuf::from("/var/lib/nova/instances")
        );
        let warning = &config.warnings()[0];
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert!(warning.contains("group nova"), "{warning}");
    }
}
