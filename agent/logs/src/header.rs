//! Recognising the start of an oslo.log record in one line.
//!
//! A record line is `TIMESTAMP[.MSECS] [PID] LEVEL LOGGER [CONTEXT] [instance: UUID] MESSAGE`.
//! Every field after the level is optional, because the shape changed across releases:
//! Essex and Folsom write no msecs and no pid, Grizzly writes no pid on the record
//! line (only on its `TRACE` lines), and the context block holds from one to eight
//! tokens. The block is treated as opaque: only `req-<uuid>` tokens are taken from it.
//!
//! Lines may carry a wrapper in front of the oslo timestamp, which is stripped:
//! a syslog or journal prefix (`Mar  5 04:17:54 host nova_compute[117833]: `),
//! a Kubernetes CRI prefix (`2024-06-18T19:45:49.229745996+00:00 stdout F `) or a
//! research-dataset file name (`nova-compute.log.1.2017-05-16_13:55:31 `).

use serde::Serialize;
use std::ops::Range;

/// Log level of a line. `Trace` is the pre-Liberty traceback prefix, `Audit` the
/// nova level used up to Kilo, `Unknown` a line that is not a record line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Debug,
    Info,
    Audit,
    Trace,
    Warning,
    Error,
    Critical,
    #[default]
    Unknown,
}

impl Level {
    /// Parses an oslo.log level name; `WARN` and `FATAL` are the stdlib aliases.
    pub fn parse(token: &[u8]) -> Option<Level> {
        Some(match token {
            b"DEBUG" => Level::Debug,
            b"INFO" => Level::Info,
            b"AUDIT" => Level::Audit,
            b"TRACE" => Level::Trace,
            b"WARNING" | b"WARN" => Level::Warning,
            b"ERROR" => Level::Error,
            b"CRITICAL" | b"FATAL" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Audit => "AUDIT",
            Level::Trace => "TRACE",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }

    /// True for the levels that report a problem (and for lines of unknown level,
    /// which are read as possibly carrying one).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Level::Warning | Level::Error | Level::Critical | Level::Trace | Level::Unknown
        )
    }
}

/// The parsed start of a record line. Ranges index the line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The timestamp text as written (`2014-02-27 02:16:42.504`), used to tell
    /// traceback lines of the open record apart from new records.
    pub timestamp_text: Range<usize>,
    /// Local wall-clock time in milliseconds since 1970-01-01 00:00 of the same zone;
    /// `None` for a journal line without an oslo timestamp.
    pub local_ms: Option<i64>,
    pub pid: Option<u32>,
    pub level: Level,
    pub logger: Range<usize>,
    /// The bracket block after the logger (`[req-… user project]`, `[-]`), brackets included.
    pub context: Option<Range<usize>>,
    pub request_id: Option<Range<usize>>,
    pub global_request_id: Option<Range<usize>>,
    pub instance_uuid: Option<Range<usize>>,
    pub message: Range<usize>,
}

const UUID_LEN: usize = 36;

/// Parses `line` as a record line, or returns `None` for a continuation line.
pub fn parse_header(line: &str) -> Option<Header> {
    let bytes = line.as_bytes();
    let mut header = parse_header_lazy(bytes, &mut SecondCache::default())?;
    if let Some(context) = header.context.clone() {
        let (global, local) = request_ids(bytes, context);
        header.global_request_id = global;
        header.request_id = local;
    }
    Some(header)
}

/// Parses a record line like [`parse_header`], but leaves `request_id` and
/// `global_request_id` unset. The joiner reads them from the context block only
/// on request (see [`request_ids`]), which keeps routine records cheap.
pub(crate) fn parse_header_lazy(bytes: &[u8], cache: &mut SecondCache) -> Option<Header> {
    if let Some(header) = parse_oslo(bytes, 0, cache) {
        return Some(header);
    }
    let (start, journal) = wrapper_len(bytes)?;
    parse_oslo(bytes, start, cache).or_else(|| {
        if journal {
            parse_after_level(bytes, start, start..start, None, None)
        } else {
            None
        }
    })
}

/// Bytes of `YYYY-MM-DD HH:MM:SS`, the whole-second part of an oslo timestamp.
const SECOND_TEXT_BYTES: usize = 19;

/// The last whole-second timestamp text parsed and its value. Consecutive records
/// mostly share their second, and comparing 19 bytes costs far less than checking
/// their shape and converting the date again.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecondCache {
    text: [u8; SECOND_TEXT_BYTES],
    /// Local milliseconds of `text`; `None` until a timestamp was parsed.
    ms: Option<i64>,
}

impl SecondCache {
    /// Local milliseconds of the whole second at the start of `text`, or `None`
    /// when it is not a valid `YYYY-MM-DD HH:MM:SS`.
    fn second_ms(&mut self, text: &[u8; SECOND_TEXT_BYTES]) -> Option<i64> {
        if self.ms.is_some() && *text == self.text {
            return self.ms;
        }
        let ms = parse_second(text)?;
        self.text = *text;
        self.ms = Some(ms);
        Some(ms)
    }
}

/// Returns the length of a recognised wrapper prefix and whether it was a journal one.
fn wrapper_len(bytes: &[u8]) -> Option<(usize, bool)> {
    let head = &bytes[..bytes.len().min(512)];
    if head.len() > 16 && is_month(&head[..3]) && head[3] == b' ' {
        let end = memchr::memmem::find(head, b"]: ")?;
        return Some((end + 3, true));
    }
    let first_space = memchr::memchr(b' ', head)?;
    let first = &head[..first_space];
    if first.len() > 20 && first[10] == b'T' && is_digits(&first[..4]) {
        let rest = &head[first_space + 1..];
        let stream_ok = rest.starts_with(b"stdout ") || rest.starts_with(b"stderr ");
        if stream_ok && rest.len() > 9 && rest[8] == b' ' {
            return Some((first_space + 1 + 9, false));
        }
        return None;
    }
    if memchr::memmem::find(first, b".log").is_some() {
        return Some((first_space + 1, false));
    }
    None
}

fn is_month(token: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    MONTHS.contains(&token)
}

fn is_digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

fn parse_oslo(bytes: &[u8], start: usize, cache: &mut SecondCache) -> Option<Header> {
    let (local_ms, mut at) = parse_timestamp(bytes, start, cache)?;
    let timestamp_text = start..at;
    at = expect_space(bytes, at)?;
    let digits_end = digits_end(bytes, at);
    let mut pid = None;
    if digits_end > at && bytes.get(digits_end).is_none_or(|b| *b == b' ') {
        // A pid too large for u32 leaves the pid unknown but the line a record line.
        pid = parse_u32(&bytes[at..digits_end]);
        at = expect_space(bytes, digits_end)?;
    }
    parse_after_level(bytes, at, timestamp_text, Some(local_ms), pid)
}

/// End of the run of ASCII digits starting at `at`.
fn digits_end(bytes: &[u8], at: usize) -> usize {
    let run = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    at + run
}

/// Parses ASCII digits as a u32; `None` when the value overflows.
fn parse_u32(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn parse_after_level(
    bytes: &[u8],
    at: usize,
    timestamp_text: Range<usize>,
    local_ms: Option<i64>,
    pid: Option<u32>,
) -> Option<Header> {
    let (level, level_end) = level_at(bytes, at)?;
    let logger_start = skip_spaces(bytes, level_end);
    if logger_start == level_end && level_end < bytes.len() {
        return None;
    }
    let logger_end = token_end(bytes, logger_start);
    let mut header = Header {
        timestamp_text,
        local_ms,
        pid,
        level,
        logger: logger_start..logger_end,
        context: None,
        request_id: None,
        global_request_id: None,
        instance_uuid: None,
        message: bytes.len()..bytes.len(),
    };
    let mut at = skip_one_space(bytes, logger_end);
    if bytes[at..].starts_with(b"[") && !bytes[at..].starts_with(b"[instance: ") {
        if let Some(close) = memchr::memchr(b']', &bytes[at..]) {
            header.context = Some(at..at + close + 1);
            at = skip_one_space(bytes, at + close + 1);
        }
    }
    if let Some(uuid) = instance_tag(bytes, at) {
        header.instance_uuid = Some(uuid.clone());
        at = skip_one_space(bytes, uuid.end + 1);
    }
    header.message = at..bytes.len();
    Some(header)
}

/// Reads the level token at `at`; returns it and the index just past it.
///
/// Level names are at most 8 bytes, so only a short window is searched for the
/// space that ends the token: a longer word is no level, wherever it ends.
fn level_at(bytes: &[u8], at: usize) -> Option<(Level, usize)> {
    const LONGEST_LEVEL_BYTES: usize = 8;
    let rest = &bytes[at..];
    let window = &rest[..rest.len().min(LONGEST_LEVEL_BYTES + 1)];
    let len = match window.iter().position(|b| *b == b' ') {
        Some(len) => len,
        None if rest.len() <= LONGEST_LEVEL_BYTES => rest.len(),
        None => return None,
    };
    Level::parse(&rest[..len]).map(|level| (level, at + len))
}

/// Reads `YYYY-MM-DD HH:MM:SS` and optional `.mmm` (any number of fraction digits).
fn parse_timestamp(bytes: &[u8], start: usize, cache: &mut SecondCache) -> Option<(i64, usize)> {
    let second_text = bytes.get(start..start + SECOND_TEXT_BYTES)?;
    let second_text: &[u8; SECOND_TEXT_BYTES] = second_text.try_into().ok()?;
    let second_ms = cache.second_ms(second_text)?;
    let mut at = start + SECOND_TEXT_BYTES;
    let mut millis = 0i64;
    if bytes.get(at) == Some(&b'.') {
        let fraction_end = digits_end(bytes, at + 1);
        let fraction = &bytes[at + 1..fraction_end];
        if fraction.is_empty() {
            return None;
        }
        for i in 0..3 {
            let digit = fraction.get(i).map_or(0, |d| i64::from(d - b'0'));
            millis = millis * 10 + digit;
        }
        at = fraction_end;
    }
    Some((second_ms + millis, at))
}

/// Converts `YYYY-MM-DD HH:MM:SS` to local milliseconds since the epoch of its zone.
fn parse_second(ts: &[u8; SECOND_TEXT_BYTES]) -> Option<i64> {
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let shape_ok = ts[4] == b'-'
        && ts[7] == b'-'
        && ts[10] == b' '
        && ts[13] == b':'
        && ts[16] == b':'
        && DIGITS.iter().all(|&i| ts[i].is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let number = |r: Range<usize>| -> i64 {
        ts[r]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads the `req-<uuid>` tokens of a context block (`[…]`, brackets included):
/// returns (global request id, request id). With two leading ids the first is the
/// global one; otherwise the one found is the request id.
pub(crate) fn request_ids(
    bytes: &[u8],
    context: Range<usize>,
) -> (Option<Range<usize>>, Option<Range<usize>>) {
    let inner = context.start + 1..context.end - 1;
    let first = request_id_at(bytes, inner.start, inner.end);
    // The second token starts after the first space of the block.
    let second_start = memchr::memchr(b' ', &bytes[inner.clone()]).map(|p| inner.start + p + 1);
    let second = second_start.and_then(|at| request_id_at(bytes, at, inner.end));
    match (first, second) {
        (Some(global), Some(local)) => (Some(global), Some(local)),
        (Some(local), None) | (None, Some(local)) => (None, Some(local)),
        (None, None) => {
            let found = memchr::memmem::find(&bytes[inner.clone()], b"req-");
            (
                None,
                found.and_then(|p| request_id_at(bytes, inner.start + p, inner.end)),
            )
        }
    }
}

/// Returns the range of a `req-<uuid>` token starting at `at` and ending by `end`.
fn request_id_at(bytes: &[u8], at: usize, end: usize) -> Option<Range<usize>> {
    let token_end = at + 4 + UUID_LEN;
    if token_end > end || !is_request_id(&bytes[at..token_end]) {
        return None;
    }
    let ends_token = token_end == end || bytes[token_end] == b' ';
    ends_token.then_some(at..token_end)
}

fn is_request_id(token: &[u8]) -> bool {
    token.len() == 4 + UUID_LEN && token.starts_with(b"req-") && is_uuid(&token[4..])
}

/// Checks the `8-4-4-4-12` hex shape of a UUID.
pub fn is_uuid(token: &[u8]) -> bool {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    token.len() == UUID_LEN
        && DASHES.iter().all(|&i| token[i] == b'-')
        && token.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
}

/// Returns the UUID range of an `[instance: UUID]` tag starting at `at`.
pub fn instance_tag(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    const TAG: &[u8] = b"[instance: ";
    let rest = bytes.get(at..)?;
    if !rest.starts_with(TAG) {
        return None;
    }
    let start = at + TAG.len();
    let uuid = bytes.get(start..start + UUID_LEN)?;
    (is_uuid(uuid) && bytes.get(start + UUID_LEN) == Some(&b']')).then(|| start..start + UUID_LEN)
}

fn token_end(bytes: &[u8], at: usize) -> usize {
    memchr::memchr(b' ', &bytes[at..]).map_or(bytes.len(), |p| at + p)
}

fn expect_space(bytes: &[u8], at: usize) -> Option<usize> {
    (bytes.get(at) == Some(&b' ')).then_some(at + 1)
}

fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    at
}

fn skip_one_space(bytes: &[u8], at: usize) -> usize {
    if bytes.get(at) == Some(&b' ') {
        at + 1
    } else {
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(line: &str, range: Option<Range<usize>>) -> Option<&str> {
        range.map(|r| &line[r])
    }

    #[test]
    fn header_reads_current_context_with_global_id() {
        let line = "2023-12-16 11:07:45.380 2 ERROR nova.virt.libvirt.driver [None req-78b1b81e-4593-4487-a397-d34b7449cc11 3ac5 ed81 - - default default] [instance: 4e89ad74-e6f6-4941-8182-9be3186e2bc2] Live Migration failure: x";
        let h = parse_header(line).expect("record line");
        assert_eq!(h.pid, Some(2));
        assert_eq!(h.level, Level::Error);
        assert_eq!(&line[h.logger.clone()], "nova.virt.libvirt.driver");
        assert_eq!(
            field(line, h.request_id.clone()),
            Some("req-78b1b81e-4593-4487-a397-d34b7449cc11")
        );
        assert_eq!(h.global_request_id, None);
        assert_eq!(
            field(line, h.instance_uuid.clone()),
            Some("4e89ad74-e6f6-4941-8182-9be3186e2bc2")
        );
        assert_eq!(&line[h.message], "Live Migration failure: x");
    }

    #[test]
    fn header_reads_global_and_local_request_ids() {
        let line = "2024-01-01 00:00:00.000 7 INFO nova.compute.manager [req-11111111-1111-1111-1111-111111111111 req-22222222-2222-2222-2222-222222222222 u p - - d d] hello";
        let h = parse_header(line).expect("record line");
        assert_eq!(
            field(line, h.global_request_id),
            Some("req-11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(
            field(line, h.request_id),
            Some("req-22222222-2222-2222-2222-222222222222")
        );
    }

    #[test]
    fn header_reads_essex_line_without_msecs_or_pid() {
        let line = "2012-07-05 22:00:31 TRACE nova.rpc.amqp Timeout: Timeout while waiting";
        let h = parse_header(line).expect("record line");
        assert_eq!(h.pid, None);
        assert_eq!(h.level, Level::Trace);
        assert_eq!(&line[h.message], "Timeout: Timeout while waiting");
    }

    #[test]
    fn header_reads_grizzly_line_without_pid() {
        let line = "2013-05-13 15:59:38.717 ERROR nova.compute.manager [req-14162a7e-b865-4f9b-83e3-e137825f52a0 u p] [instance: 84203083-59b4-41be-b4b7-c2739eb55ccd] Instance failed network setup";
        let h = parse_header(line).expect("record line");
        assert_eq!(h.pid, None);
        assert!(h.context.is_some());
        assert!(h.instance_uuid.is_some());
    }

    #[test]
    fn header_strips_journal_cri_and_dataset_prefixes() {
        let journal = "Mar  5 04:17:54 compute-01 nova_compute[117833]: 2024-03-05 09:17:54.318 2 ERROR os_vif [-] boom";
        let cri = "2024-06-18T19:45:49.229745996+00:00 stdout F 2024-06-18 19:45:49.229 15 DEBUG nova.x [-] y";
        let dataset = "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:00:04.500 2931 INFO nova.compute.manager [-] z";
        assert_eq!(parse_header(journal).map(|h| h.pid), Some(Some(2)));
        assert_eq!(parse_header(cri).map(|h| h.level), Some(Level::Debug));
        assert_eq!(parse_header(dataset).map(|h| h.pid), Some(Some(2931)));
        let devstack = "Sep 05 09:02:06 host nova-compute[15144]: DEBUG nova.compute.resource_tracker [None req-11111111-1111-1111-1111-111111111111 admin admin] x";
        let h = parse_header(devstack).expect("journal line without oslo timestamp");
        assert_eq!(h.local_ms, None);
        assert_eq!(h.level, Level::Debug);
    }

    #[test]
    fn header_rejects_continuation_lines() {
        assert!(parse_header("  <name>instance-0000000a</name>").is_none());
        assert!(parse_header("[u'Traceback (most recent call last):\\n']").is_none());
        assert!(parse_header("2012-07-05 22:00:31 NOTALEVEL x").is_none());
        assert!(parse_header("").is_none());
    }

    #[test]
    fn timestamp_converts_to_epoch_milliseconds() {
        let h = parse_header("1970-01-02 00:00:01.5 1 INFO x [-] y").expect("record line");
        assert_eq!(h.local_ms, Some(86_400_000 + 1_500));
        let h = parse_header("2000-03-01 00:00:00 INFO x [-] y").expect("record line");
        assert_eq!(h.local_ms, Some(951_868_800_000));
    }
}
