//! novamedic's wire contract.
//!
//! `v1` holds the types and gRPC stubs generated from
//! `novamedic/v1/novamedic.proto`. `view` turns them into the JSON objects
//! that `novamedic -o json` and `novamedic-agent check -o json` print, which
//! scripts rely on.

pub mod view;

/// Version of the wire protocol described by `novamedic/v1/novamedic.proto`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Capability an agent announces when it executes `RestartUnit` commands.
pub const CAPABILITY_RESTART_UNIT: &str = "restart_unit";

/// Capability an agent announces when it honours `RestartUnit.reset_failed`
/// (calls `ResetFailedUnit` before the restart of a failed unit).
pub const CAPABILITY_RESET_FAILED: &str = "reset_failed";
/// Capability an agent announces when it executes `SearchLogs` commands.
pub const CAPABILITY_SEARCH_LOGS: &str = "search_logs";

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("novamedic.v1");
}
