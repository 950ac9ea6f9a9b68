//! Diagnosing one finished log: the primary fault, its evidence and the restart verdict.
//!
//! Rules, in order:
//! 1. Every record is classified; records of one signature form a fault group.
//!    The silence rule ([`crate::silence`]) adds a `service_hung` group.
//! 2. The primary fault is the group of highest severity, the earliest on ties.
//! 3. Its restart verdict is its signature's, unless a dependency outage
//!    (messaging, placement, database) was active while it occurred: nova-compute
//!    was then retrying by itself, and a restart is not recommended.
//! 4. When the log shows no fault but the server's fault (from the Nova API)
//!    matches a signature, that fault is reported with severity `none`, because
//!    this node's log shows nothing wrong. The evidence is then the node's routine
//!    resource-tracker records, the proof that it was working.

use crate::catalogue::{Catalogue, FaultKind, Severity};
use crate::classify::ServerFault;
use crate::header::Level;
use crate::lines::LineSplitter;
use crate::record::{Joiner, Record};
use crate::silence::Silence;
use crate::tracker::{format_utc_ms, silence_restart_reason, FaultTracker, RestartVerdict};
use crate::tracker::{SILENCE_ADVICE, SILENCE_SIGNATURE_ID};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::sync::Arc;
use time::UtcOffset;

/// Evidence records kept per fault group: the first ones and the latest.
const MAX_EVIDENCE: usize = 16;
/// Classified records listed in a diagnosis.
const MAX_CLASSIFIED: usize = 1000;
/// Routine records kept as proof of health.
const MAX_HEALTH_EVIDENCE: usize = 5;

/// Inputs besides the log.
#[derive(Debug, Clone)]
pub struct DiagnoseOptions {
    /// Offset of the node's zone; log times are local and reported in UTC.
    pub utc_offset: UtcOffset,
    /// End of the analysed span (UTC ms), for the silence rule; `None` ends it at
    /// the last record.
    pub span_end_utc_ms: Option<i64>,
    /// The server's fault from the Nova API, when a server is in ERROR.
    pub server_fault: Option<ServerFault>,
    /// Id of the server the fault belongs to.
    pub server_id: Option<String>,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        DiagnoseOptions {
            utc_offset: UtcOffset::UTC,
            span_end_utc_ms: None,
            server_fault: None,
            server_id: None,
        }
    }
}

/// One record cited as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub first_line: u64,
    pub line_count: u64,
    pub level: Level,
    /// All kept lines of the record, as written.
    pub text: String,
}

impl Evidence {
    fn from_record(record: &Record) -> Self {
        Evidence {
            first_line: record.first_line,
            line_count: record.line_count,
            level: record.level,
            text: record.text().to_string(),
        }
    }
}

/// Origin of a fault group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSource {
    Log,
    Silence,
    ServerFault,
}

/// All records of one signature in the log.
#[derive(Debug, Clone, Serialize)]
pub struct FaultGroup {
    pub signature_id: String,
    pub fault_kind: FaultKind,
    pub severity: Severity,
    pub source: FaultSource,
    pub count: u64,
    pub first_seen_utc: Option<String>,
    pub last_seen_utc: Option<String>,
    pub restart_helps: bool,
    pub restart_reason: String,
    pub advice: String,
    pub instance_uuids: BTreeSet<String>,
    pub evidence: Vec<Evidence>,
    /// Line of the record whose recovery pattern ended the fault, if any.
    pub recovered_at_line: Option<u64>,
    #[serde(skip)]
    first_seen_ms: Option<i64>,
    #[serde(skip)]
    last_seen_ms: Option<i64>,
    #[serde(skip)]
    recovered_ms: Option<i64>,
    #[serde(skip)]
    window_ms: i64,
    #[serde(skip)]
    first_line: u64,
}

/// A record that matched a fault or recovery pattern.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifiedRecord {
    pub signature_id: Option<String>,
    pub fault_kind: Option<FaultKind>,
    pub recovers: Vec<String>,
    pub record: Evidence,
}

/// The diagnosis of one log.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// `None` when nothing is wrong (serialised as `"none"`).
    #[serde(serialize_with = "serialize_kind")]
    pub fault_kind: Option<FaultKind>,
    pub severity: Severity,
    pub restart: RestartVerdict,
    pub advice: Option<String>,
    /// Instances affected by the primary fault.
    pub instance_uuids: BTreeSet<String>,
    /// Records that prove the diagnosis.
    pub evidence: Vec<Evidence>,
    pub primary: Option<FaultGroup>,
    pub faults: Vec<FaultGroup>,
    pub classified_records: Vec<ClassifiedRecord>,
    pub classified_records_omitted: u64,
    pub lines_read: u64,
    pub records_read: u64,
}

fn serialize_kind<S: serde::Serializer>(kind: &Option<FaultKind>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.map_or("none", FaultKind::as_str))
}

/// Diagnoses the log read from `reader`, streaming it with a fixed buffer.
pub fn diagnose(
    catalogue: Arc<Catalogue>,
    mut reader: impl Read,
    options: &DiagnoseOptions,
) -> std::io::Result<Diagnosis> {
    let mut state = State::new(catalogue, options);
    let mut splitter = LineSplitter::new();
    let mut joiner = Joiner::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        splitter.feed(&buffer[..read], |line, truncated| {
            if let Some(record) = joiner.push_line(line, truncated) {
                state.observe(record);
            }
        });
    }
    splitter.finish(|line, truncated| {
        if let Some(record) = joiner.push_line(line, truncated) {
            state.observe(record);
        }
    });
    if let Some(record) = joiner.finish() {
        state.observe(record);
    }
    Ok(state.conclude(joiner.lines_read()))
}

/// Diagnoses the log file at `path`.
pub fn diagnose_path(
    catalogue: Arc<Catalogue>,
    path: &std::path::Path,
    options: &DiagnoseOptions,
) -> std::io::Result<Diagnosis> {
    let file = std::fs::File::open(path)?;
    diagnose(catalogue, file, options)
}

/// Diagnoses a log held in memory.
pub fn diagnose_bytes(
    catalogue: Arc<Catalogue>,
    log: &[u8],
    options: &DiagnoseOptions,
) -> Diagnosis {
    diagnose(catalogue, log, options).expect("reading from a byte slice cannot fail")
}

struct State<'a> {
    catalogue: Arc<Catalogue>,
    tracker: FaultTracker,
    options: &'a DiagnoseOptions,
    groups: Vec<FaultGroup>,
    classified: Vec<ClassifiedRecord>,
    classified_omitted: u64,
    health: VecDeque<Evidence>,
    health_cutoff_local_ms: Option<i64>,
    records_read: u64,
}

impl<'a> State<'a> {
    fn new(catalogue: Arc<Catalogue>, options: &'a DiagnoseOptions) -> Self {
        let offset_ms = i64::from(options.utc_offset.whole_seconds()) * 1000;
        let created = options
            .server_fault
            .as_ref()
            .and_then(|f| f.created.as_deref());
        let health_cutoff_local_ms = created.and_then(parse_utc_ms).map(|ms| ms + offset_ms);
        State {
            tracker: FaultTracker::new(Arc::clone(&catalogue), options.utc_offset),
            catalogue,
            options,
            groups: Vec::new(),
            classified: Vec::new(),
            classified_omitted: 0,
            health: VecDeque::new(),
            health_cutoff_local_ms,
            records_read: 0,
        }
    }

    fn observe(&mut self, record: &Record) {
        self.records_read += 1;
        let observation = self.tracker.observe(record);
        if let Some(silence) = &observation.silence {
            self.add_silence(silence);
        }
        self.keep_health_proof(record);

        let classification = &observation.classification;
        if classification.is_empty() {
            return;
        }

        let utc_ms = record.local_ms.map(|ms| self.tracker.to_utc_ms(ms));
        let catalogue = Arc::clone(&self.catalogue);
        let recovers: Vec<String> = classification
            .recovers
            .iter()
            .map(|&i| catalogue.signature(i).id.clone())
            .collect();
        for id in &recovers {
            let open = self.groups.iter_mut().filter(|g| &g.signature_id == id);
            for group in open.filter(|g| g.recovered_at_line.is_none()) {
                group.recovered_at_line = Some(record.first_line);
                group.recovered_ms = utc_ms;
            }
        }

        let signature = classification.fault.map(|i| catalogue.signature(i));
        if self.classified.len() < MAX_CLASSIFIED {
            self.classified.push(ClassifiedRecord {
                signature_id: signature.as_ref().map(|s| s.id.clone()),
                fault_kind: signature.as_ref().map(|s| s.fault_kind),
                recovers,
                record: Evidence::from_record(record),
            });
        } else {
            self.classified_omitted += 1;
        }
        if let Some(signature) = signature {
            self.add_to_group(signature, record, utc_ms);
        }
    }

    fn add_to_group(&mut self, signature: &crate::Signature, record: &Record, utc_ms: Option<i64>) {
        let index = match self
            .groups
            .iter()
            .position(|g| g.signature_id == signature.id)
        {
            Some(index) => index,
            None => {
                self.groups.push(FaultGroup {
                    signature_id: signature.id.clone(),
                    fault_kind: signature.fault_kind,
                    severity: signature.severity,
                    source: FaultSource::Log,
                    count: 0,
                    first_seen_utc: utc_ms.map(format_utc_ms),
                    last_seen_utc: None,
                    restart_helps: signature.restart_helps,
                    restart_reason: signature.restart_reason.clone(),
                    advice: signature.render_advice(record.text()),
                    instance_uuids: BTreeSet::new(),
                    evidence: Vec::new(),
                    recovered_at_line: None,
                    first_seen_ms: utc_ms,
                    last_seen_ms: None,
                    recovered_ms: None,
                    window_ms: signature.window_seconds as i64 * 1000,
                    first_line: record.first_line,
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[index];
        group.count += 1;
        if utc_ms.is_some() {
            group.last_seen_ms = utc_ms;
            group.last_seen_utc = utc_ms.map(format_utc_ms);
        }
        if let Some(uuid) = record.instance_uuid() {
            group.instance_uuids.insert(uuid.to_string());
        }
        let evidence = Evidence::from_record(record);
        if group.evidence.len() < MAX_EVIDENCE {
            group.evidence.push(evidence);
        } else if let Some(last) = group.evidence.last_mut() {
            *last = evidence;
        }
    }

    fn add_silence(&mut self, silence: &Silence) {
        let last = &silence.last_sign_of_life;
        let from_ms = self.tracker.to_utc_ms(silence.silent_from_ms);
        let until_ms = self.tracker.to_utc_ms(silence.silent_until_ms);
        let minutes = (silence.silent_until_ms - silence.silent_from_ms) / 60_000;
        self.groups.push(FaultGroup {
            signature_id: SILENCE_SIGNATURE_ID.to_string(),
            fault_kind: FaultKind::ServiceHung,
            severity: Severity::Error,
            source: FaultSource::Silence,
            count: 1,
            first_seen_utc: Some(format_utc_ms(from_ms)),
            last_seen_utc: Some(format_utc_ms(until_ms)),
            restart_helps: true,
            restart_reason: silence_restart_reason(silence.period_ms, minutes),
            advice: SILENCE_ADVICE.to_string(),
            instance_uuids: BTreeSet::new(),
            evidence: vec![Evidence::from_record(last)],
            recovered_at_line: None,
            first_seen_ms: Some(from_ms),
            last_seen_ms: Some(until_ms),
            recovered_ms: None,
            window_ms: 0,
            first_line: last.first_line,
        });
    }

    /// Keeps the latest routine resource-tracker records (before the server fault's
    /// time, when given): they show the node doing its periodic work.
    fn keep_health_proof(&mut self, record: &Record) {
        let routine = matches!(record.level, Level::Info | Level::Audit)
            && record.logger().ends_with("resource_tracker");
        if !routine {
            return;
        }
        let before_cutoff = match (self.health_cutoff_local_ms, record.local_ms) {
            (Some(cutoff), Some(ms)) => ms <= cutoff,
            _ => true,
        };
        if before_cutoff {
            if self.health.len() == MAX_HEALTH_EVIDENCE {
                self.health.pop_front();
            }
            self.health.push_back(Evidence::from_record(record));
        }
    }

    fn conclude(mut self, lines_read: u64) -> Diagnosis {
        if let Some(span_end) = self.options.span_end_utc_ms {
            if let Some(silence) = self.tracker.check_silence(span_end) {
                self.add_silence(&silence);
            }
        }
        let server_group = self.server_fault_group();
        let primary_index = self
            .groups
            .iter()
            .enumerate()
            .max_by_key(|(_, g)| (g.severity, std::cmp::Reverse(g.first_line)))
            .map(|(i, _)| i);
        let mut diagnosis = Diagnosis {
            fault_kind: None,
            severity: Severity::None,
            restart: RestartVerdict {
                restart_helps: false,
                reason: "nova-compute's log shows no fault".to_string(),
                vetoed_by: None,
            },
            advice: None,
            instance_uuids: BTreeSet::new(),
            evidence: self.health.iter().cloned().collect(),
            primary: None,
            faults: Vec::new(),
            classified_records: std::mem::take(&mut self.classified),
            classified_records_omitted: self.classified_omitted,
            lines_read,
            records_read: self.records_read,
        };
        let primary = match primary_index {
            Some(index) => Some(self.groups[index].clone()),
            None => server_group.clone(),
        };
        if let Some(primary) = primary {
            let from_log = primary.source != FaultSource::ServerFault;
            diagnosis.fault_kind = Some(primary.fault_kind);
            diagnosis.severity = if from_log {
                primary.severity
            } else {
                Severity::None
            };
            diagnosis.restart = self.restart_verdict(&primary);
            diagnosis.advice = Some(primary.advice.clone());
            diagnosis.instance_uuids = primary.instance_uuids.clone();
            if from_log {
                diagnosis.evidence = primary.evidence.clone();
            }
            diagnosis.primary = Some(primary);
        }
        diagnosis.faults = self.groups;
        diagnosis.faults.extend(server_group);
        diagnosis
    }

    fn server_fault_group(&self) -> Option<FaultGroup> {
        let fault = self.options.server_fault.as_ref()?;
        let catalogue = self.tracker.catalogue();
        let signature = catalogue.signature(catalogue.classify_server_fault(fault)?);
        let text = format!(
            "{}\n{}",
            fault.message,
            fault.details.as_deref().unwrap_or("")
        );
        Some(FaultGroup {
            signature_id: signature.id.clone(),
            fault_kind: signature.fault_kind,
            severity: signature.severity,
            source: FaultSource::ServerFault,
            count: 1,
            first_seen_utc: fault.created.clone(),
            last_seen_utc: fault.created.clone(),
            restart_helps: signature.restart_helps,
            restart_reason: signature.restart_reason.clone(),
            advice: signature.render_advice(&text),
            instance_uuids: self.options.server_id.iter().cloned().collect(),
            evidence: Vec::new(),
            recovered_at_line: None,
            first_seen_ms: None,
            last_seen_ms: None,
            recovered_ms: None,
            window_ms: signature.window_seconds as i64 * 1000,
            first_line: u64::MAX,
        })
    }

    /// Returns the primary's restart verdict, vetoed by a dependency outage active at the same time.
    fn restart_verdict(&self, primary: &FaultGroup) -> RestartVerdict {
        let outage = self.groups.iter().find(|g| {
            g.fault_kind.is_dependency_outage()
                && g.signature_id != primary.signature_id
                && overlaps(g, primary)
        });
        match outage {
            Some(outage) if primary.restart_helps => RestartVerdict {
                restart_helps: false,
                reason: format!(
                    "nova-compute was retrying a dependency that is down ({}: {}); a restart \
                     would only interrupt the retry",
                    outage.fault_kind, outage.restart_reason
                ),
                vetoed_by: Some(outage.signature_id.clone()),
            },
            _ => RestartVerdict {
                restart_helps: primary.restart_helps,
                reason: primary.restart_reason.clone(),
                vetoed_by: None,
            },
        }
    }
}

/// True when the outage was active (first record to recovery, or to last record
/// plus window) at some time between the primary's first and last record.
fn overlaps(outage: &FaultGroup, primary: &FaultGroup) -> bool {
    let (Some(outage_start), Some(outage_last)) = (outage.first_seen_ms, outage.last_seen_ms)
    else {
        return false;
    };
    let outage_end = outage
        .recovered_ms
        .unwrap_or(outage_last + outage.window_ms);
    let (Some(start), Some(end)) = (primary.first_seen_ms, primary.last_seen_ms) else {
        return false;
    };
    outage_start <= end && start <= outage_end
}

fn parse_utc_ms(text: &str) -> Option<i64> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Renders a diagnosis for a terminal: verdict first, then evidence.
pub fn render_text(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let kind = diagnosis.fault_kind.map_or("none", FaultKind::as_str);
    out += &format!(
        "fault:    {kind} (severity {})\n",
        diagnosis.severity.as_str()
    );
    let verdict = if diagnosis.restart.restart_helps {
        "yes"
    } else {
        "no"
    };
    out += &format!("restart:  {verdict}: {}\n", diagnosis.restart.reason);
    if let Some(advice) = &diagnosis.advice {
        out += &format!("advice:   {advice}\n");
    }

    if !diagnosis.instance_uuids.is_empty() {
        let uuids: Vec<&str> = diagnosis
            .instance_uuids
            .iter()
            .map(String::as_str)
            .collect();
        out += &format!("instances: {}\n", uuids.join(", "));
    }

    if !diagnosis.evidence.is_empty() {
        out += "evidence:\n";
    }
    for evidence in &diagnosis.evidence {
        let last_line = evidence.first_line + evidence.line_count.saturating_sub(1);
        out += &format!(
            "  lines {}-{} {}:\n",
            evidence.first_line,
            last_line,
            evidence.level.as_str()
        );
        let mut lines = evidence.text.lines();
        if let Some(first) = lines.next() {
            out += &format!("    {first}\n");
        }
        if let Some(last) = lines.last() {
            out += &format!("    ...\n    {last}\n");
        }
    }

    let others: Vec<String> = diagnosis
        .faults
        .iter()
        .filter(|g| Some(&g.signature_id) != diagnosis.primary.as_ref().map(|p| &p.signature_id))
        .map(|g| format!("{} ({}, {} records)", g.signature_id, g.fault_kind, g.count))
        .collect();
    if !others.is_empty() {
        out += &format!("other faults: {}\n", others.join(", "));
    }
    out += &format!(
        "read {} lines, {} records\n",
        diagnosis.lines_read, diagnosis.records_read
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn periodic_log(with_broker_error: bool) -> String {
        let mut log = String::new();
        for minute in 0..6 {
            log += &format!("2026-08-20 10:{minute:02}:26.402 41 INFO nova.compute.resource_tracker [-] Final resource view: name=compute-03 phys_ram=1MB\n");
        }
        if with_broker_error {
            log += "2026-08-20 10:05:30.000 41 ERROR oslo.messaging._drivers.impl_rabbit [-] [c] AMQP server on 192.0.2.5:5672 is unreachable: timed out. Trying again in 1 seconds.\n";
        }
        log += "2026-08-20 10:40:00.000 41 INFO oslo_service.service [-] Caught SIGTERM, exiting\n";
        log
    }

    fn run(log: &str) -> Diagnosis {
        let (catalogue, _) = Catalogue::shipped();
        diagnose_bytes(
            Arc::new(catalogue),
            log.as_bytes(),
            &DiagnoseOptions::default(),
        )
    }

    #[test]
    fn diagnosis_recommends_restart_for_silence() {
        let diagnosis = run(&periodic_log(false));
        assert_eq!(diagnosis.fault_kind, Some(FaultKind::ServiceHung));
        assert!(
            diagnosis.restart.restart_helps,
            "{}",
            diagnosis.restart.reason
        );
        assert_eq!(
            diagnosis.evidence[0].first_line, 6,
            "evidence is the last periodic record"
        );
    }

    #[test]
    fn diagnosis_vetoes_restart_while_broker_is_down() {
        let diagnosis = run(&periodic_log(true));
        assert_eq!(diagnosis.fault_kind, Some(FaultKind::ServiceHung));
        assert!(!diagnosis.restart.restart_helps);
        assert_eq!(
            diagnosis.restart.vetoed_by.as_deref(),
            Some("amqp-broker-unreachable")
        );
    }

    #[test]
    fn diagnosis_span_end_reveals_ongoing_silence() {
        let mut log = periodic_log(false);
        log.truncate(log.rfind("2026-08-20 10:40").expect("last line"));
        assert_eq!(
            run(&log).fault_kind,
            None,
            "the span ends at the last periodic line"
        );
        let (catalogue, _) = Catalogue::shipped();
        let options = DiagnoseOptions {
            span_end_utc_ms: Some(1_787_222_400_000), // 2026-08-20 10:40:00 UTC
            ..DiagnoseOptions::default()
        };
        let diagnosis = diagnose_bytes(Arc::new(catalogue), log.as_bytes(), &options);
        assert_eq!(diagnosis.fault_kind, Some(FaultKind::ServiceHung));
    }

    #[test]
    fn render_text_shows_verdict_and_evidence() {
        let log = "2025-07-09 20:26:53.557 7 CRITICAL nova [-] Unhandled error: oslo_config.cfg.ConfigFileValueError: Value for option ram from LocationInfo is not valid\n2025-07-09 20:26:53.557 7 ERROR nova Traceback (most recent call last):\n2025-07-09 20:26:53.557 7 ERROR nova ValueError: bad\n";
        let text = render_text(&run(log));
        assert!(
            text.contains("fault:    configuration (severity critical)"),
            "{text}"
        );
        assert!(text.contains("restart:  no:"), "{text}");
        assert!(text.contains("`ram`"), "{text}");
        assert!(text.contains("lines 1-3 CRITICAL"), "{text}");
        let json = serde_json::to_value(run(log)).expect("diagnosis serialises");
        assert_eq!(json["fault_kind"], "configuration");
        assert_eq!(json["evidence"][0]["line_count"], 3);
    }
}
