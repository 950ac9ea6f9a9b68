//! The exclusive lock that keeps a second controller off a database.
//!
//! Two controllers on one SQLite file would each believe their in-memory
//! fleet is the truth, and both would accept restarts. An advisory `flock` on
//! `DB.lock` beside the database is released by the kernel when the process
//! ends, even by SIGKILL, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{flock, FlockOperation};

use super::StoreError;

/// The held lock, shared by every clone of the store and released by
/// [`DatabaseLock::release`] or when the last clone is dropped.
#[derive(Clone, Debug)]
pub(super) struct DatabaseLock {
    file: Arc<Mutex<Option<File>>>,
}

impl DatabaseLock {
    /// Takes the lock on `DB.lock` for the database at `db`, without waiting.
    pub(super) fn acquire(db: &Path) -> Result<Self, StoreError> {
        let lock_path = lock_path(db);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Lock {
                lock_path: lock_path.clone(),
                source,
            })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DatabaseLock {
                file: Arc::new(Mutex::new(Some(file))),
            }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::InUse {
                path: db.to_path_buf(),
                lock_path,
            }),
            Err(errno) => Err(StoreError::Lock {
                lock_path,
                source: errno.into(),
            }),
        }
    }

    /// Releases the lock for every clone; closing the file drops the flock.
    pub(super) fn release(&self) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.take();
    }
}

/// Returns `DB.lock`: the database's file name with `.lock` appended.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}
