//! systemd's service notification protocol (`sd_notify(3)`), without
//! libsystemd.
//!
//! The packaged unit is `Type=notify` with `WatchdogSec=`. The agent sends
//! `READY=1` once its first report is collected, `WATCHDOG=1` from the task
//! that runs the transport, and a `STATUS=` line that says whether the
//! controller is reachable. Each message is one datagram to the socket in
//! `NOTIFY_SOCKET`, which is a path or, with a leading `@`, an abstract
//! socket name. Outside systemd the variable is unset and every call does
//! nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Sender of notification datagrams to the service manager.
#[derive(Clone)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// Connects to the socket in `NOTIFY_SOCKET`. Without the variable the
    /// notifier is inert. An unusable socket is logged and leaves it inert
    /// too, because the agent's work does not depend on systemd hearing it.
    pub fn from_env() -> Self {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        match open_target(&path.to_string_lossy()) {
            Ok(target) => Notifier {
                target: Some(Arc::new(target)),
            },
            Err(err) => {
                tracing::warn!(socket = ?path, error = %err, "cannot use NOTIFY_SOCKET; systemd will not hear from the agent");
                Notifier { target: None }
            }
        }
    }

    /// Returns a notifier that sends nothing.
    pub fn inert() -> Self {
        Notifier { target: None }
    }

    /// Tells systemd that start-up is complete.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// Sets the one-line status `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// Tells systemd that the agent is still alive.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Tells systemd that the agent is shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(err) = target
            .socket
            .send_to_addr(message.as_bytes(), &target.address)
        {
            tracing::warn!(error = %err, "cannot send a notification to systemd");
        }
    }
}

fn open_target(path: &str) -> io::Result<Target> {
    let address = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an absolute path or an abstract name starting with @",
            ))
        }
    };
    Ok(Target {
        socket: UnixDatagram::unbound()?,
        address,
    })
}

/// Returns how often to send `WATCHDOG=1`: half the `WatchdogSec=` that
/// systemd passes in `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)` advises.
/// `None` when the watchdog is off or meant for another process
/// (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let pid = std::env::var("WATCHDOG_PID").ok();
    let usec = std::env::var("WATCHDOG_USEC").ok();
    parse_watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn parse_watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.parse().ok().filter(|usec| *usec > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// Sends `WATCHDOG=1` every `interval`, forever. The caller polls it in the
/// same task as the transport's loop, so a loop that blocks its thread also
/// stops the pings and systemd restarts the agent.
pub async fn run_watchdog(notifier: Notifier, interval: Option<Duration>) {
    let Some(interval) = interval else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        notifier.watchdog();
    }
}

/// Log target of the transport module, whose events carry the connection
/// state. The status layer is filtered on it.
pub const TRANSPORT_TARGET: &str = "novamedic_agent::transport";

/// Message the transport logs when a stream reaches HelloAck.
const CONNECTED_MESSAGE: &str = "connected to controller";

/// Message the transport logs when a connection attempt or a stream fails.
const RETRYING_MESSAGE: &str = "no stream to the controller; retrying";

/// Tracing layer that turns the transport's connection events into the
/// unit's `STATUS=` line: "connected to URL" or "controller URL unreachable,
/// retrying".
///
/// NOTE: the connection state comes from the transport's log events, so a
/// reworded message there leaves the status at its last value. The install
/// test checks both lines.
pub struct ConnectionStatusLayer {
    notifier: Notifier,
}

impl ConnectionStatusLayer {
    pub fn new(notifier: Notifier) -> Self {
        ConnectionStatusLayer { notifier }
    }
}

impl<S: tracing::Subscriber> Layer<S> for ConnectionStatusLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        if event.metadata().target() != TRANSPORT_TARGET {
            return;
        }
        let mut fields = ConnectionFields::default();
        event.record(&mut fields);
        if let Some(status) = fields.status() {
            self.notifier.status(&status);
        }
    }
}

/// The message and `controller` field of one transport event.
#[derive(Default)]
struct ConnectionFields {
    message: String,
    controller: String,
}

impl ConnectionFields {
    fn status(&self) -> Option<String> {
        match self.message.as_str() {
            CONNECTED_MESSAGE => Some(format!("connected to {}", self.controller)),
            RETRYING_MESSAGE => Some(format!(
                "controller {} unreachable, retrying",
                self.controller
            )),
            _ => None,
        }
    }
}

impl Visit for ConnectionFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "controller" => self.controller = value.to_string(),
            _ => {}
        }
    }

    // The transport logs `controller = %url`, and a message is format
    // arguments: the Debug form of both is their plain text.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let interval = parse_watchdog_interval(Some("30000000"), None, 7);
        assert_eq!(interval, Some(Duration::from_secs(15)));
    }

    #[test]
    fn watchdog_for_another_pid_is_ignored() {
        assert_eq!(
            parse_watchdog_interval(Some("30000000"), Some("8"), 7),
            None
        );
        assert_eq!(
            parse_watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn watchdog_off_without_usec() {
        assert_eq!(parse_watchdog_interval(None, None, 7), None);
        assert_eq!(parse_watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn notifier_sends_datagrams_to_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(open_target(path.to_str().unwrap()).unwrap())),
        };

        notifier.ready("first report collected");
        notifier.watchdog();

        let mut buffer = [0u8; 256];
        let length = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=first report collected");
        let length = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"WATCHDOG=1");
    }

    #[test]
    fn relative_socket_path_is_rejected() {
        assert!(open_target("run/notify").is_err());
    }

    #[test]
    fn transport_events_become_status_lines() {
        let connected = ConnectionFields {
            message: CONNECTED_MESSAGE.to_string(),
            controller: "http://10.0.0.1:7400".to_string(),
        };
        assert_eq!(
            connected.status().as_deref(),
            Some("connected to http://10.0.0.1:7400")
        );
        let retrying = ConnectionFields {
            message: RETRYING_MESSAGE.to_string(),
            controller: "http://10.0.0.1:7400".to_string(),
        };
        assert_eq!(
            retrying.status().as_deref(),
            Some("controller http://10.0.0.1:7400 unreachable, retrying")
        );
        let other = ConnectionFields {
            message: "agent starting".to_string(),
            controller: String::new(),
        };
        assert_eq!(other.status(), None);
    }
}
