//! Detecting a nova-compute that went silent: alive, but no longer doing its work.
//!
//! Silence alone is not a fault: nova-compute 26 (Zed) with `debug = False` logs
//! nothing periodic while healthy. The rule is therefore:
//!
//! 1. A *periodic series* is a run of INFO, AUDIT or DEBUG records of one process
//!    with the same logger and message start (up to the first digit, at most 48 bytes).
//!    It is established after [`MIN_REGULAR_INTERVALS`] consecutive intervals within
//!    10 % (or 2 s) of each other, with a period between 10 s and 1 h.
//!    `Final resource view` every 60 s is the usual example.
//! 2. Once a series is established, the log is *silent* when the next record of
//!    any kind arrives, or the end of the analysed span given by the caller is
//!    reached, more than `max(5 × period, 300 s)` after the process's last record.
//!
//! The fault's key evidence is the last record of the series, the last sign of life.

use crate::header::Level;
use crate::record::Record;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// Regular intervals a series needs before its absence means anything.
pub const MIN_REGULAR_INTERVALS: u32 = 3;
/// Shortest silence reported, whatever the period.
pub const MIN_SILENCE_MS: i64 = 300_000;
const SILENCE_PERIODS: i64 = 5;
const MIN_PERIOD_MS: i64 = 10_000;
const MAX_PERIOD_MS: i64 = 3_600_000;
/// Series tracked at once; new series are ignored past it, so memory stays bounded.
const MAX_SERIES: usize = 256;
const SERIES_KEY_BYTES: usize = 48;

#[derive(Debug, Clone)]
struct Series {
    last_ms: i64,
    period_ms: i64,
    regular_intervals: u32,
    last_record: Option<Box<Record>>,
}

/// A detected silence.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Last record of the established series before the silence.
    pub last_sign_of_life: Record,
    /// UTC-free local milliseconds of the last record of the process, and of the
    /// record (or span end) that ended the silence.
    pub silent_from_ms: i64,
    pub silent_until_ms: i64,
    pub period_ms: i64,
}

/// Learns periodic series and reports silences; see the module docs for the rule.
#[derive(Debug, Default)]
pub struct SilenceDetector {
    series: HashMap<u64, Series, std::hash::BuildHasherDefault<KeyHasher>>,
    last_record_ms: Option<i64>,
    last_pid: Option<u32>,
}

impl SilenceDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a record in log order; returns a silence that ended with this record.
    pub fn observe(&mut self, record: &Record) -> Option<Silence> {
        let now_ms = record.local_ms?;
        let silence = self.check(now_ms);
        if silence.is_some() {
            self.series.clear();
        }
        if record.pid != self.last_pid {
            // A new process (restart): its predecessor's series do not apply to it.
            self.series.clear();
            self.last_pid = record.pid;
        }
        self.last_record_ms = Some(now_ms);
        if matches!(record.level, Level::Info | Level::Audit | Level::Debug) {
            self.learn(record, now_ms);
        }
        silence
    }

    /// Reports a silence lasting until `now_ms` (local milliseconds), for the end
    /// of an analysed span or a live check. The detector keeps its state.
    pub fn check(&self, now_ms: i64) -> Option<Silence> {
        let last_ms = self.last_record_ms?;
        if now_ms - last_ms <= MIN_SILENCE_MS {
            return None;
        }
        let series = self
            .series
            .values()
            .filter(|s| s.regular_intervals >= MIN_REGULAR_INTERVALS)
            .max_by_key(|s| s.last_ms)?;
        let limit_ms = (SILENCE_PERIODS * series.period_ms).max(MIN_SILENCE_MS);
        if now_ms - last_ms <= limit_ms {
            return None;
        }
        Some(Silence {
            last_sign_of_life: series.last_record.as_deref()?.clone(),
            silent_from_ms: last_ms,
            silent_until_ms: now_ms,
            period_ms: series.period_ms,
        })
    }

    fn learn(&mut self, record: &Record, now_ms: i64) {
        let full = self.series.len() >= MAX_SERIES;
        let series = match self.series.entry(series_key(record)) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(_) if full => return,
            Entry::Vacant(new) => new.insert(Series {
                last_ms: now_ms,
                period_ms: 0,
                regular_intervals: 0,
                last_record: None,
            }),
        };
        let interval = now_ms - series.last_ms;
        if interval > 0 {
            let tolerance = (series.period_ms / 10).max(2_000);
            let steady = series.period_ms > 0 && (interval - series.period_ms).abs() <= tolerance;
            let in_range = (MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&interval);
            if steady && in_range {
                series.regular_intervals += 1;
            } else {
                series.period_ms = interval;
                series.regular_intervals = u32::from(in_range);
            }
        }
        series.last_ms = now_ms;
        if series.regular_intervals + 1 >= MIN_REGULAR_INTERVALS {
            match &mut series.last_record {
                Some(kept) => kept.as_mut().clone_from(record),
                None => series.last_record = Some(Box::new(record.clone())),
            }
        }
    }
}

/// Hashes pid, logger and the message start (up to its first digit) eight bytes
/// at a time. The key lives only in memory, so speed matters more than a value
/// stable across releases. It runs for every routine record.
fn series_key(record: &Record) -> u64 {
    let message = record.message().as_bytes();
    let start = &message[..message.len().min(SERIES_KEY_BYTES)];
    let start = &start[..first_digit(start).unwrap_or(start.len())];
    let seed = u64::from(record.pid.unwrap_or(0)) ^ 0x9e37_79b9_7f4a_7c15;
    let hash = hash_words(seed, record.logger().as_bytes());
    hash_words(hash, start)
}

/// Folds `bytes` into `hash` word by word, then adds their length so that
/// (`ab`, `c`) and (`a`, `bc`) differ.
fn hash_words(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        hash = mix(
            hash,
            u64::from_le_bytes(word.try_into().expect("8-byte chunk")),
        );
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    hash.wrapping_add(bytes.len() as u64)
}

fn mix(hash: u64, word: u64) -> u64 {
    (hash ^ word)
        .wrapping_mul(0xff51_afd7_ed55_8ccd)
        .rotate_left(29)
}

/// Index of the first ASCII digit, testing eight bytes per step.
fn first_digit(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mask = digit_mask(u64::from_le_bytes(word.try_into().expect("8-byte chunk")));
        if mask != 0 {
            return Some(offset + mask.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let tail = words.remainder().iter().position(u8::is_ascii_digit);
    tail.map(|p| offset + p)
}

/// Sets the high bit of the lowest byte of `word` (little endian) that is an ASCII
/// digit; higher bytes may carry false bits, so only the lowest set bit is exact.
///
/// `x = word ^ 0x30…` maps digits to 0..=9. `(x - 0x0a…) & !x & 0x80…` marks the
/// bytes below 10: the subtraction borrows into byte i's high bit exactly when
/// byte i is below 10 (or a lower byte borrowed, which only happens above the
/// lowest marked byte).
fn digit_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = word ^ (ONES * 0x30);
    x.wrapping_sub(ONES * 0x0a) & !x & (ONES * 0x80)
}

/// The series keys are already hashes, so the map uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse;

    fn line(minute: u32, second: u32, pid: u32, message: &str) -> String {
        format!("2026-08-20 10:{minute:02}:{second:02}.402 {pid} INFO nova.compute.resource_tracker [-] {message}\n")
    }

    fn run(log: &str) -> (Option<Silence>, SilenceDetector) {
        let mut detector = SilenceDetector::new();
        let mut found = None;
        for record in parse(log.as_bytes()) {
            found = found.or(detector.observe(&record));
        }
        (found, detector)
    }

    #[test]
    fn first_digit_matches_a_byte_scan() {
        let samples: [&[u8]; 7] = [
            b"",
            b"Final resource view: name=compute-03",
            b"Took 19.05 seconds",
            b"abcdefg9",
            b"abcdefgh/:9",
            b"\xff\x80\x39\x2f",
            b"no digits in this sentence at all, none",
        ];
        for sample in samples {
            let expected = sample.iter().position(u8::is_ascii_digit);
            assert_eq!(first_digit(sample), expected, "{sample:?}");
        }
        for byte in 0..=255u8 {
            let word = [b'x', b'x', b'x', byte, b'7', b'x', b'x', b'x'];
            let expected = word.iter().position(u8::is_ascii_digit);
            assert_eq!(first_digit(&word), expected, "byte {byte:#04x}");
        }
    }

    #[test]
    fn silence_after_steady_series_is_reported() {
        let mut log = String::new();
        for minute in 0..5 {
            log += &line(minute, 26, 41, "Final resource view: name=compute-03");
        }
        log += &line(30, 0, 41, "Caught SIGTERM, exiting");
        let (silence, _) = run(&log);
        let silence = silence.expect("silence after a 60 s series stopped for 26 min");
        assert_eq!(silence.period_ms, 60_000);
        assert!(silence.last_sign_of_life.text().contains("10:04:26.402"));
    }

    #[test]
    fn silence_is_not_reported_without_steady_series() {
        let log = line(0, 0, 41, "Starting compute node") + &line(40, 0, 41, "Instance spawned");
        assert!(run(&log).0.is_none());
        let mut log = String::new();
        for minute in [0, 1, 2] {
            log += &line(minute, 0, 41, "Final resource view: name=c");
        }
        log += &line(50, 0, 41, "Other");
        assert!(
            run(&log).0.is_none(),
            "two intervals do not establish a series"
        );
    }

    #[test]
    fn silence_short_of_limit_is_not_reported() {
        let mut log = String::new();
        for minute in 0..6 {
            log += &line(minute, 0, 41, "Final resource view: name=c");
        }
        log += &line(9, 0, 41, "Other");
        let (silence, detector) = run(&log);
        assert!(silence.is_none(), "4 min < max(5 periods, 300 s)");
        let span_end_ms = 1_787_220_000_000 + 3_600_000 * 24 * 365;
        assert!(
            detector.check(span_end_ms).is_some(),
            "a span ending much later is silent"
        );
    }
}
