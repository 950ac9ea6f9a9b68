use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failure of the controller's database. Each variant names the file so an
/// operator knows which database to look at; the underlying cause is the
/// error's source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {} is in use by another novamedic controller (lock file {} held); \
         stop the other controller or give this one its own --db",
        path.display(),
        lock_path.display()
    )]
    InUse { path: PathBuf, lock_path: PathBuf },
    #[error("cannot lock {}", lock_path.display())]
    Lock {
        lock_path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("cannot migrate the database {} to this release's schema", path.display())]
    Migrate {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("{operation} failed in the database {}", path.display())]
    Query {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub(super) fn open(path: &Path, err: sqlx::Error) -> Self {
        StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(err),
        }
    }
}
