//! The search over real files in a temporary directory: rotated plain and
//! gzip copies, modification times, windows, tracebacks, bad bytes, caps.

use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::time::Duration;

use super::*;

const UUID: &str = "6f1b8f4e-3c2a-4d5b-9e8f-0a1b2c3d4e5f";
const OTHER_UUID: &str = "11111111-2222-4333-8444-555555555555";
const REQ: &str = "req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01";

/// 2026-12-04T10:00:00Z.
const BASE_MS: i64 = 1_796_378_400_000;

/// An oslo.log line at `BASE_MS + minute` minutes, in UTC.
fn line(minute: i64, level: &str, context: &str, message: &str) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp((BASE_MS + minute * 60_000) / 1000).unwrap();
    let context = if context.is_empty() {
        String::new()
    } else {
        format!("{context} ")
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000 4242 {level} nova.compute.manager {context}{message}\n",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn at_minute(minute: i64) -> i64 {
    BASE_MS + minute * 60_000
}

fn source(log_file: &Path) -> SearchSource {
    SearchSource {
        log_file: Some(log_file.to_path_buf()),
        problem: String::new(),
        catalogue: Arc::new(Catalogue::shipped().0),
        utc_offset: UtcOffset::UTC,
    }
}

fn query(start_minute: i64, end_minute: i64) -> Query {
    Query {
        instance_uuid: Some(UUID.to_string()),
        request_ids: vec![REQ.to_string()],
        start_unix_ms: at_minute(start_minute),
        end_unix_ms: at_minute(end_minute),
        max_records: 100,
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn write(path: &Path, text: &[u8], modified_minute: i64) {
    File::create(path).unwrap().write_all(text).unwrap();
    set_mtime(path, modified_minute);
}

fn write_gz(path: &Path, text: &[u8], modified_minute: i64) {
    let file = File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder.write_all(text).unwrap();
    encoder.finish().unwrap();
    set_mtime(path, modified_minute);
}

fn set_mtime(path: &Path, minute: i64) {
    let at = UNIX_EPOCH + Duration::from_millis(at_minute(minute) as u64);
    let file = File::options().write(true).open(path).unwrap();
    file.set_times(FileTimes::new().set_modified(at)).unwrap();
}

fn instance(message: &str) -> String {
    format!("[instance: {UUID}] {message}")
}

/// Three generations: `.2.gz` (minutes 0-9), `.1` (10-19), current (20-29).
fn rotated_logs(dir: &Path) -> PathBuf {
    let current = dir.join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let mut oldest = line(1, "INFO", &context, &instance("Attempting claim"));
    oldest.push_str(&line(2, "INFO", "[-]", "unrelated"));
    write_gz(&dir.join("nova-compute.log.2.gz"), oldest.as_bytes(), 9);

    let mut middle = line(11, "INFO", &context, &instance("Creating image"));
    middle.push_str(&line(
        12,
        "INFO",
        "[-]",
        &format!("[instance: {OTHER_UUID}] other"),
    ));
    write(&dir.join("nova-compute.log.1"), middle.as_bytes(), 19);

    let mut newest = line(21, "ERROR", &context, &instance("Instance failed to spawn: libvirt.libvirtError: internal error: process exited while connecting to monitor"));
    newest.push_str(&line(22, "INFO", "[-]", "unrelated"));
    write(&current, newest.as_bytes(), 29);
    current
}

#[test]
fn finds_records_in_rotated_plain_and_gzip_copies() {
    let dir = tempfile::tempdir().unwrap();
    let current = rotated_logs(dir.path());
    let found = search(&source(&current), &query(0, 30), later());

    let messages: Vec<&str> = found.records.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(found.records.len(), 3, "{messages:#?}");
    assert!(
        messages[0].contains("Attempting claim"),
        "oldest first: {messages:#?}"
    );
    assert!(messages[1].contains("Creating image"));
    assert!(messages[2].contains("failed to spawn"));
    assert!(found.records[0].file.ends_with("nova-compute.log.2.gz"));
    assert_eq!(found.records[0].request_id, REQ);
    assert_eq!(found.records[0].time_unix_ms, at_minute(1));
    assert_eq!(found.files.len(), 3);
    assert!(
        found.files.iter().all(|file| file.searched),
        "{:?}",
        found.files
    );
    assert!(
        found.files[0].path.ends_with("nova-compute.log"),
        "current file first"
    );
    assert_eq!(found.lines_read, 6);
    assert!(!found.truncated);

    let spawn = &found.records[2];
    assert_eq!(spawn.level, "ERROR");
    assert!(
        !spawn.signature_id.is_empty(),
        "the classifier names the fault: {spawn:?}"
    );
    assert!(
        ["hypervisor_connection", "instance_spawn"].contains(&spawn.fault_kind.as_str()),
        "{spawn:?}"
    );
}

#[test]
fn files_written_before_the_window_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let current = rotated_logs(dir.path());
    let found = search(&source(&current), &query(21, 30), later());

    assert_eq!(found.records.len(), 1, "{:?}", found.records);
    let skipped: Vec<_> = found.files.iter().filter(|f| !f.searched).collect();
    assert_eq!(skipped.len(), 2, "{:?}", found.files);
    assert!(
        skipped.iter().all(|f| f.note.contains("before the window")),
        "{skipped:?}"
    );
}

#[test]
fn records_outside_the_window_are_left_out_and_reading_stops_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let mut text = String::new();
    for minute in 0..30 {
        text.push_str(&line(minute, "INFO", &context, &instance("step")));
    }
    write(&current, text.as_bytes(), 29);
    let found = search(&source(&current), &query(10, 14), later());

    let times: Vec<i64> = found.records.iter().map(|r| r.time_unix_ms).collect();
    assert_eq!(times, (10..=14).map(at_minute).collect::<Vec<_>>());
    assert!(
        found.lines_read < 30,
        "reading stops past the window: {} lines read",
        found.lines_read
    );
}

#[test]
fn traceback_lines_join_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let mut text = line(5, "ERROR", &context, &instance("Instance failed to spawn"));
    for trace in [
        "Traceback (most recent call last):",
        "  File \"/usr/lib/python3/dist-packages/nova/compute/manager.py\", line 2743, in _build_resources",
        "libvirt.libvirtError: internal error: process exited while connecting to monitor",
    ] {
        text.push_str(&line(5, "ERROR", "", &format!("[instance: {UUID}] {trace}")));
    }
    text.push_str(&line(6, "INFO", "[-]", "next record"));
    write(&current, text.as_bytes(), 10);
    let found = search(&source(&current), &query(0, 10), later());

    assert_eq!(found.records.len(), 1, "{:?}", found.records);
    let record = &found.records[0];
    assert_eq!(record.line, 1);
    assert_eq!(record.text.lines().count(), 4, "{}", record.text);
    assert!(record
        .text
        .ends_with("process exited while connecting to monitor"));
}

#[test]
fn invalid_bytes_and_huge_lines_do_not_stop_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let mut bytes = line(1, "INFO", "[-]", "before").into_bytes();
    bytes.extend_from_slice(b"\xff\xfe binary \x00 garbage\n");
    let huge = format!("{} {}", instance("dump"), "x".repeat(200_000));
    bytes.extend_from_slice(line(2, "WARNING", &context, &huge).as_bytes());
    bytes
        .extend_from_slice(line(3, "INFO", &context, &instance("after \u{fffd}\u{e9}")).as_bytes());
    write(&current, &bytes, 10);
    let found = search(&source(&current), &query(0, 10), later());

    assert_eq!(found.records.len(), 2, "{:?}", found.files);
    assert!(found.records[0].text.len() <= MAX_RECORD_TEXT_BYTES + 64);
    assert!(found.records[0].text.contains("bytes left out"));
    assert!(found.records[1].text.contains("after"));
    assert!(found.files[0].note.is_empty(), "{:?}", found.files[0]);
}

#[test]
fn damaged_gzip_is_noted_and_the_rest_still_searched() {
    let dir = tempfile::tempdir().unwrap();
    let current = rotated_logs(dir.path());
    let gz = dir.path().join("nova-compute.log.2.gz");
    let mut damaged = fs::read(&gz).unwrap();
    damaged.truncate(damaged.len() / 2);
    write(&gz, &damaged, 9);
    let found = search(&source(&current), &query(0, 30), later());

    let noted = found
        .files
        .iter()
        .find(|f| f.path.ends_with(".2.gz"))
        .unwrap();
    assert!(noted.note.contains("gzip"), "{noted:?}");
    assert!(found.records.len() >= 2, "{:?}", found.records);
}

#[test]
fn cap_keeps_fault_records_first() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let mut text = String::new();
    for minute in 0..20 {
        text.push_str(&line(minute, "INFO", &context, &instance("routine")));
    }
    text.push_str(&line(
        20,
        "ERROR",
        &context,
        &instance("Instance failed to spawn: libvirt.libvirtError: Failed to connect socket to '/var/run/libvirt/libvirt-sock'"),
    ));
    write(&current, text.as_bytes(), 25);
    let mut capped = query(0, 30);
    capped.max_records = 3;
    let found = search(&source(&current), &capped, later());

    assert_eq!(found.records.len(), 3);
    assert!(found.truncated);
    assert!(
        found.records.iter().any(|r| !r.signature_id.is_empty()),
        "the fault record is kept: {:?}",
        found.records
    );
}

#[test]
fn secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("nova-compute.log");
    let context = format!("[{REQ} admin admin - - -]");
    let text = line(
        1,
        "ERROR",
        &context,
        &instance("connect rabbit://nova:S3cretPass@192.0.2.5:5672/ failed, password=hunter2"),
    );
    write(&current, text.as_bytes(), 5);
    let found = search(&source(&current), &query(0, 10), later());

    let record = &found.records[0].text;
    assert!(!record.contains("S3cretPass"), "{record}");
    assert!(!record.contains("hunter2"), "{record}");
}

#[test]
fn no_log_file_is_a_problem_not_a_failure() {
    let mut none = source(Path::new("/nonexistent"));
    none.log_file = None;
    none.problem = "no log file: nova_log_file is not set".to_string();
    let found = search(&none, &query(0, 10), later());
    assert!(found.records.is_empty());
    assert_eq!(found.problem, "no log file: nova_log_file is not set");
}

#[test]
fn rotated_copy_names() {
    let name = "nova-compute.log";
    for good in [
        "nova-compute.log.1",
        "nova-compute.log.12.gz",
        "nova-compute.log-20261204",
        "nova-compute.log-20261204.gz",
    ] {
        assert!(is_rotated_copy(name, good), "{good}");
    }
    for bad in [
        "nova-compute.log",
        "nova-compute.log.old",
        "nova-compute.log.1.bak",
        "nova-api.log.1",
        "nova-compute.log.gz",
    ] {
        assert!(!is_rotated_copy(name, bad), "{bad}");
    }
}

fn wire(uuid: &str, ids: &[&str], start: i64, end: i64, max: u32) -> v1::SearchLogs {
    v1::SearchLogs {
        instance_uuid: uuid.to_string(),
        request_ids: ids.iter().map(|id| id.to_string()).collect(),
        start_unix_ms: start,
        end_unix_ms: end,
        max_records: max,
    }
}

#[test]
fn absurd_requests_are_rejected_with_the_reason() {
    let day = 24 * 3_600_000;
    let cases = [
        (
            wire("", &[], BASE_MS, BASE_MS + 1, 0),
            "neither instance_uuid",
        ),
        (
            wire("not-a-uuid", &[], BASE_MS, BASE_MS + 1, 0),
            "is not a UUID",
        ),
        (wire(UUID, &["abc"], BASE_MS, BASE_MS + 1, 0), "req-UUID"),
        (wire(UUID, &[], BASE_MS, BASE_MS, 0), "invalid window"),
        (wire(UUID, &[], 0, BASE_MS, 0), "invalid window"),
        (
            wire(UUID, &[], BASE_MS, BASE_MS + 8 * day, 0),
            "longer than",
        ),
        (
            wire(UUID, &[], BASE_MS, BASE_MS + 1, 501),
            "max_records 501",
        ),
    ];
    for (request, expected) in cases {
        let err = Query::from_wire(&request).unwrap_err();
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
    }
    let ok = Query::from_wire(&wire(
        &UUID.to_uppercase(),
        &[REQ],
        BASE_MS,
        BASE_MS + day,
        0,
    ))
    .unwrap();
    assert_eq!(ok.instance_uuid.as_deref(), Some(UUID));
    assert_eq!(ok.max_records, DEFAULT_RECORDS as usize);
}
