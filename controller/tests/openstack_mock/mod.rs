//! A fake OpenStack cloud on 127.0.0.1: Keystone, Nova, Glance, Neutron,
//! Cinder and Placement, serving the recorded sample responses in
//! `fixtures/openstack/` and recording every request so tests can check
//! headers and queries.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use novamedic::openstack::config::{self, Environment, Overrides, SearchPaths};
use novamedic::openstack::Client;
use serde_json::{json, Value};

/// Reads a fixture as JSON.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/openstack/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// One request the fake cloud received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub token: Option<String>,
    pub microversion: Option<String>,
    pub accept: Option<String>,
    /// Every query pair in order, repeated keys included.
    pub query_pairs: Vec<(String, String)>,
    /// The JSON body of a PUT.
    pub body: Option<Value>,
}

/// What the fake cloud holds. Tests fill it before and read it after.
#[derive(Default)]
pub struct Cloud {
    pub base: String,
    /// Server objects by id, as inside `{"server": ...}`.
    pub servers: BTreeMap<String, Value>,
    /// Instance actions with their events, newest first, by server id.
    pub actions: BTreeMap<String, Vec<Value>>,
    pub images: BTreeMap<String, Value>,
    /// Ports by device id.
    pub ports: BTreeMap<String, Vec<Value>>,
    /// Volume objects by id, as inside `{"volume": ...}`.
    pub volumes: BTreeMap<String, Value>,
    pub services: Vec<Value>,
    /// Compute nodes of `os-hypervisors/detail`, in the 2.88 shape.
    pub hypervisors: Vec<Value>,
    /// Placement resource providers, as inside `resource_providers`.
    pub providers: Vec<Value>,
    /// `inventories` objects by provider UUID.
    pub inventories: BTreeMap<String, Value>,
    /// `usages` objects by provider UUID.
    pub usages: BTreeMap<String, Value>,
    /// Service types left out of the token's catalog.
    pub catalog_without: Vec<String>,
    /// Path prefixes that return 403 with the service's error body.
    pub forbidden: Vec<String>,
    /// Servers per page of `servers/detail`; 0 means all at once.
    pub page_size: usize,
    /// `version` of the compute version document.
    pub compute_max_version: String,
    /// Lifetime of issued tokens, in seconds.
    pub token_lifetime_seconds: i64,
    /// Path prefixes that return a load balancer's 503 HTML page.
    pub failing: Vec<String>,
    /// Path prefixes that respond only after [`HANG_SECONDS`].
    pub hanging: Vec<String>,
    pub issued: Vec<String>,
    pub revoked: Vec<String>,
    pub auth_bodies: Vec<Value>,
    pub requests: Vec<Recorded>,
}

impl Cloud {
    /// Requests other than authentication.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests
            .iter()
            .filter(|request| !request.path.ends_with("/auth/tokens"))
            .cloned()
            .collect()
    }
}

/// UUID of the resource provider in the Placement samples, compute-07's.
pub const SAMPLE_PROVIDER_UUID: &str = "6e79ee51-6218-473d-9620-36e9c9dd259c";

/// How long a hanging service takes to answer: longer than any request
/// timeout the tests set.
pub const HANG_SECONDS: u64 = 30;

pub struct Mock {
    pub base: String,
    pub cloud: Arc<Mutex<Cloud>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    /// Starts an empty cloud, with the nova-compute services of the
    /// samples and a compute node and resource provider for each of
    /// compute-06, -07 and -08 (see [`Mock::add_node`]).
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let cloud = Arc::new(Mutex::new(Cloud {
            base: base.clone(),
            services: fixture("nova_get_os_services_binary_nova_compute.json")["services"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            compute_max_version: "2.100".to_string(),
            token_lifetime_seconds: 3600,
            ..Cloud::default()
        }));
        let router = Router::new().fallback(handle).with_state(cloud.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        let mock = Mock { base, cloud, task };
        for (index, host) in ["compute-06", "compute-07", "compute-08"]
            .iter()
            .enumerate()
        {
            let name = format!("{host}.example.net");
            let uuid = if *host == "compute-07" {
                SAMPLE_PROVIDER_UUID.to_string()
            } else {
                format!("00000000-0000-4000-8000-00000000000{index}")
            };
            mock.add_node(&name, &name, &uuid);
        }
        mock
    }

    /// Adds a compute node named `node` of the nova-compute service on
    /// `host`, and its resource provider with the sample's inventories and
    /// the sample's usages except MEMORY_MB, lowered to 131072 so that the
    /// provider has room for the test flavors.
    pub fn add_node(&self, host: &str, node: &str, uuid: &str) {
        let mut hypervisor =
            fixture("nova_get_os_hypervisors_detail_v2_88.json")["hypervisors"][1].clone();
        hypervisor["id"] = json!(uuid);
        hypervisor["hypervisor_hostname"] = json!(node);
        hypervisor["service"]["host"] = json!(host);
        let mut provider =
            fixture("placement_get_resource_providers_name.json")["resource_providers"][0].clone();
        provider["uuid"] = json!(uuid);
        provider["root_provider_uuid"] = json!(uuid);
        provider["name"] = json!(node);
        let inventories =
            fixture("placement_get_resource_provider_inventories.json")["inventories"].clone();
        let mut usages = fixture("placement_get_resource_provider_usages.json")["usages"].clone();
        usages["MEMORY_MB"] = json!(131072);
        self.with(|cloud| {
            cloud.hypervisors.push(hypervisor);
            cloud.providers.push(provider);
            cloud.inventories.insert(uuid.to_string(), inventories);
            cloud.usages.insert(uuid.to_string(), usages);
        });
    }

    /// The `OS_*` variables of a password user for this cloud.
    pub fn environment(&self) -> Environment {
        [
            ("OS_AUTH_URL", format!("{}/identity", self.base)),
            ("OS_USERNAME", "oncall-bot".to_string()),
            ("OS_PASSWORD", "s3cret-password".to_string()),
            ("OS_USER_DOMAIN_NAME", "Default".to_string()),
            ("OS_PROJECT_NAME", "admin".to_string()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".to_string()),
            ("OS_REGION_NAME", "RegionOne".to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// A client with the password credentials of [`Mock::environment`].
    pub fn client(&self) -> Client {
        let cloud = config::load(
            &self.environment(),
            &SearchPaths::default(),
            &Overrides::default(),
        )
        .expect("the environment makes a cloud");
        Client::new(cloud, None).expect("client")
    }

    pub fn with<T>(&self, change: impl FnOnce(&mut Cloud) -> T) -> T {
        change(&mut self.cloud.lock().expect("cloud lock"))
    }

    /// Adds a server and its actions; `actions` are full actions with
    /// events, newest first.
    pub fn add_server(&self, server: Value, actions: Vec<Value>) {
        let id = server["id"].as_str().expect("server id").to_string();
        self.with(|cloud| {
            cloud.servers.insert(id.clone(), server);
            cloud.actions.insert(id, actions);
        });
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            ("content-type", "application/json"),
            (
                "x-openstack-request-id",
                "req-00000000-0000-4000-8000-000000000000",
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|query| {
            url_pairs(query)
                .into_iter()
                .collect::<BTreeMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(cloud): State<Arc<Mutex<Cloud>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hangs = {
        let cloud = cloud.lock().expect("cloud lock");
        cloud
            .hanging
            .iter()
            .any(|prefix| uri.path().starts_with(prefix))
    };
    if hangs {
        tokio::time::sleep(std::time::Duration::from_secs(HANG_SECONDS)).await;
    }
    let mut cloud = cloud.lock().expect("cloud lock");
    let path = uri.path().to_string();
    let query = query_map(&uri);
    let token = header(&headers, "x-auth-token");
    cloud.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        token: token.clone(),
        microversion: header(&headers, "openstack-api-version"),
        accept: header(&headers, "accept"),
        query_pairs: uri.query().map(url_pairs).unwrap_or_default(),
        body: serde_json::from_slice(&body).ok(),
    });

    if method == Method::POST && path == "/identity/v3/auth/tokens" {
        return authenticate(&mut cloud, &body);
    }
    let valid = token
        .as_ref()
        .is_some_and(|token| cloud.issued.contains(token) && !cloud.revoked.contains(token));
    if !valid {
        return reply(StatusCode::UNAUTHORIZED, fixture("keystone_error_401.json"));
    }
    if cloud.failing.iter().any(|prefix| path.starts_with(prefix)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html")],
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available.</body></html>",
        )
            .into_response();
    }
    if cloud
        .forbidden
        .iter()
        .any(|prefix| path.starts_with(prefix))
    {
        return forbidden(&path);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["compute", "v2.1"] => {
            let mut document = fixture("nova_get_version_root.json");
            document["version"]["version"] = json!(cloud.compute_max_version);
            reply(StatusCode::OK, document)
        }
        ["compute", "v2.1", "servers", "detail"] => {
            let task_states: Vec<String> = uri
                .query()
                .map(url_pairs)
                .unwrap_or_default()
                .into_iter()
                .filter(|(key, _)| key == "task_state")
                .map(|(_, value)| value)
                .collect();
            list_servers(&cloud, &query, &task_states)
        }
        ["compute", "v2.1", "os-services", id] if method == Method::PUT => {
            let id = id.to_string();
            let update = cloud
                .requests
                .last()
                .and_then(|request| request.body.clone())
                .unwrap_or(Value::Null);
            update_service(&mut cloud, &id, &update)
        }
        ["compute", "v2.1", "servers", id] => match cloud.servers.get(*id) {
            Some(server) => reply(StatusCode::OK, json!({"server": server})),
            None => not_found_compute(),
        },
        ["compute", "v2.1", "servers", id, "os-instance-actions"] => {
            let actions: Vec<Value> = cloud
                .actions
                .get(*id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut action| {
                    if let Some(object) = action.as_object_mut() {
                        object.remove("events");
                    }
                    action
                })
                .collect();
            reply(StatusCode::OK, json!({"instanceActions": actions}))
        }
        ["compute", "v2.1", "servers", id, "os-instance-actions", request_id] => {
            let action = cloud.actions.get(*id).and_then(|actions| {
                actions
                    .iter()
                    .find(|action| action["request_id"] == json!(request_id))
                    .cloned()
            });
            match action {
                Some(action) => reply(StatusCode::OK, json!({"instanceAction": action})),
                None => not_found_compute(),
            }
        }
        ["compute", "v2.1", "os-services"] => {
            let services: Vec<Value> = cloud
                .services
                .iter()
                .filter(|service| {
                    query
                        .get("host")
                        .is_none_or(|host| service["host"] == json!(host))
                })
                .cloned()
                .collect();
            reply(StatusCode::OK, json!({"services": services}))
        }
        ["compute", "v2.1", "os-hypervisors", "detail"] => list_hypervisors(&cloud, &query),
        ["placement", "resource_providers"] => {
            let providers: Vec<Value> = cloud
                .providers
                .iter()
                .filter(|provider| {
                    query
                        .get("name")
                        .is_none_or(|name| provider["name"] == json!(name))
                })
                .cloned()
                .collect();
            reply(StatusCode::OK, json!({"resource_providers": providers}))
        }
        ["placement", "resource_providers", uuid, "inventories"] => {
            match cloud.inventories.get(*uuid) {
                Some(inventories) => reply(
                    StatusCode::OK,
                    json!({"inventories": inventories, "resource_provider_generation": 42}),
                ),
                None => reply(StatusCode::NOT_FOUND, fixture("placement_error_404.json")),
            }
        }
        ["placement", "resource_providers", uuid, "usages"] => match cloud.usages.get(*uuid) {
            Some(usages) => reply(
                StatusCode::OK,
                json!({"usages": usages, "resource_provider_generation": 42}),
            ),
            None => reply(StatusCode::NOT_FOUND, fixture("placement_error_404.json")),
        },
        ["image", "v2", "images", id] => match cloud.images.get(*id) {
            Some(image) => reply(StatusCode::OK, image.clone()),
            None => reply(StatusCode::NOT_FOUND, fixture("glance_error_404.json")),
        },
        ["network", "v2.0", "ports"] => {
            let device = query.get("device_id").cloned().unwrap_or_default();
            let ports = cloud.ports.get(&device).cloned().unwrap_or_default();
            reply(StatusCode::OK, json!({"ports": ports}))
        }
        ["volume", "v3", _project, "volumes", id] => match cloud.volumes.get(*id) {
            Some(volume) => reply(StatusCode::OK, json!({"volume": volume})),
            None => reply(
                StatusCode::NOT_FOUND,
                json!({"itemNotFound": {"code": 404, "message": format!("Volume {id} could not be found.")}}),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"itemNotFound": {"code": 404, "message": format!("no route for {path}")}}),
        ),
    }
}

/// Lists `os-hypervisors/detail` filtered by `hypervisor_hostname_pattern`
/// as Nova does: a substring match, and 404 when nothing matches.
fn list_hypervisors(cloud: &Cloud, query: &BTreeMap<String, String>) -> Response {
    let pattern = query.get("hypervisor_hostname_pattern");
    let hypervisors: Vec<Value> = cloud
        .hypervisors
        .iter()
        .filter(|hypervisor| {
            pattern.is_none_or(|pattern| {
                hypervisor["hypervisor_hostname"]
                    .as_str()
                    .is_some_and(|name| name.contains(pattern.as_str()))
            })
        })
        .cloned()
        .collect();
    if let (Some(pattern), true) = (pattern, hypervisors.is_empty()) {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"itemNotFound": {"code": 404, "message": format!("No hypervisor matching '{pattern}' could be found.")}}),
        );
    }
    reply(StatusCode::OK, json!({"hypervisors": hypervisors}))
}

/// Returns a 403 in the error format of the service that `path` belongs to.
fn forbidden(path: &str) -> Response {
    let body = if path.starts_with("/placement/") {
        json!({"errors": [{
            "status": 403,
            "title": "Forbidden",
            "detail": "Access was denied to this resource.\n\n Policy does not allow placement:resource_providers:list to be performed.  ",
            "code": "placement.undefined_code",
            "request_id": "req-00000000-0000-4000-8000-000000000000"
        }]})
    } else {
        fixture("nova_error_forbidden.json")
    };
    reply(StatusCode::FORBIDDEN, body)
}

fn not_found_compute() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        fixture("nova_error_item_not_found.json"),
    )
}

/// Issues `token-N` with the sample's catalog pointed at this server.
fn authenticate(cloud: &mut Cloud, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    cloud.auth_bodies.push(request.clone());
    let password = &request["auth"]["identity"]["password"]["user"]["password"];
    if password == "wrong" {
        return reply(StatusCode::UNAUTHORIZED, fixture("keystone_error_401.json"));
    }
    let token = format!("token-{}", cloud.issued.len() + 1);
    cloud.issued.push(token.clone());
    let expires_at =
        time::OffsetDateTime::now_utc() + time::Duration::seconds(cloud.token_lifetime_seconds);
    let expires_at = expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let base = &cloud.base;
    let text = fixture("keystone_post_auth_tokens_password_response.json")
        .to_string()
        .replace(
            "https://keystone.example.net:5000",
            &format!("{base}/identity"),
        )
        .replace("https://nova.example.net:8774", &format!("{base}/compute"))
        .replace("https://glance.example.net:9292", &format!("{base}/image"))
        .replace(
            "https://neutron.example.net:9696",
            &format!("{base}/network"),
        )
        .replace("https://cinder.example.net:8776", &format!("{base}/volume"))
        .replace(
            "https://placement.example.net:8778",
            &format!("{base}/placement"),
        );
    let mut document: Value = serde_json::from_str(&text).expect("catalog");
    document["token"]["expires_at"] = json!(expires_at);
    if let Some(catalog) = document["token"]["catalog"].as_array_mut() {
        catalog.retain(|entry| {
            !cloud
                .catalog_without
                .iter()
                .any(|service_type| entry["type"] == json!(service_type))
        });
    }
    let mut response = reply(StatusCode::CREATED, document);
    response
        .headers_mut()
        .insert("x-subject-token", token.parse().expect("header"));
    response
}

/// `PUT os-services/{id}` at 2.53 or later: sets `status` and
/// `disabled_reason`, as Nova does (enabling clears the reason).
fn update_service(cloud: &mut Cloud, id: &str, update: &Value) -> Response {
    let Some(service) = cloud
        .services
        .iter_mut()
        .find(|service| service["id"] == json!(id))
    else {
        return not_found_compute();
    };
    match update["status"].as_str() {
        Some("disabled") => {
            service["status"] = json!("disabled");
            service["disabled_reason"] = update["disabled_reason"].clone();
        }
        Some("enabled") => {
            service["status"] = json!("enabled");
            service["disabled_reason"] = Value::Null;
        }
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"badRequest": {"code": 400, "message": "Invalid input for field/attribute status."}}),
            )
        }
    }
    reply(StatusCode::OK, json!({"service": service.clone()}))
}

/// `servers/detail` with the `name` (an anchored, escaped regex), `status`,
/// repeated `task_state` and `limit`/`marker` filters, and a `next` link
/// while more remain.
fn list_servers(
    cloud: &Cloud,
    query: &BTreeMap<String, String>,
    task_states: &[String],
) -> Response {
    let name = query.get("name").map(|pattern| {
        pattern
            .trim_start_matches('^')
            .trim_end_matches('$')
            .replace('\\', "")
    });
    let mut matching: Vec<&Value> = cloud
        .servers
        .values()
        .filter(|server| {
            name.as_ref()
                .is_none_or(|name| server["name"] == json!(name))
        })
        .filter(|server| {
            task_states.is_empty()
                || server["OS-EXT-STS:task_state"]
                    .as_str()
                    .is_some_and(|state| task_states.iter().any(|wanted| wanted == state))
        })
        .filter(|server| {
            query.get("status").is_none_or(|status| {
                server["status"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(status))
            })
        })
        .collect();
    if let Some(marker) = query.get("marker") {
        let position = matching
            .iter()
            .position(|server| server["id"] == json!(marker));
        match position {
            Some(position) => matching = matching.split_off(position + 1),
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"badRequest": {"code": 400, "message": format!("marker [{marker}] not found")}}),
                )
            }
        }
    }
    let limit = query
        .get("limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(if cloud.page_size == 0 {
            usize::MAX
        } else {
            cloud.page_size
        });
    let more = matching.len() > limit;
    let page: Vec<Value> = matching.into_iter().take(limit).cloned().collect();
    let mut body = json!({"servers": page});
    if more {
        let last = page.last().expect("a page")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let mut next_query: Vec<String> = query
            .iter()
            .filter(|(key, _)| *key != "marker" && *key != "limit" && *key != "task_state")
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        next_query.extend(
            task_states
                .iter()
                .map(|state| format!("task_state={state}")),
        );
        next_query.push(format!("limit={limit}"));
        next_query.push(format!("marker={last}"));
        // The link names another host: the client must keep the catalog's.
        body["servers_links"] = json!([{
            "rel": "next",
            "href": format!("https://nova.example.net:8774/v2.1/servers/detail?{}", next_query.join("&")),
        }]);
    }
    reply(StatusCode::OK, body)
}
