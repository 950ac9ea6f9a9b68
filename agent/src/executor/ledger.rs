//! The command ledger: every command id the agent has processed, with its
//! result, in `STATE_DIR/commands.json`.
//!
//! The ledger is what makes "executed at most once" hold across agent
//! restarts. A restart is recorded as in progress before it starts; an entry
//! still in progress when the agent starts again means the agent died
//! during that restart.
//!
//! Size bound: the newest `MAX_LEDGER_ENTRIES` ids are kept, rejected
//! commands included. A controller replays an id within minutes of sending
//! it; a thousand ids last about two weeks even at the full default budget
//! of 3 restarts per hour. An id older than that would be executed again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the ledger in the state directory.
pub const LEDGER_FILE: &str = "commands.json";

/// Number of command ids kept; older ids are dropped first.
pub const MAX_LEDGER_ENTRIES: usize = 1000;

const LEDGER_VERSION: u32 = 1;

/// A problem with the state directory or a file in it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot write {path}: {error}; make the directory writable for the agent \
         (a local, read-write filesystem owned by root) or set state_dir in the agent's config"
    )]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {error}; check the file's permissions")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "invalid state file {path}: {message}; move the file aside and restart the agent \
         (it then forgets the commands and restarts recorded there)"
    )]
    Invalid { path: PathBuf, message: String },
}

/// One run of a unit, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedInstance {
    pub main_pid: u32,
    pub invocation_id: String,
    pub active_state: String,
}

/// A command's result, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResult {
    /// `CommandOutcome` by its proto name, for example
    /// "COMMAND_OUTCOME_SUCCEEDED", so the file reads without the proto.
    pub outcome: String,
    pub detail: String,
    pub before: Option<RecordedInstance>,
    pub after: Option<RecordedInstance>,
    pub duration_ms: u64,
}

/// State of a command in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CommandState {
    /// The restart started and its outcome was not recorded yet.
    InProgress,
    Done {
        result: RecordedResult,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    command_id: String,
    /// Agent clock when the entry was last written, Unix time in
    /// milliseconds; for the operator reading the file.
    recorded_at_unix_ms: i64,
    #[serde(flatten)]
    state: CommandState,
}

#[derive(Debug, Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    commands: VecDeque<Entry>,
}

/// The ledger, loaded in memory and written through on every change.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    entries: VecDeque<Entry>,
}

impl Ledger {
    /// Loads the ledger in `state_dir`; a missing file is an empty ledger.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir.join(LEDGER_FILE);
        let entries = match read_json::<LedgerFile>(&path)? {
            Some(file) if file.version == LEDGER_VERSION => file.commands,
            Some(file) => {
                return Err(StateError::Invalid {
                    path,
                    message: format!(
                        "version {} is not {LEDGER_VERSION}, the version this agent writes",
                        file.version
                    ),
                })
            }
            None => VecDeque::new(),
        };
        Ok(Ledger { path, entries })
    }

    /// Path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the recorded state of `command_id`.
    pub fn get(&self, command_id: &str) -> Option<&CommandState> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.command_id == command_id)
            .map(|entry| &entry.state)
    }

    /// Number of ids recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records `state` for `command_id` and writes the file. The memory copy
    /// is updated even when the write fails, so this process still returns
    /// the right result for a replay.
    pub fn record(
        &mut self,
        command_id: &str,
        state: CommandState,
        now_unix_ms: i64,
    ) -> Result<(), StateError> {
        self.entries.retain(|entry| entry.command_id != command_id);
        self.entries.push_back(Entry {
            command_id: command_id.to_string(),
            recorded_at_unix_ms: now_unix_ms,
            state,
        });
        while self.entries.len() > MAX_LEDGER_ENTRIES {
            self.entries.pop_front();
        }
        let file = LedgerFile {
            version: LEDGER_VERSION,
            commands: self.entries.clone(),
        };
        write_json(&self.path, &file)
    }
}

/// Reads and parses a JSON state file; `None` when it does not exist.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Option<T>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| StateError::Invalid {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
}

/// Writes `value` as JSON so that a crash leaves either the old or the new
/// file: a temporary file in the same directory, fsync, rename over the old
/// file, fsync of the directory.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let write_error = |error| StateError::Write {
        path: path.to_path_buf(),
        error,
    };
    let bytes = serde_json::to_vec_pretty(value).expect("state files serialize to JSON");
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    let mut file = File::create(&temporary).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(write_error)?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write_error)?;
    }
    Ok(())
}

/// Creates `state_dir` if needed and checks that a file can be written in
/// it, so a bad directory shows at startup rather than at the first command.
pub fn prepare_state_dir(state_dir: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(state_dir).map_err(|error| StateError::Write {
        path: state_dir.to_path_buf(),
        error,
    })?;
    let probe = state_dir.join(".write-test");
    write_json(&probe, &"probe")?;
    std::fs::remove_file(&probe).map_err(|error| StateError::Write { path: probe, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(detail: &str) -> CommandState {
        CommandState::Done {
            result: RecordedResult {
                outcome: "COMMAND_OUTCOME_SUCCEEDED".to_string(),
                detail: detail.to_string(),
                before: None,
                after: Some(RecordedInstance {
                    main_pid: 7,
                    invocation_id: "ab".repeat(16),
                    active_state: "active".to_string(),
                }),
                duration_ms: 1500,
            },
        }
    }

    #[test]
    fn ledger_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.record("c-1", CommandState::InProgress, 1).unwrap();
        ledger.record("c-2", done("restarted"), 2).unwrap();

        let reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.get("c-1"), Some(&CommandState::InProgress));
        assert_eq!(reopened.get("c-2"), Some(&done("restarted")));
        assert_eq!(reopened.get("c-3"), None);
        assert!(!dir.path().join("commands.json.tmp").exists());
    }

    #[test]
    fn ledger_keeps_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        // A full ledger written in one go: a record per id would fsync a
        // thousand times.
        let commands = (0..MAX_LEDGER_ENTRIES)
            .map(|index| Entry {
                command_id: format!("c-{index}"),
                recorded_at_unix_ms: index as i64,
                state: done("x"),
            })
            .collect();
        let full = LedgerFile {
            version: LEDGER_VERSION,
            commands,
        };
        write_json(&dir.path().join(LEDGER_FILE), &full).unwrap();

        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.record("c-new", done("y"), 0).unwrap();
        let reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), MAX_LEDGER_ENTRIES);
        assert_eq!(reopened.get("c-0"), None);
        assert!(reopened.get("c-1").is_some());
        assert_eq!(reopened.get("c-new"), Some(&done("y")));
    }

    #[test]
    fn rerecording_an_id_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        ledger.record("c-1", CommandState::InProgress, 1).unwrap();
        ledger.record("c-1", done("restarted"), 2).unwrap();
        let reopened = Ledger::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened.get("c-1"), Some(&done("restarted")));
    }

    #[test]
    fn corrupt_ledger_names_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEDGER_FILE), "{not json").unwrap();
        let err = Ledger::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("commands.json"), "{err}");
        assert!(err.contains("move the file aside"), "{err}");
    }

    #[test]
    fn unusable_state_dir_names_path_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "").unwrap();
        let state_dir = file.join("state");
        let err = prepare_state_dir(&state_dir).unwrap_err().to_string();
        assert!(err.contains(&state_dir.display().to_string()), "{err}");
        assert!(err.contains("state_dir"), "{err}");
    }
}
