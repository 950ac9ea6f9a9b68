//! The executor's rules against a test double of `ServiceManager` and a real
//! state directory. The double replaces systemd only, and the real
//! restart path is exercised by `examples/systemd_probe.rs` in a container.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::Notify;

use super::*;

const UNIT: &str = "nova-compute.service";

fn snapshot(active: &str, result: &str, pid: u32, invocation: &str) -> UnitSnapshot {
    UnitSnapshot {
        unit: UNIT.to_string(),
        load_state: "loaded".to_string(),
        active_state: active.to_string(),
        sub_state: "running".to_string(),
        result: result.to_string(),
        main_pid: pid,
        invocation_id: invocation.to_string(),
        ..Default::default()
    }
}

fn report(stayed_active: bool, timed_out: bool) -> RestartReport {
    RestartReport {
        job_result: "done".to_string(),
        before: snapshot("active", "success", 100, "aa"),
        after: snapshot("active", "success", 200, "bb"),
        stayed_active,
        timed_out,
        detail: "fake report".to_string(),
    }
}

/// A scripted `ServiceManager` that counts restarts.
#[derive(Default)]
struct FakeState {
    /// `None` makes `unit_snapshot` return UnitNotFound.
    snapshot: StdMutex<Option<UnitSnapshot>>,
    report: StdMutex<Option<RestartReport>>,
    restarts: AtomicUsize,
    resets: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    restart_delay: StdMutex<Duration>,
    /// When set, a restart never returns, as if the agent died during it.
    hang: StdMutex<bool>,
    restart_started: Notify,
}

#[derive(Clone, Default)]
struct FakeManager(Arc<FakeState>);

impl FakeManager {
    fn healthy() -> Self {
        let fake = FakeManager::default();
        *fake.0.snapshot.lock().unwrap() = Some(snapshot("active", "success", 100, "aa"));
        *fake.0.report.lock().unwrap() = Some(report(true, false));
        fake
    }

    fn restarts(&self) -> usize {
        self.0.restarts.load(Ordering::SeqCst)
    }

    fn resets(&self) -> usize {
        self.0.resets.load(Ordering::SeqCst)
    }
}

impl ServiceManager for FakeManager {
    async fn unit_snapshot(&self, unit: &str) -> Result<UnitSnapshot, SystemdError> {
        let snapshot = self.0.snapshot.lock().unwrap().clone();
        snapshot.ok_or_else(|| SystemdError::UnitNotFound(unit.to_string()))
    }

    async fn restart_unit(
        &self,
        _unit: &str,
        _settle: Duration,
        _deadline: Duration,
    ) -> Result<RestartReport, SystemdError> {
        self.0.restarts.fetch_add(1, Ordering::SeqCst);
        let running = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_running.fetch_max(running, Ordering::SeqCst);
        self.0.restart_started.notify_one();
        if *self.0.hang.lock().unwrap() {
            std::future::pending::<()>().await;
        }
        let delay = *self.0.restart_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        Ok(self
            .0
            .report
            .lock()
            .unwrap()
            .clone()
            .expect("report scripted"))
    }

    async fn reset_failed_unit(&self, _unit: &str) -> Result<(), SystemdError> {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn settings(dir: &std::path::Path) -> ExecutorSettings {
    ExecutorSettings {
        state_dir: dir.to_path_buf(),
        restart_settle: Duration::from_secs(1),
        restart_budget_max: 3,
        restart_budget_window: Duration::from_secs(3600),
    }
}

fn known_unit() -> watch::Receiver<UnitObservation> {
    let (tx, rx) = watch::channel(UnitObservation::Known(snapshot(
        "active", "success", 100, "aa",
    )));
    // The receiver keeps the last value after the sender is gone.
    drop(tx);
    rx
}

fn executor(fake: &FakeManager, dir: &std::path::Path) -> Executor<FakeManager> {
    Executor::open(fake.clone(), known_unit(), &settings(dir)).unwrap()
}

fn restart_command(id: &str, unit: &str) -> v1::Command {
    v1::Command {
        command_id: id.to_string(),
        timeout_ms: 60_000,
        requested_by: "operator@example.net".to_string(),
        reason: "test".to_string(),
        action: Some(Action::RestartUnit(v1::RestartUnit {
            unit: unit.to_string(),
            reset_failed: false,
        })),
    }
}

fn reset_and_restart_command(id: &str) -> v1::Command {
    let mut command = restart_command(id, UNIT);
    command.action = Some(Action::RestartUnit(v1::RestartUnit {
        unit: UNIT.to_string(),
        reset_failed: true,
    }));
    command
}

fn outcome(result: &v1::CommandResult) -> CommandOutcome {
    result.outcome()
}

#[tokio::test]
async fn restart_succeeds_with_instances() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let result = executor(&fake, dir.path())
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(
        outcome(&result),
        CommandOutcome::Succeeded,
        "{}",
        result.detail
    );
    assert_eq!(result.before.as_ref().unwrap().main_pid, 100);
    assert_eq!(result.after.as_ref().unwrap().main_pid, 200);
    assert_eq!(result.after.as_ref().unwrap().invocation_id, "bb");
    assert!(!result.replayed);
    assert_eq!(fake.restarts(), 1);
}

#[tokio::test]
async fn report_maps_to_outcome() {
    let cases = [
        (report(true, false), CommandOutcome::Succeeded),
        (report(false, true), CommandOutcome::TimedOut),
        (report(false, false), CommandOutcome::Failed),
    ];
    for (index, (report, expected)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeManager::healthy();
        *fake.0.report.lock().unwrap() = Some(report);
        let result = executor(&fake, dir.path())
            .execute(restart_command(&format!("c-{index}"), UNIT), Instant::now())
            .await;
        assert_eq!(
            outcome(&result),
            expected,
            "case {index}: {}",
            result.detail
        );
        assert_eq!(result.detail, "fake report");
    }
}

#[tokio::test]
async fn other_unit_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let result = executor(&fake, dir.path())
        .execute(restart_command("c-1", "sshd.service"), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("sshd.service"), "{}", result.detail);
    assert!(result.detail.contains(UNIT), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn unknown_unit_rejects_every_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let (_tx, rx) = watch::channel(UnitObservation::Unknown {
        unit: None,
        reason: "nova-compute is not installed".to_string(),
    });
    let executor = Executor::open(fake.clone(), rx, &settings(dir.path())).unwrap();
    let result = executor
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("not installed"), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn missing_action_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let mut command = restart_command("c-1", UNIT);
    command.action = None;
    let result = executor(&fake, dir.path())
        .execute(command, Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert_eq!(result.detail, "unknown command kind; upgrade the agent");
}

#[tokio::test]
async fn command_without_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let result = executor(&fake, dir.path())
        .execute(restart_command("", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn replay_returns_recorded_result() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let executor = executor(&fake, dir.path());
    let first = executor
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    let second = executor
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(fake.restarts(), 1);
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(second.outcome, first.outcome);
    assert_eq!(second.detail, first.detail);
    assert_eq!(second.after, first.after);
    assert_eq!(second.duration_ms, first.duration_ms);
}

#[tokio::test]
async fn replay_survives_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let first = executor(&fake, dir.path())
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;

    let restarted_agent = executor(&fake, dir.path());
    let second = restarted_agent
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(fake.restarts(), 1);
    assert!(second.replayed);
    assert_eq!(second.outcome, first.outcome);
    assert_eq!(second.before, first.before);
}

#[tokio::test]
async fn rejected_command_is_replayed_too() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let executor = executor(&fake, dir.path());
    let first = executor
        .execute(restart_command("c-1", "sshd.service"), Instant::now())
        .await;
    let second = executor
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&first), CommandOutcome::Rejected);
    assert!(second.replayed);
    assert_eq!(second.detail, first.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn crash_mid_restart_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.hang.lock().unwrap() = true;
    let dying_agent = Arc::new(executor(&fake, dir.path()));
    let started = fake.0.restart_started.notified();
    let task = {
        let dying_agent = dying_agent.clone();
        tokio::spawn(async move {
            dying_agent
                .execute(restart_command("c-1", UNIT), Instant::now())
                .await
        })
    };
    started.await;
    task.abort();
    let _ = task.await;
    drop(dying_agent);

    let fresh = FakeManager::healthy();
    let restarted_agent = executor(&fresh, dir.path());
    let replay = restarted_agent
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(fresh.restarts(), 0);
    assert!(replay.replayed);
    assert_eq!(outcome(&replay), CommandOutcome::Failed);
    assert!(
        replay
            .detail
            .starts_with("agent restarted during execution"),
        "{}",
        replay.detail
    );

    let again = restarted_agent
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(again.detail, replay.detail);
    assert_eq!(fresh.restarts(), 0);
}

#[tokio::test]
async fn zero_timeout_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let mut command = restart_command("c-1", UNIT);
    command.timeout_ms = 0;
    let result = executor(&fake, dir.path())
        .execute(command, Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.starts_with("expired"), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn received_long_ago_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let mut command = restart_command("c-1", UNIT);
    command.timeout_ms = 5_000;
    let received_at = Instant::now() - Duration::from_secs(6);
    let result = executor(&fake, dir.path())
        .execute(command, received_at)
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("expired"), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn timeout_shorter_than_settle_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let mut command = restart_command("c-1", UNIT);
    command.timeout_ms = 500;
    let result = executor(&fake, dir.path())
        .execute(command, Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("settle time"), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn commands_run_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.restart_delay.lock().unwrap() = Duration::from_millis(100);
    let executor = Arc::new(executor(&fake, dir.path()));
    let tasks: Vec<_> = (0..3)
        .map(|index| {
            let executor = executor.clone();
            tokio::spawn(async move {
                executor
                    .execute(restart_command(&format!("c-{index}"), UNIT), Instant::now())
                    .await
            })
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert_eq!(
            outcome(&result),
            CommandOutcome::Succeeded,
            "{}",
            result.detail
        );
    }
    assert_eq!(fake.restarts(), 3);
    assert_eq!(fake.0.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn queued_past_timeout_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.restart_delay.lock().unwrap() = Duration::from_millis(2500);
    let executor = Arc::new(executor(&fake, dir.path()));

    let started = fake.0.restart_started.notified();
    let first = {
        let executor = executor.clone();
        tokio::spawn(async move {
            executor
                .execute(restart_command("c-1", UNIT), Instant::now())
                .await
        })
    };
    started.await;
    // Received now, with a deadline that passes while c-1 still runs.
    let mut queued = restart_command("c-2", UNIT);
    queued.timeout_ms = 2000;
    let second = executor.execute(queued, Instant::now()).await;

    assert_eq!(outcome(&first.await.unwrap()), CommandOutcome::Succeeded);
    assert_eq!(outcome(&second), CommandOutcome::Rejected);
    assert!(second.detail.contains("expired"), "{}", second.detail);
    assert_eq!(fake.restarts(), 1);
}

#[tokio::test]
async fn budget_spent_rejects_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let mut limited = settings(dir.path());
    limited.restart_budget_max = 2;
    let executor = Executor::open(fake.clone(), known_unit(), &limited).unwrap();
    for index in 0..2 {
        let result = executor
            .execute(restart_command(&format!("c-{index}"), UNIT), Instant::now())
            .await;
        assert_eq!(outcome(&result), CommandOutcome::Succeeded);
    }
    let over = executor
        .execute(restart_command("c-2", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&over), CommandOutcome::Rejected);
    assert!(
        over.detail
            .starts_with("restart budget spent: 2 restarts in the last 60 min; next allowed at "),
        "{}",
        over.detail
    );
    drop(executor);

    let restarted_agent = Executor::open(fake.clone(), known_unit(), &limited).unwrap();
    let still_over = restarted_agent
        .execute(restart_command("c-3", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&still_over), CommandOutcome::Rejected);
    assert!(
        still_over.detail.starts_with("restart budget spent"),
        "{}",
        still_over.detail
    );
    assert_eq!(fake.restarts(), 2);
}

#[tokio::test]
async fn start_limit_hit_is_rejected_without_reset() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.snapshot.lock().unwrap() = Some(snapshot("failed", "start-limit-hit", 0, "aa"));
    let result = executor(&fake, dir.path())
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(
        result
            .detail
            .contains("systemctl reset-failed nova-compute.service"),
        "{}",
        result.detail
    );
    assert_eq!(result.before.as_ref().unwrap().active_state, "failed");
    assert_eq!(fake.restarts(), 0);
}

#[tokio::test]
async fn start_limit_hit_is_reset_once_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.snapshot.lock().unwrap() = Some(snapshot("failed", "start-limit-hit", 0, "aa"));
    let executor = executor(&fake, dir.path());

    let result = executor
        .execute(reset_and_restart_command("c-1"), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Succeeded);
    assert!(
        result.detail.contains("ResetFailedUnit"),
        "{}",
        result.detail
    );
    assert!(
        result.detail.contains("Result=start-limit-hit"),
        "{}",
        result.detail
    );
    assert_eq!(fake.resets(), 1);
    assert_eq!(fake.restarts(), 1);

    let replayed = executor
        .execute(reset_and_restart_command("c-1"), Instant::now())
        .await;
    assert!(replayed.replayed);
    assert_eq!(replayed.detail, result.detail);
    assert_eq!(fake.resets(), 1, "a replay must not reset again");
    assert_eq!(fake.restarts(), 1, "a replay must not restart again");
}

#[tokio::test]
async fn reset_skipped_for_unit_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let result = executor(&fake, dir.path())
        .execute(reset_and_restart_command("c-1"), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Succeeded);
    assert!(
        !result.detail.contains("ResetFailedUnit"),
        "{}",
        result.detail
    );
    assert_eq!(fake.resets(), 0);
    assert_eq!(fake.restarts(), 1);
}

#[tokio::test]
async fn reset_counts_against_budget() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.snapshot.lock().unwrap() = Some(snapshot("failed", "start-limit-hit", 0, "aa"));
    let mut settings = settings(dir.path());
    settings.restart_budget_max = 1;
    let executor = Executor::open(fake.clone(), known_unit(), &settings).unwrap();
    executor
        .execute(reset_and_restart_command("c-1"), Instant::now())
        .await;
    let second = executor
        .execute(reset_and_restart_command("c-2"), Instant::now())
        .await;
    assert_eq!(outcome(&second), CommandOutcome::Rejected);
    assert!(
        second.detail.contains("restart budget spent"),
        "{}",
        second.detail
    );
    assert_eq!(fake.resets(), 1);
}

#[tokio::test]
async fn uninstalled_unit_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.snapshot.lock().unwrap() = None;
    let result = executor(&fake, dir.path())
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("not installed"), "{}", result.detail);
}

#[tokio::test]
async fn unusable_state_dir_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let state_dir = file.join("state");
    let Err(err) = Executor::open(FakeManager::healthy(), known_unit(), &settings(&state_dir))
    else {
        panic!("open succeeded on an unusable state dir");
    };
    let message = err.to_string();
    assert!(
        message.contains(&state_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("set state_dir"), "{message}");
}

#[tokio::test]
async fn unwritable_ledger_does_not_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let executor = executor(&fake, dir.path());
    // A directory where the ledger's temporary file must go makes every
    // write fail, even for root.
    std::fs::create_dir(dir.path().join("commands.json.tmp")).unwrap();
    let result = executor
        .execute(restart_command("c-1", UNIT), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("commands.json"), "{}", result.detail);
    assert_eq!(fake.restarts(), 0);
}

fn search_command(id: &str, search: v1::SearchLogs) -> v1::Command {
    v1::Command {
        command_id: id.to_string(),
        timeout_ms: 30_000,
        requested_by: "operator@example.net".to_string(),
        reason: "diagnose".to_string(),
        action: Some(Action::SearchLogs(search)),
    }
}

fn search_source(log_file: &std::path::Path) -> SearchSourceFn {
    let source = SearchSource::shipped(log_file.to_path_buf());
    Arc::new(move || source.clone())
}

#[tokio::test]
async fn search_answers_records_and_replays_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nova-compute.log");
    let uuid = "6f1b8f4e-3c2a-4d5b-9e8f-0a1b2c3d4e5f";
    std::fs::write(
        &log,
        format!(
            "2026-12-04 10:00:00.000 7 ERROR nova.compute.manager [req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01 a b - - -] [instance: {uuid}] Instance failed to spawn\n"
        ),
    )
    .unwrap();
    let fake = FakeManager::healthy();
    let executor = executor(&fake, dir.path()).with_log_search(search_source(&log));
    let search = v1::SearchLogs {
        instance_uuid: uuid.to_string(),
        request_ids: vec![],
        start_unix_ms: 1_796_378_000_000,
        end_unix_ms: 1_796_379_000_000,
        max_records: 10,
    };

    let result = executor
        .execute(search_command("s-1", search.clone()), Instant::now())
        .await;
    assert_eq!(
        outcome(&result),
        CommandOutcome::Succeeded,
        "{}",
        result.detail
    );
    let found = result.log_search.expect("records");
    assert_eq!(found.records.len(), 1, "{found:?}");
    assert!(
        result.detail.starts_with("1 records in 1 of 1 files"),
        "{}",
        result.detail
    );

    let replay = executor
        .execute(search_command("s-1", search), Instant::now())
        .await;
    assert!(replay.replayed);
    assert_eq!(replay.detail, result.detail);
    assert!(replay.log_search.is_none());
    assert_eq!(fake.restarts(), 0, "a search never restarts");
}

#[tokio::test]
async fn search_does_not_wait_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    *fake.0.hang.lock().unwrap() = true;
    let executor = Arc::new(
        executor(&fake, dir.path()).with_log_search(search_source(&dir.path().join("none.log"))),
    );
    let restarting = executor.clone();
    tokio::spawn(async move {
        restarting
            .execute(restart_command("c-1", UNIT), Instant::now())
            .await
    });
    fake.0.restart_started.notified().await;

    let bad = v1::SearchLogs {
        instance_uuid: "x".to_string(),
        ..Default::default()
    };
    let result = executor
        .execute(search_command("s-2", bad), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("not a UUID"), "{}", result.detail);
}

#[tokio::test]
async fn search_without_log_watch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeManager::healthy();
    let search = v1::SearchLogs {
        instance_uuid: "6f1b8f4e-3c2a-4d5b-9e8f-0a1b2c3d4e5f".to_string(),
        start_unix_ms: 1,
        end_unix_ms: 2,
        ..Default::default()
    };
    let result = executor(&fake, dir.path())
        .execute(search_command("s-3", search), Instant::now())
        .await;
    assert_eq!(outcome(&result), CommandOutcome::Rejected);
    assert!(result.detail.contains("log watch"), "{}", result.detail);
}
