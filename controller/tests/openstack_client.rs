//! The OpenStack client against a fake cloud on loopback: authentication,
//! token reuse and renewal, headers, microversions, pagination and error
//! bodies.

mod openstack_mock;

use novamedic::openstack::config::{self, Overrides, SearchPaths};
use novamedic::openstack::{nova, others, ApiError, Client};
use openstack_mock::{fixture, Mock};
use serde_json::json;

const SERVER_ID: &str = "c88f1556-b299-4254-9642-cab36648dfaa";
const IMAGE_ID: &str = "19a9a1f9-eb57-497a-a4d9-2e87f14836c1";

fn build_aborted() -> serde_json::Value {
    fixture("nova_get_server_error_build_aborted.json")["server"].clone()
}

#[tokio::test]
async fn password_auth_request_and_headers() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.to_string(), fixture("glance_get_v2_image.json"))
    });
    let client = mock.client();

    let server = nova::server(&client, SERVER_ID).await.expect("server");
    assert_eq!(server.id, SERVER_ID);
    assert_eq!(server.vm_state.as_deref(), Some("error"));
    assert_eq!(server.host, None);
    let image = others::image(&client, IMAGE_ID).await.expect("image");
    assert_eq!(image.min_disk, Some(10));

    let auth = mock.with(|cloud| cloud.auth_bodies.clone());
    assert_eq!(auth.len(), 1);
    assert_eq!(
        auth[0],
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "oncall-bot", "domain": {"name": "Default"}, "password": "s3cret-password"}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}
        }})
    );

    let requests = mock.with(|cloud| cloud.api_requests());
    let server_get = requests
        .iter()
        .find(|request| request.path == format!("/compute/v2.1/servers/{SERVER_ID}"))
        .expect("server GET");
    assert_eq!(server_get.token.as_deref(), Some("token-1"));
    assert_eq!(server_get.microversion.as_deref(), Some("compute 2.88"));
    assert_eq!(server_get.accept.as_deref(), Some("application/json"));
    let image_get = requests
        .iter()
        .find(|request| request.path.starts_with("/image/"))
        .expect("image GET");
    assert_eq!(image_get.path, format!("/image/v2/images/{IMAGE_ID}"));
    assert_eq!(image_get.microversion, None);
    assert_eq!(image_get.token.as_deref(), Some("token-1"));
}

#[tokio::test]
async fn token_reused_across_calls() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    let client = mock.client();
    for _ in 0..3 {
        nova::server(&client, SERVER_ID).await.expect("server");
    }
    assert_eq!(mock.with(|cloud| cloud.issued.len()), 1);
}

#[tokio::test]
async fn token_renewed_after_401() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    let client = mock.client();
    nova::server(&client, SERVER_ID).await.expect("first call");

    mock.with(|cloud| cloud.revoked.push("token-1".to_string()));
    nova::server(&client, SERVER_ID)
        .await
        .expect("call after revocation");

    assert_eq!(
        mock.with(|cloud| cloud.issued.clone()),
        ["token-1", "token-2"]
    );
    let tokens: Vec<Option<String>> = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .filter(|request| request.path.ends_with(SERVER_ID))
            .map(|request| request.token.clone())
            .collect()
    });
    assert_eq!(
        tokens,
        [
            Some("token-1".into()),
            Some("token-1".into()),
            Some("token-2".into())
        ]
    );
}

#[tokio::test]
async fn expired_token_renewed() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    mock.with(|cloud| cloud.token_lifetime_seconds = 0);
    let client = mock.client();
    nova::server(&client, SERVER_ID).await.expect("first call");
    nova::server(&client, SERVER_ID).await.expect("second call");
    let tokens: Vec<String> = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .filter(|request| request.path.ends_with(SERVER_ID))
            .filter_map(|request| request.token.clone())
            .collect()
    });
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1], "an expired token was reused");
}

#[tokio::test]
async fn rejected_password_is_reported_without_it() {
    let mock = Mock::start().await;
    let mut env = mock.environment();
    env.insert("OS_PASSWORD".into(), "wrong".into());
    let cloud = config::load(&env, &SearchPaths::default(), &Overrides::default()).expect("config");
    let client = Client::new(cloud, None).expect("client");
    let err = nova::server(&client, SERVER_ID).await.expect_err("401");
    assert_eq!(err.status(), Some(401));
    let message = err.to_string();
    assert!(
        message.contains("Unauthorized: The request you have made requires authentication."),
        "{message}"
    );
    assert!(!message.contains("wrong"), "{message}");
    assert!(!format!("{err:?} {:?}", client.config()).contains("wrong"));
}

#[tokio::test]
async fn compute_microversion_falls_back() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    mock.with(|cloud| cloud.compute_max_version = "2.60".to_string());
    let client = mock.client();
    nova::server(&client, SERVER_ID).await.expect("server");
    assert_eq!(client.compute_microversion(), Some("2.60"));
    let versions: Vec<Option<String>> = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .filter(|request| request.path.ends_with(SERVER_ID))
            .map(|request| request.microversion.clone())
            .collect()
    });
    assert_eq!(versions, [Some("compute 2.60".to_string())]);
}

#[tokio::test]
async fn pagination_follows_next_links() {
    let mock = Mock::start().await;
    let template = fixture("nova_get_servers_detail_status_error_host.json")["servers"][0].clone();
    for index in 0..5 {
        let mut server = template.clone();
        server["id"] = json!(format!("00000000-0000-4000-8000-00000000000{index}"));
        server["name"] = json!(format!("app-{index}"));
        mock.add_server(server, Vec::new());
    }
    mock.with(|cloud| cloud.page_size = 2);
    let client = mock.client();

    let servers = nova::error_servers(&client).await.expect("list");
    assert_eq!(servers.len(), 5);

    let lists: Vec<_> = mock.with(|cloud| {
        cloud
            .api_requests()
            .into_iter()
            .filter(|request| request.path == "/compute/v2.1/servers/detail")
            .collect()
    });
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert_eq!(
        lists[0].query.get("all_tenants").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        lists[0].query.get("status").map(String::as_str),
        Some("ERROR")
    );
    assert_eq!(lists[0].query.get("marker"), None);
    assert_eq!(
        lists[1].query.get("marker").map(String::as_str),
        Some("00000000-0000-4000-8000-000000000001")
    );
    assert_eq!(
        lists[2].query.get("status").map(String::as_str),
        Some("ERROR")
    );
}

#[tokio::test]
async fn error_bodies_parsed_per_service() {
    let mock = Mock::start().await;
    let client = mock.client();

    let nova_err = nova::server(&client, "8a25ee70-f27c-4986-a099-492eb9fc59a5")
        .await
        .expect_err("404");
    assert!(nova_err.is_not_found());
    assert!(
        nova_err.to_string().contains(
            "itemNotFound: Instance 8a25ee70-f27c-4986-a099-492eb9fc59a5 could not be found."
        ),
        "{nova_err}"
    );
    assert!(
        nova_err.to_string().contains("request id req-"),
        "{nova_err}"
    );

    let glance_err = others::image(&client, IMAGE_ID).await.expect_err("404");
    assert!(
        glance_err
            .to_string()
            .contains("Not Found: No image found with ID ed7aab5e"),
        "{glance_err}"
    );
    let cinder_err = others::volume(&client, "4bb51f64-f79b-4aca-a499-03066aaf4934")
        .await
        .expect_err("404");
    assert!(matches!(cinder_err, ApiError::Status { status: 404, .. }));
    let volume_get = mock.with(|cloud| {
        cloud
            .api_requests()
            .into_iter()
            .find(|request| request.path.contains("/volumes/"))
            .expect("volume GET")
    });
    assert_eq!(
        volume_get.path,
        "/volume/v3/6785498c2f3c4a48a461c8f9b12e75df/volumes/4bb51f64-f79b-4aca-a499-03066aaf4934",
        "Cinder's catalog URL is taken as is"
    );
}

#[tokio::test]
async fn token_without_keystone_uses_overrides() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    mock.with(|cloud| cloud.issued.push("admin:admin".to_string()));
    let overrides = Overrides {
        cloud: None,
        values: [
            ("auth_type", "token".to_string()),
            ("token", "admin:admin".to_string()),
            (
                "compute_endpoint_override",
                format!("{}/compute/v2.1", mock.base),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect(),
        ..Overrides::default()
    };
    let cloud =
        config::load(&Default::default(), &SearchPaths::default(), &overrides).expect("config");
    let client = Client::new(cloud, None).expect("client");
    nova::server(&client, SERVER_ID).await.expect("server");
    assert!(mock.with(|cloud| cloud.auth_bodies.is_empty()));
    let tokens: Vec<Option<String>> = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .map(|request| request.token.clone())
            .collect()
    });
    assert!(
        tokens
            .iter()
            .all(|token| token.as_deref() == Some("admin:admin")),
        "{tokens:?}"
    );

    let err = others::image(&client, IMAGE_ID)
        .await
        .expect_err("no image endpoint");
    assert!(err.to_string().contains("image_endpoint_override"), "{err}");
}

#[tokio::test]
async fn application_credential_request_has_no_scope() {
    let mock = Mock::start().await;
    mock.add_server(build_aborted(), Vec::new());
    let overrides = Overrides {
        cloud: None,
        values: [
            ("auth_url", format!("{}/identity/v3", mock.base)),
            ("auth_type", "v3applicationcredential".to_string()),
            (
                "application_credential_id",
                "2e1761ed2a5142448227f7c72058d605".to_string(),
            ),
            ("application_credential_secret", "app-secret".to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect(),
        ..Overrides::default()
    };
    let cloud =
        config::load(&Default::default(), &SearchPaths::default(), &overrides).expect("config");
    let client = Client::new(cloud, None).expect("client");
    nova::server(&client, SERVER_ID).await.expect("server");
    let auth = mock.with(|cloud| cloud.auth_bodies.clone());
    assert_eq!(
        auth[0],
        json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": "2e1761ed2a5142448227f7c72058d605", "secret": "app-secret"}
        }}})
    );
}
