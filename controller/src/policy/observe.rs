//! The policy's view of one node at one report, and the conditions and
//! blockers that follow from it.
//!
//! An [`Observation`] is built from a node report plus, when a cloud is
//! configured, nova's own view of the service. It carries no wire or
//! storage types, so the policy can be tested with plain values.

use serde::Serialize;

use super::rules::Condition;

/// The node's state at one report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Observation {
    /// Controller clock when the report arrived, Unix milliseconds.
    pub at_unix_ms: i64,
    pub unit: UnitState,
    /// The nova-compute process, when the agent found one.
    pub process: Option<ProcessState>,
    pub rpc: RpcState,
    pub log: LogState,
    /// nova's service record, when a cloud is configured.
    pub service: Option<ServiceState>,
    /// Instances on the node in the middle of an operation that a restart
    /// would abort, for example "3f1c… building" or "live migration to cn-2".
    pub work_in_progress: Vec<String>,
    /// Signs, in an operator's words, that a dependency came back after the
    /// unit went down, for example a config file modified since.
    pub dependency_returned: Vec<String>,
}

/// nova-compute's systemd unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitState {
    /// Empty when the agent found no nova-compute unit.
    pub name: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    pub invocation_id: String,
    /// When the unit last started, Unix milliseconds; 0 when unknown.
    pub started_at_unix_ms: i64,
    /// systemd's NRestarts: automatic restarts (`Restart=`) since the last
    /// manual start.
    pub n_restarts: u32,
}

/// The nova-compute process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessState {
    pub pid: u32,
    /// Kernel state letter: R, S, D, T, t, Z.
    pub state: String,
    /// 0 when no tracer is attached.
    pub tracer_pid: u32,
}

/// The RPC liveness probe's latest result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum RpcState {
    /// No probe result: the agent does not probe, or has not yet.
    #[default]
    NotProbed,
    Alive,
    /// The broker took the call and no reply came.
    NotResponding(String),
    /// The broker has no `compute.<host>` queue.
    NoQueue(String),
    /// The broker could not be reached: nothing is known of nova-compute.
    BrokerUnreachable(String),
}

/// The agent's classification of nova-compute's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogState {
    pub faults: Vec<LogFaultState>,
    /// Signature id of a dependency outage that makes a restart useless,
    /// when one is active.
    pub vetoed_by: Option<String>,
    /// The agent's reason for its verdict.
    pub reason: String,
}

/// One active log fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogFaultState {
    pub signature_id: String,
    pub fault_kind: String,
    pub restart_helps: bool,
}

/// nova's own record of the node's nova-compute service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// `state` is "up".
    pub up: bool,
    /// Age of `updated_at` when the report arrived, in seconds.
    pub heartbeat_age_seconds: u64,
    /// nova's `service_down_time` (default 60 s).
    pub service_down_time_seconds: u64,
    pub disabled: bool,
    pub disabled_reason: String,
    /// An operator marked the service down (`forced_down`), which fences
    /// the host, for example before an evacuation.
    pub forced_down: bool,
}

/// A condition seen in one observation, with the evidence for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub condition: Condition,
    pub evidence: String,
}

/// A reason found in one observation not to restart nova-compute, whatever
/// the conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Blocker {
    /// The process is in uninterruptible sleep: a restart would leave an
    /// unkillable process behind. Points at storage; a human must look.
    UninterruptibleSleep(String),
    /// A debugger or tracer is attached to the stopped process.
    Traced(String),
    /// An operator stopped the unit.
    StoppedByOperator(String),
    /// An operator disabled the service in Nova.
    DisabledByOperator(String),
    /// A dependency (broker, placement, database) is down; nova-compute
    /// reconnects by itself when it returns.
    DependencyOutage(String),
    /// Instances on the node are mid-operation.
    WorkInProgress(String),
}

impl Blocker {
    /// Returns whether the blocker needs a human rather than waiting it out.
    pub fn escalates(&self) -> bool {
        matches!(self, Blocker::UninterruptibleSleep(_))
    }

    pub fn detail(&self) -> &str {
        match self {
            Blocker::UninterruptibleSleep(d)
            | Blocker::Traced(d)
            | Blocker::StoppedByOperator(d)
            | Blocker::DisabledByOperator(d)
            | Blocker::DependencyOutage(d)
            | Blocker::WorkInProgress(d) => d,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Blocker::UninterruptibleSleep(_) => "uninterruptible_sleep",
            Blocker::Traced(_) => "traced",
            Blocker::StoppedByOperator(_) => "stopped_by_operator",
            Blocker::DisabledByOperator(_) => "disabled_by_operator",
            Blocker::DependencyOutage(_) => "dependency_outage",
            Blocker::WorkInProgress(_) => "work_in_progress",
        }
    }
}

/// Prefix nova writes into `disabled_reason` when it disables a service by
/// itself, for example after losing libvirt.
const NOVA_AUTO_DISABLE_PREFIX: &str = "AUTO:";

impl Observation {
    fn unit_is(&self, state: &str) -> bool {
        self.unit.active_state == state
    }

    fn process_state(&self) -> Option<&str> {
        self.process.as_ref().map(|process| process.state.as_str())
    }

    /// Lists the conditions present in this observation, in a stable order.
    pub fn findings(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        if self.unit.name.is_empty() {
            return findings;
        }
        let unit = &self.unit;
        if unit.result == "start-limit-hit" && !self.unit_is("active") {
            findings.push(Finding {
                condition: Condition::StartLimitHit,
                evidence: format!(
                    "{} is {} with result start-limit-hit: systemd stopped restarting it",
                    unit.name, unit.active_state
                ),
            });
        } else if self.unit_is("failed") && unit.n_restarts > 0 {
            // systemd 252 keeps the result of the last run (exit-code,
            // signal) when its own Restart= loop runs into the start limit,
            // so a failed unit after automatic restarts is in the limit too:
            // a plain restart would be refused.
            findings.push(Finding {
                condition: Condition::StartLimitHit,
                evidence: format!(
                    "{} is failed with result {} after {} automatic restarts: systemd \
                     stopped restarting it",
                    unit.name, unit.result, unit.n_restarts
                ),
            });
        } else if self.unit_is("failed") || (self.unit_is("inactive") && unclean(&unit.result)) {
            findings.push(Finding {
                condition: Condition::UnitFailed,
                evidence: format!(
                    "{} is {}/{} with result {}",
                    unit.name, unit.active_state, unit.sub_state, unit.result
                ),
            });
        }

        if self.unit_is("active") {
            match &self.process {
                None => findings.push(Finding {
                    condition: Condition::ProcessMissing,
                    evidence: format!("{} is active but no nova-compute process exists", unit.name),
                }),
                // A tracer makes this a blocker as well, so the hold is
                // recorded instead of the node looking healthy.
                Some(process) if matches!(process.state.as_str(), "T" | "t") => {
                    let tracer = match process.tracer_pid {
                        0 => "no tracer".to_string(),
                        pid => format!("tracer PID {pid}"),
                    };
                    findings.push(Finding {
                        condition: Condition::ProcessStopped,
                        evidence: format!(
                            "nova-compute (PID {}) is stopped (state {}) with {tracer}",
                            process.pid, process.state
                        ),
                    })
                }
                Some(_) => {}
            }
            if let RpcState::NotResponding(detail) = &self.rpc {
                findings.push(Finding {
                    condition: Condition::RpcNotResponding,
                    evidence: format!("RPC probe: no reply while the broker answered ({detail})"),
                });
            }
        }

        let helping: Vec<&str> = self
            .log
            .faults
            .iter()
            .filter(|fault| fault.restart_helps)
            .map(|fault| fault.signature_id.as_str())
            .collect();
        if !helping.is_empty() && self.log.vetoed_by.is_none() {
            findings.push(Finding {
                condition: Condition::LogFault,
                evidence: format!("active log faults a restart clears: {}", helping.join(", ")),
            });
        }

        // An operator forced this service down, so its heartbeat tells
        // nothing about nova-compute.
        if let Some(service) = self.service.as_ref().filter(|service| !service.forced_down) {
            if !service.up || service.heartbeat_age_seconds > service.service_down_time_seconds {
                findings.push(Finding {
                    condition: Condition::HeartbeatStale,
                    evidence: format!(
                        "nova service heartbeat is {} s old (service_down_time {} s, state {})",
                        service.heartbeat_age_seconds,
                        service.service_down_time_seconds,
                        if service.up { "up" } else { "down" }
                    ),
                });
            }
        }
        findings
    }

    /// Reasons in this observation not to restart, most serious first.
    pub fn blockers(&self) -> Vec<Blocker> {
        let mut blockers = Vec::new();
        match self.process.as_ref() {
            Some(process) if self.process_state() == Some("D") => {
                blockers.push(Blocker::UninterruptibleSleep(format!(
                    "nova-compute (PID {}) is in uninterruptible sleep (state D); check the \
                     storage behind instances_path (NFS, iSCSI) before anything else",
                    process.pid
                )))
            }
            Some(process)
                if matches!(process.state.as_str(), "T" | "t") && process.tracer_pid != 0 =>
            {
                blockers.push(Blocker::Traced(format!(
                    "nova-compute (PID {}) is stopped under tracer PID {}: someone is debugging it",
                    process.pid, process.tracer_pid
                )))
            }
            _ => {}
        }
        if self.unit_is("inactive") && !unclean(&self.unit.result) {
            blockers.push(Blocker::StoppedByOperator(format!(
                "{} is inactive after a clean stop (result {})",
                self.unit.name,
                if self.unit.result.is_empty() {
                    "none"
                } else {
                    &self.unit.result
                }
            )));
        }
        if let Some(service) = &self.service {
            if service.forced_down {
                blockers.push(Blocker::DisabledByOperator(
                    "the nova-compute service is forced down in Nova: an operator fenced the host"
                        .to_string(),
                ));
            } else if service.disabled
                && !service
                    .disabled_reason
                    .starts_with(NOVA_AUTO_DISABLE_PREFIX)
            {
                blockers.push(Blocker::DisabledByOperator(format!(
                    "the nova-compute service is disabled in Nova: {}",
                    if service.disabled_reason.is_empty() {
                        "no reason given"
                    } else {
                        &service.disabled_reason
                    }
                )));
            }
        }
        if let RpcState::BrokerUnreachable(detail) = &self.rpc {
            blockers.push(Blocker::DependencyOutage(format!(
                "the message broker is unreachable ({detail}); nova-compute reconnects by itself"
            )));
        }
        if let Some(signature) = &self.log.vetoed_by {
            blockers.push(Blocker::DependencyOutage(format!(
                "log fault {signature}: {}",
                self.log.reason
            )));
        }
        if !self.work_in_progress.is_empty() {
            blockers.push(Blocker::WorkInProgress(format!(
                "instances mid-operation: {}",
                self.work_in_progress.join("; ")
            )));
        }
        blockers
    }
}

/// Returns whether a unit's Result marks its last run as failed.
fn unclean(result: &str) -> bool {
    !matches!(result, "" | "success")
}
