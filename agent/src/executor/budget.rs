//! The restart budget: at most `max_restarts` restarts per `window`, in
//! `STATE_DIR/restart-budget.json` so an agent restart does not reset it.
//!
//! Times are wall-clock Unix milliseconds because they must survive a
//! reboot. A restart recorded in the future (the clock was set back) still
//! counts until it is more than one window ahead, so setting the clock back
//! cannot free the budget early by more than one window.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ledger::{read_json, write_json, StateError};

/// File name of the budget in the state directory.
pub const BUDGET_FILE: &str = "restart-budget.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct BudgetFile {
    /// Start of each restart still inside the window, Unix milliseconds.
    restarts_unix_ms: Vec<i64>,
}

/// The budget is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpent {
    pub restarts: usize,
    pub window: Duration,
    /// When the oldest counted restart leaves the window, Unix milliseconds.
    pub next_allowed_unix_ms: i64,
}

/// Restarts started within the window.
#[derive(Debug)]
pub struct RestartBudget {
    path: PathBuf,
    max_restarts: u32,
    window: Duration,
    restarts_unix_ms: Vec<i64>,
}

impl RestartBudget {
    /// Loads the budget in `state_dir`; a missing file is an unused budget.
    pub fn open(state_dir: &Path, max_restarts: u32, window: Duration) -> Result<Self, StateError> {
        let path = state_dir.join(BUDGET_FILE);
        let file = read_json::<BudgetFile>(&path)?.unwrap_or_default();
        Ok(RestartBudget {
            path,
            max_restarts,
            window,
            restarts_unix_ms: file.restarts_unix_ms,
        })
    }

    /// Path of the budget file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks whether one more restart fits at `now_unix_ms`.
    pub fn check(&self, now_unix_ms: i64) -> Result<(), BudgetSpent> {
        let max_restarts = self.max_restarts as usize;
        let mut counted = self.counted(now_unix_ms);
        if counted.len() < max_restarts {
            return Ok(());
        }
        let next_allowed_unix_ms = if max_restarts == 0 {
            i64::MAX
        } else {
            // One restart fits again once this one leaves the window.
            counted.sort_unstable();
            counted[counted.len() - max_restarts] + self.window_ms()
        };
        Err(BudgetSpent {
            restarts: counted.len(),
            window: self.window,
            next_allowed_unix_ms,
        })
    }

    /// Records a restart starting at `now_unix_ms` and writes the file.
    pub fn record(&mut self, now_unix_ms: i64) -> Result<(), StateError> {
        self.restarts_unix_ms = self.counted(now_unix_ms);
        self.restarts_unix_ms.push(now_unix_ms);
        let file = BudgetFile {
            restarts_unix_ms: self.restarts_unix_ms.clone(),
        };
        write_json(&self.path, &file)
    }

    /// Restarts that count at `now_unix_ms`.
    fn counted(&self, now_unix_ms: i64) -> Vec<i64> {
        let window_ms = self.window_ms();
        self.restarts_unix_ms
            .iter()
            .copied()
            .filter(|&at| (now_unix_ms - at) < window_ms && (at - now_unix_ms) < window_ms)
            .collect()
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn budget_allows_max_then_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = RestartBudget::open(dir.path(), 3, HOUR).unwrap();
        for minute in 0..3 {
            let now = minute * 60_000;
            assert_eq!(budget.check(now), Ok(()));
            budget.record(now).unwrap();
        }
        let spent = budget.check(10 * 60_000).unwrap_err();
        assert_eq!(spent.restarts, 3);
        assert_eq!(spent.next_allowed_unix_ms, HOUR_MS);
    }

    #[test]
    fn budget_frees_as_window_moves() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = RestartBudget::open(dir.path(), 2, HOUR).unwrap();
        budget.record(0).unwrap();
        budget.record(1000).unwrap();
        assert!(budget.check(HOUR_MS - 1).is_err());
        assert_eq!(budget.check(HOUR_MS), Ok(()));
    }

    #[test]
    fn budget_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = RestartBudget::open(dir.path(), 1, HOUR).unwrap();
        budget.record(5_000).unwrap();
        let reopened = RestartBudget::open(dir.path(), 1, HOUR).unwrap();
        assert!(reopened.check(6_000).is_err());
    }

    #[test]
    fn clock_set_back_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = RestartBudget::open(dir.path(), 1, HOUR).unwrap();
        budget.record(10 * HOUR_MS).unwrap();
        assert!(budget.check(10 * HOUR_MS - 60_000).is_err());
        assert_eq!(budget.check(8 * HOUR_MS), Ok(()));
    }

    #[test]
    fn zero_budget_never_allows() {
        let dir = tempfile::tempdir().unwrap();
        let budget = RestartBudget::open(dir.path(), 0, HOUR).unwrap();
        let spent = budget.check(0).unwrap_err();
        assert_eq!(spent.restarts, 0);
        assert_eq!(spent.next_allowed_unix_ms, i64::MAX);
    }
}
