//! The log watch against real files, a real thread and a stand-in
//! journalctl (a shell script that prints journal JSON and waits).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use novamedic_proto::v1;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::*;

/// How long a test waits for the watch to see what it wrote.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

const NOVA_UNIT: &str = "nova-compute.service";

struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(node.signatures_dir()).unwrap();
        node
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("nova-compute.log")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn signatures_dir(&self) -> PathBuf {
        self.dir.path().join("signatures.d")
    }

    fn settings(&self, journalctl: &Path) -> LogWatchSettings {
        LogWatchSettings {
            log_file: Some(self.log_file()),
            default_log_files: Vec::new(),
            state_dir: self.state_dir(),
            signatures_dir: self.signatures_dir(),
            journalctl: journalctl.to_path_buf(),
            poll_interval: Duration::from_millis(20),
            utc_offset: UtcOffset::UTC,
        }
    }

    /// Starts a watch that reads no journal: its journalctl does not exist.
    fn start_without_journal(&self) -> LogWatch {
        let settings = self.settings(Path::new("/nonexistent/journalctl"));
        LogWatch::start(settings, Box::new(Targets::default)).unwrap()
    }

    fn append(&self, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// Writes a stand-in journalctl that records its arguments, prints
    /// `entries` (one JSON object a line) and waits to be killed.
    fn fake_journalctl(&self, entries: &[String]) -> PathBuf {
        let entries_path = self.dir.path().join("journal.json");
        std::fs::write(&entries_path, entries.join("\n") + "\n").unwrap();
        let script = self.dir.path().join("journalctl");
        let args_path = self.dir.path().join("journalctl.args");
        let text = format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\ncat '{}'\nexec sleep 600\n",
            args_path.display(),
            entries_path.display()
        );
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn journalctl_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("journalctl.args"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn now_ms() -> i64 {
    crate::transport::unix_ms_now()
}

/// One oslo.log record line stamped now (UTC, as the watch's offset is UTC).
fn oslo_line(level: &str, logger: &str, message: &str) -> String {
    let format =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");
    let stamp = OffsetDateTime::now_utc().format(&format).unwrap();
    format!("{stamp} 4242 {level} {logger} [-] {message}\n")
}

fn amqp_unreachable() -> String {
    oslo_line(
        "ERROR",
        "oslo.messaging._drivers.impl_rabbit",
        "[abc] AMQP server on 192.0.2.5:5672 is unreachable: [Errno 111] ECONNREFUSED. \
         Trying again in 1 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED",
    )
}

/// Polls the watch until `accept` holds; panics with the last report.
fn wait_for(
    watch: &LogWatch,
    what: &str,
    accept: impl Fn(&v1::LogHealth) -> bool,
) -> v1::LogHealth {
    let started = Instant::now();
    loop {
        let report = watch.report(now_ms());
        if accept(&report) {
            return report;
        }
        if started.elapsed() > WAIT_TIMEOUT {
            panic!("{what} not seen within {WAIT_TIMEOUT:?}; last report: {report:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fault<'a>(report: &'a v1::LogHealth, kind: &str) -> Option<&'a v1::LogFault> {
    report.active_faults.iter().find(|f| f.fault_kind == kind)
}

#[test]
fn amqp_flood_then_reconnect_clears_fault() {
    let node = Node::new();
    node.append(&oslo_line(
        "INFO",
        "nova.compute.manager",
        "Starting compute node",
    ));
    let watch = node.start_without_journal();
    wait_for(&watch, "the log file", |r| {
        r.log_file_problem.is_empty() && !r.log_file.is_empty()
    });

    let flood: String = (0..20).map(|_| amqp_unreachable()).collect();
    node.append(&flood);
    let report = wait_for(&watch, "20 AMQP records", |r| {
        fault(r, "messaging").is_some_and(|f| f.count == 20)
    });
    let messaging = fault(&report, "messaging").unwrap();
    assert_eq!(messaging.signature_id, "amqp-broker-unreachable");
    assert_eq!(messaging.severity, "error");
    assert!(!messaging.restart_helps);
    assert!(
        messaging.advice.contains("RabbitMQ"),
        "{}",
        messaging.advice
    );
    assert!(messaging.first_seen_unix_ms > now_ms() - 60_000);
    assert!(
        messaging.sample.contains("AMQP server on"),
        "{}",
        messaging.sample
    );
    let restart = report.restart.clone().unwrap();
    assert!(!restart.restart_helps, "{restart:?}");
    assert_eq!(restart.vetoed_by, "amqp-broker-unreachable");
    let count = report
        .counts
        .iter()
        .find(|c| c.fault_kind == "messaging")
        .unwrap();
    assert_eq!(count.last_5_minutes, 20);

    node.append(&oslo_line(
        "INFO",
        "oslo.messaging._drivers.impl_rabbit",
        "[abc] Reconnected to AMQP server on 192.0.2.5:5672 via [amqp] client with port 40000.",
    ));
    let report = wait_for(&watch, "the recovery", |r| r.active_faults.is_empty());
    let restart = report.restart.unwrap();
    assert!(!restart.restart_helps, "{restart:?}");
    assert!(restart.vetoed_by.is_empty());
    let count = report
        .counts
        .iter()
        .find(|c| c.fault_kind == "messaging")
        .unwrap();
    assert_eq!(count.last_hour, 20, "the counts keep the cleared records");
    watch.stop();
}

#[test]
fn first_start_skips_history_and_restart_resumes() {
    let node = Node::new();
    // History from before the agent was installed: not an active fault.
    node.append(&amqp_unreachable());
    let watch = node.start_without_journal();
    wait_for(&watch, "the log file", |r| !r.log_file.is_empty());
    node.append(&amqp_unreachable());
    wait_for(&watch, "one new record", |r| {
        fault(r, "messaging").is_some_and(|f| f.count == 1)
    });
    watch.stop();
    assert!(node.state_dir().join(POSITION_FILE).exists());

    // Written while the agent was down: read after its restart, and the
    // record read before is not read again.
    node.append(&amqp_unreachable());
    node.append(&amqp_unreachable());
    let watch = node.start_without_journal();
    wait_for(&watch, "the two records written while down", |r| {
        fault(r, "messaging").is_some()
    });
    // Give a re-read of old lines the time to show up before counting.
    std::thread::sleep(Duration::from_millis(200));
    let report = watch.report(now_ms());
    assert_eq!(fault(&report, "messaging").unwrap().count, 2, "{report:#?}");
    watch.stop();
}

fn journal_entry(unit: &str, message: &str, cursor: &str) -> String {
    serde_json::json!({
        "__CURSOR": cursor,
        "__REALTIME_TIMESTAMP": (now_ms() * 1000).to_string(),
        "_SYSTEMD_UNIT": unit,
        "MESSAGE": message,
    })
    .to_string()
}

#[test]
fn journal_stderr_config_error_is_classified() {
    let node = Node::new();
    let entries = [
        journal_entry(
            "init.scope",
            "Started nova-compute.service - OpenStack Compute.",
            "c=1",
        ),
        journal_entry(NOVA_UNIT, "Traceback (most recent call last):", "c=2"),
        journal_entry(
            NOVA_UNIT,
            "  File \"/usr/bin/nova-compute\", line 10, in <module>",
            "c=3",
        ),
        journal_entry(
            NOVA_UNIT,
            "oslo_config.cfg.ConfigFileParseError: Failed to parse /etc/nova/nova.conf: at line \
             12, No ':' or '=' found in assignment: 'bogus'",
            "c=4",
        ),
    ];
    let journalctl = node.fake_journalctl(&entries);
    let resolver = || Targets {
        named_log_file: None,
        unit: Some(NOVA_UNIT.to_string()),
    };
    let watch = LogWatch::start(node.settings(&journalctl), Box::new(resolver)).unwrap();
    let report = wait_for(&watch, "the configuration fault", |r| {
        fault(r, "configuration").is_some()
    });
    let configuration = fault(&report, "configuration").unwrap();
    assert_eq!(configuration.signature_id, "invalid-configuration");
    assert_eq!(configuration.count, 1);
    assert!(!report.restart.unwrap().restart_helps);
    assert_eq!(report.journal_unit, NOVA_UNIT);
    assert!(
        report.journal_problem.is_empty(),
        "{}",
        report.journal_problem
    );
    watch.stop();

    let args = node.journalctl_args();
    assert!(args[0].contains("--unit=nova-compute.service"), "{args:?}");
    assert!(
        args[0].contains("--lines=0"),
        "first start reads from now: {args:?}"
    );
    let cursor = std::fs::read_to_string(node.state_dir().join(JOURNAL_CURSOR_FILE)).unwrap();
    assert_eq!(cursor, "c=4");

    // A restarted watch resumes after the saved cursor.
    let watch = LogWatch::start(node.settings(&journalctl), Box::new(resolver)).unwrap();
    wait_for(&watch, "journalctl started again", |_| {
        node.journalctl_args().len() == 2
    });
    watch.stop();
    let args = node.journalctl_args();
    assert!(args[1].contains("--after-cursor=c=4"), "{args:?}");
}

#[test]
fn journal_oslo_records_skipped_while_file_is_followed() {
    let node = Node::new();
    node.append("");
    let line = amqp_unreachable();
    let entries = [journal_entry(NOVA_UNIT, line.trim_end(), "c=1")];
    let journalctl = node.fake_journalctl(&entries);
    let resolver = || Targets {
        named_log_file: None,
        unit: Some(NOVA_UNIT.to_string()),
    };
    let watch = LogWatch::start(node.settings(&journalctl), Box::new(resolver)).unwrap();
    wait_for(&watch, "the journal line", |r| r.lines_read >= 1);
    node.append(&line);
    wait_for(&watch, "the file record", |r| {
        fault(r, "messaging").is_some()
    });
    // Give a second count the time to show up.
    std::thread::sleep(Duration::from_millis(200));
    let counted = fault(&watch.report(now_ms()), "messaging").unwrap().count;
    assert_eq!(
        counted, 1,
        "the journal's copy of a file record counts once"
    );
    watch.stop();
}

#[test]
fn missing_journalctl_is_reported() {
    let node = Node::new();
    node.append("");
    let resolver = || Targets {
        named_log_file: None,
        unit: Some(NOVA_UNIT.to_string()),
    };
    let settings = node.settings(Path::new("/nonexistent/journalctl"));
    let watch = LogWatch::start(settings, Box::new(resolver)).unwrap();
    let report = wait_for(&watch, "the journal problem", |r| {
        !r.journal_problem.is_empty()
    });
    assert!(
        report.journal_problem.contains("not found"),
        "{}",
        report.journal_problem
    );
    assert!(report.log_file_problem.is_empty(), "the file is still read");
    watch.stop();
}

#[test]
fn bad_signature_file_degrades_while_good_one_matches() {
    let node = Node::new();
    std::fs::write(
        node.signatures_dir().join("broken.toml"),
        "[[signature]\nid = ",
    )
    .unwrap();
    std::fs::write(
        node.signatures_dir().join("site.toml"),
        r#"
[[signature]]
id = "site-stale-nfs-handle"
fault_kind = "volume"
severity = "error"
patterns = ['''Stale file handle''']
restart_helps = false
restart_reason = "the NFS export behind instances_path went away"
advice = "Remount the instances share. Then check the NFS server."
window_seconds = 600
"#,
    )
    .unwrap();
    node.append("");
    let watch = node.start_without_journal();
    wait_for(&watch, "the log file", |r| !r.log_file.is_empty());
    node.append(&oslo_line(
        "ERROR",
        "nova.compute.manager",
        "Error on /var/lib/nova/instances/x: [Errno 116] Stale file handle",
    ));
    let log = wait_for(&watch, "the site signature", |r| {
        fault(r, "volume").is_some()
    });
    watch.stop();

    assert_eq!(log.catalogue_errors.len(), 1, "{:?}", log.catalogue_errors);
    assert!(log.catalogue_errors[0].file.ends_with("broken.toml"));
    assert_eq!(
        fault(&log, "volume").unwrap().signature_id,
        "site-stale-nfs-handle"
    );

    let report = v1::NodeReport {
        nova_compute: Some(v1::NovaCompute {
            unit: NOVA_UNIT.to_string(),
            active_state: "active".to_string(),
            sub_state: "running".to_string(),
            process: Some(v1::Process {
                pid: 1,
                state: "S".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        log: Some(log),
        ..Default::default()
    };
    let health = crate::health::evaluate(&report, &Default::default());
    assert_eq!(health.status, v1::HealthStatus::Degraded as i32);
    let broken = health
        .reasons
        .iter()
        .find(|r| r.contains("broken.toml"))
        .unwrap_or_else(|| panic!("no reason names the file: {:?}", health.reasons));
    assert!(broken.starts_with("signature file "), "{broken}");
    assert!(
        broken.ends_with("; using the shipped catalogue and the valid files"),
        "{broken}"
    );
    assert!(
        health.reasons.iter().any(|r| r.contains("error volume fault") && r.contains("Remount the instances share.")),
        "{:?}",
        health.reasons
    );
}

#[test]
fn state_classifies_bare_line_after_info_record() {
    let (catalogue, errors) = load_catalogue(Path::new("/nonexistent/signatures.d"));
    let mut state = LogState::new(catalogue, errors, UtcOffset::UTC);
    let info = oslo_line("INFO", "nova.service", "Starting compute node");
    let entry = |message: &str| JournalEntry {
        realtime_us: Some(now_ms() * 1000),
        message: message.as_bytes().to_vec(),
        cursor: None,
        unit: Some(NOVA_UNIT.to_string()),
    };
    state.push_journal_entry(&entry(info.trim_end()));
    state.push_journal_entry(&entry(
        "oslo_config.cfg.ConfigFileParseError: Failed to parse /etc/nova/nova.conf",
    ));
    let summary = state.summary(now_ms());
    assert_eq!(summary.active.len(), 1, "{:?}", summary.active);
    assert_eq!(summary.active[0].fault_kind.as_str(), "configuration");
}

#[test]
fn device_as_log_file_is_not_followed() {
    let node = Node::new();
    let mut settings = node.settings(Path::new("/nonexistent/journalctl"));
    settings.log_file = Some(PathBuf::from("/dev/zero"));
    let watch = LogWatch::start(settings, Box::new(Targets::default)).unwrap();

    let report = wait_for(&watch, "the problem with /dev/zero", |report| {
        report.log_file_problem.contains("not a regular file")
    });
    assert!(
        report.log_file_problem.contains("/dev/zero"),
        "{}",
        report.log_file_problem
    );
    assert_eq!(report.lines_read, 0, "nothing is read from a device");
}
