//! Follows nova-compute's log, parses oslo.log records and classifies their faults.
//!
//! The path of a line through the crate:
//! - [`follow::Follower`] reads appended bytes from the log file across rotations
//!   (or any other source hands raw lines in directly);
//! - [`lines::LineSplitter`] cuts bytes into lines of at most 64 KiB;
//! - [`record::Joiner`] joins each record line with its traceback and continuation lines;
//! - [`catalogue::Catalogue`] matches records against the fault signatures;
//! - [`tracker::FaultTracker`] keeps the active faults and the restart verdict;
//! - [`monitor::LogMonitor`] wires the joiner to the tracker for a live stream;
//! - [`diagnose`] runs all of it over one finished log and explains the result.

pub mod catalogue;
pub mod classify;
pub mod diagnose;
pub mod follow;
pub mod header;
pub mod lines;
mod markers;
pub mod monitor;
pub mod record;
pub mod redact;
pub mod silence;
pub mod tracker;

pub use catalogue::{Catalogue, FaultKind, LoadError, Severity, Signature, DEFAULT_OPERATOR_DIR};
pub use classify::{Classification, ServerFault};
pub use diagnose::{diagnose, render_text, DiagnoseOptions, Diagnosis};
pub use follow::{Follower, StartAt};
pub use header::Level;
pub use lines::{Line, LineSplitter, MAX_LINE_BYTES};
pub use monitor::LogMonitor;
pub use record::{parse, Joiner, Record};
pub use tracker::{local_utc_offset, FaultSummary, FaultTracker, RestartVerdict};

/// 64-bit FNV-1a hash: stable across Rust releases, so it may be persisted.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
