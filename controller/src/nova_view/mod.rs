//! Nova's own view of the fleet: the controller polls the nova-compute
//! service records and the servers in the middle of an operation once per
//! interval for the whole fleet, and keeps the latest result in memory for
//! the policy and for operators.
//!
//! - [`poll`]: the polling task and the mapping of the replies.
//! - this module: the latest view, the lookup of a node's Nova host, and
//!   what the policy and the operator API get from it.
//!
//! Nothing here is stored: after a controller restart the view is empty
//! until the first poll, and the policy then sees no Nova inputs.

pub mod poll;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use anyhow::Context;
use novamedic_proto::v1;

use crate::config::OpenStackSettings;
use crate::openstack::{config, Client};
use crate::policy::observe::ServiceState;

/// The polling source and the latest view it produced.
pub struct NovaWatch {
    client: Client,
    settings: OpenStackSettings,
    /// A std lock, because it is never held across an await: each poll
    /// builds its result first and swaps it in.
    view: RwLock<NovaView>,
}

/// The latest poll results and errors.
#[derive(Clone, Debug, Default)]
pub struct NovaView {
    /// Controller clock at the last successful os-services poll; 0 before.
    pub services_polled_at_unix_ms: i64,
    /// nova-compute services by Nova host.
    pub services: BTreeMap<String, NovaService>,
    pub services_error: Option<String>,
    /// Controller clock at the last successful busy-servers poll; 0 before.
    pub servers_polled_at_unix_ms: i64,
    /// Descriptions of busy instances by Nova host.
    pub busy: BTreeMap<String, Vec<String>>,
    pub servers_error: Option<String>,
}

/// One nova-compute service as the last poll saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NovaService {
    pub id: String,
    pub host: String,
    pub up: bool,
    pub enabled: bool,
    pub updated_at: String,
    /// Age of `updated_at` at the poll by Nova's clock; `None` when Nova
    /// returned no `updated_at`.
    pub heartbeat_age_seconds: Option<u64>,
    pub disabled_reason: String,
    pub forced_down: bool,
}

/// Nova's inputs to the policy for one node at one report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyInputs {
    pub service: Option<ServiceState>,
    pub work_in_progress: Vec<String>,
}

impl std::fmt::Debug for NovaWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NovaWatch")
            .field("cloud", &self.client.config().name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl NovaWatch {
    pub fn new(client: Client, settings: OpenStackSettings) -> Self {
        NovaWatch {
            client,
            settings,
            view: RwLock::new(NovaView::default()),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &OpenStackSettings {
        &self.settings
    }

    /// Returns a copy of the latest view.
    pub fn view(&self) -> NovaView {
        self.view.read().expect("nova view lock").clone()
    }

    fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.settings.stale_after().as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns whether data polled at `polled_at_unix_ms` is too old (or
    /// missing) for the policy at `now_unix_ms`.
    fn is_stale(&self, polled_at_unix_ms: i64, now_unix_ms: i64) -> bool {
        polled_at_unix_ms == 0 || now_unix_ms - polled_at_unix_ms > self.stale_after_ms()
    }

    /// Returns the node's service as last polled, whatever its age.
    pub fn service_for(&self, node: &str) -> Option<NovaService> {
        let view = self.view.read().expect("nova view lock");
        let host = host_for_node(node, view.services.keys(), &self.settings.host_names)?;
        view.services.get(host).cloned()
    }

    /// Returns Nova's inputs for the node's policy at `now_unix_ms`. Data
    /// older than `stale_after_polls` intervals is left out: it neither
    /// counts as evidence nor blocks.
    pub fn policy_inputs(&self, node: &str, now_unix_ms: i64) -> PolicyInputs {
        let view = self.view.read().expect("nova view lock");
        let names = &self.settings.host_names;
        let mut inputs = PolicyInputs::default();
        if !self.is_stale(view.services_polled_at_unix_ms, now_unix_ms) {
            inputs.service = host_for_node(node, view.services.keys(), names)
                .and_then(|host| view.services.get(host))
                .map(|service| ServiceState {
                    up: service.up,
                    heartbeat_age_seconds: service.heartbeat_age_seconds.unwrap_or(0),
                    service_down_time_seconds: self.settings.service_down_time.as_secs(),
                    disabled: !service.enabled,
                    disabled_reason: service.disabled_reason.clone(),
                    forced_down: service.forced_down,
                });
        }
        if !self.is_stale(view.servers_polled_at_unix_ms, now_unix_ms) {
            inputs.work_in_progress = host_for_node(node, view.busy.keys(), names)
                .and_then(|host| view.busy.get(host))
                .cloned()
                .unwrap_or_default();
        }
        inputs
    }

    /// Describes the source for operators.
    pub fn source(&self) -> v1::NovaSource {
        let view = self.view.read().expect("nova view lock");
        v1::NovaSource {
            configured: true,
            cloud: self.client.config().name.clone(),
            services_polled_at_unix_ms: view.services_polled_at_unix_ms,
            services_error: view.services_error.clone().unwrap_or_default(),
            servers_polled_at_unix_ms: view.servers_polled_at_unix_ms,
            servers_error: view.servers_error.clone().unwrap_or_default(),
            poll_interval_seconds: self.settings.poll_interval.as_secs(),
            stale_after_seconds: self.settings.stale_after().as_secs(),
        }
    }

    /// Builds the node's Nova view for the operator API.
    pub fn node_view(&self, node: &str) -> v1::NovaNodeView {
        let source = self.source();
        let view = self.view.read().expect("nova view lock");
        let names = &self.settings.host_names;
        let service = host_for_node(node, view.services.keys(), names)
            .and_then(|host| view.services.get(host))
            .map(|service| v1::NovaService {
                id: service.id.clone(),
                host: service.host.clone(),
                state: if service.up { "up" } else { "down" }.to_string(),
                status: if service.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
                .to_string(),
                updated_at: service.updated_at.clone(),
                heartbeat_age_seconds: service
                    .heartbeat_age_seconds
                    .map_or(-1, |age| i64::try_from(age).unwrap_or(i64::MAX)),
                disabled_reason: service.disabled_reason.clone(),
                forced_down: service.forced_down,
            });
        let work_in_progress = host_for_node(node, view.busy.keys(), names)
            .and_then(|host| view.busy.get(host))
            .cloned()
            .unwrap_or_default();
        v1::NovaNodeView {
            source: Some(source),
            service,
            work_in_progress,
        }
    }
}

/// Loads the cloud of the `[openstack]` table, the way the `openstack`
/// command line loads credentials, and builds its client. `env` is the
/// controller's environment, whose `OS_*` variables take part.
pub fn connect(
    settings: &OpenStackSettings,
    env: &config::Environment,
    current_dir: &Path,
) -> anyhow::Result<Client> {
    let paths = match &settings.clouds_file {
        Some(file) => {
            check_clouds_file(file)?;
            config::SearchPaths {
                clouds: vec![file.clone()],
                secure: vec![file.with_file_name("secure.yaml")],
            }
        }
        None => config::SearchPaths::standard(env, current_dir),
    };
    let overrides = config::Overrides {
        cloud: settings.cloud.clone(),
        values: BTreeMap::new(),
        named_by: config::CloudSetting::ControllerConfig,
    };
    // The loader's error names the fix in the terms of controller.toml.
    let cloud = config::load(env, &paths, &overrides).with_context(|| match &settings.cloud {
        Some(name) => format!("cannot load cloud {name:?} of [openstack]"),
        None => "cannot load the OpenStack credentials for [openstack]".to_string(),
    })?;
    tracing::info!(
        cloud = cloud.name,
        sources = ?cloud.sources,
        "OpenStack credentials loaded for polling Nova"
    );
    Client::new(cloud, Some(settings.request_timeout))
        .context("cannot build the OpenStack client for [openstack]")
}

/// Checks that `[openstack] clouds_file` names a readable file.
fn check_clouds_file(file: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(file) {
        Ok(metadata) if metadata.is_dir() => anyhow::bail!(
            "[openstack] clouds_file {} is a directory; set it to the clouds.yaml file, or \
             remove the key to search the standard places",
            file.display()
        ),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "[openstack] clouds_file {} does not exist; create it, or remove the key to search \
             the standard places",
            file.display()
        ),
        Err(err) => Err(err)
            .with_context(|| format!("cannot read [openstack] clouds_file {}", file.display())),
    }
}

/// Returns the source as shown when the controller has no `[openstack]`
/// table.
pub fn unconfigured_source() -> v1::NovaSource {
    v1::NovaSource::default()
}

/// Finds the Nova host of `node` among `hosts`. A host that `host_names`
/// maps to the node comes first, then a host equal to the node's name, then
/// the one host whose short name (up to the first dot) equals the node's
/// short name. Two hosts with the same short name match neither.
pub fn host_for_node<'a>(
    node: &str,
    hosts: impl Iterator<Item = &'a String> + Clone,
    host_names: &BTreeMap<String, String>,
) -> Option<&'a str> {
    if let Some(host) = hosts.clone().find(|host| {
        host_names
            .get(host.as_str())
            .is_some_and(|name| name == node)
    }) {
        return Some(host);
    }
    if let Some(host) = hosts.clone().find(|host| host.as_str() == node) {
        return Some(host);
    }
    let short = short_name(node);
    let mut matches = hosts.filter(|host| {
        !host_names.contains_key(host.as_str()) && short_name(host).eq_ignore_ascii_case(short)
    });
    let first = matches.next()?;
    match matches.next() {
        None => Some(first),
        Some(_) => None,
    }
}

fn short_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn host_match_exact_short_and_mapped() {
        let hosts = hosts(&["cn-1.example.net", "cn-2", "gpu-7.dc1.example.net"]);
        let mut names = BTreeMap::new();
        names.insert(
            "gpu-7.dc1.example.net".to_string(),
            "accelerator-7".to_string(),
        );
        let find = |node: &str| host_for_node(node, hosts.iter(), &names);
        assert_eq!(find("cn-2"), Some("cn-2"));
        assert_eq!(find("cn-1"), Some("cn-1.example.net"));
        assert_eq!(find("cn-2.example.net"), Some("cn-2"));
        assert_eq!(find("accelerator-7"), Some("gpu-7.dc1.example.net"));
        assert_eq!(
            find("gpu-7"),
            None,
            "a mapped host keeps its mapped name only"
        );
        assert_eq!(find("cn-3"), None);
    }

    #[test]
    fn host_match_ambiguous_short_name() {
        let hosts = hosts(&["cn-1.dc1.example.net", "cn-1.dc2.example.net"]);
        let names = BTreeMap::new();
        assert_eq!(host_for_node("cn-1", hosts.iter(), &names), None);
        assert_eq!(
            host_for_node("cn-1.dc2.example.net", hosts.iter(), &names),
            Some("cn-1.dc2.example.net")
        );
    }
}
