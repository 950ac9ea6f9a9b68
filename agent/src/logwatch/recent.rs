//! A one-shot reading of nova-compute's recent log, for `novamedic-agent
//! check`: the tail of the log file and the last hour of the journal, read
//! without touching the running agent's saved positions.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use novamedic_logs::{Line, LineSplitter};
use novamedic_proto::v1;

use super::journal;
use super::path::{choose_log_file, LogFileChoice};
use super::state::LogState;
use super::{load_catalogue, LogWatchSettings, Targets};

/// Bytes read from the end of the log file. At the few hundred bytes per
/// record of a busy nova-compute this is well over the last hour, the
/// longest fault window.
const RECENT_TAIL_BYTES: u64 = 16 * 1024 * 1024;

/// Journal entries read at most.
const RECENT_JOURNAL_ENTRIES: u32 = 10_000;

/// Reads the recent log and journal and returns the log section of a report
/// at `now_unix_ms`.
pub fn read_recent(
    settings: &LogWatchSettings,
    targets: &Targets,
    now_unix_ms: i64,
) -> v1::LogHealth {
    let (catalogue, errors) = load_catalogue(&settings.signatures_dir);
    let mut state = LogState::new(catalogue, errors, settings.utc_offset);
    let choice = choose_log_file(
        settings.log_file.as_deref(),
        targets.named_log_file.as_deref(),
        &settings.default_log_files,
        Path::exists,
    );
    match choice {
        LogFileChoice::Chosen { path, .. } => {
            match read_tail(&path, RECENT_TAIL_BYTES) {
                Ok(lines) => state.push_file_lines(&lines),
                Err(err) => {
                    state.status.log_file_problem = format!("cannot read {}: {err}", path.display())
                }
            }
            state.flush_file();
            state.status.log_file = Some(path);
        }
        LogFileChoice::None { problem } => state.status.log_file_problem = problem,
    }
    match &targets.unit {
        Some(unit) => read_recent_journal(&mut state, &settings.journalctl, unit),
        None => {
            state.status.journal_problem =
                "nova-compute's systemd unit is unknown, so its journal is not read".to_string()
        }
    }
    state.to_wire(now_unix_ms)
}

/// Returns the complete lines of the last `max_bytes` of `path`.
fn read_tail(path: &Path, max_bytes: u64) -> io::Result<Vec<Line>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    // One byte before the tail is read too: the tail's first line is whole
    // only when that byte ends the line before it.
    let start = size.saturating_sub(max_bytes).saturating_sub(1);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    let mut body = &bytes[..];
    if start > 0 {
        let first_newline = memchr_newline(body).map_or(body.len(), |at| at + 1);
        body = &body[first_newline..];
    }
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::new();
    let mut push = |line: &[u8], truncated_bytes: u64| {
        lines.push(Line {
            bytes: line.to_vec(),
            truncated_bytes,
        })
    };
    splitter.feed(body, &mut push);
    splitter.finish(&mut push);
    Ok(lines)
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn read_recent_journal(state: &mut LogState, journalctl: &Path, unit: &str) {
    let args = journal::recent_args(unit, RECENT_JOURNAL_ENTRIES);
    let mut child = match journal::spawn(journalctl, &args) {
        Ok(child) => child,
        Err(err) => {
            state.status.journal_problem = journal::describe_spawn_error(journalctl, &err);
            return;
        }
    };
    let stdout = child.stdout.take().expect("journalctl's stdout is piped");
    journal::read_entries(BufReader::new(stdout), |entry, _| {
        if entry.unit.as_deref() == Some(unit) {
            state.push_journal_entry(&entry);
        }
    });
    state.flush_journal();
    match child.wait() {
        Ok(status) if status.success() => state.status.journal_unit = Some(unit.to_string()),
        Ok(status) => state.status.journal_problem = journal::describe_exit(&mut child, status),
        Err(err) => state.status.journal_problem = format!("cannot wait for journalctl: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_drops_the_cut_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nova-compute.log");
        std::fs::write(&path, b"first line\nsecond line\nthird").unwrap();
        let texts = |max_bytes| -> Vec<Vec<u8>> {
            let lines = read_tail(&path, max_bytes).unwrap();
            lines.into_iter().map(|l| l.bytes).collect()
        };
        // 15 bytes start inside "second line"; 17 start right after its newline.
        assert_eq!(texts(15), vec![b"third".to_vec()]);
        assert_eq!(texts(17), vec![b"second line".to_vec(), b"third".to_vec()]);
        let all = read_tail(&path, 1024).unwrap();
        assert_eq!(all.len(), 3);
    }
}
