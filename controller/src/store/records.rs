//! Domain types that go in and out of the store.

use novamedic_proto::v1;

/// The node description an agent sends in its Hello.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HelloRecord {
    pub node: String,
    pub agent_version: String,
    pub protocol_version: u32,
    pub capabilities: Vec<String>,
    /// nova-compute's systemd unit, empty when the agent found none.
    pub unit: String,
    pub report_interval_ms: u64,
}

/// A node as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRecord {
    pub hello: HelloRecord,
    pub first_seen_unix_ms: i64,
    /// Arrival of the latest report; 0 before the first one.
    pub last_seen_unix_ms: i64,
    pub latest_report: Option<v1::NodeReport>,
    /// Health as the controller last judged it, including STALE.
    pub health: v1::Health,
}

/// A node's newest report with the health the controller judged from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatestReport {
    pub node: String,
    pub report: v1::NodeReport,
    pub health: v1::Health,
    pub arrived_at_unix_ms: i64,
}

/// One node's write in a group commit (see [`Store::save_node_writes`]).
///
/// [`Store::save_node_writes`]: super::Store::save_node_writes
// A batch keeps a few writes per node for a second at most, so the unused
// space in a Hello is not worth a box per report.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum NodeWrite {
    /// An agent's Hello, as [`Store::upsert_hello`](super::Store::upsert_hello) writes it.
    Hello {
        hello: HelloRecord,
        seen_at_unix_ms: i64,
        events: Vec<NewEvent>,
    },
    /// A report, as [`Store::save_report`](super::Store::save_report) writes it.
    Report {
        latest: LatestReport,
        events: Vec<NewEvent>,
    },
}

impl NodeWrite {
    pub fn node(&self) -> &str {
        match self {
            NodeWrite::Hello { hello, .. } => &hello.node,
            NodeWrite::Report { latest, .. } => &latest.node,
        }
    }

    pub(super) fn operation(&self) -> &'static str {
        match self {
            NodeWrite::Hello { .. } => "saving an agent's hello",
            NodeWrite::Report { .. } => "saving a report",
        }
    }
}

/// An event to append to the history; the store assigns its id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewEvent {
    pub time_unix_ms: i64,
    pub node: String,
    pub kind: String,
    pub detail: String,
    /// Who caused the event, empty when no person or policy did.
    pub actor: String,
    /// The command the event belongs to, empty when none.
    pub command_id: String,
}

/// A command as it is issued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewCommand {
    pub command_id: String,
    pub node: String,
    pub unit: String,
    pub reason: String,
    pub requested_by: String,
    pub issued_at_unix_ms: i64,
}

/// A command as stored. `outcome`, `result` and `finished_at_unix_ms` are all
/// `None` while the command is unfinished and all set once it has finished.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandRecord {
    pub command: NewCommand,
    pub outcome: Option<String>,
    pub result: Option<v1::CommandResult>,
    pub finished_at_unix_ms: Option<i64>,
}
