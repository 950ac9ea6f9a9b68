//! `ServiceManager` on systemd's D-Bus API (`org.freedesktop.systemd1` on
//! the system bus).
//!
//! Properties are always read with `GetAll` on a proxy without a property
//! cache: zbus caches properties per proxy and only refreshes them from
//! `PropertiesChanged`, which systemd does not emit for every property. One
//! `GetAll` per interface also gives a consistent view of that interface.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::Mutex;
use tokio::time::Instant;
use zbus::fdo::{PropertiesChangedStream, PropertiesProxy};
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::{JobRemovedStream, ManagerProxy};

use super::{RestartReport, ServiceManager, SystemdError, UnitSnapshot};

const SYSTEMD_SERVICE: &str = "org.freedesktop.systemd1";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";

/// The system bus socket when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub const DEFAULT_SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Upper bound of one D-Bus call. systemd answers in milliseconds unless it
/// is stuck, for example in a long `daemon-reload`.
const METHOD_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a restart re-reads the unit when no `PropertiesChanged` arrives,
/// as a safety net for a missed signal.
const RESTART_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// systemd on the system bus. Connects on first use and again after the
/// connection closed, so a restart of dbus-daemon does not need an agent
/// restart.
#[derive(Default)]
pub struct SystemdManager {
    /// The open connection. A tokio mutex because connecting awaits, and two
    /// callers must not open two connections at once.
    connection: Mutex<Option<Connection>>,
}

impl SystemdManager {
    /// Returns a manager that connects on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a manager that is already connected and subscribed, or why
    /// systemd cannot be reached.
    pub async fn connect() -> Result<Self, SystemdError> {
        let manager = Self::new();
        let _connection = manager.connection().await?;
        Ok(manager)
    }

    /// Returns the open connection, connecting and calling `Subscribe()` when
    /// there is none. Without `Subscribe()` systemd sends no `JobRemoved` and
    /// no `PropertiesChanged` for units no other client watches.
    pub async fn connection(&self) -> Result<Connection, SystemdError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        let connection = open_system_bus().await?;
        subscribe(&connection).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Returns the object path of `unit`, loading the unit if systemd has not
    /// loaded it. A unit without a unit file still gets a path; its
    /// LoadState is "not-found".
    pub async fn unit_path(&self, unit: &str) -> Result<OwnedObjectPath, SystemdError> {
        let connection = self.connection().await?;
        let manager = manager_proxy(&connection).await?;
        load_unit(&manager, unit).await
    }

    /// Returns the LoadState of `unit`: "loaded", "not-found", "masked",
    /// "bad-setting", "error".
    pub async fn load_state(&self, unit: &str) -> Result<String, SystemdError> {
        let connection = self.connection().await?;
        let manager = manager_proxy(&connection).await?;
        let path = load_unit(&manager, unit).await?;
        let mut properties = get_all(&connection, &path, UNIT_INTERFACE).await?;
        take_string(&mut properties, "LoadState")
    }

    /// Reads the snapshot of `unit` at `path` fresh from systemd.
    pub async fn snapshot_at(
        &self,
        unit: &str,
        path: &OwnedObjectPath,
    ) -> Result<UnitSnapshot, SystemdError> {
        let connection = self.connection().await?;
        read_snapshot(&connection, unit, path).await
    }

    /// Returns a stream of `PropertiesChanged` signals of the unit at `path`,
    /// for all its interfaces. The match rule is in place when this returns.
    pub async fn property_changes(
        &self,
        path: &OwnedObjectPath,
    ) -> Result<PropertiesChangedStream, SystemdError> {
        let connection = self.connection().await?;
        let properties = properties_proxy(&connection, path).await?;
        properties
            .receive_properties_changed()
            .await
            .map_err(|err| map_error("AddMatch", "", err))
    }

    async fn restart(
        &self,
        unit: &str,
        settle: Duration,
        deadline: Duration,
    ) -> Result<RestartReport, SystemdError> {
        let deadline_at = Instant::now() + deadline;
        let connection = self.connection().await?;
        let manager = manager_proxy(&connection).await?;
        let path = load_unit(&manager, unit).await?;
        let before = read_snapshot(&connection, unit, &path).await?;

        // Both streams exist before RestartUnit, so neither the job's end nor
        // a state change can slip by between the call and the wait.
        let mut jobs = manager
            .receive_job_removed()
            .await
            .map_err(|err| map_error("AddMatch", unit, err))?;
        let properties = properties_proxy(&connection, &path).await?;
        let mut changes = properties
            .receive_properties_changed()
            .await
            .map_err(|err| map_error("AddMatch", unit, err))?;

        let job = manager
            .restart_unit(unit.to_string(), "replace".to_string())
            .await
            .map_err(|err| map_error("RestartUnit", unit, err))?;
        tracing::info!(unit = %unit, job = %job.as_str(), "restart job queued");

        let mut report = RestartReport {
            job_result: String::new(),
            before: before.clone(),
            after: before.clone(),
            stayed_active: false,
            timed_out: false,
            detail: String::new(),
        };

        match tokio::time::timeout_at(deadline_at, wait_job_removed(&mut jobs, &job)).await {
            Ok(result) => report.job_result = result?,
            Err(_) => {
                report.timed_out = true;
                report.detail = format!(
                    "timed out after {} waiting for systemd to finish the restart job \
                     (the job may still complete)",
                    format_seconds(deadline)
                );
                return Ok(report);
            }
        }

        let mut follow = Follow {
            connection: &connection,
            unit,
            path: &path,
            changes: &mut changes,
            deadline_at,
        };
        let ending = follow
            .until_settled(&before, &report.job_result, settle)
            .await?;
        report.after = ending.last;
        report.stayed_active = ending.verdict == Verdict::StayedActive;
        report.timed_out = ending.verdict == Verdict::TimedOut;
        report.detail = ending.detail;
        Ok(report)
    }
}

impl ServiceManager for SystemdManager {
    async fn unit_snapshot(&self, unit: &str) -> Result<UnitSnapshot, SystemdError> {
        let path = self.unit_path(unit).await?;
        self.snapshot_at(unit, &path).await
    }

    async fn restart_unit(
        &self,
        unit: &str,
        settle: Duration,
        deadline: Duration,
    ) -> Result<RestartReport, SystemdError> {
        self.restart(unit, settle, deadline).await
    }

    async fn reset_failed_unit(&self, unit: &str) -> Result<(), SystemdError> {
        let connection = self.connection().await?;
        let manager = manager_proxy(&connection).await?;
        manager
            .reset_failed_unit(unit.to_string())
            .await
            .map_err(|err| map_error("ResetFailedUnit", unit, err))?;
        tracing::info!(unit = %unit, "reset the unit's failed state");
        Ok(())
    }
}

/// Opens the system bus and names the likely cause when that fails.
async fn open_system_bus() -> Result<Connection, SystemdError> {
    let connection = zbus::connection::Builder::system()
        .method_timeout(METHOD_TIMEOUT)
        .build()
        .await;
    connection.map_err(|err| {
        let cause = match &err {
            zbus::Error::Connection(io, _) => io.to_string(),
            other => other.to_string(),
        };
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| DEFAULT_SYSTEM_BUS_SOCKET.to_string());
        // sd_booted(3) uses the same test: systemd creates this directory
        // early at boot when it runs as PID 1.
        if Path::new("/run/systemd/system").exists() {
            SystemdError::Unavailable(format!(
                "cannot connect to the system bus at {address}: {cause}"
            ))
        } else {
            SystemdError::Unavailable(format!(
                "systemd is not running as PID 1 (no system bus at {address}: {cause})"
            ))
        }
    })
}

/// Calls `Manager.Subscribe()`. systemd keeps the subscription until the
/// connection closes, and returns AlreadySubscribed on a second call.
async fn subscribe(connection: &Connection) -> Result<(), SystemdError> {
    let manager = manager_proxy(connection).await?;
    match manager.subscribe().await {
        Ok(()) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" =>
        {
            Ok(())
        }
        Err(err) => Err(map_error("Subscribe", "", err)),
    }
}

async fn manager_proxy(connection: &Connection) -> Result<ManagerProxy<'static>, SystemdError> {
    ManagerProxy::builder(connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|err| map_error("Manager proxy", "", err))
}

async fn properties_proxy(
    connection: &Connection,
    path: &OwnedObjectPath,
) -> Result<PropertiesProxy<'static>, SystemdError> {
    PropertiesProxy::builder(connection)
        .destination(SYSTEMD_SERVICE)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|err| map_error("Properties proxy", "", err))
}

async fn load_unit(
    manager: &ManagerProxy<'_>,
    unit: &str,
) -> Result<OwnedObjectPath, SystemdError> {
    manager
        .load_unit(unit.to_string())
        .await
        .map_err(|err| map_error("LoadUnit", unit, err))
}

async fn get_all(
    connection: &Connection,
    path: &OwnedObjectPath,
    interface: &'static str,
) -> Result<HashMap<String, OwnedVariant>, SystemdError> {
    let properties = properties_proxy(connection, path).await?;
    let interface = InterfaceName::from_static_str_unchecked(interface);
    properties
        .get_all(interface)
        .await
        .map_err(|err| map_error("GetAll", "", err.into()))
}

/// Reads `unit` fresh. A unit without a unit file is `UnitNotFound` unless
/// it still runs: a unit file removed under a running service leaves the
/// service running, and that is still worth reporting.
async fn read_snapshot(
    connection: &Connection,
    unit: &str,
    path: &OwnedObjectPath,
) -> Result<UnitSnapshot, SystemdError> {
    let mut unit_properties = get_all(connection, path, UNIT_INTERFACE).await?;
    let load_state = take_string(&mut unit_properties, "LoadState")?;
    let active_state = take_string(&mut unit_properties, "ActiveState")?;
    if load_state == "not-found" && matches!(active_state.as_str(), "inactive" | "failed") {
        return Err(SystemdError::UnitNotFound(unit.to_string()));
    }
    let mut service_properties = get_all(connection, path, SERVICE_INTERFACE).await?;
    let invocation_id = take::<Vec<u8>>(&mut unit_properties, "InvocationID")?;
    Ok(UnitSnapshot {
        unit: unit.to_string(),
        load_state,
        active_state,
        sub_state: take_string(&mut unit_properties, "SubState")?,
        result: take_string(&mut service_properties, "Result")?,
        main_pid: take(&mut service_properties, "MainPID")?,
        n_restarts: take(&mut service_properties, "NRestarts")?,
        invocation_id: invocation_id_hex(&invocation_id),
        inactive_exit_timestamp_us: take(&mut unit_properties, "InactiveExitTimestamp")?,
        inactive_enter_timestamp_us: take(&mut unit_properties, "InactiveEnterTimestamp")?,
    })
}

fn take<T>(properties: &mut HashMap<String, OwnedVariant>, name: &str) -> Result<T, SystemdError>
where
    T: TryFrom<OwnedVariant>,
{
    let missing = || SystemdError::Call {
        method: "GetAll",
        message: format!("property {name} is missing or has an unexpected type"),
    };
    let value = properties.remove(name).ok_or_else(missing)?;
    T::try_from(value).map_err(|_| missing())
}

fn take_string(
    properties: &mut HashMap<String, OwnedVariant>,
    name: &str,
) -> Result<String, SystemdError> {
    take::<String>(properties, name)
}

/// Formats systemd's 16-byte InvocationID as 32 lowercase hex digits, the
/// form `systemctl show` and the journal's `_SYSTEMD_INVOCATION_ID` use.
pub fn invocation_id_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Maps a zbus error to the agent's words. `unit` is empty for calls that
/// do not name one.
pub fn map_error(method: &'static str, unit: &str, err: zbus::Error) -> SystemdError {
    match err {
        zbus::Error::MethodError(name, message, _) => {
            let message = message.unwrap_or_default();
            match name.as_str() {
                "org.freedesktop.systemd1.NoSuchUnit" => {
                    SystemdError::UnitNotFound(unit.to_string())
                }
                _ => SystemdError::Call {
                    method,
                    message: format!("{}: {message}", name.as_str()),
                },
            }
        }
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                SystemdError::Unavailable(format!(
                    "systemd is not running as PID 1 ({SYSTEMD_SERVICE} is not on the system bus)"
                ))
            }
            zbus::fdo::Error::AccessDenied(message) => SystemdError::Call {
                method,
                message: format!(
                    "access denied: {message}; the agent must run as root to restart units"
                ),
            },
            other => SystemdError::Call {
                method,
                message: other.to_string(),
            },
        },
        zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            SystemdError::Call {
                method,
                message: format!(
                    "systemd did not answer within {}",
                    format_seconds(METHOD_TIMEOUT)
                ),
            }
        }
        zbus::Error::InputOutput(io) => {
            SystemdError::Unavailable(format!("system bus connection failed: {io}"))
        }
        other => SystemdError::Call {
            method,
            message: other.to_string(),
        },
    }
}

/// Waits for the `JobRemoved` of `job` and returns its result.
async fn wait_job_removed(
    jobs: &mut JobRemovedStream,
    job: &OwnedObjectPath,
) -> Result<String, SystemdError> {
    while let Some(signal) = jobs.next().await {
        let Ok(args) = signal.args() else {
            continue;
        };
        if args.job.as_str() == job.as_str() {
            return Ok(args.result);
        }
    }
    Err(SystemdError::Unavailable(
        "the system bus connection closed while the restart job ran".to_string(),
    ))
}

/// Outcome of following a restarted unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    StayedActive,
    Failed,
    TimedOut,
}

struct Ending {
    verdict: Verdict,
    last: UnitSnapshot,
    detail: String,
}

/// Progress of a restart after its job ended.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for the unit to be active with a new InvocationID.
    WaitActive,
    /// Active since `since` as `invocation_id`; must stay so for the settle
    /// time.
    Settling {
        since: Instant,
        invocation_id: String,
    },
}

/// Next step of a restart, decided from one snapshot.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Continue(Phase),
    Done(Verdict, String),
}

/// Decides the next step of a restart from one fresh snapshot. Pure, so the
/// rules are tested without systemd.
fn step(
    phase: &Phase,
    before: &UnitSnapshot,
    job_result: &str,
    snapshot: &UnitSnapshot,
    now: Instant,
    settle: Duration,
) -> Step {
    match phase {
        Phase::WaitActive => {
            if job_result != "done" {
                let detail = job_failed_detail(job_result, before, snapshot);
                return Step::Done(Verdict::Failed, detail);
            }
            let new_run = !snapshot.invocation_id.is_empty()
                && snapshot.invocation_id != before.invocation_id;
            if snapshot.active_state == "active" && new_run {
                let settling = Phase::Settling {
                    since: now,
                    invocation_id: snapshot.invocation_id.clone(),
                };
                return step(&settling, before, job_result, snapshot, now, settle);
            }
            if unit_is_down(snapshot) {
                return Step::Done(
                    Verdict::Failed,
                    down_detail("did not become active", snapshot),
                );
            }
            Step::Continue(Phase::WaitActive)
        }
        Phase::Settling {
            since,
            invocation_id,
        } => {
            let still_same_run =
                snapshot.active_state == "active" && &snapshot.invocation_id == invocation_id;
            if !still_same_run {
                let lived = now.saturating_duration_since(*since);
                let what = format!("became active but exited {} later", format_seconds(lived));
                return Step::Done(Verdict::Failed, down_detail(&what, snapshot));
            }
            if now.saturating_duration_since(*since) >= settle {
                let detail = format!(
                    "restarted: active as PID {} (invocation {}) and stayed active for {}",
                    snapshot.main_pid,
                    snapshot.invocation_id,
                    format_seconds(settle)
                );
                return Step::Done(Verdict::StayedActive, detail);
            }
            Step::Continue(phase.clone())
        }
    }
}

/// Whether the unit left the run it was restarted into: failed, inactive or
/// waiting to be restarted by its own `Restart=` setting.
fn unit_is_down(snapshot: &UnitSnapshot) -> bool {
    matches!(
        snapshot.active_state.as_str(),
        "failed" | "inactive" | "deactivating"
    ) || snapshot.sub_state == "auto-restart"
}

fn job_failed_detail(job_result: &str, before: &UnitSnapshot, snapshot: &UnitSnapshot) -> String {
    if snapshot.result == "start-limit-hit" {
        return start_limit_detail(&snapshot.unit);
    }
    // systemd 252 keeps the first failure's Result (exit-code, signal) when
    // it later refuses a start for the start limit, so a refused start shows
    // only as a failed job that began no new run.
    if job_result == "failed" && snapshot.invocation_id == before.invocation_id {
        return format!(
            "restart job failed (result=failed) and systemd started no new run: most likely its \
             start limit was hit (unit is {}, Result={}); check `systemctl status {unit}`, fix \
             the cause, then run `systemctl reset-failed {unit}`",
            snapshot.active_state,
            snapshot.result,
            unit = snapshot.unit
        );
    }
    format!(
        "restart job failed (result={job_result}): unit is {} (Result={})",
        snapshot.active_state, snapshot.result
    )
}

fn down_detail(what: &str, snapshot: &UnitSnapshot) -> String {
    if snapshot.result == "start-limit-hit" {
        return start_limit_detail(&snapshot.unit);
    }
    format!(
        "unit {what} (now {}/{}, Result={})",
        snapshot.active_state, snapshot.sub_state, snapshot.result
    )
}

/// The detail for a unit systemd will not start again on its own.
pub fn start_limit_detail(unit: &str) -> String {
    format!(
        "start-limit-hit: systemd refuses further starts until `systemctl reset-failed {unit}`; \
         fix the cause of the failures first"
    )
}

/// Formats a duration as seconds with one decimal, for operator messages.
pub fn format_seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// A restarted unit followed after its job ended.
struct Follow<'a> {
    connection: &'a Connection,
    unit: &'a str,
    path: &'a OwnedObjectPath,
    changes: &'a mut PropertiesChangedStream,
    deadline_at: Instant,
}

impl Follow<'_> {
    /// Re-reads the unit on every `PropertiesChanged`, at least every
    /// second, and when the settle time ends, until `step` decides or the
    /// deadline passes.
    async fn until_settled(
        &mut self,
        before: &UnitSnapshot,
        job_result: &str,
        settle: Duration,
    ) -> Result<Ending, SystemdError> {
        let mut phase = Phase::WaitActive;
        let mut last = before.clone();
        loop {
            if Instant::now() >= self.deadline_at {
                let detail = timed_out_detail(&phase, &last, settle);
                return Ok(Ending {
                    verdict: Verdict::TimedOut,
                    last,
                    detail,
                });
            }
            last = read_snapshot(self.connection, self.unit, self.path).await?;
            match step(&phase, before, job_result, &last, Instant::now(), settle) {
                Step::Done(verdict, detail) => {
                    return Ok(Ending {
                        verdict,
                        last,
                        detail,
                    })
                }
                Step::Continue(next) => phase = next,
            }
            self.wait_for_change(&phase, settle).await?;
        }
    }

    /// Waits for a `PropertiesChanged`, the end of the settle time, the poll
    /// interval or the deadline, whichever comes first.
    async fn wait_for_change(
        &mut self,
        phase: &Phase,
        settle: Duration,
    ) -> Result<(), SystemdError> {
        let mut wake_at = (Instant::now() + RESTART_POLL_INTERVAL).min(self.deadline_at);
        if let Phase::Settling { since, .. } = phase {
            wake_at = wake_at.min(*since + settle);
        }
        tokio::select! {
            signal = self.changes.next() => {
                if signal.is_none() {
                    return Err(SystemdError::Unavailable(
                        "the system bus connection closed during the restart".to_string(),
                    ));
                }
                // One fresh read covers every signal already queued.
                while let Some(Some(_)) = self.changes.next().now_or_never() {}
                Ok(())
            }
            _ = tokio::time::sleep_until(wake_at) => Ok(()),
        }
    }
}

fn timed_out_detail(phase: &Phase, last: &UnitSnapshot, settle: Duration) -> String {
    match phase {
        Phase::WaitActive => format!(
            "timed out waiting for the unit to become active after the restart job \
             (unit is {}/{})",
            last.active_state, last.sub_state
        ),
        Phase::Settling { since, .. } => format!(
            "timed out during the settle time: the unit was active for {} of the {} required",
            format_seconds(since.elapsed()),
            format_seconds(settle)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(active: &str, sub: &str, result: &str, invocation: &str) -> UnitSnapshot {
        UnitSnapshot {
            unit: "nova-compute.service".to_string(),
            load_state: "loaded".to_string(),
            active_state: active.to_string(),
            sub_state: sub.to_string(),
            result: result.to_string(),
            main_pid: 42,
            invocation_id: invocation.to_string(),
            ..Default::default()
        }
    }

    const SETTLE: Duration = Duration::from_secs(15);

    #[test]
    fn invocation_id_is_lowercase_hex() {
        let bytes = [
            0xab, 0x01, 0xff, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c,
        ];
        assert_eq!(
            invocation_id_hex(&bytes),
            "ab01ff1000000000000000000000000c"
        );
        assert_eq!(invocation_id_hex(&[]), "");
    }

    #[test]
    fn failed_job_names_result_and_unit_state() {
        let before = snapshot("active", "running", "success", "aa");
        let after = snapshot("failed", "failed", "exit-code", "bb");
        let now = Instant::now();
        let step = step(&Phase::WaitActive, &before, "failed", &after, now, SETTLE);
        let Step::Done(Verdict::Failed, detail) = step else {
            panic!("expected a failure, got {step:?}");
        };
        assert_eq!(
            detail,
            "restart job failed (result=failed): unit is failed (Result=exit-code)"
        );
    }

    #[test]
    fn refused_start_points_at_start_limit() {
        let before = snapshot("failed", "failed", "exit-code", "aa");
        let after = snapshot("failed", "failed", "exit-code", "aa");
        let step = step(
            &Phase::WaitActive,
            &before,
            "failed",
            &after,
            Instant::now(),
            SETTLE,
        );
        let Step::Done(Verdict::Failed, detail) = step else {
            panic!("expected a failure, got {step:?}");
        };
        assert!(detail.contains("started no new run"), "{detail}");
        assert!(
            detail.contains("systemctl reset-failed nova-compute.service"),
            "{detail}"
        );
    }

    #[test]
    fn start_limit_hit_tells_the_operator_command() {
        let before = snapshot("failed", "failed", "exit-code", "aa");
        let after = snapshot("failed", "failed", "start-limit-hit", "aa");
        let step = step(
            &Phase::WaitActive,
            &before,
            "failed",
            &after,
            Instant::now(),
            SETTLE,
        );
        let Step::Done(Verdict::Failed, detail) = step else {
            panic!("expected a failure, got {step:?}");
        };
        assert!(detail.starts_with("start-limit-hit:"), "{detail}");
        assert!(
            detail.contains("systemctl reset-failed nova-compute.service"),
            "{detail}"
        );
    }

    #[test]
    fn same_invocation_is_not_a_restart() {
        let before = snapshot("active", "running", "success", "aa");
        let still_old = snapshot("active", "running", "success", "aa");
        let step = step(
            &Phase::WaitActive,
            &before,
            "done",
            &still_old,
            Instant::now(),
            SETTLE,
        );
        assert_eq!(step, Step::Continue(Phase::WaitActive));
    }

    #[test]
    fn new_invocation_starts_settling() {
        let before = snapshot("active", "running", "success", "aa");
        let new_run = snapshot("active", "running", "success", "bb");
        let now = Instant::now();
        let step = step(&Phase::WaitActive, &before, "done", &new_run, now, SETTLE);
        let expected = Phase::Settling {
            since: now,
            invocation_id: "bb".to_string(),
        };
        assert_eq!(step, Step::Continue(expected));
    }

    #[test]
    fn zero_settle_succeeds_at_once() {
        let before = snapshot("active", "running", "success", "aa");
        let new_run = snapshot("active", "running", "success", "bb");
        let now = Instant::now();
        let step = step(
            &Phase::WaitActive,
            &before,
            "done",
            &new_run,
            now,
            Duration::ZERO,
        );
        assert!(
            matches!(step, Step::Done(Verdict::StayedActive, _)),
            "{step:?}"
        );
    }

    #[test]
    fn exit_during_settle_says_how_long_it_lived() {
        let before = snapshot("active", "running", "success", "aa");
        let since = Instant::now();
        let settling = Phase::Settling {
            since,
            invocation_id: "bb".to_string(),
        };
        let exited = snapshot("failed", "failed", "exit-code", "bb");
        let now = since + Duration::from_millis(3200);
        let step = step(&settling, &before, "done", &exited, now, SETTLE);
        let Step::Done(Verdict::Failed, detail) = step else {
            panic!("expected a failure, got {step:?}");
        };
        assert_eq!(
            detail,
            "unit became active but exited 3.2 s later (now failed/failed, Result=exit-code)"
        );
    }

    #[test]
    fn auto_restart_during_settle_is_a_failure() {
        let before = snapshot("active", "running", "success", "aa");
        let since = Instant::now();
        let settling = Phase::Settling {
            since,
            invocation_id: "bb".to_string(),
        };
        let restarting = snapshot("activating", "auto-restart", "exit-code", "bb");
        let now = since + Duration::from_secs(1);
        let step = step(&settling, &before, "done", &restarting, now, SETTLE);
        assert!(matches!(step, Step::Done(Verdict::Failed, _)), "{step:?}");
    }

    #[test]
    fn new_invocation_during_settle_is_a_failure() {
        let before = snapshot("active", "running", "success", "aa");
        let since = Instant::now();
        let settling = Phase::Settling {
            since,
            invocation_id: "bb".to_string(),
        };
        let next_run = snapshot("active", "running", "success", "cc");
        let now = since + Duration::from_secs(2);
        let step = step(&settling, &before, "done", &next_run, now, SETTLE);
        assert!(matches!(step, Step::Done(Verdict::Failed, _)), "{step:?}");
    }

    #[test]
    fn active_through_settle_succeeds() {
        let before = snapshot("active", "running", "success", "aa");
        let since = Instant::now();
        let settling = Phase::Settling {
            since,
            invocation_id: "bb".to_string(),
        };
        let running = snapshot("active", "running", "success", "bb");
        let early = step(
            &settling,
            &before,
            "done",
            &running,
            since + Duration::from_secs(5),
            SETTLE,
        );
        assert_eq!(early, Step::Continue(settling.clone()));
        let late = step(&settling, &before, "done", &running, since + SETTLE, SETTLE);
        assert!(
            matches!(late, Step::Done(Verdict::StayedActive, _)),
            "{late:?}"
        );
    }

    #[test]
    fn method_errors_map_to_agent_errors() {
        let message = zbus::message::Message::method_call("/", "Ping")
            .build(&())
            .unwrap();
        let no_such_unit = zbus::Error::MethodError(
            zbus::names::OwnedErrorName::try_from("org.freedesktop.systemd1.NoSuchUnit").unwrap(),
            Some("Unit x.service not loaded.".to_string()),
            message,
        );
        let mapped = map_error("GetUnit", "x.service", no_such_unit);
        assert!(matches!(mapped, SystemdError::UnitNotFound(ref unit) if unit == "x.service"));

        let unknown = zbus::Error::FDO(Box::new(zbus::fdo::Error::ServiceUnknown(
            "The name org.freedesktop.systemd1 was not provided".to_string(),
        )));
        let mapped = map_error("LoadUnit", "x.service", unknown);
        assert!(matches!(mapped, SystemdError::Unavailable(_)), "{mapped:?}");
    }
}
