//! The verdict: findings from each part of a [`Diagnosis`], each tied to a
//! likely cause and weighted (3 a direct sign, 2 a strong hint, 1 a weak
//! one), summed per cause. The heaviest cause wins; ties go to the more
//! specific cause, in the order of [`Cause`].
//!
//! The fault message alone is not enough: Nova cuts it at 255 characters,
//! stores only the class name (`libvirtError`) for exceptions it did not
//! raise, and after a rescheduled build it reads only "Exceeded maximum
//! number of retries". So the fault's details, every event's details and
//! traceback, the hosts' service records and novamedic's host reports are
//! all read.

use serde::Serialize;

use super::hostlogs::oslo_message;
use super::Diagnosis;

/// Likely causes, most specific first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Image,
    Volume,
    Network,
    Hypervisor,
    HostResources,
    Configuration,
    ServiceHealth,
    Scheduling,
    #[default]
    Unknown,
}

impl Cause {
    pub const ALL: [Cause; 9] = [
        Cause::Image,
        Cause::Volume,
        Cause::Network,
        Cause::Hypervisor,
        Cause::HostResources,
        Cause::Configuration,
        Cause::ServiceHealth,
        Cause::Scheduling,
        Cause::Unknown,
    ];

    /// Returns the snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Image => "image",
            Cause::Volume => "volume",
            Cause::Network => "network",
            Cause::Hypervisor => "hypervisor",
            Cause::HostResources => "host_resources",
            Cause::Configuration => "configuration",
            Cause::ServiceHealth => "service_health",
            Cause::Scheduling => "scheduling",
            Cause::Unknown => "unknown",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Cause::Image => "the image does not fit the flavor, is missing, or is not usable",
            Cause::Volume => "a volume failed to be created, attached or found",
            Cause::Network => "Neutron could not bind or plug the instance's ports",
            Cause::Hypervisor => "libvirt or QEMU failed on the compute node",
            Cause::HostResources => {
                "the compute node ran out of memory, disk or CPU for the instance"
            }
            Cause::Configuration => {
                "the flavor, image properties, quota or host configuration do not match"
            }
            Cause::ServiceHealth => "nova-compute or a service it depends on is down or unhealthy",
            Cause::Scheduling => {
                "the scheduler found no host that passes the filters and has capacity"
            }
            Cause::Unknown => "no known signature matched; read the fault details and the events",
        }
    }

    fn next_steps(self) -> &'static [&'static str] {
        match self {
            Cause::Image => &[
                "Check the image: `openstack image show IMAGE` (status, min_disk, min_ram, virtual_size).",
                "Rebuild with a larger flavor, or fix or re-upload the image.",
            ],
            Cause::Volume => &[
                "Check the volume: `openstack volume show VOLUME` and the cinder-volume service of its backend.",
                "Raise [DEFAULT]block_device_allocate_retries if large images time out while converting.",
            ],
            Cause::Network => &[
                "List the ports: `openstack port list --server SERVER --long`; binding_failed means no agent could bind on that host.",
                "Check the Neutron agent on the host: `openstack network agent list --host HOST`.",
            ],
            Cause::Hypervisor => &[
                "On the compute node, check libvirtd and the QEMU log: `journalctl -u libvirtd`, /var/log/libvirt/qemu/INSTANCE.log.",
                "Look for missing disk paths or devices named in the error, then reset the state and retry.",
            ],
            Cause::HostResources => &[
                "Compare the host's free memory, disk and Placement usage with the flavor (`openstack resource provider usage show UUID`); look for stale allocations (`openstack resource provider show --allocations UUID`).",
                "Free resources or disable the host, then rebuild or migrate the instance.",
            ],
            Cause::Configuration => &[
                "Compare the flavor's extra specs and image properties with what the host supports.",
                "Check the project's quota: `openstack quota show PROJECT`.",
            ],
            Cause::ServiceHealth => &[
                "Check nova-compute on the host: `novamedic node show HOST` and `openstack compute service list --host HOST`.",
                "Fix the dependency the log names (RabbitMQ, the conductor, the database) before restarting nova-compute.",
            ],
            Cause::Scheduling => &[
                "Read the scheduler log for \"Filter X returned 0 hosts\" with the request id.",
                "Check disabled or down services and Placement capacity: `openstack compute service list`, `openstack allocation candidate list`.",
            ],
            Cause::Unknown => &[
                "Read the fault details and the event tracebacks in full (`openstack server event show SERVER REQUEST_ID`).",
                "Grep nova-compute.log on the host for the request id.",
            ],
        }
    }
}

/// One observation that points at a cause.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub cause: Cause,
    pub weight: u32,
    pub evidence: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub cause: Cause,
    pub summary: String,
    /// The findings for the chosen cause, in words.
    pub evidence: Vec<String>,
    pub next_steps: Vec<String>,
    /// Every finding, for every cause.
    pub findings: Vec<Finding>,
}

/// Text signatures: substrings that must all appear (`&` separates them),
/// their cause and weight.
const SIGNATURES: &[(&str, Cause, u32)] = &[
    ("Flavor's disk is too small", Cause::Image, 3),
    ("Flavor's memory is too small", Cause::Image, 3),
    ("FlavorDiskSmallerThanImage", Cause::Image, 3),
    ("FlavorMemoryTooSmall", Cause::Image, 3),
    ("ImageNotActive", Cause::Image, 3),
    ("Image &is not active", Cause::Image, 3),
    ("ImageNotFound", Cause::Image, 3),
    ("Image &could not be found", Cause::Image, 3),
    ("ImageUnacceptable", Cause::Image, 3),
    ("is unacceptable", Cause::Image, 2),
    ("InvalidDiskFormat", Cause::Image, 2),
    ("InvalidDiskInfo", Cause::Image, 2),
    ("did not finish being created", Cause::Volume, 3),
    ("Block Device Mapping is Invalid", Cause::Volume, 3),
    ("Failure prepping block device", Cause::Volume, 3),
    ("VolumeNotCreated", Cause::Volume, 3),
    ("Volume &could not be found", Cause::Volume, 3),
    ("VolumeDeviceNotFound", Cause::Volume, 3),
    ("Failed to allocate the network", Cause::Network, 3),
    ("Binding failed for port", Cause::Network, 3),
    ("PortBindingFailed", Cause::Network, 3),
    ("VirtualInterfaceCreateException", Cause::Network, 3),
    ("No fixed IP addresses available", Cause::Network, 3),
    ("Port &is still in use", Cause::Network, 3),
    ("Network &could not be found", Cause::Network, 3),
    ("network-vif-plugged", Cause::Network, 2),
    (
        "Connection to the hypervisor is broken",
        Cause::Hypervisor,
        3,
    ),
    ("HypervisorUnavailable", Cause::Hypervisor, 3),
    ("Failed to connect to libvirt", Cause::Hypervisor, 3),
    ("libvirt.libvirtError", Cause::Hypervisor, 3),
    (
        "process exited while connecting to monitor",
        Cause::Hypervisor,
        3,
    ),
    ("libvirtError", Cause::Hypervisor, 2),
    ("qemu-system", Cause::Hypervisor, 2),
    ("Insufficient compute resources", Cause::HostResources, 3),
    ("ComputeResourcesUnavailable", Cause::HostResources, 3),
    ("No space left on device", Cause::HostResources, 3),
    ("Cannot allocate memory", Cause::HostResources, 3),
    (
        "Requested CPU control policy not supported",
        Cause::Configuration,
        3,
    ),
    ("is not supported by the host", Cause::Configuration, 3),
    ("not supported by host", Cause::Configuration, 3),
    ("Quota exceeded", Cause::Configuration, 3),
    ("Maximum number of ports exceeded", Cause::Configuration, 3),
    ("MessagingTimeout", Cause::ServiceHealth, 3),
    ("Timed out waiting for a reply", Cause::ServiceHealth, 3),
    ("DBConnectionError", Cause::ServiceHealth, 3),
    ("No valid host was found", Cause::Scheduling, 2),
    ("NoValidHost", Cause::Scheduling, 2),
    ("Exceeded maximum number of retries", Cause::Scheduling, 2),
    ("MaxRetriesExceeded", Cause::Scheduling, 2),
];

/// Weighs the findings of `diagnosis` into a verdict.
pub fn judge(diagnosis: &Diagnosis) -> Verdict {
    let mut findings = text_findings(diagnosis);
    findings.extend(structured_findings(diagnosis));

    let mut totals = [0u32; Cause::ALL.len()];
    for finding in &findings {
        totals[finding.cause as usize] += finding.weight;
    }
    let cause = Cause::ALL
        .iter()
        .copied()
        .filter(|cause| totals[*cause as usize] > 0)
        .max_by(|a, b| totals[*a as usize].cmp(&totals[*b as usize]).then(b.cmp(a)))
        .unwrap_or(Cause::Unknown);

    let mut evidence: Vec<String> = findings
        .iter()
        .filter(|finding| finding.cause == cause)
        .map(|finding| finding.evidence.clone())
        .collect();
    if cause == Cause::Unknown {
        if let Some(message) = diagnosis
            .server
            .fault
            .as_ref()
            .and_then(|fault| fault.message.clone())
        {
            evidence.push(format!("fault message: {message}"));
        } else {
            evidence.push("the server has no fault record".to_string());
        }
        evidence.extend(host_error_quotes(diagnosis));
    }
    if matches!(cause, Cause::HostResources | Cause::Scheduling) {
        for host in &diagnosis.hosts {
            if let Some(capacity) = &host.placement {
                evidence.push(capacity.summary(&host.host));
            }
        }
    }
    for part in &diagnosis.missing {
        evidence.push(format!("not checked, {}: {}", part.part, part.reason));
    }
    Verdict {
        cause,
        summary: cause.summary().to_string(),
        evidence,
        next_steps: cause
            .next_steps()
            .iter()
            .map(|step| step.to_string())
            .collect(),
        findings,
    }
}

/// Log levels whose host records are searched for the text signatures:
/// the problems nova-compute logged, not its routine steps.
const PROBLEM_LEVELS: [&str; 4] = ["WARNING", "ERROR", "CRITICAL", "TRACE"];

/// Log levels of the host records an `unknown` verdict quotes.
const ERROR_LEVELS: [&str; 2] = ["ERROR", "CRITICAL"];

/// Host records an `unknown` verdict quotes at most.
const MAX_HOST_ERROR_QUOTES: usize = 3;

/// Collects the texts to search, each with where it came from.
fn texts(diagnosis: &Diagnosis) -> Vec<(String, &str)> {
    let mut texts = Vec::new();
    if let Some(fault) = &diagnosis.server.fault {
        if let Some(message) = fault.message.as_deref() {
            texts.push(("fault message".to_string(), message));
        }
        if let Some(details) = fault.details.as_deref() {
            texts.push(("fault details".to_string(), details));
        }
    }
    for action in &diagnosis.actions {
        for event in action.events.iter().filter(|event| event.failed()) {
            let source = format!(
                "event {} on {}",
                event.event.as_deref().unwrap_or("?"),
                event.host.as_deref().unwrap_or("an unknown host")
            );
            if let Some(details) = event.details.as_deref() {
                texts.push((source.clone(), details));
            }
            if let Some(traceback) = event.traceback.as_deref() {
                texts.push((format!("{source} (traceback)"), traceback));
            }
        }
    }
    for host in &diagnosis.hosts {
        let Some(logs) = &host.logs else { continue };
        let problems = logs
            .records
            .iter()
            .filter(|record| PROBLEM_LEVELS.contains(&record.level.as_str()));
        for record in problems {
            let source = format!("nova-compute log on {}, line {}", host.host, record.line);
            texts.push((source, record.text.as_str()));
        }
    }
    texts
}

/// Returns one finding per matching signature, naming every source it
/// matched in.
fn text_findings(diagnosis: &Diagnosis) -> Vec<Finding> {
    let texts = texts(diagnosis);
    let mut findings = Vec::new();
    for (pattern, cause, weight) in SIGNATURES {
        let sources: Vec<&str> = texts
            .iter()
            .filter(|(_, text)| pattern.split('&').all(|part| text.contains(part)))
            .map(|(source, _)| source.as_str())
            .collect();
        if sources.is_empty() {
            continue;
        }
        let line =
            first_line_containing(&texts, pattern).unwrap_or_else(|| pattern.replace('&', "…"));
        findings.push(Finding {
            cause: *cause,
            weight: *weight,
            evidence: format!("{line} (in {})", dedup(sources).join(", ")),
        });
    }
    findings
}

/// Returns the first line of any text that contains every part of `pattern`,
/// trimmed and shortened, so the evidence quotes the real message.
fn first_line_containing(texts: &[(String, &str)], pattern: &str) -> Option<String> {
    let first_part = pattern.split('&').next()?;
    texts.iter().find_map(|(_, text)| {
        if !pattern.split('&').all(|part| text.contains(part)) {
            return None;
        }
        let line = text.lines().find(|line| line.contains(first_part))?;
        Some(shorten(line))
    })
}

fn dedup(items: Vec<&str>) -> Vec<&str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn structured_findings(diagnosis: &Diagnosis) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |cause: Cause, weight: u32, evidence: String| {
        findings.push(Finding {
            cause,
            weight,
            evidence,
        })
    };

    if let Some(image) = &diagnosis.image {
        // An image deleted or deactivated after the build is common and
        // harmless, so those weigh less than a mismatch with the flavor,
        // which applies whenever the instance is built.
        let weight = |problem: &str| match problem {
            _ if !image.found => 1,
            _ if problem.starts_with("image status") => 2,
            _ => 3,
        };
        for problem in &image.problems {
            add(Cause::Image, weight(problem), problem.clone());
        }
    }
    for volume in &diagnosis.volumes {
        match &volume.volume {
            None => add(
                Cause::Volume,
                2,
                format!("volume {} is not in Cinder", volume.id),
            ),
            Some(found) => {
                let status = found.status.as_deref().unwrap_or("");
                if status.starts_with("error") {
                    add(
                        Cause::Volume,
                        3,
                        format!("volume {} has status {status}", volume.id),
                    );
                }
            }
        }
    }
    for port in &diagnosis.ports {
        if port.binding_vif_type.as_deref() == Some("binding_failed") {
            add(
                Cause::Network,
                3,
                format!(
                    "port {} has binding:vif_type binding_failed on {}",
                    port.id,
                    port.binding_host_id.as_deref().unwrap_or("an unknown host")
                ),
            );
        } else if matches!(port.status.as_deref(), Some("DOWN" | "ERROR")) {
            add(
                Cause::Network,
                1,
                format!(
                    "port {} is {}",
                    port.id,
                    port.status.as_deref().unwrap_or("")
                ),
            );
        }
    }
    for host in &diagnosis.hosts {
        if let Some(service) = &host.service {
            service_findings(&host.host, service, &mut add);
        }
        if let Some(fleet) = &host.fleet {
            fleet_findings(&host.host, &diagnosis.server.id, fleet, &mut add);
        }
        if let Some(logs) = &host.logs {
            host_log_findings(&host.host, logs, &mut add);
        }
    }
    placement_findings(diagnosis, &mut add);
    findings
}

/// The reason in Nova's "No valid host was found. REASON", from the fault
/// or a failed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoValidHost {
    Absent,
    /// An empty reason: the scheduler got no allocation candidates from
    /// Placement, or a request pre-filter rejected the request
    /// (`select_destinations` in `nova/scheduler/manager.py`).
    WithoutReason,
    /// "There are not enough hosts available.": Placement returned
    /// candidates and Nova's filters removed them all.
    FiltersRemovedAll,
    OtherReason,
}

fn no_valid_host(diagnosis: &Diagnosis) -> NoValidHost {
    const MESSAGE: &str = "No valid host was found.";
    let fault = diagnosis
        .server
        .fault
        .as_ref()
        .and_then(|fault| fault.message.as_deref());
    let event_details = diagnosis
        .actions
        .iter()
        .flat_map(|action| action.events.iter())
        .filter(|event| event.failed())
        .filter_map(|event| event.details.as_deref());
    let mut found = NoValidHost::Absent;
    for text in fault.into_iter().chain(event_details) {
        let Some(reason) = text.trim_start().strip_prefix(MESSAGE) else {
            continue;
        };
        let reason = reason.trim();
        if reason.is_empty() {
            return NoValidHost::WithoutReason;
        }
        found = if reason.starts_with("There are not enough hosts available") {
            NoValidHost::FiltersRemovedAll
        } else {
            NoValidHost::OtherReason
        };
    }
    found
}

/// Findings from Placement's capacity of the hosts the request ran on.
/// A host short of the flavor weighs 2, or 1 when Nova's filters, not
/// Placement, removed the last hosts, or when it is the server's own host,
/// whose usage can include the server's allocation. An empty "No valid host
/// was found." reason together with a short host is a direct sign.
fn placement_findings(diagnosis: &Diagnosis, add: &mut impl FnMut(Cause, u32, String)) {
    let no_valid_host = no_valid_host(diagnosis);
    let mut short_hosts = Vec::new();
    for host in &diagnosis.hosts {
        let Some(capacity) = &host.placement else {
            continue;
        };
        if capacity.shortfalls.is_empty() {
            continue;
        }
        let on_server_host = diagnosis.server.host.as_deref() == Some(host.host.as_str());
        let weight = if on_server_host || no_valid_host == NoValidHost::FiltersRemovedAll {
            1
        } else {
            2
        };
        let own_allocation = if on_server_host {
            "; this server's own allocation, if Nova still holds it, is among the used"
        } else {
            ""
        };
        for shortfall in &capacity.shortfalls {
            add(
                Cause::HostResources,
                weight,
                format!(
                    "Placement now, {}: {shortfall}{own_allocation}",
                    capacity.label(&host.host)
                ),
            );
        }
        if !on_server_host {
            short_hosts.push(host.host.as_str());
        }
    }
    if no_valid_host == NoValidHost::WithoutReason && !short_hosts.is_empty() {
        add(
            Cause::HostResources,
            3,
            format!(
                "\"No valid host was found.\" has no reason, which Nova reports when Placement \
                 returns no allocation candidates or a pre-filter rejects the request, and \
                 Placement shows {} short of the flavor now",
                short_hosts.join(", ")
            ),
        );
    }
}

/// One finding per signature the agent's classifier matched in the
/// instance's own log records, quoting the first such record: a direct
/// sign, since the record names this instance or one of its requests.
fn host_log_findings(host: &str, logs: &super::HostLogs, add: &mut impl FnMut(Cause, u32, String)) {
    let mut seen: Vec<&str> = Vec::new();
    for record in &logs.records {
        let (Some(signature), Some(kind)) = (&record.signature_id, &record.fault_kind) else {
            continue;
        };
        let Some(cause) = log_fault_cause(kind) else {
            continue;
        };
        if seen.contains(&signature.as_str()) {
            continue;
        }
        seen.push(signature);
        add(
            cause,
            3,
            format!(
                "nova-compute on {host} logged {signature} ({kind}) at {}: {}",
                record.time.as_deref().unwrap_or("an unknown time"),
                quote_record(record)
            ),
        );
    }
}

/// Quotes the first ERROR or CRITICAL records of the instance in the hosts'
/// logs. With no signature matched, nova-compute's own error names the step
/// that failed, which the fault message may cut or leave out.
fn host_error_quotes(diagnosis: &Diagnosis) -> Vec<String> {
    let mut quotes = Vec::new();
    for host in &diagnosis.hosts {
        let Some(logs) = &host.logs else { continue };
        let errors = logs
            .records
            .iter()
            .filter(|record| ERROR_LEVELS.contains(&record.level.as_str()));
        for record in errors {
            quotes.push(format!(
                "nova-compute on {} logged {} at {}: {}",
                host.host,
                record.level,
                record.time.as_deref().unwrap_or("an unknown time"),
                quote_record(record)
            ));
        }
    }
    quotes.truncate(MAX_HOST_ERROR_QUOTES);
    quotes
}

/// Quotes a host record by the message of its first line and, for a
/// traceback, of its last line, where Python names the exception. The
/// evidence states the time and level, so the oslo.log prefix is dropped.
fn quote_record(record: &super::HostLogRecord) -> String {
    let mut quote = shorten(oslo_message(record.first_line()));
    if let Some(last) = record.last_line() {
        quote.push_str(" … ");
        quote.push_str(&shorten(oslo_message(last)));
    }
    quote
}

/// Trims a quoted log line to 240 characters.
fn shorten(line: &str) -> String {
    let line = line.trim();
    let mut shortened: String = line.chars().take(240).collect();
    if shortened.len() < line.len() {
        shortened.push('…');
    }
    shortened
}

fn service_findings(
    host: &str,
    service: &crate::openstack::types::ComputeService,
    add: &mut impl FnMut(Cause, u32, String),
) {
    if service.state.as_deref() == Some("down") {
        add(
            Cause::ServiceHealth,
            2,
            format!(
                "nova-compute on {host} is down in Nova (last heartbeat {})",
                service.updated_at.as_deref().unwrap_or("unknown")
            ),
        );
    }
    if service.forced_down == Some(true) {
        add(
            Cause::ServiceHealth,
            1,
            format!("nova-compute on {host} is forced down"),
        );
    }
    if service.status.as_deref() == Some("disabled") {
        let reason = service.disabled_reason.as_deref().unwrap_or("");
        if reason.contains("Failed to connect to libvirt") {
            add(
                Cause::Hypervisor,
                3,
                format!("Nova disabled {host}: {reason}"),
            );
        } else {
            add(
                Cause::Scheduling,
                1,
                format!("nova-compute on {host} is disabled: {reason}"),
            );
        }
    }
}

fn fleet_findings(
    host: &str,
    server_id: &str,
    fleet: &super::FleetHost,
    add: &mut impl FnMut(Cause, u32, String),
) {
    if !fleet.nova_compute.starts_with("active") && fleet.nova_compute != "unknown" {
        add(
            Cause::ServiceHealth,
            3,
            format!(
                "novamedic: nova-compute on {host} is {}",
                fleet.nova_compute
            ),
        );
    }
    // The node's health is as of its latest report, not of the build, so it
    // is a hint only.
    if fleet.health == "failed" && !fleet.reasons.is_empty() {
        add(
            Cause::ServiceHealth,
            1,
            format!(
                "novamedic: {host} is failed now: {}",
                fleet.reasons.join("; ")
            ),
        );
    }
    for shortfall in &fleet.shortfalls {
        add(
            Cause::HostResources,
            2,
            format!("novamedic: {host} has {shortfall}"),
        );
    }
    for fault in &fleet.log_faults {
        let Some(cause) = log_fault_cause(&fault.fault_kind) else {
            continue;
        };
        let names_server = fault.instance_uuids.iter().any(|uuid| uuid == server_id);
        add(
            cause,
            if names_server { 3 } else { 2 },
            format!(
                "novamedic: {host}'s nova-compute log shows {} ({}, {} times{}): {}",
                fault.signature_id,
                fault.fault_kind,
                fault.count,
                if names_server {
                    ", naming this instance"
                } else {
                    ""
                },
                fault.sample
            ),
        );
    }
}

/// Maps a log fault kind of the agent's classifier to a cause.
fn log_fault_cause(kind: &str) -> Option<Cause> {
    Some(match kind {
        "hypervisor_connection" | "instance_spawn" => Cause::Hypervisor,
        "host_resources" => Cause::HostResources,
        "network" => Cause::Network,
        "volume" => Cause::Volume,
        "image" => Cause::Image,
        "configuration" => Cause::Configuration,
        "scheduling" => Cause::Scheduling,
        "messaging" | "database_conductor" | "service_hung" | "authentication" | "placement" => {
            Cause::ServiceHealth
        }
        _ => return None,
    })
}
