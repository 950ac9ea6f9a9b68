//! Section 1: memory and CPU use of the agent's unit (the agent and the
//! `journalctl` it runs) next to the node exporter, all running for the
//! same window on the same host.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::node_exporter::{NodeExporter, Scrape};
use crate::operator::{report_sequence, Operator};
use crate::proc_stats::{self, ProcessSample, UnitProcess};
use crate::stats::{self, mib};

/// How often RSS is sampled during the window.
const RSS_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// How many of the largest mappings the table lists per process.
const MAPPINGS_SHOWN: usize = 6;

/// The agent's process name (`comm`).
const AGENT_COMM: &str = "novamedic-agent";

/// One process followed through the window.
pub struct Usage {
    pub label: String,
    pub pid: u32,
    first: ProcessSample,
    /// The last sample; the one before the exit for a process that exited.
    last: ProcessSample,
    /// VmRSS at each sample time; 0 once the process has exited.
    rss_samples_bytes: Vec<u64>,
    exited: bool,
    /// What the process did in the window, in words for the table.
    work: String,
    /// Resident bytes per mapping at the end of the window, largest first.
    rss_by_mapping: Vec<(String, u64)>,
}

impl Usage {
    fn start(pid: u32, label: String) -> Result<Self> {
        let first = proc_stats::sample(pid)?;
        Ok(Usage {
            label,
            pid,
            first,
            last: first,
            rss_samples_bytes: Vec::new(),
            exited: false,
            work: String::new(),
            rss_by_mapping: Vec::new(),
        })
    }

    /// Takes one sample; a process that has exited stays at 0 from then on.
    fn sample(&mut self) {
        if !self.exited {
            match proc_stats::sample(self.pid) {
                Ok(sample) => self.last = sample,
                Err(_) => self.exited = true,
            }
        }
        let rss = if self.exited { 0 } else { self.last.rss_bytes };
        self.rss_samples_bytes.push(rss);
    }

    fn finish(&mut self) {
        self.sample();
        self.rss_by_mapping = proc_stats::rss_by_mapping(self.pid).unwrap_or_default();
        if self.exited {
            self.work = "exited during the window".to_string();
        }
    }

    fn max_rss_bytes(&self) -> u64 {
        self.rss_samples_bytes.iter().copied().max().unwrap_or(0)
    }

    fn mean_rss_bytes(&self) -> u64 {
        let count = self.rss_samples_bytes.len().max(1) as u64;
        self.rss_samples_bytes.iter().sum::<u64>() / count
    }

    fn cpu_seconds(&self) -> f64 {
        proc_stats::ticks_to_seconds(self.last.cpu_ticks - self.first.cpu_ticks)
    }
}

/// The whole section's result.
pub struct Footprint {
    pub window: Duration,
    /// Every process of the agent's unit, the agent first.
    pub unit: Vec<Usage>,
    pub exporter: Usage,
}

/// The processes and settings the window measures.
pub struct Subjects<'a> {
    pub operator: &'a mut Operator,
    pub node: &'a str,
    /// The processes in the agent's unit at the start of the window.
    pub unit_processes: Vec<UnitProcess>,
    pub exporter: &'a NodeExporter,
    pub window: Duration,
    pub scrape_interval: Duration,
}

/// Samples every process each second for the window and scrapes the
/// exporter every `scrape_interval`, starting with one scrape before the
/// window so the exporter's first-scrape setup is not counted as steady
/// state.
pub fn measure(subjects: Subjects<'_>) -> Result<Footprint> {
    subjects.exporter.scrape()?;
    let sequence_before = report_sequence_of(subjects.operator, subjects.node)?;

    let mut unit = start_unit_usages(&subjects.unit_processes)?;
    let mut exporter = Usage::start(
        subjects.exporter.pid(),
        "prometheus-node-exporter (host)".to_string(),
    )?;
    let started = Instant::now();
    let mut scrapes: Vec<Scrape> = Vec::new();
    let mut next_scrape = started + subjects.scrape_interval;
    let mut next_sample = started;

    while started.elapsed() < subjects.window {
        let now = Instant::now();
        if now >= next_scrape {
            scrapes.push(subjects.exporter.scrape()?);
            next_scrape += subjects.scrape_interval;
        }
        if now >= next_sample {
            unit.iter_mut().for_each(Usage::sample);
            exporter.sample();
            next_sample += RSS_SAMPLE_PERIOD;
        }
        let wake = next_sample.min(next_scrape).min(started + subjects.window);
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }

    let window = started.elapsed();
    unit.iter_mut().for_each(Usage::finish);
    exporter.finish();
    if unit[0].exited {
        anyhow::bail!("the agent (PID {}) exited during the window", unit[0].pid);
    }
    let sequence_after = report_sequence_of(subjects.operator, subjects.node)?;
    unit[0].work = format!(
        "{} reports sent (sequence {sequence_before} to {sequence_after})",
        sequence_after.saturating_sub(sequence_before)
    );
    let scrape_ms: Vec<f64> = scrapes.iter().map(|s| stats::millis(s.duration)).collect();
    exporter.work = format!(
        "{} scrapes of {} bytes, median {:.0} ms",
        scrapes.len(),
        scrapes.last().map_or(0, |s| s.bytes),
        stats::summarise(&scrape_ms).map_or(0.0, |s| s.median)
    );
    Ok(Footprint {
        window,
        unit,
        exporter,
    })
}

/// Starts following the unit's processes with the agent first.
fn start_unit_usages(processes: &[UnitProcess]) -> Result<Vec<Usage>> {
    let agent = processes
        .iter()
        .find(|p| p.comm == AGENT_COMM)
        .with_context(|| format!("no {AGENT_COMM} among the unit's processes {processes:?}"))?;
    let mut usages = vec![Usage::start(
        agent.pid,
        format!("{AGENT_COMM} (packaged unit, in the container)"),
    )?];
    for process in processes.iter().filter(|p| p.pid != agent.pid) {
        let label = format!("{} (same unit, started by the agent)", process.comm);
        usages.push(Usage::start(process.pid, label)?);
    }
    Ok(usages)
}

fn report_sequence_of(operator: &mut Operator, node: &str) -> Result<u64> {
    Ok(operator.node(node)?.map_or(0, |s| report_sequence(&s)))
}

/// Returns the highest sum of the unit's VmRSS over the sample times.
fn unit_max_rss_bytes(unit: &[Usage]) -> u64 {
    let samples = unit
        .iter()
        .map(|u| u.rss_samples_bytes.len())
        .max()
        .unwrap_or(0);
    (0..samples)
        .map(|i| {
            unit.iter()
                .map(|u| u.rss_samples_bytes.get(i).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// Prints the section's tables and the RSS target's verdicts.
pub fn print(footprint: &Footprint) {
    let window_seconds = footprint.window.as_secs_f64();
    println!("Window: {window_seconds:.1} s; RSS sampled every second.\n");
    stats::header(&[
        "process",
        "RSS mean (MiB)",
        "RSS max (MiB)",
        "VmHWM (MiB)",
        "RssAnon / RssFile at end (MiB)",
        "threads",
        "CPU (s)",
        "CPU (% of one core)",
        "work in the window",
    ]);
    for usage in footprint.unit.iter().chain([&footprint.exporter]) {
        print_usage_row(usage, window_seconds);
    }
    if footprint.unit.len() > 1 {
        let cpu_seconds: f64 = footprint.unit.iter().map(Usage::cpu_seconds).sum();
        stats::row(&[
            "agent's unit, all processes (sum)".to_string(),
            String::new(),
            mib(unit_max_rss_bytes(&footprint.unit)),
            String::new(),
            String::new(),
            String::new(),
            format!("{cpu_seconds:.2}"),
            format!("{:.3}", cpu_seconds / window_seconds * 100.0),
            "sum of VmRSS counts shared pages (libc) once per process".to_string(),
        ]);
    }

    println!("\nLargest resident mappings at the end of the window (from /proc/PID/smaps):\n");
    stats::header(&["process", "RSS by mapping (MiB)"]);
    for usage in footprint.unit.iter().chain([&footprint.exporter]) {
        let top: Vec<String> = usage
            .rss_by_mapping
            .iter()
            .take(MAPPINGS_SHOWN)
            .map(|(name, bytes)| format!("{name} {}", mib(*bytes)))
            .collect();
        stats::row(&[usage.label.clone(), top.join(", ")]);
    }

    let exporter_max = footprint.exporter.max_rss_bytes().max(1) as f64;
    let agent_ratio = footprint.unit[0].max_rss_bytes() as f64 / exporter_max;
    let unit_ratio = unit_max_rss_bytes(&footprint.unit) as f64 / exporter_max;
    println!();
    println!(
        "Agent process max RSS / node exporter max RSS = {agent_ratio:.2}; target at most \
         0.50: {}.",
        verdict(agent_ratio)
    );
    println!(
        "Agent's whole unit max RSS / node exporter max RSS = {unit_ratio:.2}; target at most \
         0.50: {}.",
        verdict(unit_ratio)
    );
}

fn print_usage_row(usage: &Usage, window_seconds: f64) {
    let cpu_seconds = usage.cpu_seconds();
    stats::row(&[
        format!("{} (PID {})", usage.label, usage.pid),
        mib(usage.mean_rss_bytes()),
        mib(usage.max_rss_bytes()),
        mib(usage.last.peak_rss_bytes),
        format!(
            "{} / {}",
            mib(usage.last.rss_anon_bytes),
            mib(usage.last.rss_file_bytes)
        ),
        usage.last.threads.to_string(),
        format!("{cpu_seconds:.2}"),
        format!("{:.3}", cpu_seconds / window_seconds * 100.0),
        usage.work.clone(),
    ]);
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= 0.5 {
        "met"
    } else {
        "not met"
    }
}
