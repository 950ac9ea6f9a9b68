//! Follower tests on real files in temporary directories, one per rotation style.

use novamedic_logs::{Follower, StartAt, MAX_LINE_BYTES};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(bytes).expect("append");
}

/// Truncates in place, as logrotate's copytruncate does (same inode).
fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
}

fn texts(follower: &mut Follower) -> Vec<String> {
    let lines = follower.poll().expect("poll");
    lines
        .into_iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("nova-compute.log");
    let rotated = dir.path().join("nova-compute.log.1");
    (dir, log, rotated)
}

#[test]
fn follow_rename_rotation_reads_both_files() {
    let (_dir, log, rotated) = setup();
    append(&log, b"a1\na2\n");
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    assert_eq!(texts(&mut follower), ["a1", "a2"]);
    append(&log, b"a3\npartial-a4");
    std::fs::rename(&log, &rotated).expect("rename");
    append(&rotated, b"-after-rename\n");
    append(&log, b"b1\n");
    assert_eq!(
        texts(&mut follower),
        ["a3", "partial-a4-after-rename", "b1"]
    );
    append(&log, b"b2\n");
    assert_eq!(texts(&mut follower), ["b2"]);
}

#[test]
fn follow_rename_rotation_flushes_unterminated_last_line() {
    let (_dir, log, rotated) = setup();
    append(&log, b"a1\nno-newline");
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    assert_eq!(texts(&mut follower), ["a1"]);
    std::fs::rename(&log, &rotated).expect("rename");
    append(&log, b"b1\n");
    assert_eq!(texts(&mut follower), ["no-newline", "b1"]);
}

#[test]
fn follow_copytruncate_reads_unread_tail_from_copy() {
    let (_dir, log, rotated) = setup();
    let header = "2026-03-02 10:00:00.000 1 INFO nova.service [-] Starting compute node\n";
    append(&log, header.as_bytes());
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    assert_eq!(texts(&mut follower).len(), 1);
    append(
        &log,
        b"written before the copy 1\nwritten before the copy 2\n",
    );
    std::fs::copy(&log, &rotated).expect("copy");
    truncate(&log);
    append(&log, b"written after the truncate\n");
    assert_eq!(
        texts(&mut follower),
        [
            "written before the copy 1",
            "written before the copy 2",
            "written after the truncate"
        ]
    );
}

#[test]
fn follow_copytruncate_loses_lines_between_copy_and_truncate() {
    let (_dir, log, rotated) = setup();
    append(
        &log,
        b"first line long enough to make the fingerprint cover sixty-four bytes\n",
    );
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    assert_eq!(texts(&mut follower).len(), 1);
    append(&log, b"before copy\n");
    std::fs::copy(&log, &rotated).expect("copy");
    append(&log, b"between copy and truncate\n");
    truncate(&log);
    append(&log, b"after truncate, and longer than the offset of before-copy lines so the size alone would not show it...\n");
    let got = texts(&mut follower);
    assert_eq!(got.first().map(String::as_str), Some("before copy"));
    assert!(
        got.iter().all(|l| l != "between copy and truncate"),
        "copy-truncate loses this line"
    );
    assert!(
        got.last().is_some_and(|l| l.starts_with("after truncate")),
        "got {got:?}"
    );
}

#[test]
fn follow_missing_file_is_read_once_created() {
    let (_dir, log, _) = setup();
    let mut follower = Follower::new(&log, None, StartAt::End);
    assert!(texts(&mut follower).is_empty());
    append(&log, b"created later\n");
    assert_eq!(
        texts(&mut follower),
        ["created later"],
        "a file that appears later is read from 0"
    );
}

#[test]
fn follow_holds_partial_line_until_newline() {
    let (_dir, log, _) = setup();
    append(&log, b"abc");
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    assert!(texts(&mut follower).is_empty());
    append(&log, b"def\n");
    assert_eq!(texts(&mut follower), ["abcdef"]);
}

#[test]
fn follow_returns_non_utf8_bytes_unchanged() {
    let (_dir, log, _) = setup();
    append(&log, b"\xff\xfe invalid \xc3\n");
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    let lines = follower.poll().expect("poll");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].bytes, b"\xff\xfe invalid \xc3");
}

#[test]
fn follow_caps_one_mebibyte_line() {
    let (_dir, log, _) = setup();
    let mut content = vec![b'x'; 1024 * 1024];
    content.extend_from_slice(b"\nnext\n");
    append(&log, &content);
    let mut follower = Follower::new(&log, None, StartAt::Beginning);
    let lines = follower.poll().expect("poll");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].bytes.len(), MAX_LINE_BYTES);
    assert_eq!(
        lines[0].truncated_bytes,
        (1024 * 1024 - MAX_LINE_BYTES) as u64
    );
    assert_eq!(lines[1].bytes, b"next");
}

#[test]
fn follow_reads_large_backlog_over_several_polls() {
    let (_dir, log, _) = setup();
    for i in 0..1000 {
        append(&log, format!("line {i:04}\n").as_bytes());
    }
    let mut follower = Follower::new(&log, None, StartAt::Beginning).with_max_bytes_per_poll(1000);
    let mut all = Vec::new();
    for _ in 0..20 {
        all.extend(texts(&mut follower));
    }
    assert_eq!(all.len(), 1000);
    assert_eq!(all[999], "line 0999");
}

#[test]
fn follow_start_at_end_skips_existing_lines() {
    let (_dir, log, _) = setup();
    append(&log, b"old\n");
    let mut follower = Follower::new(&log, None, StartAt::End);
    assert!(texts(&mut follower).is_empty());
    append(&log, b"new\n");
    assert_eq!(texts(&mut follower), ["new"]);
}

#[test]
fn follow_resumes_from_state_file() {
    let (dir, log, _) = setup();
    let state = dir.path().join("position.json");
    append(&log, b"l1\nl2\n");
    {
        let mut follower = Follower::new(&log, Some(state.clone()), StartAt::Beginning);
        assert_eq!(texts(&mut follower), ["l1", "l2"]);
        append(&log, b"l3\nl4-part");
        assert_eq!(texts(&mut follower), ["l3"]);
    }
    assert!(state.is_file(), "position is persisted");
    append(&log, b"-rest\nl5\n");
    let mut follower = Follower::new(&log, Some(state), StartAt::End);
    assert_eq!(texts(&mut follower), ["l4-part-rest", "l5"]);
}

#[test]
fn follow_resumes_after_rename_rotation_while_stopped() {
    let (dir, log, rotated) = setup();
    let state = dir.path().join("position.json");
    append(&log, b"l1\n");
    {
        let mut follower = Follower::new(&log, Some(state.clone()), StartAt::Beginning);
        assert_eq!(texts(&mut follower), ["l1"]);
    }
    append(&log, b"l2 written while the agent was stopped\n");
    std::fs::rename(&log, &rotated).expect("rename");
    append(&log, b"n1\n");
    let mut follower = Follower::new(&log, Some(state), StartAt::End);
    assert_eq!(
        texts(&mut follower),
        ["l2 written while the agent was stopped", "n1"]
    );
}

#[test]
fn follow_resumes_after_copytruncate_while_stopped() {
    let (dir, log, rotated) = setup();
    let state = dir.path().join("position.json");
    append(&log, b"l1\n");
    {
        let mut follower = Follower::new(&log, Some(state.clone()), StartAt::Beginning);
        assert_eq!(texts(&mut follower), ["l1"]);
    }
    append(&log, b"l2\n");
    std::fs::copy(&log, &rotated).expect("copy");
    truncate(&log);
    append(&log, b"n1\n");
    let mut follower = Follower::new(&log, Some(state), StartAt::End);
    assert_eq!(texts(&mut follower), ["l2", "n1"]);
    drop(File::open(&log).expect("log still exists"));
}
