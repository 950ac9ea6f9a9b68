//! The policy file, `/etc/novamedic/policy.toml`: which conditions may lead
//! to an automated restart, how they are confirmed, and the limits that keep
//! automation from causing a restart storm.
//!
//! Every key is optional and the built-in default is safe on its own. An
//! unknown key or a value out of range is an error that names the key, so a
//! typo never silently keeps a default.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_POLICY_PATH: &str = "/etc/novamedic/policy.toml";

/// Mode of the policy: act, record only, or evaluate nothing.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Restart nova-compute within the limits.
    Enforce,
    /// Decide as `enforce` would and record the decision, but send nothing.
    /// The built-in default: automation acts only once an operator has
    /// read its recorded decisions and set `mode = "enforce"`.
    #[default]
    DryRun,
    /// Evaluate nothing.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
            Mode::Off => "off",
        })
    }
}

/// A fault the policy can act on, named as in the policy file.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// The unit is failed, or inactive after an unclean exit, and no
    /// operator stopped it.
    UnitFailed,
    /// systemd stopped restarting the unit: `Result=start-limit-hit`, or
    /// failed after automatic restarts (`NRestarts` above 0).
    StartLimitHit,
    /// The RPC probe got no reply from a reachable broker: nova-compute no
    /// longer consumes its queue.
    RpcNotResponding,
    /// The process is stopped (state T or t). With a tracer attached the
    /// `Traced` blocker holds it.
    ProcessStopped,
    /// The unit is active but no nova-compute process exists.
    ProcessMissing,
    /// An active log fault whose signature marks it as cleared by a restart.
    LogFault,
    /// nova's own service heartbeat is older than `service_down_time`.
    HeartbeatStale,
}

impl Condition {
    pub const ALL: [Condition; 7] = [
        Condition::UnitFailed,
        Condition::StartLimitHit,
        Condition::RpcNotResponding,
        Condition::ProcessStopped,
        Condition::ProcessMissing,
        Condition::LogFault,
        Condition::HeartbeatStale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::UnitFailed => "unit-failed",
            Condition::StartLimitHit => "start-limit-hit",
            Condition::RpcNotResponding => "rpc-not-responding",
            Condition::ProcessStopped => "process-stopped",
            Condition::ProcessMissing => "process-missing",
            Condition::LogFault => "log-fault",
            Condition::HeartbeatStale => "heartbeat-stale",
        }
    }

    /// Returns whether the condition concerns a running unit, so that the
    /// start-up grace applies. A unit that is down has nothing to wait for.
    pub fn needs_running_unit(self) -> bool {
        !matches!(self, Condition::UnitFailed | Condition::StartLimitHit)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one action automation may take.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    #[default]
    RestartNovaCompute,
}

/// A rule: a condition, how it is confirmed, and the action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub action: Action,
    /// Consecutive reports that must show the condition.
    pub confirm_reports: u32,
    /// Time those reports must span, first to last.
    pub confirm_seconds: u64,
}

/// The whole policy, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub rules: Vec<Rule>,
    /// After each start of nova-compute, conditions that need a running
    /// unit are not acted on for this long, because nova-compute reports ready
    /// to systemd before its start-up work ends.
    pub start_grace_seconds: u64,
    /// After a restart, the node must be healthy within this time (new
    /// InvocationID, unit active, condition gone) or the attempt failed.
    pub verify_seconds: u64,
    pub node: NodeLimits,
    pub fleet: FleetLimits,
}

/// Limits for one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// Automated restarts allowed per window; the next confirmed fault
    /// marks the node "needs a human".
    pub max_restarts: u32,
    pub window_seconds: u64,
    /// Wait after the first restart before a second; doubled for each
    /// further restart in the window.
    pub backoff_seconds: u64,
    /// Disable the node's nova-compute service in Nova when it needs a
    /// human, so the scheduler stops sending builds to it. Needs the
    /// controller's `[openstack]` table; `novamedic clear` enables the
    /// service again if novamedic disabled it and nobody changed it since.
    pub disable_service_on_escalation: bool,
}

/// Limits for the whole fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetLimits {
    /// Automated restarts in flight (sent and not yet verified) at once.
    pub max_in_flight: u32,
    /// Minimum time between two automated restarts anywhere in the fleet.
    pub min_gap_seconds: u64,
    /// Random extra wait added to each gap, up to this much.
    pub jitter_seconds: u64,
    /// The storm guard trips when at least this share of the fleet shows a
    /// condition at once...
    pub storm_percent: u32,
    /// ...and at least this many nodes do.
    pub storm_min_nodes: u32,
    /// Findings younger than this count towards the storm guard.
    pub storm_window_seconds: u64,
    /// The storm guard also trips after this many automated restarts in the
    /// node window, fleet-wide: a slow rolling failure is a storm too.
    pub max_restarts_per_window: u32,
    /// The storm guard's pause ends by itself once neither trigger has held
    /// for this long; 0 leaves the resume to an operator.
    pub storm_cooldown_seconds: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::default(),
            rules: Condition::ALL
                .iter()
                .map(|&condition| default_rule(condition))
                .collect(),
            start_grace_seconds: 300,
            verify_seconds: 600,
            node: NodeLimits::default(),
            fleet: FleetLimits::default(),
        }
    }
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_restarts: 3,
            window_seconds: 3_600,
            backoff_seconds: 120,
            disable_service_on_escalation: false,
        }
    }
}

impl Default for FleetLimits {
    fn default() -> Self {
        FleetLimits {
            max_in_flight: 2,
            min_gap_seconds: 30,
            jitter_seconds: 30,
            storm_percent: 10,
            storm_min_nodes: 3,
            storm_window_seconds: 300,
            max_restarts_per_window: 20,
            // Three storm windows: a shared cause (a broker failover, a
            // conductor restart) often flaps before it settles.
            storm_cooldown_seconds: 900,
        }
    }
}

/// Builds the default rule: three reports over at least 30 s. At the
/// agent's 10 s report interval that is the shortest span in which a
/// condition is seen by three independent collections, long enough for a
/// RabbitMQ failover or a unit's own Restart= to play out first. A stopped
/// process gets two minutes: operators pause processes briefly on purpose.
fn default_rule(condition: Condition) -> Rule {
    let confirm_seconds = match condition {
        Condition::ProcessStopped => 120,
        _ => 30,
    };
    Rule {
        name: condition.as_str().to_string(),
        condition,
        action: Action::RestartNovaCompute,
        confirm_reports: 3,
        confirm_seconds,
    }
}

impl Policy {
    /// Returns the rule for a condition, if the policy has one.
    pub fn rule(&self, condition: Condition) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.condition == condition)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    mode: Option<Mode>,
    start_grace_seconds: Option<u64>,
    verify_seconds: Option<u64>,
    #[serde(default)]
    node: NodeLimits,
    #[serde(default)]
    fleet: FleetLimits,
    /// When present, replaces the built-in rules entirely.
    rule: Option<Vec<FileRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    name: Option<String>,
    condition: Condition,
    #[serde(default)]
    action: Action,
    confirm_reports: Option<u32>,
    confirm_seconds: Option<u64>,
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid policy file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{key}` in {}: {value} {problem}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        problem: String,
    },
}

/// Loads the policy. `explicit` is a path given on the command line, and
/// that file must exist. Without it, the default path is read if it exists,
/// else the built-in policy applies.
pub fn load(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_POLICY_PATH));
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) if explicit.is_none() && err.kind() == std::io::ErrorKind::NotFound => {
            Ok(Policy::default())
        }
        Err(source) => Err(PolicyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses and validates a policy file's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let file: FilePolicy = toml::from_str(text).map_err(|err| PolicyError::Parse {
        path: path.to_path_buf(),
        message: located_message(text, &err),
    })?;
    let invalid = |key: &str, value: String, problem: &str| PolicyError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        value,
        problem: problem.to_string(),
    };

    let defaults = Policy::default();
    let mut policy = Policy {
        mode: file.mode.unwrap_or(defaults.mode),
        rules: defaults.rules.clone(),
        start_grace_seconds: file
            .start_grace_seconds
            .unwrap_or(defaults.start_grace_seconds),
        verify_seconds: file.verify_seconds.unwrap_or(defaults.verify_seconds),
        node: file.node,
        fleet: file.fleet,
    };

    if let Some(file_rules) = file.rule {
        let mut seen = BTreeSet::new();
        policy.rules = Vec::with_capacity(file_rules.len());
        for (index, rule) in file_rules.into_iter().enumerate() {
            let base = default_rule(rule.condition);
            let key = format!("rule[{index}].condition");
            if !seen.insert(rule.condition) {
                return Err(invalid(
                    &key,
                    format!("\"{}\"", rule.condition),
                    "appears in two rules; keep one rule per condition",
                ));
            }
            let confirm_reports = rule.confirm_reports.unwrap_or(base.confirm_reports);
            if confirm_reports < 2 {
                return Err(invalid(
                    &format!("rule[{index}].confirm_reports"),
                    confirm_reports.to_string(),
                    "is below 2; one report is never confirmation",
                ));
            }
            policy.rules.push(Rule {
                name: rule.name.unwrap_or(base.name),
                condition: rule.condition,
                action: rule.action,
                confirm_reports,
                confirm_seconds: rule.confirm_seconds.unwrap_or(base.confirm_seconds),
            });
        }
    }

    if policy.node.max_restarts == 0 {
        return Err(invalid(
            "node.max_restarts",
            "0".into(),
            "allows no restart; set mode = \"off\" to turn automation off",
        ));
    }
    if policy.node.window_seconds == 0 {
        return Err(invalid(
            "node.window_seconds",
            "0".into(),
            "is not a window; use at least 60",
        ));
    }
    if policy.fleet.max_in_flight == 0 {
        return Err(invalid(
            "fleet.max_in_flight",
            "0".into(),
            "allows no restart; set mode = \"off\" to turn automation off",
        ));
    }
    if !(1..=100).contains(&policy.fleet.storm_percent) {
        return Err(invalid(
            "fleet.storm_percent",
            policy.fleet.storm_percent.to_string(),
            "is not a percentage from 1 to 100",
        ));
    }
    if policy.fleet.storm_min_nodes == 0 {
        return Err(invalid(
            "fleet.storm_min_nodes",
            "0".into(),
            "would trip the storm guard with no failing node; use at least 1",
        ));
    }
    if policy.verify_seconds == 0 {
        return Err(invalid(
            "verify_seconds",
            "0".into(),
            "leaves no time to verify a restart",
        ));
    }
    Ok(policy)
}

/// Formats a TOML error as "line N: `text of the line`: message", so the operator
/// sees which key is wrong.
fn located_message(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_string();
    };
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    let line_number = text[..span.start].matches('\n').count() + 1;
    format!(
        "line {line_number}: `{}`: {}",
        text[line_start..line_end].trim(),
        err.message()
    )
}
