//! Placement calls. The catalog's placement URL is the API root, so the
//! paths start with `/resource_providers`; none of these lists is paginated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::nova::segment;
use super::types::{Inventory, ResourceProvider};
use super::{ApiError, Client, Service};

#[derive(Deserialize)]
struct ProvidersBody {
    resource_providers: Vec<ResourceProvider>,
}

#[derive(Deserialize)]
struct InventoriesBody {
    inventories: BTreeMap<String, Inventory>,
}

#[derive(Deserialize)]
struct UsagesBody {
    usages: BTreeMap<String, u64>,
}

/// `GET /resource_providers?name=NAME`: the provider named exactly `name`,
/// or `None`. Nova names a compute node's provider after its
/// `hypervisor_hostname`.
pub async fn provider_named(
    client: &Client,
    name: &str,
) -> Result<Option<ResourceProvider>, ApiError> {
    let body: ProvidersBody = client
        .get(
            Service::Placement,
            "/resource_providers",
            &[("name", name.to_string())],
        )
        .await?;
    Ok(body
        .resource_providers
        .into_iter()
        .find(|provider| provider.name.as_deref() == Some(name)))
}

/// `GET /resource_providers/{uuid}/inventories`, by resource class.
pub async fn inventories(
    client: &Client,
    uuid: &str,
) -> Result<BTreeMap<String, Inventory>, ApiError> {
    let body: InventoriesBody = client
        .get(
            Service::Placement,
            &format!("/resource_providers/{}/inventories", segment(uuid)),
            &[],
        )
        .await?;
    Ok(body.inventories)
}

/// `GET /resource_providers/{uuid}/usages`: the amount allocated per
/// resource class, summed over every consumer.
pub async fn usages(client: &Client, uuid: &str) -> Result<BTreeMap<String, u64>, ApiError> {
    let body: UsagesBody = client
        .get(
            Service::Placement,
            &format!("/resource_providers/{}/usages", segment(uuid)),
            &[],
        )
        .await?;
    Ok(body.usages)
}
