//! Nova calls.

use serde::Deserialize;

use super::types::{ComputeService, Hypervisor, InstanceAction, Server};
use super::{ApiError, Client, Service};

/// Upper bound on servers listed for a name lookup; more matches than this
/// are reported as ambiguous anyway.
const NAME_LOOKUP_LIMIT: usize = 100;

#[derive(Deserialize)]
struct ServerBody {
    server: Server,
}

#[derive(Deserialize)]
struct ActionBody {
    #[serde(rename = "instanceAction")]
    action: InstanceAction,
}

#[derive(Deserialize)]
struct ServicesBody {
    services: Vec<ComputeService>,
}

#[derive(Deserialize)]
struct HypervisorsBody {
    hypervisors: Vec<Hypervisor>,
}

/// `GET /servers/{id}`.
pub async fn server(client: &Client, id: &str) -> Result<Server, ApiError> {
    let body: ServerBody = client
        .get(Service::Compute, &format!("/servers/{}", segment(id)), &[])
        .await?;
    Ok(body.server)
}

/// Servers whose name is exactly `name`, in every project the credentials
/// see. Nova treats the `name` filter as a regular expression, so the name
/// is escaped and anchored, and the results are checked again. A token
/// without the admin role gets a 403 for `all_tenants`; the lookup then
/// repeats in the token's own project.
pub async fn servers_named(client: &Client, name: &str) -> Result<Vec<Server>, ApiError> {
    let pattern = format!("^{}$", regex_escape(name));
    let mut query = vec![
        ("name", pattern),
        ("all_tenants", "1".to_string()),
        ("limit", NAME_LOOKUP_LIMIT.to_string()),
    ];
    let servers = match list_servers(client, &query).await {
        Err(err) if err.status() == Some(403) => {
            query.retain(|(key, _)| *key != "all_tenants");
            list_servers(client, &query).await?
        }
        other => other?,
    };
    Ok(servers
        .into_iter()
        .filter(|server| server.name.as_deref() == Some(name))
        .collect())
}

async fn list_servers(client: &Client, query: &[(&str, String)]) -> Result<Vec<Server>, ApiError> {
    client
        .get_all(
            Service::Compute,
            "/servers/detail",
            query,
            "servers",
            "servers_links",
        )
        .await
}

/// Every server in ERROR in every project the credentials see, all pages.
pub async fn error_servers(client: &Client) -> Result<Vec<Server>, ApiError> {
    let query = [
        ("all_tenants", "1".to_string()),
        ("status", "ERROR".to_string()),
    ];
    list_servers(client, &query).await
}

/// `GET /servers/{id}/os-instance-actions`, newest first, every page.
pub async fn instance_actions(client: &Client, id: &str) -> Result<Vec<InstanceAction>, ApiError> {
    client
        .get_all(
            Service::Compute,
            &format!("/servers/{}/os-instance-actions", segment(id)),
            &[],
            "instanceActions",
            "links",
        )
        .await
}

/// `GET /servers/{id}/os-instance-actions/{request_id}`: the action with
/// its events.
pub async fn instance_action(
    client: &Client,
    id: &str,
    request_id: &str,
) -> Result<InstanceAction, ApiError> {
    let body: ActionBody = client
        .get(
            Service::Compute,
            &format!(
                "/servers/{}/os-instance-actions/{}",
                segment(id),
                segment(request_id)
            ),
            &[],
        )
        .await?;
    Ok(body.action)
}

/// `GET /os-services?binary=nova-compute&host=HOST`.
pub async fn compute_services(
    client: &Client,
    host: &str,
) -> Result<Vec<ComputeService>, ApiError> {
    let body: ServicesBody = client
        .get(
            Service::Compute,
            "/os-services",
            &[
                ("binary", "nova-compute".to_string()),
                ("host", host.to_string()),
            ],
        )
        .await?;
    Ok(body.services)
}

/// Lists the compute nodes that the nova-compute service on `host`
/// manages: `GET /os-hypervisors/detail?hypervisor_hostname_pattern=HOST`
/// (compute 2.53 and later). Nova matches the pattern as a substring of
/// the node's name, so only nodes whose service host is `host` are kept.
/// Nova returns 404 when no node matches, which is an empty list here.
pub async fn hypervisors_of_host(client: &Client, host: &str) -> Result<Vec<Hypervisor>, ApiError> {
    let reply: Result<HypervisorsBody, ApiError> = client
        .get(
            Service::Compute,
            "/os-hypervisors/detail",
            &[("hypervisor_hostname_pattern", host.to_string())],
        )
        .await;
    let hypervisors = match reply {
        Ok(body) => body.hypervisors,
        Err(err) if err.is_not_found() => Vec::new(),
        Err(err) => return Err(err),
    };
    Ok(hypervisors
        .into_iter()
        .filter(|hypervisor| {
            hypervisor
                .service
                .as_ref()
                .and_then(|service| service.host.as_deref())
                == Some(host)
        })
        .collect())
}

/// `GET /os-services?binary=nova-compute` for every host, with the
/// response's `Date` header: Nova's clock, against which `updated_at` (UTC
/// without a zone) is compared.
pub async fn all_compute_services(
    client: &Client,
) -> Result<(Vec<ComputeService>, Option<time::OffsetDateTime>), ApiError> {
    let (body, date): (ServicesBody, _) = client
        .get_dated(
            Service::Compute,
            "/os-services",
            &[("binary", "nova-compute".to_string())],
        )
        .await?;
    Ok((body.services, date))
}

/// Lists every server, in every project, whose task state is one of
/// `task_states`, all pages. Nova filters on the task state itself (the
/// filter takes repeated values), so the reply holds only busy servers.
pub async fn servers_in_task_states(
    client: &Client,
    task_states: &[&str],
) -> Result<Vec<Server>, ApiError> {
    let mut query = vec![("all_tenants", "1".to_string())];
    query.extend(
        task_states
            .iter()
            .map(|state| ("task_state", (*state).to_string())),
    );
    list_servers(client, &query).await
}

/// `PUT /os-services/{id}` (compute 2.53 and later): sets the service's
/// status, with `disabled_reason` when disabling.
pub async fn set_service_status(
    client: &Client,
    id: &str,
    enabled: bool,
    disabled_reason: &str,
) -> Result<ComputeService, ApiError> {
    #[derive(Deserialize)]
    struct ServiceBody {
        service: ComputeService,
    }
    let body = if enabled {
        serde_json::json!({"status": "enabled"})
    } else {
        serde_json::json!({"status": "disabled", "disabled_reason": disabled_reason})
    };
    let reply: ServiceBody = client
        .put(
            Service::Compute,
            &format!("/os-services/{}", segment(id)),
            &body,
        )
        .await?;
    Ok(reply.service)
}

/// Percent-encodes a value for use as one URL path segment.
pub(crate) fn segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Escapes the characters that Python's `re` module treats as special.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.^$*+?{}[]|()".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escaped_for_regex() {
        assert_eq!(regex_escape("db-7.prod (old)"), "db-7\\.prod \\(old\\)");
    }

    #[test]
    fn path_segments_encoded() {
        assert_eq!(segment("req-1/../x y"), "req-1%2F..%2Fx%20y");
    }
}
