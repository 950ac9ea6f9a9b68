//! Placement capacity of the compute nodes a build touched, against what
//! Nova requests from Placement for the flavor. Since compute 2.88 the
//! hypervisor API has no resource fields, so Placement is Nova's record of
//! capacity.
//!
//! The numbers are as of the diagnosis, not of the failed request:
//! allocations made or released since then change them, so they are
//! evidence for the verdict, never proof.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::openstack::types::{Flavor, Inventory, ResourceProvider};
use crate::openstack::{nova, placement, ApiError, Client};

/// Placement's capacity of one compute node, against the flavor.
#[derive(Clone, Debug, Serialize)]
pub struct HostCapacity {
    /// The resource provider's name: the compute node's
    /// `hypervisor_hostname`.
    pub provider_name: String,
    pub provider_uuid: String,
    /// Source of the provider's name: `hypervisor_hostname` (the
    /// server's), `host` (Nova's host name as given) or `os-hypervisors`
    /// (the compute node that the host's service manages).
    pub name_source: &'static str,
    /// One row per resource class in the provider's inventory, by name.
    pub classes: Vec<ClassCapacity>,
    /// Requested resource classes that this provider cannot fit now, in
    /// words.
    pub shortfalls: Vec<String>,
}

impl HostCapacity {
    /// Summarizes the free capacity of the requested classes (of every
    /// class when nothing is requested) as one evidence line for `host`.
    pub fn summary(&self, host: &str) -> String {
        let requested: Vec<&ClassCapacity> = self
            .classes
            .iter()
            .filter(|row| row.requested.is_some())
            .collect();
        let rows = if requested.is_empty() {
            self.classes.iter().collect()
        } else {
            requested
        };
        let free = rows
            .iter()
            .map(|row| {
                format!(
                    "{} {} of {} free",
                    row.resource_class, row.free, row.capacity
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let needs = rows
            .iter()
            .filter_map(|row| Some(format!("{} {}", row.resource_class, row.requested?)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut line = format!("Placement now, {}: {free}", self.label(host));
        if !needs.is_empty() {
            line.push_str(&format!("; the flavor needs {needs}"));
        }
        line
    }

    /// Describes how the provider was found, for reports.
    pub fn lookup(&self) -> &'static str {
        match self.name_source {
            "hypervisor_hostname" => "by the server's hypervisor_hostname",
            "os-hypervisors" => "through the host's compute node in os-hypervisors",
            _ => "by the host's name",
        }
    }

    /// Names the host, and the provider too when its name differs.
    pub fn label(&self, host: &str) -> String {
        if self.provider_name == host {
            host.to_string()
        } else {
            format!("{host} (provider {})", self.provider_name)
        }
    }
}

/// One resource class of a provider: its inventory, usage and the
/// flavor's request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassCapacity {
    pub resource_class: String,
    pub total: u64,
    pub reserved: u64,
    pub allocation_ratio: f64,
    /// `(total - reserved) * allocation_ratio`, truncated to an integer as
    /// Placement reports it in allocation candidates.
    pub capacity: u64,
    pub used: u64,
    /// `capacity - used`; negative when allocations exceed the capacity,
    /// as after a lowered ratio or a raised reservation.
    pub free: i64,
    /// Largest amount one allocation may take.
    pub max_unit: u64,
    /// The amount the flavor requests, if it requests this class.
    pub requested: Option<u64>,
}

/// Returns a class's capacity as Placement computes it for allocation
/// candidates: `int((total - reserved) * allocation_ratio)`.
pub fn capacity(inventory: &Inventory) -> u64 {
    let usable = inventory.total.saturating_sub(inventory.reserved);
    // `as` truncates toward zero and saturates, as Python's int() of a
    // non-negative float does.
    (usable as f64 * inventory.allocation_ratio) as u64
}

/// Builds one row of the capacity table.
pub fn class_capacity(
    resource_class: &str,
    inventory: &Inventory,
    used: u64,
    requested: Option<u64>,
) -> ClassCapacity {
    let capacity = capacity(inventory);
    ClassCapacity {
        resource_class: resource_class.to_string(),
        total: inventory.total,
        reserved: inventory.reserved,
        allocation_ratio: inventory.allocation_ratio,
        capacity,
        used,
        free: capacity as i64 - used as i64,
        max_unit: inventory.max_unit.unwrap_or(inventory.total),
        requested,
    }
}

/// Returns the amounts Nova requests from Placement for one instance of
/// `flavor`, by resource class.
///
/// This follows `ResourceRequest.from_request_spec` in Nova's
/// `nova/scheduler/utils.py` (`resources_from_flavor` before Train):
/// `resources[N]:CLASS=AMOUNT` extra specs set a class outright, summed
/// over request groups. Otherwise VCPU is the flavor's vcpus (PCPU with
/// `hw:cpu_policy=dedicated`), MEMORY_MB its ram, and DISK_GB is
/// `ephemeral + ceil(swap MiB / 1024)` plus the root disk unless the
/// server boots from a volume. Zero amounts are dropped.
///
/// NOTE: image properties (`hw_cpu_policy`), emulator threads, vGPUs and
/// the other translated extra specs are not counted.
pub fn flavor_request(flavor: &Flavor, boot_from_volume: bool) -> BTreeMap<String, u64> {
    let mut request: BTreeMap<String, u64> = BTreeMap::new();
    for (key, value) in &flavor.extra_specs {
        let Some((prefix, resource_class)) = key.split_once(':') else {
            continue;
        };
        let Some(group_suffix) = prefix.strip_prefix("resources") else {
            continue;
        };
        let valid_group = group_suffix.len() <= 64
            && group_suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_group || resource_class.is_empty() {
            continue;
        }
        if let Some(amount) = amount_of(value) {
            *request.entry(resource_class.to_string()).or_default() += amount;
        }
    }

    let dedicated = flavor
        .extra_specs
        .get("hw:cpu_policy")
        .and_then(Value::as_str)
        == Some("dedicated");
    if !request.contains_key("VCPU") && !request.contains_key("PCPU") {
        let cpu_class = if dedicated { "PCPU" } else { "VCPU" };
        request.insert(cpu_class.to_string(), flavor.vcpus.unwrap_or(0));
    }
    if !request.contains_key("MEMORY_MB") {
        request.insert("MEMORY_MB".to_string(), flavor.ram.unwrap_or(0));
    }
    if !request.contains_key("DISK_GB") {
        let swap_mib = flavor.swap.as_ref().and_then(amount_of).unwrap_or(0);
        let root_gib = if boot_from_volume {
            0
        } else {
            flavor.disk.unwrap_or(0)
        };
        let disk_gib = root_gib + flavor.ephemeral.unwrap_or(0) + swap_mib.div_ceil(1024);
        request.insert("DISK_GB".to_string(), disk_gib);
    }
    request.retain(|_, amount| *amount > 0);
    request
}

/// Reads an amount that Nova may send as a number or as a string (extra
/// specs are strings, and `swap` was `""` for none before compute 2.75).
fn amount_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) if text.trim().is_empty() => Some(0),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Builds the table rows and the shortfalls of a provider against
/// `request`.
pub fn compare(
    inventories: &BTreeMap<String, Inventory>,
    usages: &BTreeMap<String, u64>,
    request: &BTreeMap<String, u64>,
) -> (Vec<ClassCapacity>, Vec<String>) {
    let classes: Vec<ClassCapacity> = inventories
        .iter()
        .map(|(class, inventory)| {
            let used = usages.get(class).copied().unwrap_or(0);
            class_capacity(class, inventory, used, request.get(class).copied())
        })
        .collect();

    let mut shortfalls = Vec::new();
    for (class, &needed) in request {
        let Some(row) = classes.iter().find(|row| row.resource_class == *class) else {
            shortfalls.push(format!("no {class} inventory, the flavor needs {needed}"));
            continue;
        };
        if row.free < needed as i64 {
            shortfalls.push(format!(
                "{class} has {} free of {} ({} used), the flavor needs {needed}",
                row.free, row.capacity, row.used
            ));
        }
        if row.max_unit < needed {
            shortfalls.push(format!(
                "{class} max_unit is {}, below the flavor's {needed}, so no single allocation fits",
                row.max_unit
            ));
        }
    }
    (classes, shortfalls)
}

/// Reads the Placement capacity of the compute node behind `host`.
/// `hypervisor_hostname` is the server's node name when `host` is the
/// server's host. Without it, the provider is looked up under the host's
/// name, then under the name of the host's compute node in os-hypervisors.
/// `Err` contains the reason and what to do, for
/// [`super::Diagnosis::missing`].
pub async fn host_capacity(
    client: &Client,
    host: &str,
    hypervisor_hostname: Option<&str>,
    request: &BTreeMap<String, u64>,
) -> Result<HostCapacity, String> {
    let (provider, name_source) = find_provider(client, host, hypervisor_hostname).await?;
    let (inventories, usages) = futures::join!(
        placement::inventories(client, &provider.uuid),
        placement::usages(client, &provider.uuid),
    );
    let inventories = inventories.map_err(|err| placement_reason(&err))?;
    let usages = usages.map_err(|err| placement_reason(&err))?;
    let (classes, shortfalls) = compare(&inventories, &usages, request);
    Ok(HostCapacity {
        provider_name: provider.name.unwrap_or_default(),
        provider_uuid: provider.uuid,
        name_source,
        classes,
        shortfalls,
    })
}

/// Finds the resource provider of `host`'s compute node. A failed build's
/// event names only Nova's host, which can differ from the node's
/// `hypervisor_hostname` (a short name against a full one), so a host
/// without a provider of its own name is looked up in os-hypervisors. A
/// host with several nodes (Ironic) is not resolved, since the node the
/// build used is not known.
async fn find_provider(
    client: &Client,
    host: &str,
    hypervisor_hostname: Option<&str>,
) -> Result<(ResourceProvider, &'static str), String> {
    if let Some(node) = hypervisor_hostname {
        return match placement::provider_named(client, node).await {
            Ok(Some(provider)) => Ok((provider, "hypervisor_hostname")),
            Ok(None) => Err(no_provider_reason(node, host)),
            Err(err) => Err(placement_reason(&err)),
        };
    }
    match placement::provider_named(client, host).await {
        Ok(Some(provider)) => return Ok((provider, "host")),
        Ok(None) => {}
        Err(err) => return Err(placement_reason(&err)),
    }

    let nodes = nova::hypervisors_of_host(client, host)
        .await
        .map_err(|err| {
            format!(
                "no resource provider is named {host}, and its compute node could not be \
                 looked up in os-hypervisors: {}",
                crate::error_chain(&err)
            )
        })?;
    let names: Vec<&str> = nodes
        .iter()
        .filter_map(|node| node.hypervisor_hostname.as_deref())
        .collect();
    match names.as_slice() {
        [] => Err(format!(
            "no resource provider is named {host}, and os-hypervisors lists no compute node \
             of that host; find the node with `openstack hypervisor list --long` and its \
             provider with `openstack resource provider list --name NODE`"
        )),
        [node] if *node == host => Err(no_provider_reason(node, host)),
        [node] => match placement::provider_named(client, node).await {
            Ok(Some(provider)) => Ok((provider, "os-hypervisors")),
            Ok(None) => Err(no_provider_reason(node, host)),
            Err(err) => Err(placement_reason(&err)),
        },
        several => Err(format!(
            "host {host} manages {} compute nodes ({}) and the one this request used is not \
             known; read each with `openstack resource provider list --name NODE`",
            several.len(),
            several.join(", ")
        )),
    }
}

fn no_provider_reason(node: &str, host: &str) -> String {
    format!(
        "no resource provider is named {node}, the compute node of {host}: nova-compute has \
         not reported it to Placement, or its provider was deleted; look for Placement errors \
         in nova-compute's log on {host}"
    )
}

/// Describes a failed Placement call, with what to do about it.
pub fn placement_reason(err: &ApiError) -> String {
    let advice = match err {
        ApiError::Status { status: 403, .. } => Some(
            "Placement's policy does not let these credentials read resource providers; run \
             diagnose with admin credentials, or with a role that the policy allows",
        ),
        ApiError::Status {
            status: 404, path, ..
        } if path.ends_with("/resource_providers") => Some(
            "the placement endpoint must be Placement's root URL; check the catalog, or set \
             placement_endpoint_override",
        ),
        ApiError::Status { status: 404, .. } => {
            Some("the provider was deleted while diagnose read it; run diagnose again")
        }
        ApiError::Status { status: 406, .. } => {
            Some("this Placement is older than microversion 1.23, which diagnose sends")
        }
        ApiError::TimedOut { .. } => {
            Some("check the placement-api service, or allow more time with --timeout")
        }
        // The message already names the override to set.
        ApiError::NoEndpoint { .. } => None,
        _ if err.is_unavailable() => {
            Some("check the placement-api service and the proxy in front of it")
        }
        _ => None,
    };
    let reason = crate::error_chain(err);
    match advice {
        Some(advice) => format!("{reason}; {advice}"),
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(total: u64, reserved: u64, allocation_ratio: f64) -> Inventory {
        Inventory {
            total,
            reserved,
            min_unit: 1,
            max_unit: Some(total),
            step_size: 1,
            allocation_ratio,
        }
    }

    fn flavor(vcpus: u64, ram: u64, disk: u64) -> Flavor {
        Flavor {
            vcpus: Some(vcpus),
            ram: Some(ram),
            disk: Some(disk),
            ephemeral: Some(0),
            swap: Some(Value::from(0)),
            ..Flavor::default()
        }
    }

    #[test]
    fn capacity_applies_reserved_then_ratio() {
        assert_eq!(capacity(&inventory(64, 0, 4.0)), 256);
        assert_eq!(capacity(&inventory(385_024, 8192, 1.0)), 376_832);
        assert_eq!(capacity(&inventory(100, 10, 1.5)), 135);
    }

    #[test]
    fn capacity_truncates_fractions() {
        assert_eq!(capacity(&inventory(3, 0, 1.5)), 4, "4.5 truncates to 4");
        assert_eq!(capacity(&inventory(10, 1, 0.9)), 8, "8.1 truncates to 8");
    }

    #[test]
    fn reserved_above_total_leaves_nothing() {
        assert_eq!(capacity(&inventory(8, 16, 4.0)), 0);
    }

    #[test]
    fn free_goes_negative_when_overallocated() {
        let row = class_capacity("VCPU", &inventory(64, 0, 1.0), 92, Some(2));
        assert_eq!(row.capacity, 64);
        assert_eq!(row.free, -28);
    }

    #[test]
    fn max_unit_defaults_to_total() {
        let mut without = inventory(1787, 0, 1.0);
        without.max_unit = None;
        assert_eq!(class_capacity("DISK_GB", &without, 0, None).max_unit, 1787);
    }

    #[test]
    fn flavor_request_counts_disk_like_nova() {
        let mut flavor = flavor(2, 4096, 20);
        flavor.ephemeral = Some(10);
        flavor.swap = Some(Value::from(1536));
        let request = flavor_request(&flavor, false);
        assert_eq!(request.get("VCPU"), Some(&2));
        assert_eq!(request.get("MEMORY_MB"), Some(&4096));
        assert_eq!(
            request.get("DISK_GB"),
            Some(&32),
            "20 root + 10 ephemeral + 1536 MiB swap rounded up to 2 GiB"
        );
    }

    #[test]
    fn boot_from_volume_skips_root_disk() {
        let request = flavor_request(&flavor(2, 4096, 20), true);
        assert_eq!(request.get("DISK_GB"), None, "zero amounts are dropped");
        let mut with_swap = flavor(2, 4096, 20);
        with_swap.swap = Some(Value::from("512"));
        assert_eq!(flavor_request(&with_swap, true).get("DISK_GB"), Some(&1));
    }

    #[test]
    fn extra_specs_override_flavor_amounts() {
        let mut flavor = flavor(4, 8192, 40);
        flavor
            .extra_specs
            .insert("resources:VCPU".into(), Value::from("0"));
        flavor
            .extra_specs
            .insert("resources1:CUSTOM_FPGA".into(), Value::from("1"));
        flavor
            .extra_specs
            .insert("resources2:CUSTOM_FPGA".into(), Value::from("2"));
        let request = flavor_request(&flavor, false);
        assert_eq!(request.get("VCPU"), None, "resources:VCPU=0 drops VCPU");
        assert_eq!(request.get("CUSTOM_FPGA"), Some(&3), "groups are summed");
        assert_eq!(request.get("MEMORY_MB"), Some(&8192));
    }

    #[test]
    fn dedicated_cpus_request_pcpu() {
        let mut flavor = flavor(4, 8192, 40);
        flavor
            .extra_specs
            .insert("hw:cpu_policy".into(), Value::from("dedicated"));
        let request = flavor_request(&flavor, false);
        assert_eq!(request.get("PCPU"), Some(&4));
        assert_eq!(request.get("VCPU"), None);
    }

    #[test]
    fn compare_reports_each_shortfall() {
        let inventories = BTreeMap::from([
            ("VCPU".to_string(), inventory(64, 0, 4.0)),
            ("MEMORY_MB".to_string(), inventory(385_024, 8192, 1.0)),
            ("DISK_GB".to_string(), {
                let mut disk = inventory(1787, 0, 1.0);
                disk.max_unit = Some(10);
                disk
            }),
        ]);
        let usages = BTreeMap::from([
            ("VCPU".to_string(), 92),
            ("MEMORY_MB".to_string(), 376_832),
            ("DISK_GB".to_string(), 380),
        ]);
        let request = BTreeMap::from([
            ("VCPU".to_string(), 2),
            ("MEMORY_MB".to_string(), 4096),
            ("DISK_GB".to_string(), 20),
            ("PCPU".to_string(), 1),
        ]);

        let (classes, shortfalls) = compare(&inventories, &usages, &request);

        let names: Vec<&str> = classes.iter().map(|c| c.resource_class.as_str()).collect();
        assert_eq!(names, ["DISK_GB", "MEMORY_MB", "VCPU"]);
        assert_eq!(classes[2].free, 164);
        assert_eq!(classes[1].free, 0);
        assert_eq!(shortfalls.len(), 3, "{shortfalls:?}");
        assert_eq!(
            shortfalls[0],
            "DISK_GB max_unit is 10, below the flavor's 20, so no single allocation fits"
        );
        assert_eq!(
            shortfalls[1],
            "MEMORY_MB has 0 free of 376832 (376832 used), the flavor needs 4096"
        );
        assert_eq!(shortfalls[2], "no PCPU inventory, the flavor needs 1");
    }
}
