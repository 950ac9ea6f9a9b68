//! Following a log file by path across rotations, with a persisted position.
//!
//! [`Follower::poll`] reads what was appended since the last call and returns it as
//! complete lines. The caller decides when to poll (a tokio interval, or
//! `spawn_blocking`), so nothing here sleeps or spins. Per poll:
//!
//! - **rename rotation** (`PATH` is a new inode): the old file, still open, is read to
//!   its end, its unterminated last line is emitted, and the new file is read from 0;
//! - **copy-truncate** (same inode, but the size fell below the read offset, or the
//!   first bytes changed): the part not yet read is taken from the rotated copy
//!   `PATH.1`, from the saved offset, when that copy starts with the same bytes
//!   (fingerprint: FNV-1a hash of the first 64 bytes); then `PATH` is read from 0.
//!   Lines written between logrotate's copy and its truncate are in neither file
//!   and are lost: nothing can recover them, which is a property of copy-truncate.
//!   A rotated copy that is already compressed (`PATH.1.gz`, no `delaycompress`)
//!   is not read either, and the unread tail is lost with a warning;
//! - **missing file**: nothing is returned until it appears; it is then read from 0;
//! - **partial last line**: held until its newline arrives, or emitted when its
//!   file is rotated away.
//!
//! The position (device, inode, offset of the first unread line, fingerprint) is
//! written to a state file after every poll that moved it (write to a temporary file,
//! then rename), so a restarted agent neither reads a line twice nor skips one.
//! Lines are capped at [`crate::MAX_LINE_BYTES`], and one poll reads at most
//! [`Follower::with_max_bytes_per_poll`] bytes, so memory stays bounded.

use crate::lines::{Line, LineSplitter};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const FINGERPRINT_BYTES: usize = 64;
const READ_CHUNK_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_BYTES_PER_POLL: u64 = 8 * 1024 * 1024;

/// Start position in a file found at start-up with no matching saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Read the whole file (tests, offline reading).
    Beginning,
    /// Skip what is there and read only new lines (an agent's first start on a
    /// node with a large log).
    End,
}

/// Hash of a file's first bytes, used to tell a file from its replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Fingerprint {
    len: usize,
    hash: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedPosition {
    device: u64,
    inode: u64,
    offset: u64,
    fingerprint: Fingerprint,
}

struct OpenFile {
    file: File,
    device: u64,
    inode: u64,
    /// Bytes read so far (the partial line included).
    offset: u64,
    fingerprint: Fingerprint,
}

/// Follows one log file; see the module docs.
pub struct Follower {
    path: PathBuf,
    rotated_path: PathBuf,
    state_path: Option<PathBuf>,
    start_at: StartAt,
    max_bytes_per_poll: u64,
    current: Option<OpenFile>,
    splitter: LineSplitter,
    /// True until the first open, when the saved position or `start_at` applies.
    first_open: bool,
    last_saved: Option<SavedPosition>,
}

impl Follower {
    /// Follows `path`; `state_path` keeps the position across restarts.
    pub fn new(path: impl Into<PathBuf>, state_path: Option<PathBuf>, start_at: StartAt) -> Self {
        let path = path.into();
        let mut rotated = path.clone().into_os_string();
        rotated.push(".1");
        Follower {
            path,
            rotated_path: PathBuf::from(rotated),
            state_path,
            start_at,
            max_bytes_per_poll: DEFAULT_MAX_BYTES_PER_POLL,
            current: None,
            splitter: LineSplitter::new(),
            first_open: true,
            last_saved: None,
        }
    }

    /// Sets the most bytes one [`Follower::poll`] reads (default 8 MiB); the rest
    /// is read by the next polls.
    pub fn with_max_bytes_per_poll(mut self, max_bytes: u64) -> Self {
        self.max_bytes_per_poll = max_bytes.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads new complete lines. Errors are I/O errors other than a missing file.
    pub fn poll(&mut self) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        if self.current.is_none() && !self.open_path(&mut lines)? {
            return Ok(lines);
        }
        match std::fs::metadata(&self.path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // Renamed away, the new file not created yet: finish the old one.
                self.read_available(&mut lines, u64::MAX)?;
            }
            Err(err) => return Err(err),
            Ok(meta) => self.poll_existing(&meta, &mut lines)?,
        }
        self.save_position()?;
        Ok(lines)
    }

    fn poll_existing(&mut self, meta: &std::fs::Metadata, lines: &mut Vec<Line>) -> io::Result<()> {
        let Some(current) = &self.current else {
            return Ok(());
        };
        if (meta.dev(), meta.ino()) != (current.device, current.inode) {
            self.read_available(lines, u64::MAX)?;
            self.flush_partial(lines);
            self.current = None;
            self.open_path(lines)?;
        } else if meta.len() < current.offset
            || !fingerprint_matches(&current.file, current.fingerprint)?
        {
            self.read_rotated_copy(lines)?;
            self.flush_partial(lines);
            let current = self.current.as_mut().expect("checked above");
            current.offset = 0;
            current.fingerprint = Fingerprint::default();
        }
        self.read_available(lines, self.max_bytes_per_poll)
    }

    /// Opens `PATH`; returns false when it does not exist.
    fn open_path(&mut self, lines: &mut Vec<Line>) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.first_open = false;
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        let meta = file.metadata()?;
        let mut open = OpenFile {
            fingerprint: fingerprint_of(&file)?,
            device: meta.dev(),
            inode: meta.ino(),
            offset: 0,
            file,
        };
        if std::mem::replace(&mut self.first_open, false) {
            open.offset = self.initial_offset(&open, meta.len(), lines)?;
        }
        self.current = Some(open);
        Ok(true)
    }

    /// Offset to resume at on start-up, reading a rotated predecessor's tail first
    /// when the saved position points into `PATH.1`.
    fn initial_offset(
        &mut self,
        open: &OpenFile,
        size: u64,
        lines: &mut Vec<Line>,
    ) -> io::Result<u64> {
        let default = match self.start_at {
            StartAt::Beginning => 0,
            StartAt::End => size,
        };
        let Some(saved) = self.load_position() else {
            return Ok(default);
        };
        self.last_saved = Some(saved.clone());
        let same_file = (saved.device, saved.inode) == (open.device, open.inode);
        if same_file && size >= saved.offset && fingerprint_matches(&open.file, saved.fingerprint)?
        {
            return Ok(saved.offset);
        }
        // Rotated while the agent was down: finish the old file from the saved offset.
        self.current = Some(OpenFile {
            file: File::open(&self.path)?,
            device: saved.device,
            inode: saved.inode,
            offset: saved.offset,
            fingerprint: saved.fingerprint,
        });
        self.read_rotated_copy(lines)?;
        self.flush_partial(lines);
        self.current = None;
        Ok(0)
    }

    /// Reads the unread tail of the current file from its rotated copy `PATH.1`.
    fn read_rotated_copy(&mut self, lines: &mut Vec<Line>) -> io::Result<()> {
        let Some(current) = &self.current else {
            return Ok(());
        };
        let committed = current.offset;
        let copy = match File::open(&self.rotated_path) {
            Ok(copy) => copy,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.path.display(), offset = committed,
                    "log was truncated and no rotated copy exists; its unread tail is lost");
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        if !fingerprint_matches(&copy, current.fingerprint)? {
            tracing::warn!(path = %self.rotated_path.display(), offset = committed,
                "rotated copy does not start like the file that was read; its unread tail is lost");
            return Ok(());
        }
        let meta = copy.metadata()?;
        let replaced = OpenFile {
            file: copy,
            device: meta.dev(),
            inode: meta.ino(),
            offset: committed,
            fingerprint: current.fingerprint,
        };
        let original = self.current.replace(replaced);
        let result = self.read_available(lines, u64::MAX);
        self.current = original;
        result
    }

    /// Reads from the current file until its end or `max_bytes`.
    fn read_available(&mut self, lines: &mut Vec<Line>, max_bytes: u64) -> io::Result<()> {
        let Some(current) = &mut self.current else {
            return Ok(());
        };
        let mut buffer = vec![0u8; READ_CHUNK_BYTES];
        let mut read_total = 0u64;
        while read_total < max_bytes {
            let read = match current.file.read_at(&mut buffer, current.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if current.fingerprint.len < FINGERPRINT_BYTES
                && current.offset < FINGERPRINT_BYTES as u64
            {
                current.fingerprint = fingerprint_of(&current.file)?;
            }
            current.offset += read as u64;
            read_total += read as u64;
            self.splitter
                .feed(&buffer[..read], |line, truncated_bytes| {
                    lines.push(Line {
                        bytes: line.to_vec(),
                        truncated_bytes,
                    });
                });
        }
        Ok(())
    }

    fn flush_partial(&mut self, lines: &mut Vec<Line>) {
        self.splitter.finish(|line, truncated_bytes| {
            lines.push(Line {
                bytes: line.to_vec(),
                truncated_bytes,
            });
        });
    }

    fn load_position(&self) -> Option<SavedPosition> {
        let path = self.state_path.as_ref()?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read the log position; starting afresh");
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(position) => Some(position),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "invalid log position file; starting afresh");
                None
            }
        }
    }

    /// Writes the position of the first unread line, if it changed.
    fn save_position(&mut self) -> io::Result<()> {
        let (Some(state_path), Some(current)) = (&self.state_path, &self.current) else {
            return Ok(());
        };
        let position = SavedPosition {
            device: current.device,
            inode: current.inode,
            offset: current.offset - self.splitter.pending_bytes().min(current.offset),
            fingerprint: current.fingerprint,
        };
        if self.last_saved.as_ref() == Some(&position) {
            return Ok(());
        }
        let mut temporary = state_path.clone().into_os_string();
        temporary.push(".tmp");
        let text = serde_json::to_vec(&position).map_err(io::Error::other)?;
        {
            let file = File::create(&temporary)?;
            file.write_all_at(&text, 0)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, state_path)?;
        self.last_saved = Some(position);
        Ok(())
    }
}

fn fingerprint_of(file: &File) -> io::Result<Fingerprint> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let len = read_head(file, &mut head)?;
    Ok(Fingerprint {
        len,
        hash: crate::fnv1a(head[..len].iter().copied()),
    })
}

/// True when `file` starts with the bytes `fingerprint` was taken from.
fn fingerprint_matches(file: &File, fingerprint: Fingerprint) -> io::Result<bool> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let len = read_head(file, &mut head[..fingerprint.len])?;
    Ok(len == fingerprint.len && crate::fnv1a(head[..len].iter().copied()) == fingerprint.hash)
}

fn read_head(file: &File, head: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}
