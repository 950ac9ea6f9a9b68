//! Table tests of the policy: each case feeds a sequence of observations and
//! checks the decision after each one.

use super::engine::{Decision, Engine, Hold, PolicyState, STORM_GUARD};
use super::observe::{
    Blocker, LogFaultState, LogState, Observation, ProcessState, RpcState, ServiceState, UnitState,
};
use super::rules::{self, Condition, Mode, Policy};

const T0: i64 = 1_800_000_000_000;
const INTERVAL_MS: i64 = 10_000;

fn healthy(at: i64) -> Observation {
    Observation {
        at_unix_ms: at,
        unit: UnitState {
            name: "nova-compute.service".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            result: "success".into(),
            invocation_id: "inv-1".into(),
            // Started long before the test window, so no start grace.
            started_at_unix_ms: T0 - 86_400_000,
            n_restarts: 0,
        },
        process: Some(ProcessState {
            pid: 4242,
            state: "S".into(),
            tracer_pid: 0,
        }),
        rpc: RpcState::Alive,
        ..Observation::default()
    }
}

fn wedged(at: i64) -> Observation {
    Observation {
        rpc: RpcState::NotResponding("no reply within 5 s".into()),
        ..healthy(at)
    }
}

fn failed_unit(at: i64) -> Observation {
    let mut obs = healthy(at);
    obs.unit.active_state = "failed".into();
    obs.unit.sub_state = "failed".into();
    obs.unit.result = "exit-code".into();
    obs.process = None;
    obs
}

fn restarted(at: i64, invocation: &str) -> Observation {
    let mut obs = healthy(at);
    obs.unit.invocation_id = invocation.into();
    obs.unit.started_at_unix_ms = at - 1_000;
    obs
}

fn enforcing() -> Policy {
    Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    }
}

fn engine() -> Engine {
    Engine::new(enforcing(), PolicyState::default())
}

/// Feeds `node` one observation per report interval from `start`, built by
/// `make`, and returns the decisions.
fn feed(
    engine: &mut Engine,
    node: &str,
    start: i64,
    reports: usize,
    fleet_size: usize,
    make: impl Fn(i64) -> Observation,
) -> Vec<Decision> {
    (0..reports)
        .map(|i| {
            let at = start + i as i64 * INTERVAL_MS;
            engine.observe(node, &make(at), fleet_size, 0).decision
        })
        .collect()
}

fn is_restart(decision: &Decision) -> bool {
    matches!(decision, Decision::Restart { dry_run: false, .. })
}

#[test]
fn each_condition_is_found_from_its_observation() {
    let cases: Vec<(&str, Observation, Option<Condition>)> = vec![
        ("healthy", healthy(T0), None),
        ("failed unit", failed_unit(T0), Some(Condition::UnitFailed)),
        (
            "start limit hit",
            {
                let mut o = failed_unit(T0);
                o.unit.result = "start-limit-hit".into();
                o
            },
            Some(Condition::StartLimitHit),
        ),
        (
            "failed after systemd's own restarts",
            {
                let mut o = failed_unit(T0);
                o.unit.n_restarts = 3;
                o
            },
            Some(Condition::StartLimitHit),
        ),
        (
            "rpc not responding",
            wedged(T0),
            Some(Condition::RpcNotResponding),
        ),
        (
            "stopped without tracer",
            {
                let mut o = healthy(T0);
                o.process.as_mut().unwrap().state = "T".into();
                o
            },
            Some(Condition::ProcessStopped),
        ),
        (
            "active without process",
            Observation {
                process: None,
                ..healthy(T0)
            },
            Some(Condition::ProcessMissing),
        ),
        (
            "log fault a restart clears",
            Observation {
                log: LogState {
                    faults: vec![LogFaultState {
                        signature_id: "rpc-reply-queue-lost".into(),
                        fault_kind: "messaging".into(),
                        restart_helps: true,
                    }],
                    ..LogState::default()
                },
                ..healthy(T0)
            },
            Some(Condition::LogFault),
        ),
        (
            "heartbeat older than service_down_time",
            Observation {
                service: Some(ServiceState {
                    up: true,
                    heartbeat_age_seconds: 95,
                    service_down_time_seconds: 60,
                    ..ServiceState::default()
                }),
                ..healthy(T0)
            },
            Some(Condition::HeartbeatStale),
        ),
        (
            "broker unreachable is not a nova-compute fault",
            Observation {
                rpc: RpcState::BrokerUnreachable("connection refused".into()),
                ..healthy(T0)
            },
            None,
        ),
        (
            "stopped under a tracer is a condition the blocker holds",
            {
                let mut o = healthy(T0);
                let p = o.process.as_mut().unwrap();
                p.state = "t".into();
                p.tracer_pid = 999;
                o
            },
            Some(Condition::ProcessStopped),
        ),
        (
            "operator stop is not a failure",
            {
                let mut o = healthy(T0);
                o.unit.active_state = "inactive".into();
                o.unit.sub_state = "dead".into();
                o.process = None;
                o
            },
            None,
        ),
    ];
    for (name, observation, expected) in cases {
        let found: Vec<Condition> = observation.findings().iter().map(|f| f.condition).collect();
        match expected {
            Some(condition) => assert_eq!(found, vec![condition], "case {name}"),
            None => assert!(found.is_empty(), "case {name}: found {found:?}"),
        }
    }
}

#[test]
fn confirmation_needs_reports_and_span() {
    let mut engine = engine();
    let decisions = feed(&mut engine, "cn-1", T0, 4, 100, wedged);
    assert!(matches!(
        decisions[0],
        Decision::Watching {
            reports: 1,
            needed_reports: 3,
            ..
        }
    ));
    assert!(matches!(
        decisions[2],
        Decision::Watching {
            reports: 3,
            span_seconds: 20,
            ..
        }
    ));
    assert!(is_restart(&decisions[3]), "{:?}", decisions[3]);

    // Reports close together do not confirm before the span is reached.
    let mut engine = self::engine();
    for i in 0..10 {
        let decision = engine
            .observe("cn-1", &wedged(T0 + i * 1_000), 100, 0)
            .decision;
        assert!(
            matches!(decision, Decision::Watching { .. }),
            "report {i}: {decision:?}"
        );
    }
}

#[test]
fn streak_reset_by_healthy_report() {
    let mut engine = engine();
    feed(&mut engine, "cn-1", T0, 3, 100, wedged);
    engine.observe("cn-1", &healthy(T0 + 30_000), 100, 0);
    let decisions = feed(&mut engine, "cn-1", T0 + 40_000, 3, 100, wedged);
    assert!(decisions
        .iter()
        .all(|d| matches!(d, Decision::Watching { .. })));
}

#[test]
fn blockers_hold_or_escalate_instead_of_restarting() {
    type Make = Box<dyn Fn(i64) -> Observation>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "uninterruptible sleep escalates",
            Box::new(|at| {
                let mut o = wedged(at);
                o.process.as_mut().unwrap().state = "D".into();
                o
            }),
            "escalate",
        ),
        (
            "operator disabled the service",
            Box::new(|at| Observation {
                service: Some(ServiceState {
                    up: true,
                    disabled: true,
                    disabled_reason: "hardware check, ticket 4411".into(),
                    service_down_time_seconds: 60,
                    ..ServiceState::default()
                }),
                ..wedged(at)
            }),
            "blocked:disabled_by_operator",
        ),
        (
            "dependency outage in the log",
            Box::new(|at| {
                let mut o = failed_unit(at);
                o.log.vetoed_by = Some("placement-unreachable".into());
                o.log.reason = "placement is unreachable".into();
                o
            }),
            "blocked:dependency_outage",
        ),
        (
            "work in progress",
            Box::new(|at| Observation {
                work_in_progress: vec!["live migration of 5a0e to cn-2".into()],
                ..wedged(at)
            }),
            "blocked:work_in_progress",
        ),
        (
            "start grace",
            Box::new(|at| {
                let mut o = wedged(at);
                o.unit.started_at_unix_ms = T0 - 60_000;
                o
            }),
            "start_grace",
        ),
    ];
    for (name, make, expected) in cases {
        let mut engine = engine();
        let decisions = feed(&mut engine, "cn-1", T0, 6, 100, make);
        assert!(
            !decisions.iter().any(is_restart),
            "case {name}: {decisions:?}"
        );
        let last = decisions.last().unwrap();
        let key = match last {
            Decision::Escalate { .. } => "escalate".to_string(),
            Decision::Hold { hold, .. } => match hold {
                Hold::Blocked { blocker } => format!("blocked:{}", blocker.kind()),
                Hold::StartGrace { .. } => "start_grace".into(),
                Hold::NeedsHuman { .. } => "needs_human".into(),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        };
        let expected_last = if expected == "escalate" {
            "needs_human"
        } else {
            expected
        };
        assert_eq!(key, expected_last, "case {name}: {decisions:?}");
    }
}

#[test]
fn auto_disable_not_operator_blocker() {
    let observation = Observation {
        service: Some(ServiceState {
            up: false,
            disabled: true,
            disabled_reason: "AUTO: Failed to connect to libvirt".into(),
            service_down_time_seconds: 60,
            heartbeat_age_seconds: 120,
            forced_down: false,
        }),
        ..healthy(T0)
    };
    assert!(observation.blockers().is_empty());
    assert_eq!(
        observation.findings()[0].condition,
        Condition::HeartbeatStale
    );
}

#[test]
fn forced_down_blocks_without_heartbeat_finding() {
    let observation = Observation {
        service: Some(ServiceState {
            up: false,
            disabled: true,
            disabled_reason: "evacuating".into(),
            service_down_time_seconds: 60,
            heartbeat_age_seconds: 900,
            forced_down: true,
        }),
        ..healthy(T0)
    };
    assert!(
        observation.findings().is_empty(),
        "a fenced host's missing heartbeat is the operator's doing"
    );
    let blockers = observation.blockers();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert_eq!(blockers[0].kind(), "disabled_by_operator");
    assert!(blockers[0].detail().contains("forced down"));
}

#[test]
fn verify_needs_new_invocation() {
    let mut engine = engine();
    let decisions = feed(&mut engine, "cn-1", T0, 4, 100, wedged);
    assert!(is_restart(&decisions[3]));
    let at = T0 + 4 * INTERVAL_MS;
    let verdict = engine.observe("cn-1", &wedged(at), 100, 0);
    assert!(matches!(verdict.decision, Decision::Verifying { .. }));
    let verdict = engine.observe("cn-1", &restarted(at + 20_000, "inv-2"), 100, 0);
    assert!(
        matches!(verdict.decision, Decision::Verified { seconds: 30, .. }),
        "{verdict:?}"
    );
    assert!(verdict.changed);
}

#[test]
fn verify_deadline_escalates() {
    let mut engine = engine();
    feed(&mut engine, "cn-1", T0, 4, 100, wedged);
    let after = T0 + 3 * INTERVAL_MS + 601_000;
    let verdict = engine.observe("cn-1", &wedged(after), 100, 0);
    assert!(
        matches!(verdict.decision, Decision::Escalate { .. }),
        "{verdict:?}"
    );
    let later = feed(&mut engine, "cn-1", after + INTERVAL_MS, 10, 100, wedged);
    assert!(later.iter().all(|d| matches!(
        d,
        Decision::Hold {
            hold: Hold::NeedsHuman { .. },
            ..
        }
    )));
    assert!(engine.clear("cn-1").is_some());
    let again = feed(&mut engine, "cn-1", after + 200_000, 4, 100, wedged);
    assert!(is_restart(&again[3]), "{again:?}");
}

/// A node whose restarts help only for a while gets restarts with a growing
/// back-off, then is handed to a human.
#[test]
fn node_limit_backoff_then_escalation() {
    let mut engine = engine();
    let mut restarts = Vec::new();
    let mut invocation = 1;
    let mut now = T0;
    let mut escalation = None;
    let mut verify_next = false;

    while now < T0 + 3_600_000 {
        let obs = if verify_next {
            verify_next = false;
            restarted(now - 400_000, &format!("inv-{invocation}"))
        } else {
            let mut obs = wedged(now);
            obs.unit.invocation_id = format!("inv-{invocation}");
            obs
        };
        let obs = Observation {
            at_unix_ms: now,
            ..obs
        };
        match engine.observe("cn-1", &obs, 100, 0).decision {
            Decision::Restart { attempt, .. } => {
                restarts.push(now);
                assert_eq!(attempt as usize, restarts.len());
                invocation += 1;
                verify_next = true;
            }
            Decision::Escalate { reason } => {
                escalation = Some(reason);
                break;
            }
            _ => {}
        }
        now += INTERVAL_MS;
    }

    assert_eq!(restarts.len(), 3, "{restarts:?}");
    let gaps: Vec<i64> = restarts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 120_000, "{gaps:?}");
    assert!(gaps[1] >= 240_000, "back-off doubles: {gaps:?}");
    let reason = escalation.expect("escalates after the third restart");
    assert!(reason.contains("after 3 automated restarts"), "{reason}");
}

#[test]
fn storm_guard_fleet_share() {
    let mut engine = engine();
    let fleet = 50;
    // 20 % of the fleet shows the same fault; no restart must be sent.
    let mut sent = 0;
    let mut storm = false;
    for round in 0..5 {
        for n in 0..10 {
            let verdict = engine.observe(
                &format!("cn-{n}"),
                &wedged(T0 + round * INTERVAL_MS + n as i64),
                fleet,
                0,
            );
            sent += usize::from(is_restart(&verdict.decision));
            storm |= matches!(verdict.decision, Decision::StormGuard { .. });
        }
    }
    assert_eq!(sent, 0);
    assert!(storm);
    let pause = engine.state().pause.clone().expect("storm guard pauses");
    assert_eq!(pause.by, STORM_GUARD);
    // Still paused for a single later failure, before the cooldown.
    let decisions = feed(&mut engine, "cn-40", T0 + 600_000, 5, fleet, wedged);
    assert!(!decisions.iter().any(is_restart));
    assert!(engine.resume().is_some());
}

#[test]
fn storm_guard_resumes_after_cooldown() {
    let mut policy = enforcing();
    policy.fleet.storm_cooldown_seconds = 600;
    let mut engine = Engine::new(policy, PolicyState::default());
    let fleet = 20;
    for round in 0..5 {
        for n in 0..5 {
            let at = T0 + round * INTERVAL_MS + n as i64;
            engine.observe(&format!("cn-{n}"), &wedged(at), fleet, 0);
        }
    }
    assert_eq!(
        engine.state().pause.as_ref().map(|p| p.by.as_str()),
        Some(STORM_GUARD)
    );

    // The five nodes recover. Their findings leave the 300 s storm window,
    // and the cooldown starts only then.
    let mut ended = Vec::new();
    for tick in 0..120 {
        let at = T0 + 60_000 + tick * INTERVAL_MS;
        for n in 0..5 {
            let verdict = engine.observe(&format!("cn-{n}"), &healthy(at + n), fleet, 0);
            if let Some(reason) = verdict.storm_ended {
                ended.push((at, reason));
            }
        }
    }
    assert_eq!(ended.len(), 1, "{ended:?}");
    let (at, reason) = &ended[0];
    assert!(*at >= T0 + 40_000 + 300_000 + 600_000, "resumed at {at}");
    assert!(
        *at <= T0 + 40_000 + 300_000 + 600_000 + 2 * INTERVAL_MS,
        "resumed at {at}"
    );
    assert!(reason.contains("no storm for 600 s"), "{reason}");
    assert!(engine.state().pause.is_none());

    // A later single failure is restarted again.
    let decisions = feed(&mut engine, "cn-7", at + INTERVAL_MS, 4, fleet, wedged);
    assert!(decisions.iter().any(is_restart), "{decisions:?}");
}

#[test]
fn storm_cooldown_restarts_on_new_storm() {
    let mut policy = enforcing();
    policy.fleet.storm_cooldown_seconds = 600;
    let mut engine = Engine::new(policy.clone(), PolicyState::default());
    let fleet = 20;
    let trip = |engine: &mut Engine, start: i64| {
        for round in 0..5 {
            for n in 0..5 {
                let at = start + round * INTERVAL_MS + n as i64;
                engine.observe(&format!("cn-{n}"), &wedged(at), fleet, 0);
            }
        }
    };
    trip(&mut engine, T0);
    // Healthy for 500 s after the storm window, then the storm returns:
    // the cooldown starts again from the new storm's end.
    let clear_from = T0 + 40_000 + 300_000;
    feed(&mut engine, "cn-0", clear_from, 50, fleet, healthy);
    assert!(engine.state().storm_clear_since_unix_ms.is_some());
    trip(&mut engine, clear_from + 500_000);
    assert!(engine.state().pause.is_some());
    let second_end = clear_from + 500_000 + 40_000;
    let decisions: Vec<_> = (0..120)
        .map(|i| {
            let at = second_end + 10_000 + i * INTERVAL_MS;
            engine.observe("cn-0", &healthy(at), fleet, 0)
        })
        .collect();
    let resumed_at: Vec<i64> = decisions
        .iter()
        .enumerate()
        .filter(|(_, v)| v.storm_ended.is_some())
        .map(|(i, _)| second_end + 10_000 + i as i64 * INTERVAL_MS)
        .collect();
    assert_eq!(resumed_at.len(), 1, "{resumed_at:?}");
    assert!(
        resumed_at[0] >= second_end + 300_000 + 600_000,
        "{resumed_at:?}"
    );

    // With a cooldown of 0 only an operator resumes.
    policy.fleet.storm_cooldown_seconds = 0;
    let mut manual = Engine::new(policy, PolicyState::default());
    trip(&mut manual, T0);
    let decisions: Vec<_> = (0..200)
        .map(|i| manual.observe("cn-0", &healthy(T0 + 60_000 + i * INTERVAL_MS), fleet, 0))
        .collect();
    assert!(decisions.iter().all(|v| v.storm_ended.is_none()));
    assert!(manual.state().pause.is_some());
}

#[test]
fn storm_guard_rolling_failure() {
    let mut policy = enforcing();
    policy.fleet.max_in_flight = 1;
    policy.fleet.max_restarts_per_window = 4;
    policy.verify_seconds = 60;
    let mut engine = Engine::new(policy, PolicyState::default());
    let fleet = 1_000;
    let mut restarted_nodes = Vec::new();
    let mut storm = false;

    // One new node fails each minute and recovers when restarted.
    for minute in 0..10 {
        for tick in 0..6 {
            let now = T0 + minute * 60_000 + tick * INTERVAL_MS;
            for node in 0..=minute {
                let name = format!("cn-{node}");
                let fixed = restarted_nodes.contains(&name);
                let obs = if fixed {
                    restarted(now, "inv-2")
                } else {
                    wedged(now)
                };
                let verdict = engine.observe(&name, &obs, fleet, 0);
                if is_restart(&verdict.decision) {
                    let in_flight = engine
                        .state()
                        .nodes
                        .values()
                        .filter(|n| n.in_flight.is_some())
                        .count();
                    assert_eq!(in_flight, 1, "one node at a time");
                    restarted_nodes.push(name);
                }
                storm |= matches!(verdict.decision, Decision::StormGuard { .. });
            }
        }
    }

    assert_eq!(restarted_nodes.len(), 4, "{restarted_nodes:?}");
    assert!(storm, "the guard trips at the fleet-wide limit");
}

#[test]
fn pause_silence_and_dry_run_send_nothing() {
    let mut engine = engine();
    engine.pause(T0, "alice", "broker maintenance");
    let decisions = feed(&mut engine, "cn-1", T0, 6, 100, wedged);
    assert!(matches!(
        decisions.last(),
        Some(Decision::Hold {
            hold: Hold::Paused { .. },
            ..
        })
    ));
    engine.resume();

    let mut engine = self::engine();
    engine.silence("cn-1", T0 + 3_600_000, "bob", "kernel upgrade");
    let decisions = feed(&mut engine, "cn-1", T0, 6, 100, wedged);
    assert!(matches!(
        decisions.last(),
        Some(Decision::Hold {
            hold: Hold::Silenced { .. },
            ..
        })
    ));

    let policy = Policy {
        mode: Mode::DryRun,
        ..Policy::default()
    };
    let mut engine = Engine::new(policy, PolicyState::default());
    let decisions = feed(&mut engine, "cn-1", T0, 6, 100, wedged);
    assert!(matches!(
        decisions[3],
        Decision::Restart { dry_run: true, .. }
    ));
    assert!(engine.state().nodes["cn-1"].restarts_unix_ms.is_empty());
}

#[test]
fn repeated_decisions_are_recorded_once() {
    let mut engine = engine();
    engine.pause(T0, "alice", "maintenance");
    let changed: Vec<bool> = (0..8)
        .map(|i| {
            engine
                .observe("cn-1", &wedged(T0 + i * INTERVAL_MS), 100, 0)
                .changed
        })
        .collect();
    // Watching (changes once), then held while paused (once).
    assert_eq!(changed.iter().filter(|&&c| c).count(), 2, "{changed:?}");
    let healthy_first = engine.observe("cn-2", &healthy(T0), 100, 0);
    assert!(!healthy_first.changed);
}

#[test]
fn state_round_trips_through_json() {
    let mut engine = engine();
    feed(&mut engine, "cn-1", T0, 4, 100, wedged);
    engine.silence("cn-2", T0 + 1, "bob", "why");
    let json = serde_json::to_string(engine.state()).unwrap();
    let restored: PolicyState = serde_json::from_str(&json).unwrap();
    assert_eq!(&restored, engine.state());
    // A restored engine does not repeat the restart in flight.
    let mut engine = Engine::new(enforcing(), restored);
    let verdict = engine.observe("cn-1", &wedged(T0 + 50_000), 100, 0);
    assert!(matches!(verdict.decision, Decision::Verifying { .. }));
}

#[test]
fn policy_file_errors_name_the_key() {
    let path = std::path::Path::new("/etc/novamedic/policy.toml");
    let cases = [
        ("mode = \"yolo\"", "mode"),
        ("[node]\nmax_restarts = 0", "node.max_restarts"),
        ("[fleet]\nstorm_percent = 150", "fleet.storm_percent"),
        ("[fleet]\nmax_in_flight = 0", "fleet.max_in_flight"),
        (
            "[[rule]]\ncondition = \"rpc-not-responding\"\nconfirm_reports = 1",
            "confirm_reports",
        ),
        (
            "[[rule]]\ncondition = \"unit-failed\"\n[[rule]]\ncondition = \"unit-failed\"",
            "two rules",
        ),
        ("[[rule]]\ncondition = \"reboot-host\"", "reboot-host"),
        ("[node]\nmax_restart = 3", "max_restart"),
    ];
    for (text, needle) in cases {
        let err = rules::parse(text, path).expect_err(text).to_string();
        assert!(err.contains(needle), "{text}: {err}");
        assert!(err.contains("/etc/novamedic/policy.toml"), "{err}");
    }
}

#[test]
fn a_policy_file_with_rules_replaces_the_defaults() {
    let text = "mode = \"dry-run\"\nstart_grace_seconds = 600\n\n[[rule]]\n\
                condition = \"rpc-not-responding\"\nconfirm_reports = 5\nconfirm_seconds = 60\n";
    let policy = rules::parse(text, std::path::Path::new("p.toml")).unwrap();
    assert_eq!(policy.mode, Mode::DryRun);
    assert_eq!(policy.start_grace_seconds, 600);
    assert_eq!(policy.rules.len(), 1);
    assert!(policy.rule(Condition::UnitFailed).is_none());
    assert_eq!(
        policy
            .rule(Condition::RpcNotResponding)
            .unwrap()
            .confirm_reports,
        5
    );
}

#[test]
fn blocker_kinds_are_stable() {
    assert_eq!(Blocker::Traced(String::new()).kind(), "traced");
}

fn start_limit_hit(at: i64) -> Observation {
    let mut obs = failed_unit(at);
    obs.unit.result = "start-limit-hit".into();
    obs
}

fn start_limit_hit_config_fixed(at: i64) -> Observation {
    let mut obs = start_limit_hit(at);
    obs.dependency_returned =
        vec!["/etc/nova/nova.conf modified 4 s after the unit went down".into()];
    obs
}

#[test]
fn start_limit_waits_for_a_dependency() {
    let mut engine = engine();
    let decisions = feed(&mut engine, "cn-1", T0, 6, 100, start_limit_hit);
    assert!(!decisions.iter().any(is_restart), "{decisions:?}");
    assert!(
        matches!(
            decisions.last().unwrap(),
            Decision::Hold {
                hold: Hold::AwaitingDependency,
                ..
            }
        ),
        "{decisions:?}"
    );

    // The dependency returns: one start, with the reset.
    let at = T0 + 6 * INTERVAL_MS;
    let verdict = engine.observe("cn-1", &start_limit_hit_config_fixed(at), 100, 0);
    assert_eq!(
        verdict.decision,
        Decision::Restart {
            condition: Condition::StartLimitHit,
            reset_failed: true,
            attempt: 1,
            dry_run: false,
        }
    );
    assert!(
        verdict
            .evidence
            .iter()
            .any(|e| e.contains("nova.conf modified")),
        "{:?}",
        verdict.evidence
    );
}

#[test]
fn reset_sent_once_per_failure_episode() {
    let mut engine = engine();
    let decisions = feed(
        &mut engine,
        "cn-1",
        T0,
        4,
        100,
        start_limit_hit_config_fixed,
    );
    assert_eq!(
        decisions.iter().filter(|d| is_restart(d)).count(),
        1,
        "{decisions:?}"
    );

    // The start did not help: the unit stays in the start limit with the
    // dependency still "returned". Until the verification deadline nothing
    // else goes out, and after it the node needs a human.
    let after = T0 + 4 * INTERVAL_MS;
    let reports = (enforcing().verify_seconds as usize * 1_000 / INTERVAL_MS as usize) + 12;
    let decisions = feed(
        &mut engine,
        "cn-1",
        after,
        reports,
        100,
        start_limit_hit_config_fixed,
    );
    assert!(!decisions.iter().any(is_restart), "{decisions:?}");
    assert!(
        decisions
            .iter()
            .any(|d| matches!(d, Decision::Escalate { .. })),
        "{decisions:?}"
    );

    // Even with the escalation gone and the in-flight restart released, the
    // same failure episode gets no second reset.
    let mut state = engine.state().clone();
    let node = state.nodes.get_mut("cn-1").unwrap();
    node.needs_human = None;
    assert!(node.reset_failed_sent_unix_ms.is_some());
    let mut engine = Engine::new(enforcing(), state);
    let start = after + reports as i64 * INTERVAL_MS;
    let decisions = feed(
        &mut engine,
        "cn-1",
        start,
        6,
        100,
        start_limit_hit_config_fixed,
    );
    assert!(!decisions.iter().any(is_restart), "{decisions:?}");
    assert!(
        matches!(
            decisions.last().unwrap(),
            Decision::Hold {
                hold: Hold::ResetAlreadySent { .. },
                ..
            }
        ),
        "{decisions:?}"
    );

    // An operator's clear ends the episode.
    engine.clear("cn-1");
    assert_eq!(engine.state().nodes["cn-1"].reset_failed_sent_unix_ms, None);
}

#[test]
fn verified_restart_ends_reset_episode() {
    let mut engine = engine();
    let decisions = feed(
        &mut engine,
        "cn-1",
        T0,
        4,
        100,
        start_limit_hit_config_fixed,
    );
    assert_eq!(decisions.iter().filter(|d| is_restart(d)).count(), 1);
    let verdict = engine.observe("cn-1", &restarted(T0 + 5 * INTERVAL_MS, "inv-2"), 100, 0);
    assert!(
        matches!(verdict.decision, Decision::Verified { .. }),
        "{:?}",
        verdict.decision
    );
    assert_eq!(engine.state().nodes["cn-1"].reset_failed_sent_unix_ms, None);
}

#[test]
fn plain_failed_unit_restarts_without_reset() {
    let mut engine = engine();
    let decisions = feed(&mut engine, "cn-1", T0, 4, 100, failed_unit);
    let restart = decisions.iter().find(|d| is_restart(d)).expect("a restart");
    assert!(
        matches!(
            restart,
            Decision::Restart {
                reset_failed: false,
                ..
            }
        ),
        "{restart:?}"
    );
}

#[test]
fn traced_process_is_held_and_recorded() {
    let mut engine = engine();
    let traced = |at| {
        let mut o = healthy(at);
        let process = o.process.as_mut().unwrap();
        process.state = "t".into();
        process.tracer_pid = 999;
        o
    };
    let reports = 1 + (120_000 / INTERVAL_MS as usize) + 2;
    let verdicts: Vec<_> = (0..reports)
        .map(|i| engine.observe("cn-1", &traced(T0 + i as i64 * INTERVAL_MS), 100, 0))
        .collect();
    assert!(!verdicts.iter().any(|v| is_restart(&v.decision)));
    let held: Vec<_> = verdicts
        .iter()
        .filter(|v| {
            matches!(
                &v.decision,
                Decision::Hold {
                    hold: Hold::Blocked {
                        blocker: Blocker::Traced(_)
                    },
                    ..
                }
            )
        })
        .collect();
    assert!(!held.is_empty(), "{verdicts:?}");
    assert!(held[0].changed, "the first hold must be recorded");
    assert!(held[1..].iter().all(|v| !v.changed), "recorded once");
}
