//! Joining lines into records: a record line plus its traceback and continuation lines.

use crate::header::{instance_tag, parse_header_lazy, request_ids, Header, Level, SecondCache};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::ops::Range;

/// Lines kept per record; later lines are counted in [`Record::dropped_lines`].
/// 500 fits any real traceback (chained Python 3 tracebacks run to about 150 lines).
pub const MAX_RECORD_LINES: usize = 500;
/// Bytes of text kept per record; later lines are counted as dropped.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// One log record: its first line and every line attached to it.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// 1-based number of the record's first line in its source.
    pub first_line: u64,
    /// Lines that belong to the record, kept or dropped.
    pub line_count: u64,
    /// Lines past [`MAX_RECORD_LINES`] or [`MAX_RECORD_BYTES`], counted but not kept.
    pub dropped_lines: u64,
    /// Bytes cut from over-long lines of the record.
    pub truncated_bytes: u64,
    pub level: Level,
    pub pid: Option<u32>,
    /// Local wall-clock milliseconds since the epoch of the node's zone.
    pub local_ms: Option<i64>,
    text: String,
    timestamp_text: Range<usize>,
    logger: Range<usize>,
    message: Range<usize>,
    /// The first line's context block (`[req-… user project]`), from which the
    /// request ids are read on demand, because most records never need them.
    context: Option<Range<usize>>,
    instance_uuid: Option<Range<usize>>,
}

impl Record {
    /// The kept lines joined with `\n`, as written (invalid UTF-8 replaced by U+FFFD).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }

    /// Logger name, empty for a line that matched no record shape.
    pub fn logger(&self) -> &str {
        &self.text[self.logger.clone()]
    }

    /// The text from the first line's message on (continuation lines included).
    pub fn text_from_message(&self) -> &str {
        &self.text[self.message.start..]
    }

    /// Message of the first line (after the context block and instance tag).
    pub fn message(&self) -> &str {
        &self.text[self.message.clone()]
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_ids().1.map(|r| &self.text[r])
    }

    pub fn global_request_id(&self) -> Option<&str> {
        self.request_ids().0.map(|r| &self.text[r])
    }

    /// (global request id, request id) ranges read from the context block.
    fn request_ids(&self) -> (Option<Range<usize>>, Option<Range<usize>>) {
        match self.context.clone() {
            Some(context) => request_ids(self.text.as_bytes(), context),
            None => (None, None),
        }
    }

    /// UUID from the first `[instance: UUID]` tag of the record's lines.
    pub fn instance_uuid(&self) -> Option<&str> {
        self.instance_uuid.clone().map(|r| &self.text[r])
    }

    /// Last line number of the record in its source.
    pub fn last_line(&self) -> u64 {
        self.first_line + self.line_count.saturating_sub(1)
    }

    fn start(&mut self, line_number: u64, line: &str, header: Option<&Header>, truncated: u64) {
        self.text.clear();
        self.text.push_str(line);
        self.first_line = line_number;
        self.line_count = 1;
        self.dropped_lines = 0;
        self.truncated_bytes = truncated;
        match header {
            Some(h) => {
                self.level = h.level;
                self.pid = h.pid;
                self.local_ms = h.local_ms;
                self.timestamp_text = h.timestamp_text.clone();
                self.logger = h.logger.clone();
                self.message = h.message.clone();
                self.context = h.context.clone();
                self.instance_uuid = h.instance_uuid.clone();
            }
            None => {
                self.level = Level::Unknown;
                self.pid = None;
                self.local_ms = None;
                self.timestamp_text = 0..0;
                self.logger = 0..0;
                self.message = 0..line.len();
                self.context = None;
                self.instance_uuid = None;
            }
        }
    }

    fn append(&mut self, line: &str, header: Option<&Header>, truncated: u64) {
        self.line_count += 1;
        self.truncated_bytes += truncated;
        let stored = self.line_count - self.dropped_lines;
        if stored > MAX_RECORD_LINES as u64 || self.text.len() + 1 + line.len() > MAX_RECORD_BYTES {
            self.dropped_lines += 1;
            return;
        }
        let offset = self.text.len() + 1;
        self.text.push('\n');
        self.text.push_str(line);
        if self.instance_uuid.is_none() {
            let tag = header.and_then(|h| h.instance_uuid.clone());
            let tag = tag.or_else(|| find_instance_tag(line));
            self.instance_uuid = tag.map(|r| offset + r.start..offset + r.end);
        }
    }

    /// True when `header` is a traceback line of this record rather than a new record.
    ///
    /// `TRACE` lines (up to Kilo) always continue a record of the same logger. Later
    /// releases prefix traceback lines with `ERROR`. Such a line has no context block,
    /// while every record line has one (`[-]` at least), and it repeats the record's
    /// timestamp, pid and logger.
    fn owns_traceback_line(&self, line: &str, header: &Header) -> bool {
        if header.context.is_some() || line[header.logger.clone()] != *self.logger() {
            return false;
        }
        match header.level {
            Level::Trace => true,
            Level::Error => {
                let same_time =
                    line[header.timestamp_text.clone()] == self.text[self.timestamp_text.clone()];
                let same_pid = match (header.pid, self.pid) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                same_time && same_pid
            }
            _ => false,
        }
    }
}

fn find_instance_tag(line: &str) -> Option<Range<usize>> {
    let at = memchr::memmem::find(line.as_bytes(), b"[instance: ")?;
    instance_tag(line.as_bytes(), at)
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Record", 10)?;
        s.serialize_field("first_line", &self.first_line)?;
        s.serialize_field("line_count", &self.line_count)?;
        s.serialize_field("level", &self.level)?;
        s.serialize_field("pid", &self.pid)?;
        s.serialize_field("logger", self.logger())?;
        s.serialize_field("request_id", &self.request_id())?;
        s.serialize_field("global_request_id", &self.global_request_id())?;
        s.serialize_field("instance_uuid", &self.instance_uuid())?;
        s.serialize_field("dropped_lines", &self.dropped_lines)?;
        s.serialize_field("text", self.text())?;
        s.end()
    }
}

/// Streaming state machine that turns lines into records.
///
/// Feed lines with [`Joiner::push_line`]; it returns a record once the next record
/// line shows that the record is complete, and [`Joiner::finish`] returns the last
/// one. The returned record is borrowed and its buffer is reused for a later record,
/// so a caller that keeps it must clone it.
#[derive(Debug, Default)]
pub struct Joiner {
    current: Record,
    finished: Record,
    has_current: bool,
    lines_read: u64,
    seconds: SecondCache,
}

impl Joiner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lines pushed so far.
    pub fn lines_read(&self) -> u64 {
        self.lines_read
    }

    /// Pushes one line (without its newline; any bytes) and returns the record it completes.
    pub fn push_line(&mut self, line: &[u8], truncated_bytes: u64) -> Option<&Record> {
        self.lines_read += 1;
        let line_number = self.lines_read;
        // from_utf8 validates with a fast path for ASCII; the lossy decoder is
        // only needed for the rare line with invalid bytes.
        let text = match std::str::from_utf8(line) {
            Ok(valid) => std::borrow::Cow::Borrowed(valid),
            Err(_) => String::from_utf8_lossy(line),
        };
        let header = parse_header_lazy(text.as_bytes(), &mut self.seconds);
        if self.has_current {
            let continues = match &header {
                Some(h) => self.current.owns_traceback_line(&text, h),
                None => true,
            };
            if continues {
                self.current.append(&text, header.as_ref(), truncated_bytes);
                return None;
            }
            std::mem::swap(&mut self.current, &mut self.finished);
        }
        self.current
            .start(line_number, &text, header.as_ref(), truncated_bytes);
        let completed = self.has_current;
        self.has_current = true;
        completed.then_some(&self.finished)
    }

    /// Returns the open record, if any, and leaves the joiner empty.
    pub fn finish(&mut self) -> Option<&Record> {
        if !self.has_current {
            return None;
        }
        self.has_current = false;
        std::mem::swap(&mut self.current, &mut self.finished);
        Some(&self.finished)
    }
}

/// Joins a whole buffer into owned records (for offline reading of small files).
pub fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut joiner = Joiner::new();
    let mut splitter = crate::lines::LineSplitter::new();
    let mut push = |line: &[u8], truncated: u64| {
        if let Some(record) = joiner.push_line(line, truncated) {
            records.push(record.clone());
        }
    };
    splitter.feed(bytes, &mut push);
    splitter.finish(&mut push);
    if let Some(record) = joiner.finish() {
        records.push(record.clone());
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::parse_header;

    const CRITICAL_WITH_ERROR_TRACEBACK: &str = "\
2025-07-09 20:26:51.880 7 INFO nova.virt.driver [-] Loading compute driver 'libvirt.LibvirtDriver'
2025-07-09 20:26:53.557 7 CRITICAL nova [-] Unhandled error: oslo_config.cfg.ConfigFileValueError: bad
2025-07-09 20:26:53.557 7 ERROR nova Traceback (most recent call last):
2025-07-09 20:26:53.557 7 ERROR nova   File \"x.py\", line 1, in <module>
2025-07-09 20:26:53.557 7 ERROR nova oslo_config.cfg.ConfigFileValueError: bad
2025-07-09 20:26:53.600 7 ERROR nova [-] a new record
";

    #[test]
    fn joiner_keeps_critical_level_over_error_traceback() {
        let records = parse(CRITICAL_WITH_ERROR_TRACEBACK.as_bytes());
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].level, Level::Critical);
        assert_eq!(records[1].line_count, 4);
        assert_eq!(records[2].level, Level::Error);
        assert_eq!(records[2].message(), "a new record");
    }

    #[test]
    fn joiner_splits_same_timestamp_records() {
        let log = "\
2020-01-01 00:00:00.000 1 ERROR nova.compute.manager [req-11111111-1111-1111-1111-111111111111 u p] first
2020-01-01 00:00:00.000 1 ERROR nova.compute.manager [req-11111111-1111-1111-1111-111111111111 u p] second
";
        let records = parse(log.as_bytes());
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn joiner_attaches_unprefixed_lines_and_instance_from_traceback() {
        let log = "\
2014-02-27 02:16:42.504 7854 ERROR nova.virt.libvirt.driver [-] failed: <domain>
  <name>x</name>
</domain>
2014-02-27 02:16:42.504 7854 TRACE nova.virt.libvirt.driver [instance: 69b0fe46-cb0f-48c4-ba76-66f8debe8b96] Traceback
";
        let records = parse(log.as_bytes());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].line_count, 4);
        assert_eq!(
            records[0].instance_uuid(),
            Some("69b0fe46-cb0f-48c4-ba76-66f8debe8b96")
        );
    }

    #[test]
    fn record_ids_and_times_match_header() {
        let log = "\
2024-01-01 00:00:00.250 7 INFO nova.compute.manager [req-11111111-1111-1111-1111-111111111111 req-22222222-2222-2222-2222-222222222222 u p - - d d] one
2024-01-01 00:00:00.750 7 INFO nova.compute.manager [None req-33333333-3333-3333-3333-333333333333 u p] two
2024-01-01 00:00:01 7 INFO nova.compute.manager no context
";
        let records = parse(log.as_bytes());
        assert_eq!(records.len(), 3);
        for record in &records {
            let header = parse_header(record.text()).expect("record line");
            let field = |r: Option<Range<usize>>| r.map(|r| &record.text()[r]);
            assert_eq!(record.request_id(), field(header.request_id.clone()));
            assert_eq!(record.global_request_id(), field(header.global_request_id));
            assert_eq!(record.local_ms, header.local_ms);
        }
        assert_eq!(
            records[0].global_request_id(),
            Some("req-11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(
            records[1].request_id(),
            Some("req-33333333-3333-3333-3333-333333333333")
        );
        assert_eq!(records[2].request_id(), None);
        let base_ms = records[0].local_ms.expect("timestamp");
        assert_eq!(records[1].local_ms, Some(base_ms + 500));
        assert_eq!(records[2].local_ms, Some(base_ms + 750));
    }

    #[test]
    fn joiner_caps_record_lines_but_counts_them() {
        let mut log = String::from("2020-01-01 00:00:00.000 1 ERROR x [-] start\n");
        for _ in 0..(MAX_RECORD_LINES + 20) {
            log.push_str("continuation\n");
        }
        let records = parse(log.as_bytes());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].line_count, MAX_RECORD_LINES as u64 + 21);
        assert_eq!(records[0].dropped_lines, 21);
        assert_eq!(records[0].lines().count(), MAX_RECORD_LINES);
    }

    #[test]
    fn joiner_makes_orphan_record_from_leading_continuation() {
        let records = parse(b"\xff\xfe orphan\n2020-01-01 00:00:00 INFO x [-] y\n");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].level, Level::Unknown);
        assert!(records[0].text().contains('\u{FFFD}'));
    }
}
