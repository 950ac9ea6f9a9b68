//! Response fields that diagnosis reads. Every field but an id is optional:
//! policy hides admin fields, older microversions omit newer ones, and a
//! server in a down cell comes back with little more than its id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename(deserialize = "OS-EXT-STS:vm_state"))]
    pub vm_state: Option<String>,
    #[serde(default, rename(deserialize = "OS-EXT-STS:task_state"))]
    pub task_state: Option<String>,
    #[serde(default, rename(deserialize = "OS-EXT-STS:power_state"))]
    pub power_state: Option<i64>,
    #[serde(default, rename(deserialize = "OS-EXT-SRV-ATTR:host"))]
    pub host: Option<String>,
    #[serde(default, rename(deserialize = "OS-EXT-SRV-ATTR:hypervisor_hostname"))]
    pub hypervisor_hostname: Option<String>,
    #[serde(default)]
    pub host_status: Option<String>,
    #[serde(default, rename(deserialize = "OS-EXT-AZ:availability_zone"))]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub flavor: Option<Flavor>,
    /// `""` for a server booted from a volume, else `{id, links}`.
    #[serde(default)]
    pub image: Value,
    #[serde(default, rename(deserialize = "os-extended-volumes:volumes_attached"))]
    pub volumes_attached: Vec<AttachedVolume>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl Server {
    /// The image id, or `None` for a server booted from a volume.
    pub fn image_id(&self) -> Option<&str> {
        self.image
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
    }
}

/// The flavor as embedded in the server since compute 2.47.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Flavor {
    #[serde(default)]
    pub original_name: Option<String>,
    #[serde(default)]
    pub vcpus: Option<u64>,
    /// MiB.
    #[serde(default)]
    pub ram: Option<u64>,
    /// Root disk, GiB; 0 means "the image's size" (typical for volumes).
    #[serde(default)]
    pub disk: Option<u64>,
    #[serde(default)]
    pub ephemeral: Option<u64>,
    #[serde(default)]
    pub swap: Option<Value>,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AttachedVolume {
    pub id: String,
}

/// The server's latest fault. `message` is cut at 255 characters, and for
/// exceptions that Nova did not raise itself it is only the class name.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Fault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
    /// The traceback; shown to admins, or when `code` is not 500.
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct InstanceAction {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub events: Vec<ActionEvent>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ActionEvent {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub finish_time: Option<String>,
    /// `Success`, `Error`, or `None` while running.
    #[serde(default)]
    pub result: Option<String>,
    /// Host that ran the event (compute 2.62, admin only).
    #[serde(default)]
    pub host: Option<String>,
    /// Same text as a fault message (compute 2.84).
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
}

impl ActionEvent {
    pub fn failed(&self) -> bool {
        self.result.as_deref() == Some("Error")
    }

    /// True for events that ran on a compute node, not the conductor.
    pub fn on_compute(&self) -> bool {
        self.event
            .as_deref()
            .is_some_and(|name| name.starts_with("compute_"))
    }
}

/// A Glance v2 image; extra properties sit at the top level and are not
/// kept.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    /// Bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Bytes; the disk the image expands to.
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// GiB.
    #[serde(default)]
    pub min_disk: Option<u64>,
    /// MiB.
    #[serde(default)]
    pub min_ram: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Port {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub network_id: Option<String>,
    #[serde(default)]
    pub admin_state_up: Option<bool>,
    #[serde(default, rename(deserialize = "binding:host_id"))]
    pub binding_host_id: Option<String>,
    #[serde(default, rename(deserialize = "binding:vif_type"))]
    pub binding_vif_type: Option<String>,
    #[serde(default, rename(deserialize = "binding:vnic_type"))]
    pub binding_vnic_type: Option<String>,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FixedIp {
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub subnet_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// GiB.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub bootable: Option<String>,
    #[serde(default, rename(deserialize = "os-vol-host-attr:host"))]
    pub backend_host: Option<String>,
    #[serde(default)]
    pub migration_status: Option<String>,
}

/// A nova-compute service record from `os-services`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ComputeService {
    /// A UUID string from compute 2.53, an integer before.
    #[serde(default)]
    pub id: Value,
    #[serde(default)]
    pub host: Option<String>,
    /// `up` or `down`, from the service heartbeat.
    #[serde(default)]
    pub state: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub forced_down: Option<bool>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl ComputeService {
    /// Returns the service's UUID, which compute 2.53 and later return
    /// and which `PUT /os-services/{id}` needs; `None` for an integer id.
    pub fn uuid(&self) -> Option<&str> {
        self.id.as_str().filter(|id| !id.is_empty())
    }
}

/// A compute node from `GET /os-hypervisors/detail` (compute 2.53 and
/// later); 2.88 removed the resource fields, so none are read.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Hypervisor {
    /// The compute node's UUID from compute 2.53, which is also its
    /// resource provider's UUID; an integer before.
    #[serde(default)]
    pub id: Value,
    /// The node's name, which is also its resource provider's name.
    #[serde(default)]
    pub hypervisor_hostname: Option<String>,
    #[serde(default)]
    pub service: Option<HypervisorService>,
}

/// The nova-compute service that manages a compute node.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct HypervisorService {
    #[serde(default)]
    pub host: Option<String>,
}

/// A Placement resource provider.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ResourceProvider {
    pub uuid: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// One resource class of a provider's inventory, as Placement returns it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Inventory {
    pub total: u64,
    #[serde(default)]
    pub reserved: u64,
    #[serde(default = "one")]
    pub min_unit: u64,
    /// Largest amount one allocation may take; Placement defaults it to
    /// `total`.
    #[serde(default)]
    pub max_unit: Option<u64>,
    #[serde(default = "one")]
    pub step_size: u64,
    #[serde(default = "unit_ratio")]
    pub allocation_ratio: f64,
}

fn one() -> u64 {
    1
}

fn unit_ratio() -> f64 {
    1.0
}
