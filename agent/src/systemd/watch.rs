//! A long-running watch of nova-compute's unit.
//!
//! The task publishes a fresh `UnitObservation` on a `tokio::sync::watch`
//! channel whenever systemd signals a property change of the unit, and
//! re-reads every `REFRESH_INTERVAL` in case a signal was missed. It never
//! ends on its own: bus errors become `UnitObservation::Unknown`, are logged
//! once per distinct cause, and the task reconnects with backoff.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::dbus::SystemdManager;
use super::detect::{detect_unit, Detection};
use super::{SystemdError, UnitObservation};

/// Re-read period when no signal arrives.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How often detection is retried while nova-compute is not installed.
const REDETECT_INTERVAL: Duration = Duration::from_secs(30);

/// First reconnect delay after a bus error; doubles up to `MAX_BACKOFF`.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the watch. `configured_unit` is the unit from the agent's config,
/// `None` to detect it. The receiver starts with an Unknown observation
/// until the first read; the task runs until it is aborted or every
/// receiver is dropped.
pub fn spawn_unit_watch(
    configured_unit: Option<String>,
) -> (watch::Receiver<UnitObservation>, JoinHandle<()>) {
    let initial = UnitObservation::Unknown {
        unit: configured_unit.clone(),
        reason: "nova-compute's unit has not been read yet".to_string(),
    };
    let (observation_tx, observation_rx) = watch::channel(initial);
    let handle = tokio::spawn(run(configured_unit, observation_tx));
    (observation_rx, handle)
}

/// Cause of the end of a watch session.
enum SessionEnd {
    /// The watched unit disappeared (uninstalled, then `daemon-reload`).
    UnitGone(String),
    /// systemd or the bus failed.
    Error {
        unit: Option<String>,
        error: SystemdError,
    },
}

async fn run(configured_unit: Option<String>, observation_tx: watch::Sender<UnitObservation>) {
    let mut backoff = INITIAL_BACKOFF;
    let mut last_logged_error: Option<String> = None;
    while !observation_tx.is_closed() {
        let manager = SystemdManager::new();
        let end = watch_session(&manager, configured_unit.as_deref(), &observation_tx).await;
        let was_known = matches!(*observation_tx.borrow(), UnitObservation::Known(_));
        if was_known {
            // The session worked for a while: a new failure is news again.
            backoff = INITIAL_BACKOFF;
            last_logged_error = None;
        }
        match end {
            SessionEnd::UnitGone(unit) => {
                tracing::warn!(unit = %unit, "nova-compute's unit is no longer installed");
                let reason = format!("{unit} is no longer installed");
                let unit = configured_unit.clone();
                publish(&observation_tx, UnitObservation::Unknown { unit, reason });
                tokio::time::sleep(INITIAL_BACKOFF).await;
            }
            SessionEnd::Error { unit, error } => {
                let reason = unknown_reason(&error);
                if last_logged_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        error = %reason,
                        retry_in_seconds = backoff.as_secs(),
                        "cannot watch nova-compute's unit; retrying with backoff"
                    );
                    last_logged_error = Some(reason.clone());
                }
                publish(&observation_tx, UnitObservation::Unknown { unit, reason });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Connects, detects the unit and follows it until something fails.
async fn watch_session(
    manager: &SystemdManager,
    configured_unit: Option<&str>,
    observation_tx: &watch::Sender<UnitObservation>,
) -> SessionEnd {
    let unit = match wait_for_unit(manager, configured_unit, observation_tx).await {
        Ok(unit) => unit,
        Err(error) => {
            let unit = configured_unit.map(str::to_string);
            return SessionEnd::Error { unit, error };
        }
    };
    tracing::info!(unit = %unit, "watching nova-compute's unit");
    match follow_unit(manager, &unit, observation_tx).await {
        Err(SystemdError::UnitNotFound(_)) => SessionEnd::UnitGone(unit),
        Err(error) => SessionEnd::Error {
            unit: Some(unit),
            error,
        },
        Ok(()) => SessionEnd::Error {
            unit: Some(unit),
            error: SystemdError::Unavailable("the system bus connection closed".to_string()),
        },
    }
}

/// Detects the unit, retrying every `REDETECT_INTERVAL` while none is
/// installed and publishing why.
async fn wait_for_unit(
    manager: &SystemdManager,
    configured_unit: Option<&str>,
    observation_tx: &watch::Sender<UnitObservation>,
) -> Result<String, SystemdError> {
    let mut logged = false;
    loop {
        match detect_unit(manager, configured_unit).await? {
            Detection::Found(unit) => return Ok(unit),
            Detection::NotInstalled { reason } => {
                if !logged {
                    tracing::warn!(
                        reason = %reason,
                        retry_in_seconds = REDETECT_INTERVAL.as_secs(),
                        "nova-compute's unit not found"
                    );
                    logged = true;
                }
                let unit = configured_unit.map(str::to_string);
                publish(observation_tx, UnitObservation::Unknown { unit, reason });
                tokio::time::sleep(REDETECT_INTERVAL).await;
            }
        }
    }
}

/// Publishes a fresh snapshot of `unit` on every property change and every
/// `REFRESH_INTERVAL`. Returns `Ok` when the signal stream ends (the
/// connection closed).
async fn follow_unit(
    manager: &SystemdManager,
    unit: &str,
    observation_tx: &watch::Sender<UnitObservation>,
) -> Result<(), SystemdError> {
    let path = manager.unit_path(unit).await?;
    // The match rule is in place before the first read, so a change between
    // the read and the wait is not lost.
    let mut changes = manager.property_changes(&path).await?;
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    loop {
        let snapshot = manager.snapshot_at(unit, &path).await?;
        publish(observation_tx, UnitObservation::Known(snapshot));
        if observation_tx.is_closed() {
            return Ok(());
        }
        tokio::select! {
            signal = changes.next() => {
                if signal.is_none() {
                    return Ok(());
                }
                // One fresh read covers every signal already queued.
                while let Some(Some(_)) = changes.next().now_or_never() {}
            }
            _ = refresh.tick() => {}
        }
    }
}

/// Sends `observation` when it differs from the current one, so receivers
/// wake only on a change.
fn publish(observation_tx: &watch::Sender<UnitObservation>, observation: UnitObservation) {
    observation_tx.send_if_modified(|current| {
        if *current == observation {
            return false;
        }
        *current = observation;
        true
    });
}

/// Returns the reason for an Unknown observation. An Unavailable message is
/// used without the error type's prefix because it is complete on its own.
fn unknown_reason(error: &SystemdError) -> String {
    match error {
        SystemdError::Unavailable(message) => message.clone(),
        other => other.to_string(),
    }
}
