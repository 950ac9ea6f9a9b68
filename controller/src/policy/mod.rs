//! Self-healing policy: when automation may restart nova-compute.
//!
//! - [`rules`]: the policy file and its validated form.
//! - [`observe`]: the policy's view of a node, and the conditions and
//!   blockers that follow from it.
//! - [`engine`]: confirmation, start grace, per-node and fleet-wide limits,
//!   verification and escalation, as pure state transitions.
//!
//! Invariants: no restart without a condition confirmed over several
//! reports; never while a blocker holds (a process in D, a tracer, an
//! operator's stop or disable, a dependency outage, work in progress); at
//! most the configured restarts per node and in flight across the fleet; the
//! storm guard pauses everything until an operator resumes.
//!
//! Nova's view enters through [`observe::Observation::service`] and
//! [`observe::Observation::work_in_progress`], filled only from data younger
//! than `stale_after_polls` poll intervals: a Nova outage neither restarts a
//! node on an old heartbeat nor blocks it forever on an old task
//! state.

pub mod engine;
pub mod observe;
pub mod rules;

#[cfg(test)]
mod tests;

pub use engine::{Decision, Engine, Hold, PolicyState, Verdict};
pub use observe::{Blocker, Observation};
pub use rules::{Condition, Mode, Policy, PolicyError};
