//! Why is an instance in ERROR? Gathers the server, its instance actions
//! and events, image, ports, volumes, the nova-compute services of the hosts
//! involved, their Placement capacity and novamedic's own reports of those
//! hosts, then names the most likely cause with the evidence for it and the
//! next steps.
//!
//! - [`gather`]: the calls, each allowed to fail on its own; a failed part
//!   is listed in [`Diagnosis::missing`] and the rest still count.
//! - [`verdict`]: findings from structured fields and from the texts of the
//!   fault, the events and the host logs, weighed into one cause.
//! - [`text`], [`markdown`]: the terminal report and the incident-ticket
//!   report with Mermaid diagrams; `-o json` serializes [`Diagnosis`].
//! - [`capacity`]: Placement inventories and usages against the flavor.
//! - [`all`]: every instance in ERROR, grouped by cause.

pub mod all;
pub mod capacity;
pub mod gather;
pub mod hostlogs;
pub mod markdown;
pub mod text;
pub mod verdict;

use std::future::Future;

use novamedic_proto::view::{LogFaultView, NodeView};
use serde::Serialize;

use crate::openstack::types::{ComputeService, Image, InstanceAction, Port, Server, Volume};
use crate::openstack::ApiError;

pub use capacity::{ClassCapacity, HostCapacity};
pub use gather::diagnose;
pub use hostlogs::{HostLogQuery, HostLogRecord, HostLogs};
pub use verdict::{Cause, Verdict};

/// Version of the JSON document; it grows only by new fields.
pub const SCHEMA_VERSION: u32 = 1;

/// Source of novamedic's own view of a host: the controller in the
/// CLI, a fixed table in tests.
pub trait FleetSource {
    /// The latest report of the node named `node`, `Ok(None)` when the
    /// controller does not know it, `Err` with a reason when the controller
    /// cannot be asked.
    fn node(&self, node: &str) -> impl Future<Output = Result<Option<NodeView>, String>> + Send;

    /// nova-compute's log records for `query` on the node named `node`,
    /// searched by its agent; `Err` with a reason when the search could
    /// not run. A source without agents to ask says so.
    fn search_logs(
        &self,
        node: &str,
        query: &HostLogQuery,
    ) -> impl Future<Output = Result<HostLogs, String>> + Send {
        let _ = (node, query);
        async { Err("this fleet source cannot search host logs".to_string()) }
    }
}

/// Everything `novamedic diagnose` found about one server. Serialized as
/// the `-o json` document; README.md lists its fields.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub schema_version: u32,
    pub server: Server,
    /// The compute microversion the calls used.
    pub compute_microversion: Option<String>,
    /// Newest first; `events` is filled for the actions that were read in
    /// full (failed ones and the newest).
    pub actions: Vec<InstanceAction>,
    pub image: Option<ImageCheck>,
    pub ports: Vec<Port>,
    pub volumes: Vec<VolumeCheck>,
    /// Every host involved: the server's host and the hosts of compute
    /// events, with Nova's service record and novamedic's report.
    pub hosts: Vec<HostCheck>,
    /// Parts that could not be read, and why.
    pub missing: Vec<MissingPart>,
    pub verdict: Verdict,
}

/// The server's image against its flavor.
#[derive(Clone, Debug, Serialize)]
pub struct ImageCheck {
    pub id: String,
    /// False when Glance returned 404: deleted, or not visible to this
    /// project.
    pub found: bool,
    pub image: Option<Image>,
    /// Mismatches with the flavor or a status other than active.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VolumeCheck {
    pub id: String,
    pub found: bool,
    pub volume: Option<Volume>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostCheck {
    pub host: String,
    /// Why the host is involved: `server_host`, `failed_event`, `event`.
    pub roles: Vec<&'static str>,
    /// Nova's nova-compute service record for the host.
    pub service: Option<ComputeService>,
    /// novamedic's latest report of the host.
    pub fleet: Option<FleetHost>,
    /// nova-compute's log records of this instance on the host, searched
    /// by its agent; `null` when they could not be searched (see
    /// `missing`).
    pub logs: Option<HostLogs>,
    /// Placement's capacity of the host's compute node against the
    /// flavor, read for the server's host and the hosts of failed events.
    /// It is `null` for other hosts or when it could not be read (see
    /// `missing`).
    pub placement: Option<HostCapacity>,
}

/// The parts of a novamedic node report that bear on a failed instance.
#[derive(Clone, Debug, Serialize)]
pub struct FleetHost {
    /// The node's name in novamedic.
    pub node: String,
    pub health: &'static str,
    pub reasons: Vec<String>,
    pub connected: bool,
    pub last_seen: Option<String>,
    /// nova-compute's unit, as `active/running`.
    pub nova_compute: String,
    pub memory_available_bytes: u64,
    pub instances_disk_available_bytes: Option<u64>,
    /// CPUs of the host and vCPUs its running guests have.
    pub cpus: u32,
    pub guest_vcpus: u32,
    /// Shortfalls of the host against the flavor, in words.
    pub shortfalls: Vec<String>,
    pub log_faults: Vec<LogFaultView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MissingPart {
    /// `actions`, `image`, `ports`, `volume <id>`, `service <host>`,
    /// `fleet <host>`, `placement`, `placement <host>`, ...
    pub part: String,
    pub reason: String,
}

/// Reason the server itself could not be diagnosed.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("no server with id or name {0:?} is visible to these credentials; check the name, or use the id from `openstack server list --all-projects`")]
    NotFound(String),
    #[error("{count} servers are named {name:?} ({ids}); pass the id instead")]
    Ambiguous {
        name: String,
        count: usize,
        ids: String,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// True for a text that looks like a server UUID.
pub fn looks_like_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}
