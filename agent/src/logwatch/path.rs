//! Which log file of nova-compute the agent follows.

use std::path::{Path, PathBuf};

/// Log files nova-compute writes on the usual deployments, tried in order
/// when neither the agent's config nor nova-compute's command line or config
/// name one: distribution packages, then Kolla containers (whose log
/// directory is bind-mounted on the host).
pub const DEFAULT_LOG_FILES: [&str; 2] = [
    "/var/log/nova/nova-compute.log",
    "/var/log/kolla/nova/nova-compute.log",
];

/// The log file chosen, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFileChoice {
    Chosen {
        path: PathBuf,
        /// Where the path came from, for the agent's log.
        origin: &'static str,
    },
    None {
        /// Why no file is followed, in an operator's words.
        problem: String,
    },
}

/// Chooses the log file: the agent's `nova_log_file`, else the file that
/// nova-compute's `--log-file`/`--log-dir` or its config name, else the
/// first of `defaults` that exists.
///
/// A configured or named file is followed even while it does not exist,
/// because nova-compute creates it at start; a default is only taken when it
/// exists, so a node that logs to the journal alone follows no file.
pub fn choose_log_file(
    configured: Option<&Path>,
    named_by_nova: Option<&Path>,
    defaults: &[PathBuf],
    exists: impl Fn(&Path) -> bool,
) -> LogFileChoice {
    if let Some(path) = configured {
        return LogFileChoice::Chosen {
            path: path.to_path_buf(),
            origin: "nova_log_file in the agent's config",
        };
    }
    if let Some(path) = named_by_nova {
        return LogFileChoice::Chosen {
            path: path.to_path_buf(),
            origin: "nova-compute's command line or nova.conf",
        };
    }
    if let Some(path) = defaults.iter().find(|path| exists(path)) {
        return LogFileChoice::Chosen {
            path: path.clone(),
            origin: "the usual log locations",
        };
    }
    let tried: Vec<String> = defaults.iter().map(|p| p.display().to_string()).collect();
    LogFileChoice::None {
        problem: format!(
            "no log file: nova_log_file is not set, nova-compute's command line and nova.conf \
             name none, and none of {} exists; the unit's journal is read when the unit is known",
            tried.join(", ")
        ),
    }
}

/// Returns [`DEFAULT_LOG_FILES`] as paths.
pub fn default_log_files() -> Vec<PathBuf> {
    DEFAULT_LOG_FILES.iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(choice: &LogFileChoice) -> Option<&Path> {
        match choice {
            LogFileChoice::Chosen { path, .. } => Some(path),
            LogFileChoice::None { .. } => None,
        }
    }

    #[test]
    fn configured_file_wins_even_when_missing() {
        let choice = choose_log_file(
            Some(Path::new("/srv/nova/compute.log")),
            Some(Path::new("/var/log/nova/other.log")),
            &default_log_files(),
            |_| false,
        );
        assert_eq!(chosen(&choice), Some(Path::new("/srv/nova/compute.log")));
    }

    #[test]
    fn file_named_by_nova_beats_defaults() {
        let choice = choose_log_file(
            None,
            Some(Path::new("/var/log/nova/nova-compute-2.log")),
            &default_log_files(),
            |_| true,
        );
        assert_eq!(
            chosen(&choice),
            Some(Path::new("/var/log/nova/nova-compute-2.log"))
        );
    }

    #[test]
    fn first_existing_default_is_taken() {
        let kolla = Path::new(DEFAULT_LOG_FILES[1]);
        let choice = choose_log_file(None, None, &default_log_files(), |p| p == kolla);
        assert_eq!(chosen(&choice), Some(kolla));
        let both = choose_log_file(None, None, &default_log_files(), |_| true);
        assert_eq!(chosen(&both), Some(Path::new(DEFAULT_LOG_FILES[0])));
    }

    #[test]
    fn no_file_names_the_paths_tried() {
        let choice = choose_log_file(None, None, &default_log_files(), |_| false);
        let LogFileChoice::None { problem } = choice else {
            panic!("expected no file, got {choice:?}");
        };
        for path in DEFAULT_LOG_FILES {
            assert!(problem.contains(path), "{problem}");
        }
        assert!(problem.contains("journal"), "{problem}");
    }

    #[test]
    fn real_files_decide_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.log");
        let present = dir.path().join("present.log");
        std::fs::write(&present, b"").unwrap();
        let defaults = vec![missing, present.clone()];
        let choice = choose_log_file(None, None, &defaults, |p| p.exists());
        assert_eq!(chosen(&choice), Some(present.as_path()));
    }
}
