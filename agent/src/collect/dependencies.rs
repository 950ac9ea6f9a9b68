//! Signs that a dependency of nova-compute came back after its unit went
//! down: what the agent can see with a few `stat` calls.
//!
//! - A config file modified after the unit went down: an operator fixed
//!   nova's configuration or restored a missing file.
//! - libvirt's socket created after the unit went down: libvirtd (or
//!   virtqemud) started again.
//!
//! NOTE: placement's reachability and the database are not checked, so a
//! unit that failed on one of those is left to an operator.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use novamedic_proto::v1;

/// Sockets that libvirtd (monolithic) and virtqemud (modular daemons)
/// create when they start.
pub const LIBVIRT_SOCKETS: [&str; 2] = ["/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock"];

/// Lists the `config_files` and `sockets` modified or created after
/// `down_since_us` (Unix microseconds, the unit's InactiveEnterTimestamp).
pub fn returns(
    down_since_us: u64,
    config_files: &[PathBuf],
    sockets: &[PathBuf],
) -> v1::DependencyReturns {
    let down_since = UNIX_EPOCH + Duration::from_micros(down_since_us);
    let mut returned = Vec::new();
    for file in config_files {
        if let Some(after) = modified_after(file, down_since) {
            returned.push(format!(
                "{} modified {} s after the unit went down",
                file.display(),
                after.as_secs()
            ));
        }
    }
    for socket in sockets {
        if let Some(after) = modified_after(socket, down_since) {
            returned.push(format!(
                "libvirt's socket {} created {} s after the unit went down",
                socket.display(),
                after.as_secs()
            ));
        }
    }
    v1::DependencyReturns {
        down_since_us,
        returned,
    }
}

/// Returns how long after `since` the file at `path` was last modified, or
/// `None` when it was not, or cannot be read.
fn modified_after(path: &Path, since: SystemTime) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    modified
        .duration_since(since)
        .ok()
        .filter(|after| !after.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_us(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
    }

    #[test]
    fn file_changed_after_failure_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let changed = dir.path().join("nova.conf");
        let unchanged = dir.path().join("nova-compute.conf");
        let missing = dir.path().join("missing.conf");
        std::fs::write(&changed, "[DEFAULT]\n").unwrap();
        std::fs::write(&unchanged, "[DEFAULT]\n").unwrap();

        let down_at = SystemTime::now() - Duration::from_secs(60);
        let file = std::fs::File::options()
            .write(true)
            .open(&unchanged)
            .unwrap();
        file.set_modified(down_at - Duration::from_secs(60))
            .unwrap();

        let found = returns(
            unix_us(down_at),
            &[changed.clone(), unchanged, missing],
            &[],
        );
        assert_eq!(found.down_since_us, unix_us(down_at));
        assert_eq!(found.returned.len(), 1, "{:?}", found.returned);
        assert!(
            found.returned[0].starts_with(&format!("{} modified", changed.display())),
            "{:?}",
            found.returned
        );
    }

    #[test]
    fn socket_created_after_failure_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let down_at = SystemTime::now() - Duration::from_secs(5);
        let socket = dir.path().join("libvirt-sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();

        let found = returns(unix_us(down_at), &[], &[socket]);
        assert_eq!(found.returned.len(), 1, "{:?}", found.returned);
        assert!(
            found.returned[0].contains("libvirt's socket"),
            "{:?}",
            found.returned
        );
    }

    #[test]
    fn nothing_newer_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nova.conf");
        std::fs::write(&file, "").unwrap();
        let found = returns(
            unix_us(SystemTime::now() + Duration::from_secs(60)),
            &[file],
            &[],
        );
        assert!(found.returned.is_empty(), "{:?}", found.returned);
    }
}
