//! Runs every corpus case (the shared corpus and this crate's own `tests/cases/`)
//! through [`diagnose`] and checks classification, evidence and remediation.
//!
//! The shared corpus is found at `$NOVAMEDIC_CORPUS`, or three directories above
//! this crate under `shared/corpus`.

use novamedic_logs::diagnose::{diagnose_bytes, Diagnosis};
use novamedic_logs::header::parse_header;
use novamedic_logs::{parse, Catalogue, DiagnoseOptions, ServerFault};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn shared_corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("NOVAMEDIC_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    assert!(
        dir.join("cases").is_dir(),
        "corpus not found: {} has no cases/ directory; set NOVAMEDIC_CORPUS to the corpus directory",
        dir.display()
    );
    dir
}

fn case_dirs() -> Vec<PathBuf> {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut dirs = Vec::new();
    for root in [shared_corpus_dir(), own] {
        let entries = std::fs::read_dir(root.join("cases")).expect("list cases directory");
        let mut found: Vec<PathBuf> = entries
            .map(|e| e.expect("read cases entry").path())
            .filter(|p| p.join("expected.json").is_file())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    assert!(
        dirs.len() >= 20,
        "expected the corpus and own cases, found {}",
        dirs.len()
    );
    dirs
}

struct Case {
    name: String,
    log: Vec<u8>,
    expected: Value,
}

fn load(dir: &Path) -> Case {
    let log = std::fs::read(dir.join("nova-compute.log")).expect("read nova-compute.log");
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    let expected = serde_json::from_str(&text).expect("expected.json is JSON");
    let name = dir
        .file_name()
        .expect("case name")
        .to_string_lossy()
        .into_owned();
    Case {
        name,
        log,
        expected,
    }
}

/// Diagnoses a case as the controller would: with the server's fault when the case
/// has one. The controller fetched that fault from a server, so it has the
/// server's id; a case with one instance in ERROR names that server.
fn run(catalogue: &Arc<Catalogue>, case: &Case) -> Diagnosis {
    let mut options = DiagnoseOptions::default();
    if let Some(fault) = case.expected.get("fault_message").filter(|f| !f.is_null()) {
        let fault: ServerFault =
            serde_json::from_value(fault.clone()).expect("fault_message shape");
        options.server_fault = Some(fault);
        let uuids = string_list(&case.expected["instance_uuids_in_error"]);
        if uuids.len() == 1 {
            options.server_id = Some(uuids[0].clone());
        }
    }
    diagnose_bytes(catalogue.clone(), &case.log, &options)
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Returns every failed check of one case, as readable sentences.
fn check(case: &Case, diagnosis: &Diagnosis) -> Vec<String> {
    let mut failures = Vec::new();
    let expected_kind = case.expected["fault_kind"].as_str().unwrap_or("?");
    let got_kind = diagnosis.fault_kind.map_or("none", |k| k.as_str());
    if expected_kind != got_kind {
        failures.push(format!(
            "fault_kind: expected {expected_kind}, got {got_kind}"
        ));
    }
    let expected_severity = case.expected["severity"].as_str().unwrap_or("?");
    if expected_severity != diagnosis.severity.as_str() {
        failures.push(format!(
            "severity: expected {expected_severity}, got {}",
            diagnosis.severity.as_str()
        ));
    }
    let key_line = case.expected["key_line"].as_str().unwrap_or("");
    let in_evidence = diagnosis
        .evidence
        .iter()
        .any(|e| e.text.lines().any(|l| l == key_line));
    if !in_evidence {
        failures.push(format!(
            "key_line is not a line of the evidence records: {key_line}"
        ));
    }
    let restart = case.expected["restart_helps"].as_bool();
    if restart != Some(diagnosis.restart.restart_helps) {
        failures.push(format!(
            "restart_helps: expected {restart:?}, got {} ({})",
            diagnosis.restart.restart_helps, diagnosis.restart.reason
        ));
    }
    for uuid in string_list(&case.expected["instance_uuids_in_error"]) {
        if !diagnosis.instance_uuids.contains(&uuid) {
            failures.push(format!(
                "instance {uuid} in ERROR is not reported as affected"
            ));
        }
    }
    failures.extend(check_line_accounting(case, diagnosis));
    failures
}

/// No line lost and no two records merged: every line is in exactly one record,
/// and no record contains a second line that has a context block (a record line).
fn check_line_accounting(case: &Case, diagnosis: &Diagnosis) -> Vec<String> {
    let mut failures = Vec::new();
    let lines_in = case
        .log
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    let records = parse(&case.log);
    let lines_in_records: u64 = records.iter().map(|r| r.line_count).sum();
    if lines_in != lines_in_records || diagnosis.lines_read != lines_in {
        failures.push(format!(
            "line accounting: {lines_in} lines in, {lines_in_records} in records, {} read",
            diagnosis.lines_read
        ));
    }
    for record in &records {
        let merged = record
            .lines()
            .skip(1)
            .find(|line| parse_header(line).is_some_and(|h| h.context.is_some()));
        if let Some(line) = merged {
            failures.push(format!(
                "record at line {} swallowed a record line: {line}",
                record.first_line
            ));
        }
    }
    failures
}

#[test]
fn corpus_cases_match_expected_diagnosis() {
    let (catalogue, errors) = Catalogue::shipped();
    assert!(
        errors.is_empty(),
        "shipped catalogue failed to load: {errors:?}"
    );
    let catalogue = Arc::new(catalogue);
    let mut table = String::from("| case | expected | got | pass |\n|---|---|---|---|\n");
    let mut all_failures = Vec::new();
    for dir in case_dirs() {
        let case = load(&dir);
        let diagnosis = run(&catalogue, &case);
        let failures = check(&case, &diagnosis);
        let expected = format!(
            "{} / {} / restart {}",
            case.expected["fault_kind"].as_str().unwrap_or("?"),
            case.expected["severity"].as_str().unwrap_or("?"),
            case.expected["restart_helps"]
        );
        let got = format!(
            "{} / {} / restart {}",
            diagnosis.fault_kind.map_or("none", |k| k.as_str()),
            diagnosis.severity.as_str(),
            diagnosis.restart.restart_helps
        );
        let pass = if failures.is_empty() { "yes" } else { "NO" };
        table += &format!("| {} | {expected} | {got} | {pass} |\n", case.name);
        all_failures.extend(failures.into_iter().map(|f| format!("{}: {f}", case.name)));
    }
    println!("{table}");
    assert!(
        all_failures.is_empty(),
        "corpus checks failed:\n{}",
        all_failures.join("\n")
    );
}

#[test]
fn corpus_healthy_case_raises_nothing() {
    let (catalogue, _) = Catalogue::shipped();
    let catalogue = Arc::new(catalogue);
    let dirs = case_dirs();
    let healthy = dirs.iter().filter(|d| {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.starts_with("026-") || name.starts_with("103-") || name.starts_with("104-")
    });
    let mut checked = 0;
    for dir in healthy {
        let case = load(dir);
        let diagnosis = run(&catalogue, &case);
        assert!(
            diagnosis.faults.is_empty(),
            "{}: faults raised: {:?}",
            case.name,
            diagnosis.faults
        );
        assert!(
            diagnosis.classified_records.is_empty(),
            "{}: records matched a signature: {:?}",
            case.name,
            diagnosis.classified_records
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "healthy cases 026, 103 and 104 must all exist");
}

#[test]
fn amqp_outage_case_clears_after_reconnect() {
    let dir = case_dirs()
        .into_iter()
        .find(|d| d.ends_with("105-amqp-outage-then-reconnect"))
        .expect("case 105 exists");
    let case = load(&dir);
    let (catalogue, _) = Catalogue::shipped();
    let diagnosis = run(&Arc::new(catalogue), &case);
    let primary = diagnosis.primary.expect("a messaging fault");
    assert_eq!(primary.count, 8, "every retry line counts");
    assert!(
        primary.recovered_at_line.is_some(),
        "the reconnect line must end the fault"
    );
    assert!(
        !diagnosis.restart.restart_helps,
        "never restart for a broker outage"
    );
}
