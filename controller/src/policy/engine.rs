//! The policy engine: per node, it turns a stream of observations into
//! decisions, and it keeps the per-node and fleet-wide limits.
//!
//! The engine does no I/O and reads no clock: times come with each call, and
//! the caller sends commands, records decisions and persists [`PolicyState`].
//! Everything that must survive a controller restart is in that state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::observe::{Blocker, Observation};
use super::rules::{Condition, Mode, Policy};

/// Everything the engine remembers, serialisable for the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// Set by an operator, or by the storm guard; all automation waits.
    pub pause: Option<Pause>,
    pub nodes: BTreeMap<String, NodePolicy>,
    /// No automated restart anywhere before this time (gap plus jitter).
    pub next_restart_unix_ms: i64,
    /// While the storm guard's pause holds: since when neither of its
    /// triggers has held.
    #[serde(default)]
    pub storm_clear_since_unix_ms: Option<i64>,
}

/// A pause of all automation, with who set it and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub since_unix_ms: i64,
    /// The operator's identity, or "storm-guard".
    pub by: String,
    pub reason: String,
}

/// The engine's memory of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePolicy {
    /// Conditions seen in consecutive reports, up to the latest.
    pub streaks: BTreeMap<Condition, Streak>,
    /// Times of automated restarts sent within the node window.
    pub restarts_unix_ms: Vec<i64>,
    /// Set when automation gave up on the node; only an operator clears it.
    pub needs_human: Option<Escalation>,
    pub silence: Option<Silence>,
    pub in_flight: Option<InFlight>,
    /// Time of the latest report that showed any condition.
    pub last_finding_unix_ms: Option<i64>,
    /// Key of the latest decision, so repeated decisions are recorded once.
    pub last_decision: Option<String>,
    /// Time of the automated restart that asked for `ResetFailedUnit`, until
    /// a restart is verified. While set, no second reset goes out: the
    /// failure episode it belongs to has had its one start.
    #[serde(default)]
    pub reset_failed_sent_unix_ms: Option<i64>,
    /// The nova-compute service that novamedic disabled in Nova when the
    /// node escalated; `novamedic clear` enables it again.
    #[serde(default)]
    pub service_disabled: Option<DisabledService>,
}

/// A service novamedic disabled, by its Nova id and the reason it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledService {
    pub id: String,
    pub host: String,
    pub reason: String,
    pub at_unix_ms: i64,
}

/// A condition's run of consecutive reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    pub first_unix_ms: i64,
    pub last_unix_ms: i64,
    pub reports: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub since_unix_ms: i64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub until_unix_ms: i64,
    pub by: String,
    pub reason: String,
}

/// An automated restart sent and not yet verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub condition: Condition,
    pub sent_unix_ms: i64,
    pub deadline_unix_ms: i64,
    /// InvocationID before the restart; verification needs a new one.
    pub previous_invocation: String,
}

/// Reason the engine did not act although a condition is present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Hold {
    /// The policy's mode is `off`.
    PolicyOff,
    Paused {
        by: String,
        reason: String,
    },
    Silenced {
        until_unix_ms: i64,
        by: String,
        reason: String,
    },
    NeedsHuman {
        reason: String,
    },
    Blocked {
        blocker: Blocker,
    },
    /// No rule covers the conditions present.
    NoRule,
    /// nova-compute started recently and may still be starting up.
    StartGrace {
        started_unix_ms: i64,
        until_unix_ms: i64,
    },
    /// The node's back-off after its previous automated restart.
    Backoff {
        until_unix_ms: i64,
    },
    /// Too many automated restarts are in flight in the fleet.
    InFlightLimit {
        in_flight: u32,
    },
    /// Another node was restarted moments ago.
    FleetGap {
        until_unix_ms: i64,
    },
    /// systemd gave up on the unit after repeated failures, and nothing
    /// seen since shows the cause is gone.
    AwaitingDependency,
    /// A reset of the failed state already went out in this failure
    /// episode.
    ResetAlreadySent {
        sent_unix_ms: i64,
    },
}

impl Hold {
    fn key(&self) -> String {
        match self {
            Hold::PolicyOff => "policy_off".into(),
            Hold::Paused { .. } => "paused".into(),
            Hold::Silenced { .. } => "silenced".into(),
            Hold::NeedsHuman { .. } => "needs_human".into(),
            Hold::Blocked { blocker } => format!("blocked:{}", blocker.kind()),
            Hold::NoRule => "no_rule".into(),
            Hold::StartGrace { .. } => "start_grace".into(),
            Hold::Backoff { .. } => "backoff".into(),
            Hold::InFlightLimit { .. } => "in_flight_limit".into(),
            Hold::FleetGap { .. } => "fleet_gap".into(),
            Hold::AwaitingDependency => "awaiting_dependency".into(),
            Hold::ResetAlreadySent { .. } => "reset_already_sent".into(),
        }
    }
}

/// The engine's decision for one observation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// No condition present.
    Healthy,
    /// A condition is present but not yet confirmed.
    Watching {
        condition: Condition,
        reports: u32,
        needed_reports: u32,
        span_seconds: u64,
        needed_seconds: u64,
    },
    /// A confirmed condition that the engine will not act on now.
    Hold {
        condition: Option<Condition>,
        hold: Hold,
    },
    /// Restart nova-compute. With `dry_run` nothing is sent.
    Restart {
        condition: Condition,
        /// systemd must forget the failed state first (ResetFailedUnit).
        reset_failed: bool,
        /// 1 for the first automated restart in the node window.
        attempt: u32,
        dry_run: bool,
    },
    /// A restart is in flight and its outcome not yet known.
    Verifying { condition: Condition },
    /// The restart brought the node back.
    Verified { condition: Condition, seconds: u64 },
    /// Automation stops for this node until an operator clears it.
    Escalate { reason: String },
    /// Too much of the fleet is failing: automation paused everywhere.
    StormGuard { reason: String },
}

impl Decision {
    /// Returns the decision's kind without its details, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Healthy => "healthy",
            Decision::Watching { .. } => "watching",
            Decision::Hold { .. } => "hold",
            Decision::Restart { dry_run: true, .. } => "dry_run_restart",
            Decision::Restart { .. } => "restart",
            Decision::Verifying { .. } => "verifying",
            Decision::Verified { .. } => "verified",
            Decision::Escalate { .. } => "escalate",
            Decision::StormGuard { .. } => "storm_guard",
        }
    }

    fn key(&self) -> String {
        match self {
            Decision::Healthy => "healthy".into(),
            Decision::Watching { condition, .. } => format!("watching:{condition}"),
            Decision::Hold { hold, .. } => format!("hold:{}", hold.key()),
            Decision::Restart {
                dry_run: true,
                condition,
                ..
            } => {
                format!("dry_run_restart:{condition}")
            }
            Decision::Restart { .. } => "restart".into(),
            Decision::Verifying { .. } => "verifying".into(),
            Decision::Verified { .. } => "verified".into(),
            Decision::Escalate { .. } => "escalate".into(),
            Decision::StormGuard { .. } => "storm_guard".into(),
        }
    }
}

/// A decision, the evidence it used, and whether it differs from the node's
/// previous decision. The caller records every decision that `changed`: a
/// run of identical decisions is one audit record, not one per report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub node: String,
    pub decision: Decision,
    pub evidence: Vec<String>,
    pub changed: bool,
    /// Set when this observation ended the storm guard's pause after its
    /// cooldown: why automation resumed.
    pub storm_ended: Option<String>,
}

/// The engine: a policy and the state it keeps.
#[derive(Clone, Debug)]
pub struct Engine {
    policy: Policy,
    state: PolicyState,
    /// When the storm guard's cooldown was last checked. The check walks
    /// every node, so it runs at most once a second, not on every report.
    cooldown_checked_unix_ms: i64,
}

/// Name the storm guard pauses automation under.
pub const STORM_GUARD: &str = "storm-guard";

impl Engine {
    pub fn new(policy: Policy, state: PolicyState) -> Self {
        Engine {
            policy,
            state,
            cooldown_checked_unix_ms: i64::MIN,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// Evaluates one node's observation. `fleet_size` is the number of
    /// nodes in the fleet; `jitter_ms` is a random value from 0 to
    /// the policy's jitter, chosen by the caller.
    pub fn observe(
        &mut self,
        node: &str,
        observation: &Observation,
        fleet_size: usize,
        jitter_ms: u64,
    ) -> Verdict {
        let now = observation.at_unix_ms;
        let findings = observation.findings();
        let window_ms = secs_ms(self.policy.node.window_seconds);

        let state = self.state.nodes.entry(node.to_string()).or_default();
        state.restarts_unix_ms.retain(|&at| now - at < window_ms);
        state
            .streaks
            .retain(|condition, _| findings.iter().any(|f| f.condition == *condition));
        for finding in &findings {
            let streak = state.streaks.entry(finding.condition).or_insert(Streak {
                first_unix_ms: now,
                last_unix_ms: now,
                reports: 0,
            });
            streak.last_unix_ms = now;
            streak.reports += 1;
        }
        if !findings.is_empty() {
            state.last_finding_unix_ms = Some(now);
        }
        let storm_ended = self.end_storm_pause_after_cooldown(now, fleet_size);
        let mut evidence: Vec<String> = findings.iter().map(|f| f.evidence.clone()).collect();

        let decision = self.decide(
            node,
            observation,
            &findings,
            fleet_size,
            jitter_ms,
            &mut evidence,
        );

        let state = self
            .state
            .nodes
            .get_mut(node)
            .expect("node state was just created");
        let key = decision.key();
        let changed = matches!(decision, Decision::Restart { dry_run: false, .. })
            || state.last_decision.as_deref() != Some(key.as_str());
        // A healthy node that was never anything else needs no record.
        let changed = changed && !(state.last_decision.is_none() && decision == Decision::Healthy);
        state.last_decision = Some(key);
        Verdict {
            node: node.to_string(),
            decision,
            evidence,
            changed,
            storm_ended,
        }
    }

    /// Ends the storm guard's pause once neither of its triggers has held
    /// for the cooldown, and returns why. Any observation during the
    /// cooldown that trips a trigger starts the cooldown again.
    fn end_storm_pause_after_cooldown(&mut self, now: i64, fleet_size: usize) -> Option<String> {
        let cooldown_seconds = self.policy.fleet.storm_cooldown_seconds;
        let paused_by_guard = self
            .state
            .pause
            .as_ref()
            .is_some_and(|pause| pause.by == STORM_GUARD);
        if !paused_by_guard {
            self.state.storm_clear_since_unix_ms = None;
            return None;
        }
        if cooldown_seconds == 0 || now.saturating_sub(self.cooldown_checked_unix_ms) < 1_000 {
            return None;
        }
        self.cooldown_checked_unix_ms = now;
        if self.storm(now, fleet_size).is_some() {
            self.state.storm_clear_since_unix_ms = None;
            return None;
        }
        let clear_since = *self.state.storm_clear_since_unix_ms.get_or_insert(now);
        if now - clear_since < secs_ms(cooldown_seconds) {
            return None;
        }
        self.state.storm_clear_since_unix_ms = None;
        let pause = self.state.pause.take()?;
        Some(format!(
            "the storm guard resumed automation: no storm for {cooldown_seconds} s \
             (storm_cooldown_seconds); it had paused it because {}",
            pause.reason
        ))
    }

    fn decide(
        &mut self,
        node: &str,
        observation: &Observation,
        findings: &[super::observe::Finding],
        fleet_size: usize,
        jitter_ms: u64,
        evidence: &mut Vec<String>,
    ) -> Decision {
        let now = observation.at_unix_ms;
        let policy = &self.policy;

        // A restart in flight is judged before anything else: its outcome
        // decides whether automation may go on with this node.
        if let Some(in_flight) = self.state.nodes[node].in_flight.clone() {
            let restarted = !observation.unit.invocation_id.is_empty()
                && observation.unit.invocation_id != in_flight.previous_invocation
                && observation.unit.active_state == "active";
            let state = self.state.nodes.get_mut(node).expect("known node");
            if restarted && findings.is_empty() {
                state.in_flight = None;
                state.reset_failed_sent_unix_ms = None;
                return Decision::Verified {
                    condition: in_flight.condition,
                    seconds: ms_secs(now - in_flight.sent_unix_ms),
                };
            }
            if now < in_flight.deadline_unix_ms {
                return Decision::Verifying {
                    condition: in_flight.condition,
                };
            }
            state.in_flight = None;
            let reason = format!(
                "the automated restart for {} did not bring the node back within {} s",
                in_flight.condition, policy.verify_seconds
            );
            return self.escalate(node, now, reason);
        }

        if findings.is_empty() {
            return Decision::Healthy;
        }
        let first = findings[0].condition;
        let hold = |hold: Hold| Decision::Hold {
            condition: Some(first),
            hold,
        };

        if policy.mode == Mode::Off {
            return hold(Hold::PolicyOff);
        }
        let state = &self.state.nodes[node];
        if let Some(escalation) = &state.needs_human {
            return hold(Hold::NeedsHuman {
                reason: escalation.reason.clone(),
            });
        }
        if let Some(silence) = &state.silence {
            if now < silence.until_unix_ms {
                return hold(Hold::Silenced {
                    until_unix_ms: silence.until_unix_ms,
                    by: silence.by.clone(),
                    reason: silence.reason.clone(),
                });
            }
        }

        // Blockers come before confirmation: a process in D must reach a
        // human at once, and the others are recorded as the reason.
        let blockers = observation.blockers();
        if let Some(blocker) = blockers.iter().find(|b| b.escalates()) {
            evidence.push(blocker.detail().to_string());
            return self.escalate(node, now, blocker.detail().to_string());
        }

        let Some((condition, rule)) = findings
            .iter()
            .find_map(|f| policy.rule(f.condition).map(|rule| (f.condition, rule)))
        else {
            return hold(Hold::NoRule);
        };
        let streak = &state.streaks[&condition];
        let span_ms = streak.last_unix_ms - streak.first_unix_ms;
        if streak.reports < rule.confirm_reports || span_ms < secs_ms(rule.confirm_seconds) {
            return Decision::Watching {
                condition,
                reports: streak.reports,
                needed_reports: rule.confirm_reports,
                span_seconds: ms_secs(span_ms),
                needed_seconds: rule.confirm_seconds,
            };
        }
        let hold = |hold: Hold| Decision::Hold {
            condition: Some(condition),
            hold,
        };

        if let Some(blocker) = blockers.into_iter().next() {
            evidence.push(blocker.detail().to_string());
            return hold(Hold::Blocked { blocker });
        }
        if let Some(pause) = &self.state.pause {
            return hold(Hold::Paused {
                by: pause.by.clone(),
                reason: pause.reason.clone(),
            });
        }
        // A unit in the start limit failed several starts in a row: one more
        // start helps only once something it depends on has come back.
        let reset_failed = condition == Condition::StartLimitHit;
        if reset_failed {
            if let Some(sent_unix_ms) = state.reset_failed_sent_unix_ms {
                return hold(Hold::ResetAlreadySent { sent_unix_ms });
            }
            if observation.dependency_returned.is_empty() {
                return hold(Hold::AwaitingDependency);
            }
            evidence.extend(observation.dependency_returned.iter().cloned());
        }
        let started = observation.unit.started_at_unix_ms;
        let grace_end = started + secs_ms(policy.start_grace_seconds);
        if condition.needs_running_unit() && started > 0 && now < grace_end {
            return hold(Hold::StartGrace {
                started_unix_ms: started,
                until_unix_ms: grace_end,
            });
        }

        // Per-node limits.
        let restarts = state.restarts_unix_ms.len() as u32;
        if restarts >= policy.node.max_restarts {
            let reason = format!(
                "{condition} persists after {restarts} automated restarts within {} s",
                policy.node.window_seconds
            );
            return self.escalate(node, now, reason);
        }
        if let Some(&last) = state.restarts_unix_ms.last() {
            let factor = 1_i64 << (restarts.saturating_sub(1)).min(16);
            let until = last + secs_ms(policy.node.backoff_seconds) * factor;
            if now < until {
                return hold(Hold::Backoff {
                    until_unix_ms: until,
                });
            }
        }

        // Fleet-wide limits.
        if let Some(reason) = self.storm(now, fleet_size) {
            if policy.mode == Mode::Enforce {
                self.state.pause = Some(Pause {
                    since_unix_ms: now,
                    by: STORM_GUARD.to_string(),
                    reason: reason.clone(),
                });
            }
            return Decision::StormGuard { reason };
        }
        let in_flight = self
            .state
            .nodes
            .values()
            .filter(|n| n.in_flight.is_some())
            .count() as u32;
        if in_flight >= policy.fleet.max_in_flight {
            return hold(Hold::InFlightLimit { in_flight });
        }
        if now < self.state.next_restart_unix_ms {
            return hold(Hold::FleetGap {
                until_unix_ms: self.state.next_restart_unix_ms,
            });
        }

        if policy.mode == Mode::DryRun {
            return Decision::Restart {
                condition,
                reset_failed,
                attempt: restarts + 1,
                dry_run: true,
            };
        }
        let verify_ms = secs_ms(policy.verify_seconds);
        let gap_ms = secs_ms(policy.fleet.min_gap_seconds)
            + i64::try_from(jitter_ms.min(policy.fleet.jitter_seconds * 1_000)).unwrap_or(0);
        self.state.next_restart_unix_ms = now + gap_ms;
        let state = self.state.nodes.get_mut(node).expect("known node");
        state.restarts_unix_ms.push(now);
        state.streaks.clear();
        if reset_failed {
            state.reset_failed_sent_unix_ms = Some(now);
        }
        state.in_flight = Some(InFlight {
            condition,
            sent_unix_ms: now,
            deadline_unix_ms: now + verify_ms,
            previous_invocation: observation.unit.invocation_id.clone(),
        });
        Decision::Restart {
            condition,
            reset_failed,
            attempt: restarts + 1,
            dry_run: false,
        }
    }

    /// Marks the node "needs a human" and returns the escalation.
    fn escalate(&mut self, node: &str, now: i64, reason: String) -> Decision {
        let state = self.state.nodes.entry(node.to_string()).or_default();
        state.needs_human = Some(Escalation {
            since_unix_ms: now,
            reason: reason.clone(),
        });
        Decision::Escalate { reason }
    }

    /// Returns why the storm guard trips, if it does: too many nodes show a
    /// condition at once, or too many automated restarts happened in the
    /// window fleet-wide.
    fn storm(&self, now: i64, fleet_size: usize) -> Option<String> {
        let fleet = &self.policy.fleet;
        let recent_ms = secs_ms(fleet.storm_window_seconds);
        let failing = self
            .state
            .nodes
            .values()
            .filter(|n| {
                n.last_finding_unix_ms
                    .is_some_and(|at| now - at < recent_ms)
            })
            .count();
        let by_share = (fleet_size * fleet.storm_percent as usize).div_ceil(100);
        let threshold = by_share.max(fleet.storm_min_nodes as usize);
        if failing >= threshold {
            return Some(format!(
                "{failing} of {fleet_size} nodes show a fault within {} s (threshold {threshold}): \
                 a shared cause is likely, and restarts would add load to it",
                fleet.storm_window_seconds
            ));
        }
        let window_ms = secs_ms(self.policy.node.window_seconds);
        let restarts: usize = self
            .state
            .nodes
            .values()
            .map(|n| {
                n.restarts_unix_ms
                    .iter()
                    .filter(|&&at| now - at < window_ms)
                    .count()
            })
            .sum();
        if restarts >= fleet.max_restarts_per_window as usize {
            return Some(format!(
                "{restarts} automated restarts within {} s fleet-wide (limit {}): a rolling \
                 failure needs a human",
                self.policy.node.window_seconds, fleet.max_restarts_per_window
            ));
        }
        None
    }

    /// Releases a restart that could not be sent, so it does not count
    /// against the limits and nothing is in flight.
    pub fn restart_not_sent(&mut self, node: &str, sent_unix_ms: i64) {
        if let Some(state) = self.state.nodes.get_mut(node) {
            state.in_flight = None;
            state.restarts_unix_ms.retain(|&at| at != sent_unix_ms);
            if state.reset_failed_sent_unix_ms == Some(sent_unix_ms) {
                state.reset_failed_sent_unix_ms = None;
            }
        }
    }

    /// Pauses all automation.
    pub fn pause(&mut self, now_unix_ms: i64, by: &str, reason: &str) {
        self.state.pause = Some(Pause {
            since_unix_ms: now_unix_ms,
            by: by.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Resumes automation, also after the storm guard tripped. Returns the
    /// pause that ended.
    pub fn resume(&mut self) -> Option<Pause> {
        self.state.pause.take()
    }

    pub fn silence(&mut self, node: &str, until_unix_ms: i64, by: &str, reason: &str) {
        self.state
            .nodes
            .entry(node.to_string())
            .or_default()
            .silence = Some(Silence {
            until_unix_ms,
            by: by.to_string(),
            reason: reason.to_string(),
        });
    }

    pub fn unsilence(&mut self, node: &str) -> Option<Silence> {
        self.state
            .nodes
            .get_mut(node)
            .and_then(|n| n.silence.take())
    }

    /// Remembers that novamedic disabled the node's service in Nova.
    pub fn mark_service_disabled(&mut self, node: &str, disabled: DisabledService) {
        self.state
            .nodes
            .entry(node.to_string())
            .or_default()
            .service_disabled = Some(disabled);
    }

    /// Forgets and returns the service novamedic disabled for the node.
    pub fn take_service_disabled(&mut self, node: &str) -> Option<DisabledService> {
        self.state
            .nodes
            .get_mut(node)
            .and_then(|n| n.service_disabled.take())
    }

    /// Clears "needs a human" and the node's restart history, after an
    /// operator dealt with it.
    pub fn clear(&mut self, node: &str) -> Option<Escalation> {
        let state = self.state.nodes.get_mut(node)?;
        state.restarts_unix_ms.clear();
        state.streaks.clear();
        state.reset_failed_sent_unix_ms = None;
        state.needs_human.take()
    }
}

fn secs_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1_000)).unwrap_or(i64::MAX)
}

fn ms_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0) / 1_000).unwrap_or(0)
}
