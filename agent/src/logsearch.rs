//! Searches nova-compute's log files for the records of one instance or
//! request, for the controller's `SearchLogs` command.
//!
//! The search reads the file the log watch follows and the copies that
//! logrotate left beside it (`NAME.1`, `NAME.2.gz`, `NAME-20261204.gz`),
//! plain or gzip. A file last written before the window is skipped, and a
//! file is read only until its records pass the window's end. Lines go
//! through the same splitter and joiner as the live log, so any bytes read
//! without failing, over-long lines are cut and a traceback stays with its
//! record. Each match is classified with the signature catalogue and its
//! text redacted before it leaves the node. The search only reads.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use novamedic_logs::header::is_uuid;
use novamedic_logs::redact::redact;
use novamedic_logs::{Catalogue, Joiner, LineSplitter, Record};
use novamedic_proto::v1;
use time::UtcOffset;

/// Maximum window of a search. Rotated logs rarely reach further
/// back, and a longer window would read every file a node keeps.
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// Maximum records in one result. With [`MAX_RECORD_TEXT_BYTES`] each, a
/// result stays far below gRPC's 4 MiB message limit.
pub const MAX_RECORDS: u32 = 500;

/// Records returned when the request sets `max_records` to 0.
pub const DEFAULT_RECORDS: u32 = 100;

/// Maximum request ids in one search.
pub const MAX_REQUEST_IDS: usize = 32;

/// Text kept per record. The middle of a longer record is left out, so its
/// first line and the exception at the end of a traceback both stay.
pub const MAX_RECORD_TEXT_BYTES: usize = 4096;

/// Maximum files searched, the followed one included.
pub const MAX_FILES: usize = 50;

/// Tolerance for a file's modification time and for records written out
/// of order: a file is skipped only when it was last written this long
/// before the window, and reading stops only at a record this long after it.
const SLACK_MS: i64 = 60_000;

/// Matches kept while reading, as a multiple of the records to return, so
/// that fault records can be preferred without holding every match.
const CANDIDATES_PER_RECORD: usize = 4;

/// The log file a search reads and the catalogue it classifies with.
#[derive(Clone)]
pub struct SearchSource {
    /// The log file the log watch follows; `None` when it follows none.
    pub log_file: Option<PathBuf>,
    /// The reason no file is followed, when none is.
    pub problem: String,
    pub catalogue: Arc<Catalogue>,
    /// The node's UTC offset: oslo.log writes local time without a zone.
    pub utc_offset: UtcOffset,
}

impl SearchSource {
    /// Reads `log_file` with the shipped catalogue, its times taken as UTC:
    /// for tests and for logs copied from a node in UTC.
    pub fn shipped(log_file: PathBuf) -> Self {
        SearchSource {
            log_file: Some(log_file),
            problem: String::new(),
            catalogue: Arc::new(Catalogue::shipped().0),
            utc_offset: UtcOffset::UTC,
        }
    }
}

/// A validated `SearchLogs` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub instance_uuid: Option<String>,
    pub request_ids: Vec<String>,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
    pub max_records: usize,
}

impl Query {
    /// Checks a request and returns why it cannot be served.
    pub fn from_wire(search: &v1::SearchLogs) -> Result<Query, String> {
        let uuid = search.instance_uuid.trim().to_ascii_lowercase();
        if !uuid.is_empty() && !is_uuid(uuid.as_bytes()) {
            return Err(format!(
                "instance_uuid {uuid:?} is not a UUID; pass the server's id, such as \
                 0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01"
            ));
        }
        if search.request_ids.len() > MAX_REQUEST_IDS {
            return Err(format!(
                "{} request ids given; at most {MAX_REQUEST_IDS} fit one search",
                search.request_ids.len()
            ));
        }
        let mut request_ids = Vec::new();
        for id in &search.request_ids {
            let id = id.trim();
            let valid = id
                .strip_prefix("req-")
                .is_some_and(|rest| is_uuid(rest.as_bytes()));
            if !valid {
                return Err(format!(
                    "request id {id:?} is not of the form req-UUID, as Nova's instance actions \
                     show it"
                ));
            }
            request_ids.push(id.to_ascii_lowercase());
        }
        if uuid.is_empty() && request_ids.is_empty() {
            return Err(
                "neither instance_uuid nor request_ids is set: a search needs at \
                        least one of them"
                    .to_string(),
            );
        }
        let (start, end) = (search.start_unix_ms, search.end_unix_ms);
        if start <= 0 || end <= start {
            return Err(format!(
                "invalid window {start}..{end}: start_unix_ms must be positive and before \
                 end_unix_ms"
            ));
        }
        if end - start > MAX_WINDOW_MS {
            return Err(format!(
                "window of {} h is longer than the {} h a search may cover; narrow it to the \
                 build's actions",
                (end - start) / 3_600_000,
                MAX_WINDOW_MS / 3_600_000
            ));
        }
        let max_records = match search.max_records {
            0 => DEFAULT_RECORDS,
            n if n > MAX_RECORDS => {
                return Err(format!(
                    "max_records {n} is above the limit of {MAX_RECORDS}; ask for fewer"
                ))
            }
            n => n,
        };
        Ok(Query {
            instance_uuid: (!uuid.is_empty()).then_some(uuid),
            request_ids,
            start_unix_ms: start,
            end_unix_ms: end,
            max_records: max_records as usize,
        })
    }

    fn needles(&self) -> impl Iterator<Item = &str> {
        self.instance_uuid
            .iter()
            .chain(self.request_ids.iter())
            .map(String::as_str)
    }

    fn matches(&self, record: &Record) -> bool {
        let text = record.text();
        self.needles().any(|needle| text.contains(needle))
    }

    fn in_window(&self, time_unix_ms: Option<i64>) -> bool {
        time_unix_ms.is_none_or(|t| t >= self.start_unix_ms && t <= self.end_unix_ms)
    }
}

/// Searches the files of `source` for `query`, stopping at `deadline`.
pub fn search(source: &SearchSource, query: &Query, deadline: Instant) -> v1::LogSearchResult {
    let Some(log_file) = &source.log_file else {
        return v1::LogSearchResult {
            problem: if source.problem.is_empty() {
                "the agent follows no log file".to_string()
            } else {
                source.problem.clone()
            },
            ..Default::default()
        };
    };
    let mut result = v1::LogSearchResult {
        log_file: log_file.display().to_string(),
        ..Default::default()
    };
    let files = match log_files(log_file) {
        Ok(files) => files,
        Err(problem) => {
            result.problem = problem;
            return result;
        }
    };
    let mut matches = Matches::new(query.max_records);
    let reader = FileSearch {
        query,
        catalogue: &source.catalogue,
        offset_ms: i64::from(source.utc_offset.whole_seconds()) * 1000,
        deadline,
    };
    let mut out_of_time = false;
    for (index, file) in files.iter().enumerate() {
        let path_text = file.path.display().to_string();
        let skip = |note: String| v1::LogSearchFile {
            path: path_text.clone(),
            searched: false,
            note,
            ..Default::default()
        };
        if out_of_time {
            result
                .files
                .push(skip("not searched: the command's time ran out".to_string()));
            continue;
        }
        if index >= MAX_FILES {
            result.files.push(skip(format!(
                "not searched: only the {MAX_FILES} newest files are searched"
            )));
            continue;
        }
        if let Some(mtime) = file.modified_unix_ms {
            if mtime < query.start_unix_ms - SLACK_MS {
                result.files.push(skip(format!(
                    "not searched: last written at {}, before the window",
                    format_unix_ms(mtime)
                )));
                continue;
            }
        }
        let outcome = reader.search_file(&file.path, &mut matches);
        out_of_time = outcome.out_of_time;
        result.lines_read += outcome.lines_read;
        result.files.push(v1::LogSearchFile {
            path: path_text,
            searched: true,
            note: outcome.note,
            lines_read: outcome.lines_read,
            records_matched: outcome.records_matched,
        });
    }
    let (records, truncated) = matches.finish();
    result.records = records;
    result.truncated = truncated || out_of_time;
    result
}

/// A log file and its last modification, Unix milliseconds.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    modified_unix_ms: Option<i64>,
}

/// Returns `log_file` (when it exists) and its rotated copies, newest first.
fn log_files(log_file: &Path) -> Result<Vec<LogFile>, String> {
    let Some(name) = log_file.file_name().and_then(|n| n.to_str()) else {
        return Err(format!(
            "log file {} has no file name to find its rotated copies by",
            log_file.display()
        ));
    };
    let dir = log_file.parent().unwrap_or(Path::new("."));
    let entries = fs::read_dir(dir).map_err(|err| {
        format!(
            "cannot list {} for nova-compute's log files: {err}; the agent needs read access \
             to that directory",
            dir.display()
        )
    })?;
    let mut rotated = Vec::new();
    let mut current = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let is_current = file_name == name;
        if !is_current && !is_rotated_copy(name, file_name) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) if metadata.is_file() => metadata,
            _ => continue,
        };
        let file = LogFile {
            path: entry.path(),
            modified_unix_ms: metadata.modified().ok().map(unix_ms),
        };
        if is_current {
            current = Some(file);
        } else {
            rotated.push(file);
        }
    }
    rotated.sort_by_key(|file| std::cmp::Reverse(file.modified_unix_ms));
    Ok(current.into_iter().chain(rotated).collect())
}

/// Returns whether `candidate` is a copy of `name` as logrotate leaves it:
/// `NAME.N`, `NAME-DATE`, either with `.gz`.
fn is_rotated_copy(name: &str, candidate: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(name) else {
        return false;
    };
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match rest.strip_prefix('.') {
        Some(number) => digits(number),
        None => rest
            .strip_prefix('-')
            .is_some_and(|date| digits(&date.replace('-', ""))),
    }
}

/// The outcome of reading one file.
#[derive(Debug, Default)]
struct FileOutcome {
    lines_read: u64,
    records_matched: u64,
    note: String,
    out_of_time: bool,
}

/// Progress through one file.
#[derive(Debug, Default)]
struct Scan {
    records_matched: u64,
    past_window: bool,
}

/// The settings shared by every file of one search.
struct FileSearch<'a> {
    query: &'a Query,
    catalogue: &'a Catalogue,
    offset_ms: i64,
    deadline: Instant,
}

impl FileSearch<'_> {
    fn search_file(&self, path: &Path, matches: &mut Matches) -> FileOutcome {
        let mut outcome = FileOutcome::default();
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) => {
                outcome.note = format!("cannot open: {err}");
                return outcome;
            }
        };
        let gzip = path.extension().is_some_and(|e| e == "gz");
        let mut reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(file)
        };
        let mut splitter = LineSplitter::new();
        let mut joiner = Joiner::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut scan = Scan::default();
        loop {
            if scan.past_window {
                break;
            }
            if Instant::now() >= self.deadline {
                outcome.out_of_time = true;
                outcome.note = "stopped: the command's time ran out".to_string();
                break;
            }
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    outcome.note = if gzip {
                        format!("invalid gzip data, read up to the damage: {err}")
                    } else {
                        format!("read failed, read up to the error: {err}")
                    };
                    break;
                }
            };
            splitter.feed(&buffer[..read], |line, truncated| {
                if scan.past_window {
                    return;
                }
                if let Some(record) = joiner.push_line(line, truncated) {
                    self.observe(path, record, &mut scan, matches);
                }
            });
        }
        if !scan.past_window {
            splitter.finish(|line, truncated| {
                if let Some(record) = joiner.push_line(line, truncated) {
                    self.observe(path, record, &mut scan, matches);
                }
            });
        }
        if let Some(record) = joiner.finish() {
            self.observe(path, record, &mut scan, matches);
        }
        outcome.lines_read = joiner.lines_read();
        outcome.records_matched = scan.records_matched;
        outcome
    }

    /// Keeps `record` when it matches in the window; notes a record past
    /// the window, after which the rest of the file is newer still.
    fn observe(&self, path: &Path, record: &Record, scan: &mut Scan, matches: &mut Matches) {
        let time = record.local_ms.map(|local| local - self.offset_ms);
        if time.is_some_and(|t| t > self.query.end_unix_ms + SLACK_MS) {
            scan.past_window = true;
        }
        if self.query.in_window(time) && self.query.matches(record) {
            scan.records_matched += 1;
            matches.push(self.to_wire(path, record, time));
        }
    }

    fn to_wire(&self, path: &Path, record: &Record, time: Option<i64>) -> v1::LogSearchRecord {
        let mut wire = v1::LogSearchRecord {
            file: path.display().to_string(),
            line: record.first_line,
            time_unix_ms: time.unwrap_or(0),
            level: record.level.as_str().to_string(),
            request_id: record.request_id().unwrap_or_default().to_string(),
            text: bounded_text(&redact(record.text())),
            ..Default::default()
        };
        if let Some(index) = self.catalogue.classify(record).fault {
            let signature = self.catalogue.signature(index);
            wire.signature_id = signature.id.clone();
            wire.fault_kind = signature.fault_kind.as_str().to_string();
            wire.severity = signature.severity.as_str().to_string();
            wire.advice = signature.render_advice(record.text());
        }
        wire
    }
}

/// Cuts `text` to [`MAX_RECORD_TEXT_BYTES`] by leaving out its middle.
fn bounded_text(text: &str) -> String {
    if text.len() <= MAX_RECORD_TEXT_BYTES {
        return text.to_string();
    }
    let half = MAX_RECORD_TEXT_BYTES / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[... {} bytes left out ...]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

/// The matches of a search, bounded.
struct Matches {
    max_records: usize,
    kept: Vec<v1::LogSearchRecord>,
    /// Matches that did not fit even among the candidates.
    dropped: u64,
}

impl Matches {
    fn new(max_records: usize) -> Self {
        Matches {
            max_records,
            kept: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, record: v1::LogSearchRecord) {
        let capacity = self.max_records * CANDIDATES_PER_RECORD;
        if self.kept.len() < capacity {
            self.kept.push(record);
            return;
        }
        self.dropped += 1;
        // A fault record displaces the least telling match held.
        let new_rank = rank(&record);
        let weakest = (0..self.kept.len()).max_by_key(|&i| rank(&self.kept[i]));
        if let Some(weakest) = weakest.filter(|&i| rank(&self.kept[i]) > new_rank) {
            self.kept[weakest] = record;
        }
    }

    /// Returns the records to send, oldest first, and whether any were left out.
    fn finish(mut self) -> (Vec<v1::LogSearchRecord>, bool) {
        let truncated = self.dropped > 0 || self.kept.len() > self.max_records;
        if self.kept.len() > self.max_records {
            self.kept
                .sort_by_key(|record| (rank(record), record.time_unix_ms));
            self.kept.truncate(self.max_records);
        }
        self.kept.sort_by(|a, b| {
            (a.time_unix_ms, &a.file, a.line).cmp(&(b.time_unix_ms, &b.file, b.line))
        });
        (self.kept, truncated)
    }
}

/// 0 for a record classified as a fault, 1 for WARNING and above, 2 else.
fn rank(record: &v1::LogSearchRecord) -> u8 {
    if !record.signature_id.is_empty() {
        return 0;
    }
    let problem = ["WARNING", "ERROR", "CRITICAL", "TRACE"].contains(&record.level.as_str());
    if problem {
        1
    } else {
        2
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

fn format_unix_ms(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("Unix time {} s", unix_ms / 1000))
}

#[cfg(test)]
mod tests;
