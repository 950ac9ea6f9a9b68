//! nova-compute's systemd unit, read and restarted over systemd's D-Bus API.
//!
//! Only this module talks to D-Bus. `ServiceManager` is the seam: the real
//! implementation is `dbus::SystemdManager`; tests of the transport and the
//! executor may use a double, but the system tests run against the real
//! systemd in a container.

use std::future::Future;
use std::time::Duration;

/// Properties of one unit at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitSnapshot {
    pub unit: String,
    /// systemd LoadState: "loaded", "not-found", "masked", ...
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// Service Result: "success", "signal", "exit-code", "start-limit-hit", ...
    pub result: String,
    pub main_pid: u32,
    pub n_restarts: u32,
    /// InvocationID as 32 lowercase hex digits, empty when the unit never ran.
    pub invocation_id: String,
    /// Microseconds since the Unix epoch, 0 when never.
    pub inactive_exit_timestamp_us: u64,
    /// When the unit last entered the inactive or failed state, microseconds
    /// since the Unix epoch, 0 when never.
    pub inactive_enter_timestamp_us: u64,
}

impl UnitSnapshot {
    /// Whether two snapshots differ in anything an operator sees as a state
    /// change (active or sub state, result, main PID or invocation).
    pub fn state_differs(&self, other: &UnitSnapshot) -> bool {
        self.active_state != other.active_state
            || self.sub_state != other.sub_state
            || self.result != other.result
            || self.main_pid != other.main_pid
            || self.invocation_id != other.invocation_id
    }
}

/// State of nova-compute's unit as the agent last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitObservation {
    Known(UnitSnapshot),
    /// The state cannot be read: `reason` says why in an operator's words,
    /// for example "nova-compute is not installed" or "systemd is not PID 1".
    Unknown {
        unit: Option<String>,
        reason: String,
    },
}

/// Outcome of a restart, as systemd reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartReport {
    /// The `JobRemoved` result of the restart job: "done", "failed",
    /// "canceled", "timeout", "dependency", "skipped"; empty when the job's
    /// end was not seen before the deadline.
    pub job_result: String,
    pub before: UnitSnapshot,
    /// The unit at the end of the settle time, or at the deadline.
    pub after: UnitSnapshot,
    /// True when the unit became active with a new InvocationID and stayed
    /// active for the whole settle time.
    pub stayed_active: bool,
    /// True when the deadline ran out before the outcome was known.
    pub timed_out: bool,
    /// Words an operator can act on, for example "unit exited 3 s after it
    /// became active (Result=exit-code)".
    pub detail: String,
}

/// Errors of the service manager.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// No system bus or systemd is not PID 1.
    #[error("{0}")]
    Unavailable(String),
    #[error("unit {0} is not installed")]
    UnitNotFound(String),
    #[error("D-Bus call {method} failed: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
}

/// The agent's view of the service manager.
pub trait ServiceManager: Send + Sync + 'static {
    /// Returns the current properties of `unit`.
    fn unit_snapshot(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<UnitSnapshot, SystemdError>> + Send;

    /// Restarts `unit` with `RestartUnit(unit, "replace")`, waits for the
    /// job's `JobRemoved`, for the unit to be active with a new InvocationID,
    /// and for it to stay active for `settle`, all within `deadline`.
    fn restart_unit(
        &self,
        unit: &str,
        settle: Duration,
        deadline: Duration,
    ) -> impl Future<Output = Result<RestartReport, SystemdError>> + Send;

    /// Calls `ResetFailedUnit(unit)`: systemd forgets the unit's failed
    /// state and its start-limit count, so a start is allowed again.
    fn reset_failed_unit(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
}

pub mod dbus;
pub mod detect;
pub mod watch;
