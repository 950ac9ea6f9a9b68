//! Live fault state: which faults are active, how often each kind occurred, and
//! whether a restart of nova-compute would help.
//!
//! Times: records carry local wall-clock time without a zone. The tracker turns
//! them into UTC with the node's offset, given at construction.

use crate::catalogue::{Catalogue, FaultKind, Severity};
use crate::classify::Classification;
use crate::record::Record;
use crate::redact::redact_sample;
use crate::silence::{Silence, SilenceDetector};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use time::UtcOffset;

/// Id of the fault raised by the silence rule (see [`crate::silence`]).
pub const SILENCE_SIGNATURE_ID: &str = "service-silent-after-periodic-lines";
/// How long a detected silence stays active when nothing ends it.
const SILENCE_WINDOW_SECONDS: u64 = 3600;
/// Instance UUIDs kept per fault.
const MAX_INSTANCES_PER_FAULT: usize = 100;

/// One active fault.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    pub signature_id: String,
    pub fault_kind: FaultKind,
    pub severity: Severity,
    #[serde(serialize_with = "serialize_utc_ms")]
    pub first_seen_utc_ms: i64,
    #[serde(serialize_with = "serialize_utc_ms")]
    pub last_seen_utc_ms: i64,
    pub count: u64,
    /// First 512 bytes of the last matching record, secrets redacted (filled by
    /// [`FaultTracker::summary`]).
    pub sample: String,
    pub sample_line: u64,
    pub instance_uuids: BTreeSet<String>,
    pub restart_helps: bool,
    pub restart_reason: String,
    pub advice: String,
    pub window_seconds: u64,
    /// Start of the last matching record, unredacted. Redacting on every record
    /// would cost more than the rest of the pipeline, so `summary` does it.
    #[serde(skip)]
    raw_sample: String,
    #[serde(skip)]
    signature_index: Option<usize>,
}

/// Bytes of a record kept for its sample and advice until a summary is made.
const RAW_SAMPLE_BYTES: usize = 4096;

/// Occurrences of one fault kind in recent time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindCount {
    pub fault_kind: FaultKind,
    pub last_5_minutes: u64,
    pub last_hour: u64,
}

/// Whether restarting nova-compute is recommended now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartVerdict {
    pub restart_helps: bool,
    pub reason: String,
    /// Signature of the dependency outage that vetoed a restart, if any.
    pub vetoed_by: Option<String>,
}

/// Snapshot of the tracker for reporting.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSummary {
    pub active: Vec<ActiveFault>,
    pub counts: Vec<KindCount>,
    pub restart: RestartVerdict,
}

/// Changes caused by one record.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub classification: Classification,
    /// A silence that this record ended.
    pub silence: Option<Silence>,
    /// Signature ids cleared by this record's recovery patterns.
    pub cleared: Vec<String>,
}

/// Keeps active faults and per-kind counts from a stream of records.
#[derive(Debug)]
pub struct FaultTracker {
    catalogue: Arc<Catalogue>,
    utc_offset: UtcOffset,
    active: BTreeMap<String, ActiveFault>,
    /// Per kind: (UTC minute, occurrences) for the last hour.
    recent: HashMap<FaultKind, VecDeque<(i64, u64)>>,
    silence: SilenceDetector,
    last_utc_ms: Option<i64>,
    /// True when `active` may hold a fault under [`SILENCE_SIGNATURE_ID`], so the
    /// map is searched for it only then rather than for every record.
    silence_may_be_active: bool,
}

impl FaultTracker {
    pub fn new(catalogue: Arc<Catalogue>, utc_offset: UtcOffset) -> Self {
        FaultTracker {
            catalogue,
            utc_offset,
            active: BTreeMap::new(),
            recent: HashMap::new(),
            silence: SilenceDetector::new(),
            last_utc_ms: None,
            silence_may_be_active: false,
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Converts a record's local milliseconds to UTC milliseconds.
    pub fn to_utc_ms(&self, local_ms: i64) -> i64 {
        local_ms - i64::from(self.utc_offset.whole_seconds()) * 1000
    }

    /// Classifies a record and updates the state with it.
    pub fn observe(&mut self, record: &Record) -> Observation {
        let classification = self.catalogue.classify(record);
        self.observe_classified(record, classification)
    }

    /// Updates the state with a record classified by the caller.
    pub fn observe_classified(
        &mut self,
        record: &Record,
        classification: Classification,
    ) -> Observation {
        let utc_ms = record
            .local_ms
            .map(|ms| self.to_utc_ms(ms))
            .or(self.last_utc_ms);
        if let Some(ms) = utc_ms {
            // Windows are whole seconds, so expiring once per second of log time is enough.
            if self
                .last_utc_ms
                .is_none_or(|last| ms.div_euclid(1000) != last.div_euclid(1000))
            {
                self.expire(ms);
            }
            self.last_utc_ms = Some(ms);
        }
        let silence = self.silence.observe(record);
        // Any record means the process is logging again.
        if self.silence_may_be_active {
            self.active.remove(SILENCE_SIGNATURE_ID);
            self.silence_may_be_active = false;
        }
        let mut cleared = Vec::new();
        for &index in &classification.recovers {
            let id = &self.catalogue.signature(index).id;
            if self.active.remove(id).is_some() {
                cleared.push(id.clone());
            }
        }
        if let Some(index) = classification.fault {
            self.record_fault(index, record, utc_ms.unwrap_or(0));
        }
        Observation {
            classification,
            silence,
            cleared,
        }
    }

    /// Raises the silence fault if the log has been silent until `now_utc_ms`
    /// (see [`crate::silence`]); returns the silence found.
    pub fn check_silence(&mut self, now_utc_ms: i64) -> Option<Silence> {
        let now_local_ms = now_utc_ms + i64::from(self.utc_offset.whole_seconds()) * 1000;
        let silence = self.silence.check(now_local_ms)?;
        let last_seen = self.to_utc_ms(silence.last_sign_of_life.local_ms.unwrap_or(now_local_ms));
        let fault = silence_fault(&silence, last_seen, now_utc_ms);
        self.active.insert(SILENCE_SIGNATURE_ID.to_string(), fault);
        self.silence_may_be_active = true;
        Some(silence)
    }

    /// Drops faults that did not recur within their window before `now_utc_ms`.
    pub fn expire(&mut self, now_utc_ms: i64) {
        self.active.retain(|_, f| {
            let window_ms = f.window_seconds as i64 * 1000;
            now_utc_ms - f.last_seen_utc_ms <= window_ms
        });
        let oldest_minute = now_utc_ms.div_euclid(60_000) - 59;
        for buckets in self.recent.values_mut() {
            while buckets
                .front()
                .is_some_and(|(minute, _)| *minute < oldest_minute)
            {
                buckets.pop_front();
            }
        }
    }

    /// Returns the active faults, counts per kind and the restart verdict at `now_utc_ms`.
    pub fn summary(&self, now_utc_ms: i64) -> FaultSummary {
        let now_minute = now_utc_ms.div_euclid(60_000);
        let mut counts: Vec<KindCount> = self
            .recent
            .iter()
            .map(|(kind, buckets)| {
                let in_last = |minutes: i64| -> u64 {
                    buckets
                        .iter()
                        .filter(|(m, _)| now_minute - m < minutes)
                        .map(|(_, c)| c)
                        .sum()
                };
                KindCount {
                    fault_kind: *kind,
                    last_5_minutes: in_last(5),
                    last_hour: in_last(60),
                }
            })
            .filter(|c| c.last_hour > 0)
            .collect();
        counts.sort_by_key(|c| c.fault_kind);
        let active: Vec<ActiveFault> = self.active.values().map(|f| self.finish_fault(f)).collect();
        let restart = restart_verdict(&active);
        FaultSummary {
            active,
            counts,
            restart,
        }
    }

    /// Returns a copy of `fault` with its redacted sample and rendered advice.
    fn finish_fault(&self, fault: &ActiveFault) -> ActiveFault {
        let mut finished = fault.clone();
        if let Some(index) = fault.signature_index {
            finished.sample = redact_sample(&fault.raw_sample);
            finished.advice = self
                .catalogue
                .signature(index)
                .render_advice(&fault.raw_sample);
        }
        finished.raw_sample = String::new();
        finished
    }

    fn record_fault(&mut self, index: usize, record: &Record, utc_ms: i64) {
        let signature = self.catalogue.signature(index);
        let minute = utc_ms.div_euclid(60_000);
        let buckets = self.recent.entry(signature.fault_kind).or_default();
        match buckets.back_mut() {
            Some((m, count)) if *m == minute => *count += 1,
            _ => buckets.push_back((minute, 1)),
        }
        // An operator signature may reuse the silence id; it is then cleared the
        // same way by the next record.
        self.silence_may_be_active |= signature.id == SILENCE_SIGNATURE_ID;
        if !self.active.contains_key(&signature.id) {
            self.active
                .insert(signature.id.clone(), new_fault(index, signature, utc_ms));
        }
        let fault = self.active.get_mut(&signature.id).expect("inserted above");
        fault.count += 1;
        fault.last_seen_utc_ms = utc_ms;
        fault.sample_line = record.first_line;
        fault.raw_sample.clear();
        fault
            .raw_sample
            .push_str(prefix(record.text(), RAW_SAMPLE_BYTES));
        if let Some(uuid) = record.instance_uuid() {
            if fault.instance_uuids.len() < MAX_INSTANCES_PER_FAULT {
                fault.instance_uuids.insert(uuid.to_string());
            }
        }
    }
}

fn new_fault(index: usize, signature: &crate::Signature, utc_ms: i64) -> ActiveFault {
    ActiveFault {
        signature_id: signature.id.clone(),
        fault_kind: signature.fault_kind,
        severity: signature.severity,
        first_seen_utc_ms: utc_ms,
        last_seen_utc_ms: utc_ms,
        count: 0,
        sample: String::new(),
        sample_line: 0,
        instance_uuids: BTreeSet::new(),
        restart_helps: signature.restart_helps,
        restart_reason: signature.restart_reason.clone(),
        advice: String::new(),
        window_seconds: signature.window_seconds,
        raw_sample: String::new(),
        signature_index: Some(index),
    }
}

/// Returns the longest prefix of `text` of at most `max_bytes` bytes.
fn prefix(text: &str, max_bytes: usize) -> &str {
    let mut cut = text.len().min(max_bytes);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

fn silence_fault(silence: &Silence, last_seen_utc_ms: i64, now_utc_ms: i64) -> ActiveFault {
    let silent_minutes = (silence.silent_until_ms - silence.silent_from_ms) / 60_000;
    ActiveFault {
        signature_id: SILENCE_SIGNATURE_ID.to_string(),
        fault_kind: FaultKind::ServiceHung,
        severity: Severity::Error,
        first_seen_utc_ms: last_seen_utc_ms,
        last_seen_utc_ms: now_utc_ms,
        count: 1,
        sample: redact_sample(silence.last_sign_of_life.text()),
        sample_line: silence.last_sign_of_life.first_line,
        instance_uuids: BTreeSet::new(),
        restart_helps: true,
        restart_reason: silence_restart_reason(silence.period_ms, silent_minutes),
        advice: SILENCE_ADVICE.to_string(),
        window_seconds: SILENCE_WINDOW_SECONDS,
        raw_sample: String::new(),
        signature_index: None,
    }
}

pub(crate) const SILENCE_ADVICE: &str = "Restart nova-compute (`systemctl restart nova-compute`). \
Before that, if you can, record where it is stuck (`py-spy dump --pid PID`), and check RabbitMQ \
and libvirtd, which a hung nova-compute most often waits on.";

pub(crate) fn silence_restart_reason(period_ms: i64, silent_minutes: i64) -> String {
    format!(
        "the process logged a periodic line every {} s, then nothing for {} min while it stayed \
         up: it is hung, and a restart starts it afresh",
        period_ms / 1000,
        silent_minutes
    )
}

/// Restart verdict over the active faults: the most severe one decides, unless a
/// dependency outage (messaging, placement, database) is active, which vetoes a
/// restart because nova-compute is retrying that dependency by itself.
pub fn restart_verdict(active: &[ActiveFault]) -> RestartVerdict {
    if let Some(outage) = active.iter().find(|f| f.fault_kind.is_dependency_outage()) {
        return RestartVerdict {
            restart_helps: false,
            reason: format!(
                "nova-compute is retrying a dependency that is down ({}: {}); a restart would \
                 only interrupt the retry",
                outage.fault_kind, outage.restart_reason
            ),
            vetoed_by: Some(outage.signature_id.clone()),
        };
    }
    let primary = active
        .iter()
        .max_by_key(|f| (f.severity, f.last_seen_utc_ms));
    match primary {
        Some(fault) => RestartVerdict {
            restart_helps: fault.restart_helps,
            reason: fault.restart_reason.clone(),
            vetoed_by: None,
        },
        None => RestartVerdict {
            restart_helps: false,
            reason: "no active fault in nova-compute's log".to_string(),
            vetoed_by: None,
        },
    }
}

/// Formats UTC epoch milliseconds as RFC 3339 (`2024-03-05T09:17:54.318Z`).
pub fn format_utc_ms(utc_ms: i64) -> String {
    let nanos = i128::from(utc_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{utc_ms} ms"))
}

fn serialize_utc_ms<S: Serializer>(utc_ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_utc_ms(*utc_ms))
}

/// Returns the local UTC offset of this host, or UTC when it cannot be read
/// (the `time` crate refuses to read it once several threads run).
pub fn local_utc_offset() -> UtcOffset {
    match UtcOffset::current_local_offset() {
        Ok(offset) => offset,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the local UTC offset; reading log times as UTC");
            UtcOffset::UTC
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse;

    fn tracker() -> FaultTracker {
        let (catalogue, _) = Catalogue::shipped();
        FaultTracker::new(
            Arc::new(catalogue),
            UtcOffset::from_hms(2, 0, 0).expect("offset"),
        )
    }

    const OUTAGE: &str = "\
2024-03-05 10:00:00.000 5 ERROR oslo.messaging._drivers.impl_rabbit [-] [abc] AMQP server on 192.0.2.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED
2024-03-05 10:00:01.000 5 ERROR oslo.messaging._drivers.impl_rabbit [-] [abc] AMQP server on 192.0.2.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED
2024-03-05 10:00:02.000 5 ERROR nova.compute.manager [req-11111111-1111-1111-1111-111111111111 - - - - -] [instance: 4e89ad74-e6f6-4941-8182-9be3186e2bc2] Instance failed to spawn: libvirt.libvirtError: internal error
";

    #[test]
    fn tracker_vetoes_restart_during_broker_outage() {
        let mut tracker = tracker();
        for record in parse(OUTAGE.as_bytes()) {
            tracker.observe(&record);
        }
        let now = tracker.to_utc_ms(1_709_632_802_000);
        let summary = tracker.summary(now);
        assert_eq!(summary.active.len(), 2);
        assert!(!summary.restart.restart_helps);
        assert_eq!(
            summary.restart.vetoed_by.as_deref(),
            Some("amqp-broker-unreachable")
        );
        let messaging = summary
            .counts
            .iter()
            .find(|c| c.fault_kind == FaultKind::Messaging);
        assert_eq!(messaging.map(|c| c.last_5_minutes), Some(2));
        let spawn = summary
            .active
            .iter()
            .find(|f| f.fault_kind == FaultKind::InstanceSpawn);
        let uuids = spawn.map(|f| f.instance_uuids.clone()).unwrap_or_default();
        assert!(uuids.contains("4e89ad74-e6f6-4941-8182-9be3186e2bc2"));
    }

    #[test]
    fn tracker_clears_on_recovery_and_on_window_expiry() {
        let mut tracker = tracker();
        let log = format!("{OUTAGE}2024-03-05 10:00:05.000 5 INFO oslo.messaging._drivers.impl_rabbit [-] [abc] Reconnected to AMQP server on 192.0.2.5:5672 via [amqp] client with port 40000.\n");
        let mut cleared = Vec::new();
        for record in parse(log.as_bytes()) {
            cleared.extend(tracker.observe(&record).cleared);
        }
        assert_eq!(cleared, vec!["amqp-broker-unreachable".to_string()]);
        let later = tracker.to_utc_ms(1_709_632_805_000) + 1_800_001;
        tracker.expire(later);
        assert!(
            tracker.summary(later).active.is_empty(),
            "spawn fault outlived its window"
        );
    }

    #[test]
    fn tracker_summary_sample_is_redacted() {
        let mut tracker = tracker();
        let log = "2024-03-05 10:00:00.000 5 ERROR oslo.messaging._drivers.impl_rabbit [-] AMQP server on rabbit://nova:Sup3rSecret@192.0.2.5:5672 is unreachable: timed out\n";
        for record in parse(log.as_bytes()) {
            tracker.observe(&record);
        }
        let summary = tracker.summary(tracker.to_utc_ms(1_709_632_800_000));
        let sample = &summary.active[0].sample;
        assert!(!sample.contains("Sup3rSecret"), "password leaked: {sample}");
        assert!(
            sample.contains("AMQP server on"),
            "sample lost its text: {sample}"
        );
    }

    #[test]
    fn tracker_converts_local_time_with_offset() {
        let mut tracker = tracker();
        for record in parse(OUTAGE.as_bytes()) {
            tracker.observe(&record);
        }
        let now = tracker.to_utc_ms(1_709_632_802_000);
        let first = &tracker.summary(now).active[0];
        assert_eq!(
            format_utc_ms(first.first_seen_utc_ms),
            "2024-03-05T08:00:00Z"
        );
    }
}
