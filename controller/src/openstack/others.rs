//! Glance, Neutron and Cinder calls.

use serde::Deserialize;

use super::nova::segment;
use super::types::{Image, Port, Volume};
use super::{ApiError, Client, Service};

#[derive(Deserialize)]
struct VolumeBody {
    volume: Volume,
}

/// Glance `GET /v2/images/{id}`; the body is the image itself.
pub async fn image(client: &Client, id: &str) -> Result<Image, ApiError> {
    client
        .get(Service::Image, &format!("/v2/images/{}", segment(id)), &[])
        .await
}

/// Neutron `GET /v2.0/ports?device_id={server}`, every page.
pub async fn ports_of_device(client: &Client, device_id: &str) -> Result<Vec<Port>, ApiError> {
    client
        .get_all(
            Service::Network,
            "/v2.0/ports",
            &[("device_id", device_id.to_string())],
            "ports",
            "ports_links",
        )
        .await
}

/// Cinder `GET {block-storage url}/volumes/{id}`; the catalog URL already
/// ends with `/v3/{project_id}`.
pub async fn volume(client: &Client, id: &str) -> Result<Volume, ApiError> {
    let body: VolumeBody = client
        .get(
            Service::BlockStorage,
            &format!("/volumes/{}", segment(id)),
            &[],
        )
        .await?;
    Ok(body.volume)
}
