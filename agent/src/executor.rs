//! Runs the controller's commands under the agent's own rules.
//!
//! Whatever the controller requests, the agent:
//! - restarts only its own nova-compute unit;
//! - executes a command id at most once, also across agent restarts (the
//!   ledger in `ledger`), and returns the recorded result for a replay;
//! - runs one command at a time and rejects a command whose timeout ran out
//!   while it was queued;
//! - restarts at most `restart_budget_max` times per window (`budget`);
//! - does not restart a unit in systemd's start limit unless the command
//!   sets `reset_failed`; then it calls `ResetFailedUnit` once, under the
//!   same ledger entry and budget as the restart, and never on its own.
//!
//! Every command with an id gets a ledger entry, rejections included.
//!
//! `SearchLogs` only reads nova-compute's log files. It does not wait for a
//! restart in progress, runs on a blocking thread so reports keep flowing,
//! and its ledger entry keeps the outcome and detail, not the records: a
//! replayed id gets those without records.

pub mod budget;
pub mod ledger;

use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use novamedic_proto::v1::{self, command::Action, CommandOutcome};
use tokio::sync::{watch, Mutex, Semaphore};

use crate::config::AgentConfig;
use crate::logsearch::{self, Query, SearchSource};
use crate::systemd::dbus::{format_seconds, start_limit_detail};
use crate::systemd::{RestartReport, ServiceManager, SystemdError, UnitObservation, UnitSnapshot};
use budget::{BudgetSpent, RestartBudget};
use ledger::{CommandState, Ledger, RecordedInstance, RecordedResult, StateError};

/// Maximum timeout of a command; longer timeouts are cut to this.
/// Restarting nova-compute takes seconds plus the settle time (at most
/// 600 s by config).
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

/// Log searches that read files at once; more wait for a turn within their
/// own timeout, so `diagnose --all` cannot tie up a node's disks.
pub const MAX_CONCURRENT_SEARCHES: usize = 2;

/// The executor's settings, taken from the agent's config.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorSettings {
    pub state_dir: PathBuf,
    pub restart_settle: Duration,
    pub restart_budget_max: u32,
    pub restart_budget_window: Duration,
}

impl ExecutorSettings {
    pub fn from_config(config: &AgentConfig) -> Self {
        ExecutorSettings {
            state_dir: config.state_dir.clone(),
            restart_settle: config.restart_settle,
            restart_budget_max: config.restart_budget_max,
            restart_budget_window: config.restart_budget_window,
        }
    }
}

/// Finds where a log search reads: the log watch's current file.
pub type SearchSourceFn = Arc<dyn Fn() -> SearchSource + Send + Sync>;

/// Turns commands into results; see the module documentation for the rules.
pub struct Executor<M: ServiceManager> {
    manager: M,
    /// nova-compute's unit as the unit watch observes it: the one unit
    /// commands may name.
    unit_rx: watch::Receiver<UnitObservation>,
    restart_settle: Duration,
    /// The restart budget. A tokio mutex held for a whole restart command,
    /// so restarts run one at a time in arrival order.
    state: Mutex<ExecutorState>,
    /// The ledger, behind a std mutex held only for a lookup or a write, so
    /// a log search need not wait for a restart to settle.
    ledger: std::sync::Mutex<Ledger>,
    /// `None` until the log watch is wired in; searches are then rejected.
    search_source: Option<SearchSourceFn>,
    search_slots: Semaphore,
}

struct ExecutorState {
    budget: RestartBudget,
}

/// The outcome of the checks before a restart.
enum Checked {
    Restart {
        unit: String,
        before: UnitSnapshot,
        deadline: Duration,
        /// Call `ResetFailedUnit` before the restart: the unit is failed
        /// and the command asked for it.
        reset_failed: bool,
    },
    Answer(v1::CommandResult),
}

impl<M: ServiceManager> Executor<M> {
    /// Opens the state directory (created if missing) and loads the ledger
    /// and the restart budget.
    pub fn open(
        manager: M,
        unit_rx: watch::Receiver<UnitObservation>,
        settings: &ExecutorSettings,
    ) -> Result<Self, StateError> {
        ledger::prepare_state_dir(&settings.state_dir)?;
        let ledger = Ledger::open(&settings.state_dir)?;
        let budget = RestartBudget::open(
            &settings.state_dir,
            settings.restart_budget_max,
            settings.restart_budget_window,
        )?;
        Ok(Executor {
            manager,
            unit_rx,
            restart_settle: settings.restart_settle,
            state: Mutex::new(ExecutorState { budget }),
            ledger: std::sync::Mutex::new(ledger),
            search_source: None,
            search_slots: Semaphore::new(MAX_CONCURRENT_SEARCHES),
        })
    }

    /// Serves `SearchLogs` commands from the files `source` names.
    pub fn with_log_search(mut self, source: SearchSourceFn) -> Self {
        self.search_source = Some(source);
        self
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Every write replaces the whole file, so a panic mid-write leaves
        // the ledger in memory as consistent as before it.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Executes `command`, received at `received_at`, and returns its
    /// result. `duration_ms` counts from receipt, queueing included.
    pub async fn execute(&self, command: v1::Command, received_at: Instant) -> v1::CommandResult {
        let command_id = command.command_id.clone();
        if command_id.is_empty() {
            tracing::warn!("rejected a command without a command_id");
            return rejected(&command_id, "command has no command_id", received_at);
        }
        if let Some(Action::SearchLogs(search)) = &command.action {
            return self.search_logs(&command, search, received_at).await;
        }
        let mut state = self.state.lock().await;

        let recorded = self.ledger().get(&command_id).cloned();
        if let Some(recorded) = recorded {
            return replay(&mut self.ledger(), &command_id, recorded, received_at);
        }

        let result = match self.check(&mut state, &command, received_at).await {
            Checked::Answer(result) => result,
            Checked::Restart {
                unit,
                before,
                deadline,
                reset_failed,
            } => {
                let plan = RestartPlan {
                    unit,
                    before,
                    deadline,
                    reset_failed,
                };
                self.restart(&mut state, &command_id, plan, received_at)
                    .await
            }
        };
        drop(state);
        self.finish(&command_id, result)
    }

    /// Records a command's result in the ledger and logs it.
    fn finish(&self, command_id: &str, result: v1::CommandResult) -> v1::CommandResult {
        let done = CommandState::Done {
            result: to_recorded(&result),
        };
        if let Err(err) = self.ledger().record(command_id, done, unix_ms_now()) {
            tracing::error!(command_id = %command_id, error = %err, "cannot record a command result");
        }
        tracing::info!(
            command_id = %command_id,
            outcome = result.outcome().as_str_name(),
            detail = %result.detail,
            "command finished"
        );
        result
    }

    /// Searches nova-compute's log files on a blocking thread.
    async fn search_logs(
        &self,
        command: &v1::Command,
        search: &v1::SearchLogs,
        received_at: Instant,
    ) -> v1::CommandResult {
        let id = command.command_id.as_str();
        let recorded = self.ledger().get(id).cloned();
        if let Some(recorded) = recorded {
            return replay(&mut self.ledger(), id, recorded, received_at);
        }
        let checked = remaining_time(command, received_at).and_then(|remaining| {
            let query = Query::from_wire(search)?;
            let source = self
                .search_source
                .as_ref()
                .ok_or("this agent runs without its log watch, so it cannot search logs")?;
            Ok((remaining, query, source()))
        });
        let (remaining, query, source) = match checked {
            Ok(checked) => checked,
            Err(detail) => {
                tracing::warn!(command_id = %id, detail = %detail, "rejected a log search");
                return self.finish(id, rejected(id, &detail, received_at));
            }
        };
        tracing::info!(
            command_id = %id,
            requested_by = %command.requested_by,
            instance_uuid = query.instance_uuid.as_deref().unwrap_or(""),
            request_ids = query.request_ids.len(),
            "searching nova-compute's log files"
        );
        let deadline = received_at + remaining;
        let slot = tokio::time::timeout_at(deadline.into(), self.search_slots.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            let detail = "timed out waiting for other log searches to finish; retry later";
            let result = result_of(
                id,
                CommandOutcome::TimedOut,
                detail.to_string(),
                received_at,
            );
            return self.finish(id, result);
        };
        let searched =
            tokio::task::spawn_blocking(move || logsearch::search(&source, &query, deadline)).await;
        let result = match searched {
            Ok(found) => {
                let mut result = result_of(
                    id,
                    CommandOutcome::Succeeded,
                    search_detail(&found),
                    received_at,
                );
                result.log_search = Some(found);
                result
            }
            Err(err) => result_of(
                id,
                CommandOutcome::Failed,
                format!("the log search failed: {err}"),
                received_at,
            ),
        };
        self.finish(id, result)
    }

    /// Applies every rule that can reject the command before a restart.
    async fn check(
        &self,
        state: &mut ExecutorState,
        command: &v1::Command,
        received_at: Instant,
    ) -> Checked {
        let id = command.command_id.as_str();
        let answer = |detail: String| Checked::Answer(rejected(id, &detail, received_at));

        let remaining = match remaining_time(command, received_at) {
            Ok(remaining) => remaining,
            Err(detail) => return answer(detail),
        };

        let Some(Action::RestartUnit(restart)) = &command.action else {
            return answer("unknown command kind; upgrade the agent".to_string());
        };
        let allowed = match self.allowed_unit() {
            Ok(unit) => unit,
            Err(reason) => {
                return answer(format!(
                    "nova-compute's unit is not known on this node: {reason}"
                ))
            }
        };
        if restart.unit != allowed {
            tracing::warn!(
                command_id = %id,
                unit = %restart.unit,
                allowed_unit = %allowed,
                "rejected a restart of a unit other than nova-compute's"
            );
            return answer(format!(
                "unit {:?} is not allowed: this agent restarts only nova-compute's unit {allowed}",
                restart.unit
            ));
        }
        if remaining <= self.restart_settle {
            return answer(format!(
                "the command's remaining time of {} is not longer than the restart settle time \
                 of {}; send it with a longer timeout",
                format_seconds(remaining),
                format_seconds(self.restart_settle)
            ));
        }
        if let Err(spent) = state.budget.check(unix_ms_now()) {
            return answer(budget_detail(&spent));
        }

        let before = match self.manager.unit_snapshot(&allowed).await {
            Ok(before) => before,
            Err(SystemdError::UnitNotFound(unit)) => {
                return answer(format!("unit {unit} is not installed"))
            }
            Err(err) => {
                let detail = format!("cannot read the unit before the restart: {err}");
                return Checked::Answer(result_of(id, CommandOutcome::Failed, detail, received_at));
            }
        };
        let failed = before.active_state == "failed";
        if before.result == "start-limit-hit" && failed && !restart.reset_failed {
            let mut result = rejected(id, &start_limit_detail(&allowed), received_at);
            result.before = Some(instance(&before));
            return Checked::Answer(result);
        }
        Checked::Restart {
            unit: allowed,
            before,
            deadline: remaining,
            reset_failed: restart.reset_failed && failed,
        }
    }

    /// Records the restart as in progress and counts it against the budget
    /// before it starts, resets the unit's failed state when the plan asks
    /// for it, then restarts and maps the report.
    async fn restart(
        &self,
        state: &mut ExecutorState,
        command_id: &str,
        plan: RestartPlan,
        received_at: Instant,
    ) -> v1::CommandResult {
        let RestartPlan {
            unit,
            before,
            deadline,
            reset_failed,
        } = plan;
        let unit = unit.as_str();
        let now = unix_ms_now();
        let recorded = self
            .ledger()
            .record(command_id, CommandState::InProgress, now)
            .and_then(|()| state.budget.record(now));
        if let Err(err) = recorded {
            tracing::error!(command_id = %command_id, error = %err, "cannot record a restart before it starts");
            let detail = format!(
                "not restarted, because the restart could not be recorded first \
                 (a replay could restart twice): {err}"
            );
            let mut result = rejected(command_id, &detail, received_at);
            result.before = Some(instance(&before));
            return result;
        }

        // The ledger entry above already marks this command id in progress,
        // so a replay never resets the unit a second time.
        let mut prefix = String::new();
        if reset_failed {
            tracing::info!(command_id = %command_id, unit = %unit, result = %before.result, "resetting the unit's failed state before the restart");
            if let Err(err) = self.manager.reset_failed_unit(unit).await {
                let detail = format!("not restarted: ResetFailedUnit failed: {err}");
                let mut result = result_of(command_id, CommandOutcome::Failed, detail, received_at);
                result.before = Some(instance(&before));
                return result;
            }
            prefix = format!(
                "reset the failed state first (ResetFailedUnit; the unit was failed with \
                 Result={}); ",
                before.result
            );
        }

        tracing::info!(command_id = %command_id, unit = %unit, "restarting nova-compute");
        let mut result = match self
            .manager
            .restart_unit(unit, self.restart_settle, deadline)
            .await
        {
            Ok(report) => result_of_report(command_id, &report, received_at),
            Err(err) => {
                let detail = format!("restart failed: {err}");
                let mut result = result_of(command_id, CommandOutcome::Failed, detail, received_at);
                result.before = Some(instance(&before));
                result
            }
        };
        result.detail.insert_str(0, &prefix);
        result
    }

    /// Returns the one unit a command may name, or why there is none.
    fn allowed_unit(&self) -> Result<String, String> {
        match &*self.unit_rx.borrow() {
            UnitObservation::Known(snapshot) => Ok(snapshot.unit.clone()),
            UnitObservation::Unknown {
                unit: Some(unit), ..
            } => Ok(unit.clone()),
            UnitObservation::Unknown { unit: None, reason } => Err(reason.clone()),
        }
    }
}

/// A restart that passed the checks.
struct RestartPlan {
    unit: String,
    before: UnitSnapshot,
    deadline: Duration,
    reset_failed: bool,
}

/// Returns the time a command has left, or why it expired.
fn remaining_time(command: &v1::Command, received_at: Instant) -> Result<Duration, String> {
    let timeout = Duration::from_millis(command.timeout_ms).min(MAX_COMMAND_TIMEOUT);
    if timeout.is_zero() {
        return Err("expired: the command arrived with timeout_ms = 0".to_string());
    }
    let remaining = timeout.saturating_sub(received_at.elapsed());
    if remaining.is_zero() {
        return Err(format!(
            "expired: the command waited in the agent's queue past its timeout of {}",
            format_seconds(timeout)
        ));
    }
    Ok(remaining)
}

/// Summarizes a search for the ledger and the controller's history.
fn search_detail(found: &v1::LogSearchResult) -> String {
    if !found.problem.is_empty() {
        return format!("no log file searched: {}", found.problem);
    }
    let searched = found.files.iter().filter(|file| file.searched).count();
    let mut detail = format!(
        "{} records in {searched} of {} files ({} lines read)",
        found.records.len(),
        found.files.len(),
        found.lines_read
    );
    if found.truncated {
        detail.push_str("; more records matched than were returned");
    }
    detail
}

/// Returns the result for a replayed id. An entry still in progress was left by an agent
/// that died during the restart: the outcome is unknown, and the restart is
/// not repeated.
fn replay(
    ledger: &mut Ledger,
    command_id: &str,
    recorded: CommandState,
    received_at: Instant,
) -> v1::CommandResult {
    let mut result = match recorded {
        CommandState::Done { result } => from_recorded(command_id, &result),
        CommandState::InProgress => {
            let detail = "agent restarted during execution: the restart may or may not have \
                          happened; check the unit's state before sending a new command";
            let result = result_of(
                command_id,
                CommandOutcome::Failed,
                detail.to_string(),
                received_at,
            );
            let done = CommandState::Done {
                result: to_recorded(&result),
            };
            if let Err(err) = ledger.record(command_id, done, unix_ms_now()) {
                tracing::error!(command_id = %command_id, error = %err, "cannot record a command result");
            }
            result
        }
    };
    tracing::info!(command_id = %command_id, "returned the recorded result for a replayed command id");
    result.replayed = true;
    result
}

fn result_of_report(
    command_id: &str,
    report: &RestartReport,
    received_at: Instant,
) -> v1::CommandResult {
    let outcome = if report.stayed_active {
        CommandOutcome::Succeeded
    } else if report.timed_out {
        CommandOutcome::TimedOut
    } else {
        CommandOutcome::Failed
    };
    let mut result = result_of(command_id, outcome, report.detail.clone(), received_at);
    result.before = Some(instance(&report.before));
    result.after = Some(instance(&report.after));
    result
}

fn budget_detail(spent: &BudgetSpent) -> String {
    let next_allowed = if spent.next_allowed_unix_ms == i64::MAX {
        "never: restart_budget.max_restarts is 0".to_string()
    } else {
        format_unix_ms(spent.next_allowed_unix_ms)
    };
    format!(
        "restart budget spent: {} restarts in the last {} min; next allowed at {next_allowed}",
        spent.restarts,
        spent.window.as_secs() / 60
    )
}

fn rejected(command_id: &str, detail: &str, received_at: Instant) -> v1::CommandResult {
    result_of(
        command_id,
        CommandOutcome::Rejected,
        detail.to_string(),
        received_at,
    )
}

fn result_of(
    command_id: &str,
    outcome: CommandOutcome,
    detail: String,
    received_at: Instant,
) -> v1::CommandResult {
    v1::CommandResult {
        command_id: command_id.to_string(),
        outcome: outcome as i32,
        detail,
        duration_ms: received_at.elapsed().as_millis() as u64,
        ..Default::default()
    }
}

fn instance(snapshot: &UnitSnapshot) -> v1::UnitInstance {
    v1::UnitInstance {
        main_pid: snapshot.main_pid,
        invocation_id: snapshot.invocation_id.clone(),
        active_state: snapshot.active_state.clone(),
    }
}

fn to_recorded(result: &v1::CommandResult) -> RecordedResult {
    let instance = |unit: &v1::UnitInstance| RecordedInstance {
        main_pid: unit.main_pid,
        invocation_id: unit.invocation_id.clone(),
        active_state: unit.active_state.clone(),
    };
    RecordedResult {
        outcome: result.outcome().as_str_name().to_string(),
        detail: result.detail.clone(),
        before: result.before.as_ref().map(instance),
        after: result.after.as_ref().map(instance),
        duration_ms: result.duration_ms,
    }
}

fn from_recorded(command_id: &str, recorded: &RecordedResult) -> v1::CommandResult {
    let instance = |unit: &RecordedInstance| v1::UnitInstance {
        main_pid: unit.main_pid,
        invocation_id: unit.invocation_id.clone(),
        active_state: unit.active_state.clone(),
    };
    let outcome =
        CommandOutcome::from_str_name(&recorded.outcome).unwrap_or(CommandOutcome::Unspecified);
    v1::CommandResult {
        command_id: command_id.to_string(),
        outcome: outcome as i32,
        detail: recorded.detail.clone(),
        before: recorded.before.as_ref().map(instance),
        after: recorded.after.as_ref().map(instance),
        duration_ms: recorded.duration_ms,
        replayed: false,
        log_search: None,
    }
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 UTC, for example
/// "2026-12-04T21:30:00Z".
fn format_unix_ms(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("Unix time {seconds} s"))
}

#[cfg(test)]
mod tests;
