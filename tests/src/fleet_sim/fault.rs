//! The fault script: which simulated nodes fail, when, how, and what a
//! restart does to them.
//!
//! One fault is a line of space-separated `key=value` words, for example
//! `at=30s nodes=20% kind=unit_failed` (once) or `every=20s count=2
//! kind=rpc_not_responding after_restart=keeps_failing` (rolling). The
//! format is described in tests/README.md.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What goes wrong on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The unit fails (`failed`/`failed`, result `exit-code`) and its
    /// process is gone.
    UnitFailed,
    /// systemd gave up restarting the unit (`Result=start-limit-hit`).
    StartLimitHit,
    /// The unit runs, and the RPC probe gets no reply.
    RpcNotResponding,
    /// The unit runs, and its process is stopped (state T, no tracer).
    ProcessStopped,
}

impl FaultKind {
    const NAMES: [(&'static str, FaultKind); 4] = [
        ("unit_failed", FaultKind::UnitFailed),
        ("start_limit_hit", FaultKind::StartLimitHit),
        ("rpc_not_responding", FaultKind::RpcNotResponding),
        ("process_stopped", FaultKind::ProcessStopped),
    ];

    /// Returns whether the fault stops the unit, so the agent would see a
    /// unit state change and report at once.
    pub fn stops_unit(self) -> bool {
        matches!(self, FaultKind::UnitFailed | FaultKind::StartLimitHit)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, kind)| kind == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

impl FromStr for FaultKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, kind)| *kind)
            .with_context(|| {
                let names: Vec<_> = Self::NAMES.iter().map(|(name, _)| *name).collect();
                format!(
                    "unknown fault kind {text:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What a restart does to a faulty node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRestart {
    /// The fault is gone.
    #[default]
    Recover,
    /// The fault stays: a failed unit fails again at once, a hung one hangs
    /// again.
    KeepsFailing,
    /// The node is healthy for one report, then the fault returns.
    Flaps,
}

impl FromStr for AfterRestart {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "recover" => Ok(AfterRestart::Recover),
            "keeps_failing" => Ok(AfterRestart::KeepsFailing),
            "flaps" => Ok(AfterRestart::Flaps),
            _ => bail!("unknown after_restart {text:?}; use recover, keeps_failing or flaps"),
        }
    }
}

/// How many nodes a fault takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCount {
    Count(usize),
    /// A share of the fleet in percent, rounded up.
    Percent(u32),
    /// These nodes, by name.
    Named(Vec<String>),
}

impl NodeCount {
    /// Returns the number of nodes in a fleet of `fleet_size`.
    pub fn resolve(&self, fleet_size: usize) -> usize {
        match self {
            NodeCount::Count(count) => *count,
            NodeCount::Percent(percent) => (fleet_size * *percent as usize).div_ceil(100),
            NodeCount::Named(names) => names.len(),
        }
    }
}

/// When a fault strikes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Once, this long after the whole fleet connected.
    At(Duration),
    /// Every `every`, from `start` on, at most `times` ticks (no limit when
    /// `None`), until no healthy node is left.
    Every {
        every: Duration,
        start: Duration,
        times: Option<u32>,
    },
}

/// One line of the fault script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    pub schedule: Schedule,
    /// Nodes per strike (per tick for a rolling fault).
    pub nodes: NodeCount,
    pub kind: FaultKind,
    pub after_restart: AfterRestart,
}

impl FromStr for FaultSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        parse_spec(text).with_context(|| format!("invalid fault {text:?}"))
    }
}

fn parse_spec(text: &str) -> Result<FaultSpec> {
    let mut at = None;
    let mut every = None;
    let mut start = None;
    let mut times = None;
    let mut nodes = None;
    let mut kind = None;
    let mut after_restart = AfterRestart::default();
    for word in text.split_whitespace() {
        if word == "keeps_failing" {
            after_restart = AfterRestart::KeepsFailing;
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            bail!("{word:?} is not key=value");
        };
        match key {
            "at" => at = Some(parse_duration(value)?),
            "every" => every = Some(parse_duration(value)?),
            "start" => start = Some(parse_duration(value)?),
            "times" => times = Some(parse_number(key, value)?),
            "nodes" | "count" => nodes = Some(parse_node_count(value)?),
            "node" => {
                nodes = Some(NodeCount::Named(
                    value.split(',').map(str::to_string).collect(),
                ))
            }
            "kind" => kind = Some(value.parse()?),
            "after_restart" => after_restart = value.parse()?,
            _ => bail!(
                "unknown key {key:?}; use at, every, start, times, nodes, count, node, kind \
                 or after_restart"
            ),
        }
    }
    let schedule = match (at, every) {
        (Some(at), None) => Schedule::At(at),
        (None, Some(every)) if every.is_zero() => bail!("every=0 would strike without pause"),
        (None, Some(every)) => Schedule::Every {
            every,
            start: start.unwrap_or(every),
            times,
        },
        (Some(_), Some(_)) => bail!("set either at= (once) or every= (rolling), not both"),
        (None, None) => bail!("missing at= (once) or every= (rolling)"),
    };
    let Some(kind) = kind else {
        bail!("missing kind=, for example kind=unit_failed");
    };
    Ok(FaultSpec {
        schedule,
        nodes: nodes.unwrap_or(NodeCount::Count(1)),
        kind,
        after_restart,
    })
}

fn parse_node_count(value: &str) -> Result<NodeCount> {
    if let Some(percent) = value.strip_suffix('%') {
        let percent: u32 = parse_number("nodes", percent)?;
        if !(1..=100).contains(&percent) {
            bail!("nodes={value} is not a share from 1% to 100%");
        }
        return Ok(NodeCount::Percent(percent));
    }
    Ok(NodeCount::Count(parse_number("nodes", value)?))
}

fn parse_number<T: FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{key}={value} is not a whole number"))
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit_ms) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1_000)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60_000)
    } else {
        (text, 1_000)
    };
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration such as 500ms, 30s or 2m"))?;
    Ok(Duration::from_millis(number * unit_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_by_share() {
        let spec: FaultSpec = "at=30s nodes=20% kind=unit_failed".parse().unwrap();
        assert_eq!(spec.schedule, Schedule::At(Duration::from_secs(30)));
        assert_eq!(spec.nodes, NodeCount::Percent(20));
        assert_eq!(spec.nodes.resolve(50), 10);
        assert_eq!(spec.kind, FaultKind::UnitFailed);
        assert_eq!(spec.after_restart, AfterRestart::Recover);
    }

    #[test]
    fn rolling_with_options() {
        let spec: FaultSpec = "every=20s count=2 kind=rpc_not_responding keeps_failing times=3"
            .parse()
            .unwrap();
        assert_eq!(
            spec.schedule,
            Schedule::Every {
                every: Duration::from_secs(20),
                start: Duration::from_secs(20),
                times: Some(3),
            }
        );
        assert_eq!(spec.nodes, NodeCount::Count(2));
        assert_eq!(spec.after_restart, AfterRestart::KeepsFailing);
    }

    #[test]
    fn named_nodes_and_durations() {
        let spec: FaultSpec = "at=500ms node=a,b kind=process_stopped after_restart=flaps"
            .parse()
            .unwrap();
        assert_eq!(spec.schedule, Schedule::At(Duration::from_millis(500)));
        assert_eq!(spec.nodes.resolve(10), 2);
        assert_eq!(spec.after_restart, AfterRestart::Flaps);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("nodes=2 kind=unit_failed", "missing at="),
            ("at=1s", "missing kind="),
            ("at=1s kind=melted", "unknown fault kind"),
            ("at=1s every=2s kind=unit_failed", "not both"),
            ("at=soon kind=unit_failed", "not a duration"),
            ("at=1s nodes=0% kind=unit_failed", "from 1% to 100%"),
            ("at=1s colour=red kind=unit_failed", "unknown key"),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", text.parse::<FaultSpec>().unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
