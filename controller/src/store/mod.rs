//! Durable state of the controller: nodes, the event history and commands.
//!
//! This module is the only place that uses SQL or sqlx. Its public API speaks
//! in domain terms (node names, wire messages, Unix milliseconds), so a
//! PostgreSQL backend for several controllers can replace the SQLite one
//! behind the same methods. Queries use `$N` placeholders and
//! `INSERT ... ON CONFLICT`, which both databases accept.
//!
//! Every write that touches more than one table runs in one transaction: a
//! report and the events it caused are stored together or not at all.

mod commands;
mod error;
mod events;
mod lock;
mod nodes;
mod policy;
mod records;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use error::StoreError;
pub use lock::lock_path;
pub use records::{CommandRecord, HelloRecord, LatestReport, NewCommand, NewEvent, NodeRecord};

/// Time a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in the pool. WAL lets readers run beside the one writer, so a
/// few connections keep `nodes` and `events` responsive during report bursts.
const MAX_CONNECTIONS: u32 = 4;

/// A handle to the controller's database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    lock: lock::DatabaseLock,
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path` and applies
    /// the embedded migrations. The file's directory is created too. Fails
    /// with [`StoreError::InUse`] while another store holds the database's
    /// lock, see [`lock_path`].
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_parent_dir(path)?;
        let lock = lock::DatabaseLock::acquire(path)?;

        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|err| StoreError::open(path, err))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL at every commit. Events are the audit trail of
            // who restarted what; NORMAL could lose the last commits on a power
            // loss even though the controller had already responded to the operator.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|err| StoreError::open(path, err))?;

        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|err| StoreError::Migrate {
                path: path.to_path_buf(),
                source: Box::new(err),
            })?;

        Ok(Store {
            pool,
            path: path.to_path_buf(),
            lock,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `PRAGMA integrity_check` and returns its first line,
    /// `ok` for a sound database.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let row: (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await
            .map_err(|err| self.query_error("integrity check", err))?;
        Ok(row.0)
    }

    /// Waits for open connections to finish, closes the pool and releases
    /// the database's lock.
    pub async fn close(&self) {
        self.pool.close().await;
        self.lock.release();
    }

    fn query_error(&self, operation: &'static str, err: sqlx::Error) -> StoreError {
        StoreError::Query {
            path: self.path.clone(),
            operation,
            source: Box::new(err),
        }
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Converts an unsigned wire value to SQL's signed 64-bit integer, saturating
/// at `i64::MAX` (about 292 million years of milliseconds).
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a stored integer back, treating a negative value as 0.
fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
