//! nova-compute's journal, read through `journalctl --output=json`.
//!
//! The journal holds what nova-compute writes to standard output and error:
//! its oslo.log records when it logs to no file, and, in any case, what
//! Python prints before logging is set up (a `ConfigFileParseError`
//! traceback at start-up, for example).
//!
//! `journalctl` is a child process rather than a library binding, so the
//! agent needs no libsystemd. Its position is the cursor of the last entry
//! read, which the agent writes to `STATE_DIR/journal.cursor` itself
//! (journalctl's own `--cursor-file` is written only when it exits normally).
//!
//! While nova-compute writes a log file, the journal holds little of interest
//! and a resident `journalctl --follow` would cost more memory than the agent
//! itself, so the journal is read by short runs instead ([`once_args`]),
//! started when the journal files change ([`JournalStamp`]) and on a timer.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Bytes of journalctl's standard error kept to explain why it exited.
const MAX_STDERR_BYTES: u64 = 4096;

/// One journal entry of nova-compute's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// `__REALTIME_TIMESTAMP`: when journald received the entry, Unix time in
    /// microseconds (UTC).
    pub realtime_us: Option<i64>,
    /// `MESSAGE`, raw bytes (journald keeps non-UTF-8 messages as byte arrays).
    pub message: Vec<u8>,
    /// `__CURSOR`, the entry's position for resuming after a restart.
    pub cursor: Option<String>,
    /// `_SYSTEMD_UNIT`: the unit of the process that wrote the entry. Entries
    /// that systemd writes about the unit (`Started ...`) have another one.
    pub unit: Option<String>,
}

/// Parses one line of `journalctl --output=json`; `None` for a line that is
/// not a JSON object with a `MESSAGE`.
pub fn parse_entry(line: &[u8]) -> Option<JournalEntry> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    let message = match object.get("MESSAGE")? {
        Value::String(text) => text.as_bytes().to_vec(),
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()?,
        _ => return None,
    };
    let text_field = |name: &str| object.get(name).and_then(Value::as_str).map(String::from);
    Some(JournalEntry {
        realtime_us: text_field("__REALTIME_TIMESTAMP").and_then(|t| t.parse().ok()),
        message,
        cursor: text_field("__CURSOR"),
        unit: text_field("_SYSTEMD_UNIT"),
    })
}

/// Reads `journalctl --output=json` lines from `reader` until it ends and
/// calls `on_entry(entry, burst_end)` for each entry. `burst_end` is true
/// when no further output is buffered, the moment to persist the cursor.
pub fn read_entries<R: Read>(reader: BufReader<R>, mut on_entry: impl FnMut(JournalEntry, bool)) {
    read_entries_while(reader, |entry, burst_end| {
        on_entry(entry, burst_end);
        true
    });
}

/// [`read_entries`], stopping early when `on_entry` returns false.
pub fn read_entries_while<R: Read>(
    mut reader: BufReader<R>,
    mut on_entry: impl FnMut(JournalEntry, bool) -> bool,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read journalctl's output");
                return;
            }
        }
        match parse_entry(&line) {
            Some(entry) => {
                // `buffer()` looks only at what was read already; it never blocks.
                let burst_end = reader.buffer().is_empty();
                if !on_entry(entry, burst_end) {
                    return;
                }
            }
            None => tracing::debug!(
                line = %String::from_utf8_lossy(&line),
                "skipping a journalctl line that is not a JSON entry"
            ),
        }
    }
}

/// Arguments of a `journalctl` that follows `unit` from `cursor`, or from
/// now when there is no cursor: old entries were written before this agent
/// watched the node, and reading them would report long-fixed faults.
pub fn follow_args(unit: &str, cursor: Option<&str>) -> Vec<String> {
    let mut args = vec![
        format!("--unit={unit}"),
        "--follow".to_string(),
        "--output=json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    match cursor {
        Some(cursor) => args.push(format!("--after-cursor={cursor}")),
        None => args.push("--lines=0".to_string()),
    }
    args
}

/// Arguments of a `journalctl` that prints the entries of `unit` after
/// `cursor`, or, without a cursor, since `since_unix_seconds` (when the watch
/// first read the journal), and exits.
pub fn once_args(unit: &str, cursor: Option<&str>, since_unix_seconds: i64) -> Vec<String> {
    let mut args = vec![
        format!("--unit={unit}"),
        "--output=json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    match cursor {
        Some(cursor) => args.push(format!("--after-cursor={cursor}")),
        None => args.push(format!("--since=@{since_unix_seconds}")),
    }
    args
}

/// Modification time and length of the journal's active files: journald
/// updates both within a fraction of a second of every write (it truncates
/// the file to its own length so that readers notice), so a change means new
/// entries, of some unit, to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStamp(Vec<Option<(std::time::SystemTime, u64)>>);

impl JournalStamp {
    /// Reads the stamp of `system.journal` under the persistent and the
    /// volatile journal directory of this machine. Files that do not exist
    /// count as such, so a journal that appears is a change too.
    pub fn read() -> JournalStamp {
        let Ok(machine_id) = std::fs::read_to_string("/etc/machine-id") else {
            return JournalStamp::default();
        };
        let machine_id = machine_id.trim();
        let files = ["/var/log/journal", "/run/log/journal"]
            .map(|dir| Path::new(dir).join(machine_id).join("system.journal"));
        JournalStamp(
            files
                .iter()
                .map(|file| {
                    let meta = std::fs::metadata(file).ok()?;
                    Some((meta.modified().ok()?, meta.len()))
                })
                .collect(),
        )
    }
}

/// Arguments of a `journalctl` that prints the last hour of `unit` and exits,
/// at most `max_entries` entries.
pub fn recent_args(unit: &str, max_entries: u32) -> Vec<String> {
    vec![
        format!("--unit={unit}"),
        "--since=-1h".to_string(),
        format!("--lines={max_entries}"),
        "--output=json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ]
}

/// Starts `program args` with standard output and error piped.
pub fn spawn(program: &Path, args: &[String]) -> io::Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Describes why a journalctl child ended: its status and the start of what
/// it wrote to standard error.
pub fn describe_exit(child: &mut Child, status: std::process::ExitStatus) -> String {
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let _ = pipe.take(MAX_STDERR_BYTES).read_to_string(&mut stderr);
    }
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("journalctl exited with {status}")
    } else {
        format!("journalctl exited with {status}: {stderr}")
    }
}

/// Describes a failure to start journalctl, with the fix for a missing binary.
pub fn describe_spawn_error(program: &Path, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        format!(
            "{} not found, so start-up errors that nova-compute writes to standard error are \
             not read; install systemd's journalctl or rely on the log file",
            program.display()
        )
    } else {
        format!("cannot start {}: {err}", program.display())
    }
}

/// The journal cursor persisted in the agent's state directory.
#[derive(Debug, Clone)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(path: PathBuf) -> Self {
        CursorFile { path }
    }

    /// Returns the saved cursor; `None` when there is none or it is unreadable.
    pub fn load(&self) -> Option<String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => None,
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err,
                    "cannot read the journal cursor; reading the journal from now");
                None
            }
        }
    }

    /// Writes `cursor` through a temporary file and a rename, so a crash
    /// leaves the old cursor or the new one, never half of one.
    pub fn save(&self, cursor: &str) -> io::Result<()> {
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        std::fs::write(&temporary, cursor.as_bytes())?;
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_with_text_message_is_parsed() {
        let line = br#"{"__CURSOR":"s=abc;i=1f","__REALTIME_TIMESTAMP":"1700000000123456","_SYSTEMD_UNIT":"nova-compute.service","MESSAGE":"hello","PRIORITY":"6"}"#;
        let entry = parse_entry(line).expect("entry");
        assert_eq!(entry.message, b"hello");
        assert_eq!(entry.realtime_us, Some(1_700_000_000_123_456));
        assert_eq!(entry.cursor.as_deref(), Some("s=abc;i=1f"));
        assert_eq!(entry.unit.as_deref(), Some("nova-compute.service"));
    }

    #[test]
    fn entry_with_byte_array_message_is_parsed() {
        let line = br#"{"MESSAGE":[104,105,255]}"#;
        let entry = parse_entry(line).expect("entry");
        assert_eq!(entry.message, vec![104, 105, 255]);
        assert_eq!(entry.realtime_us, None);
    }

    #[test]
    fn lines_without_message_are_skipped() {
        assert!(parse_entry(b"not json").is_none());
        assert!(parse_entry(br#"{"PRIORITY":"6"}"#).is_none());
        assert!(parse_entry(br#"{"MESSAGE":null}"#).is_none());
        assert!(parse_entry(br#"{"MESSAGE":[300]}"#).is_none());
    }

    #[test]
    fn reader_returns_every_entry() {
        let stream = b"{\"MESSAGE\":\"a\"}\ngarbage\n{\"MESSAGE\":\"b\"}";
        let mut messages = Vec::new();
        read_entries(BufReader::new(&stream[..]), |entry, _| {
            messages.push(entry.message)
        });
        assert_eq!(messages, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn reader_stops_when_asked() {
        let stream = b"{\"MESSAGE\":\"a\"}\n{\"MESSAGE\":\"b\"}\n";
        let mut messages = Vec::new();
        read_entries_while(BufReader::new(&stream[..]), |entry, _| {
            messages.push(entry.message);
            false
        });
        assert_eq!(messages, vec![b"a".to_vec()]);
    }

    #[test]
    fn run_once_starts_at_cursor_or_watch_start() {
        let args = once_args("nova-compute.service", Some("s=1"), 1_700_000_000);
        assert!(args.contains(&"--after-cursor=s=1".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a == "--follow"), "{args:?}");
        let args = once_args("nova-compute.service", None, 1_700_000_000);
        assert!(
            args.contains(&"--since=@1700000000".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--unit=nova-compute.service".to_string()));
    }

    #[test]
    fn follow_starts_at_cursor_or_now() {
        let args = follow_args("nova-compute.service", Some("s=1"));
        assert!(args.contains(&"--after-cursor=s=1".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--lines")), "{args:?}");
        let args = follow_args("nova-compute.service", None);
        assert!(args.contains(&"--lines=0".to_string()), "{args:?}");
        assert!(args.contains(&"--unit=nova-compute.service".to_string()));
    }

    #[test]
    fn cursor_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(dir.path().join("journal.cursor"));
        assert_eq!(file.load(), None);
        file.save("s=abc;i=2").unwrap();
        assert_eq!(file.load().as_deref(), Some("s=abc;i=2"));
    }

    #[test]
    fn missing_journalctl_is_explained() {
        let program = Path::new("/nonexistent/journalctl");
        let err = spawn(program, &[]).unwrap_err();
        let text = describe_spawn_error(program, &err);
        assert!(text.contains("not found"), "{text}");
        assert!(text.contains("/nonexistent/journalctl"), "{text}");
    }
}
