//! Throughput of the log pipeline on a generated nova-compute log.
//!
//! Usage: `cargo bench -p novamedic-logs --bench throughput -- [GIB]` (default 1).
//! Writes two temporary logs of GIB GiB each: a mixed one (INFO and DEBUG
//! records with DEBUG suffixes, about 1 % ERROR records with tracebacks, some
//! harmless WARNINGs) and one of routine records only. Then it times these paths
//! on one thread:
//! - (a) splitting, joining, id extraction and classification with the shipped catalogue;
//! - (a2) path (a) plus the fault tracker;
//! - (b) path (a) on routine records that match nothing;
//! - (c) `grep -E -c -f` with the catalogue's patterns, on the mixed log.
//!
//! It prints peak RSS and a Markdown table.

use novamedic_logs::{Catalogue, FaultTracker, Joiner, LineSplitter};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const GIB: u64 = 1 << 30;

fn main() {
    let gib: f64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| {
            a.parse()
                .expect("the argument is a size in GiB, e.g. 1 or 0.25")
        })
        .unwrap_or(1.0);
    let target_bytes = (gib * GIB as f64) as u64;
    let dir = tempfile::tempdir().expect("temp dir");
    let mixed = dir.path().join("mixed.log");
    let routine = dir.path().join("routine.log");
    let mixed_bytes = generate(&mixed, target_bytes, true);
    let routine_bytes = generate(&routine, target_bytes, false);

    let (catalogue, errors) = Catalogue::shipped();
    assert!(errors.is_empty(), "shipped catalogue errors: {errors:?}");
    let catalogue = Arc::new(catalogue);

    let (timing_a, records_a, matched_a) = run_pipeline(&mixed, &catalogue, false);
    let (timing_a2, _, _) = run_pipeline(&mixed, &catalogue, true);
    let (timing_b, records_b, matched_b) = run_pipeline(&routine, &catalogue, false);
    let grep = run_grep(&mixed, &catalogue, dir.path());

    let size = |bytes: u64| format!("{:.2} GiB", bytes as f64 / GIB as f64);
    let row =
        |path: &str, input: String, records: String, matched: String, bytes: u64, t: Timing| {
            println!(
                "| {path} | {input} | {records} | {matched} | {:.2} | {:.2} | {:.2} | {:.2} |",
                t.wall_seconds,
                t.cpu_seconds,
                bytes as f64 / t.wall_seconds / 1e9,
                bytes as f64 / t.cpu_seconds / 1e9
            );
        };
    println!("| path | input | records | matched | wall s | CPU s | GB/s wall | GB/s per CPU s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mixed_size = size(mixed_bytes);
    row(
        "(a) split + join + ids + classify",
        format!("mixed {mixed_size}"),
        records_a.to_string(),
        matched_a.to_string(),
        mixed_bytes,
        timing_a,
    );
    row(
        "(a2) path (a) + fault tracker",
        format!("mixed {mixed_size}"),
        records_a.to_string(),
        matched_a.to_string(),
        mixed_bytes,
        timing_a2,
    );
    row(
        "(b) path (a), routine records only",
        format!("routine {}", size(routine_bytes)),
        records_b.to_string(),
        matched_b.to_string(),
        routine_bytes,
        timing_b,
    );
    match grep {
        Some((timing, count)) => row(
            "(c) `grep -E -c -f patterns`",
            format!("mixed {mixed_size}"),
            "-".to_string(),
            format!("{count} lines"),
            mixed_bytes,
            timing,
        ),
        None => println!("| (c) `grep -E -c -f patterns` | not run: grep failed | | | | | | |"),
    }
    println!(
        "\npeak RSS (VmHWM): {}",
        peak_rss().unwrap_or_else(|| "unknown".to_string())
    );
}

/// Streams `path` through the pipeline; returns (wall and CPU time, records, matched records).
fn run_pipeline(path: &Path, catalogue: &Arc<Catalogue>, with_tracker: bool) -> (Timing, u64, u64) {
    let mut file = File::open(path).expect("open generated log");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut splitter = LineSplitter::new();
    let mut joiner = Joiner::new();
    let mut tracker = FaultTracker::new(catalogue.clone(), time::UtcOffset::UTC);
    let (mut records, mut matched) = (0u64, 0u64);
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut on_record = |record: &novamedic_logs::Record| {
        records += 1;
        let classification = catalogue.classify(record);
        if classification.fault.is_some() {
            matched += 1;
        }
        if with_tracker {
            tracker.observe_classified(record, classification);
        }
    };
    loop {
        let read = file.read(&mut buffer).expect("read generated log");
        if read == 0 {
            break;
        }
        splitter.feed(&buffer[..read], |line, truncated| {
            if let Some(record) = joiner.push_line(line, truncated) {
                on_record(record);
            }
        });
    }
    splitter.finish(|line, truncated| {
        if let Some(record) = joiner.push_line(line, truncated) {
            on_record(record);
        }
    });
    if let Some(record) = joiner.finish() {
        on_record(record);
    }
    let timing = Timing {
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_seconds() - cpu_started,
    };
    (timing, records, matched)
}

/// Wall-clock time and time on a CPU. The machine may be shared, so throughput is
/// given per CPU second as well: it excludes time spent waiting for a CPU.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall_seconds: f64,
    cpu_seconds: f64,
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`, first field, ns).
fn thread_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos: f64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    nanos / 1e9
}

/// CPU time of waited-for children (`/proc/self/stat` cutime + cstime, in clock
/// ticks of 1/100 s, the value of `sysconf(_SC_CLK_TCK)` on Linux).
fn children_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name: state is field 0, so cutime (stat field 16) is index 13.
    (ticks(13) + ticks(14)) / 100.0
}

/// Times `grep -E -c -f` with the catalogue's patterns (as far as ERE accepts them).
fn run_grep(log: &Path, catalogue: &Catalogue, dir: &Path) -> Option<(Timing, String)> {
    let patterns_path = dir.join("patterns.txt");
    let mut patterns = String::new();
    for pattern in catalogue.fault_patterns() {
        // ERE has no inline flags; grep matches line by line anyway.
        patterns += pattern.trim_start_matches("(?s)");
        patterns.push('\n');
    }
    std::fs::write(&patterns_path, patterns).ok()?;
    let started = Instant::now();
    let cpu_started = children_cpu_seconds();
    let output = Command::new("grep")
        .env("LC_ALL", "C")
        .args(["-E", "-c", "-f"])
        .arg(&patterns_path)
        .arg(log)
        .output()
        .ok()?;
    let timing = Timing {
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: children_cpu_seconds() - cpu_started,
    };
    if !output.status.success() {
        eprintln!("grep failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    Some((
        timing,
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    ))
}

fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_string())
}

const REQUEST: &str = "req-5c0f2b9e-7d43-4a8e-9b1c-3f2e8d6a4b10";
const INSTANCE: &str = "3d9c6a1e-52b7-4f0e-9a8d-1c2b3e4f5a6b";

/// Writes records until `target_bytes`; returns the bytes written.
fn generate(path: &Path, target_bytes: u64, with_errors: bool) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create log"));
    let mut written = 0u64;
    let mut i = 0u64;
    while written < target_bytes {
        let seconds = i / 20;
        let ts = format!(
            "2026-03-02 {:02}:{:02}:{:02}.{:03} 2211",
            (seconds / 3600) % 24,
            (seconds / 60) % 60,
            seconds % 60,
            (i * 37) % 1000
        );
        let record = if with_errors && i % 100 == 99 {
            error_record(&ts)
        } else if with_errors && i % 100 == 50 {
            format!("{ts} WARNING nova.compute.manager [None {REQUEST} - - - - - -] While synchronizing instance power states, found 14 instances in the database and 13 instances on the hypervisor.\n")
        } else {
            routine_record(&ts, i)
        };
        out.write_all(record.as_bytes()).expect("write log");
        written += record.len() as u64;
        i += 1;
    }
    out.flush().expect("flush log");
    written
}

fn routine_record(ts: &str, i: u64) -> String {
    match i % 4 {
        0 => format!("{ts} DEBUG oslo_concurrency.lockutils [None {REQUEST} - - - - - -] Lock \"compute_resources\" acquired by \"nova.compute.resource_tracker.ResourceTracker._update_available_resource\" :: waited 0.000s inner /usr/lib/python3/dist-packages/oslo_concurrency/lockutils.py:386\n"),
        1 => format!("{ts} DEBUG oslo_service.periodic_task [None {REQUEST} - - - - - -] Running periodic task ComputeManager._poll_rebooting_instances run_periodic_tasks /usr/lib/python3/dist-packages/oslo_service/periodic_task.py:210\n"),
        2 => format!("{ts} INFO nova.compute.manager [{REQUEST} 4b1f2e3d5c6a47b89c0d1e2f3a4b5c6d 8a7b6c5d4e3f42a1b0c9d8e7f6a5b4c3 - default default] [instance: {INSTANCE}] Took 19.05 seconds to spawn the instance on the hypervisor.\n"),
        _ => format!("{ts} INFO nova.compute.resource_tracker [None {REQUEST} - - - - - -] Final resource view: name=compute-01.example.net phys_ram=128648MB used_ram=4608MB phys_disk=878GB used_disk=40GB total_vcpus=32 used_vcpus=2 pci_stats=[]\n"),
    }
}

fn error_record(ts: &str) -> String {
    let prefix = format!("{ts} ERROR nova.compute.manager [instance: {INSTANCE}]");
    let mut record = format!("{ts} ERROR nova.compute.manager [{REQUEST} 4b1f2e3d5c6a47b89c0d1e2f3a4b5c6d 8a7b6c5d4e3f42a1b0c9d8e7f6a5b4c3 - default default] [instance: {INSTANCE}] Instance failed to spawn: libvirt.libvirtError: internal error: process exited while connecting to monitor\n");
    let frames = [
        "Traceback (most recent call last):",
        "  File \"/usr/lib/python3/dist-packages/nova/compute/manager.py\", line 2743, in _build_resources",
        "    yield resources",
        "  File \"/usr/lib/python3/dist-packages/nova/virt/libvirt/driver.py\", line 4317, in spawn",
        "    self._create_guest_with_network(",
        "  File \"/usr/lib/python3/dist-packages/nova/virt/libvirt/guest.py\", line 165, in launch",
        "    return self._domain.createWithFlags(flags)",
        "  File \"/usr/lib/python3/dist-packages/libvirt.py\", line 1409, in createWithFlags",
        "    raise libvirtError('virDomainCreateWithFlags() failed')",
        "libvirt.libvirtError: internal error: process exited while connecting to monitor",
    ];
    for frame in frames {
        record += &format!("{prefix} {frame}\n");
    }
    record
}
