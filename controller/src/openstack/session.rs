//! The authenticated HTTP session: token, catalog, headers, timeouts,
//! pagination and error decoding.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OnceCell};

use super::config::{AuthType, CloudConfig};
use super::error::{error_message, ApiError};
use super::secret::Secret;
use super::Service;

/// Compute microversion the client asks for: it still has the hypervisor
/// fields diagnosis reads and every server, action and event field since
/// 2.84 (event `details`). A cloud whose maximum is lower gets its maximum.
pub const COMPUTE_MICROVERSION: (u32, u32) = (2, 88);

/// Placement microversion the client sends. The calls it makes are
/// unchanged since 1.0; 1.23 adds the `code` field to error bodies. A
/// Placement whose maximum is below 1.23 returns 406.
pub const PLACEMENT_MICROVERSION: &str = "1.23";

/// Request timeout when the cloud sets no `api_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A token is renewed this long before Keystone's `expires_at`.
const RENEW_BEFORE_EXPIRY: time::Duration = time::Duration::minutes(5);

/// Upper bound on pages followed in one listing, against a service that
/// keeps returning a `next` link.
const MAX_PAGES: usize = 10_000;

/// An authenticated client of one cloud, shared by reference. Every call
/// reuses the token until it nears expiry or a service returns 401.
pub struct Client {
    http: reqwest::Client,
    config: CloudConfig,
    timeout: Duration,
    session: Mutex<Option<Session>>,
    compute_version: OnceCell<String>,
}

struct Session {
    token: Secret,
    /// When to authenticate again: [`RENEW_BEFORE_EXPIRY`] before Keystone's
    /// `expires_at`, or halfway through a shorter token's life.
    renew_at: Option<OffsetDateTime>,
    catalog: Vec<CatalogEntry>,
    /// False for a configured token used without Keystone: it cannot be
    /// renewed, so a 401 is final.
    renewable: bool,
}

#[derive(Clone, Debug, Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize)]
struct CatalogEndpoint {
    interface: String,
    #[serde(default)]
    region_id: Option<String>,
    #[serde(default)]
    region: Option<String>,
    url: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenFields,
}

#[derive(Deserialize)]
struct TokenFields {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

/// Reads the client certificate (and its key, when in a file of its own)
/// for clouds that authenticate clients by TLS.
fn client_identity(config: &CloudConfig) -> Result<Option<reqwest::Identity>, ApiError> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|err| {
            ApiError::Tls(format!("cannot read the {what} {}: {err}", path.display()))
        })
    };
    let cert_path = match (&config.cert, &config.key) {
        (Some(cert), _) => cert,
        (None, Some(key)) => {
            return Err(ApiError::Tls(format!(
                "a client key is set ({}) but no client certificate: set cert or OS_CERT too",
                key.display()
            )))
        }
        (None, None) => return Ok(None),
    };
    let mut pem = read(cert_path, "client certificate (cert or OS_CERT)")?;
    if let Some(key_path) = &config.key {
        pem.push(b'\n');
        pem.extend(read(key_path, "client key (key or OS_KEY)")?);
    }
    // The error names the files only: the key's bytes never reach a message.
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|_| {
        ApiError::Tls(format!(
            "the client certificate {}{} is not a PEM certificate with its private key",
            cert_path.display(),
            config
                .key
                .as_ref()
                .map(|key| format!(" with key {}", key.display()))
                .unwrap_or_default()
        ))
    })
}

impl Client {
    /// Builds a client for `config`. `timeout` overrides the cloud's
    /// `api_timeout` for every request.
    pub fn new(config: CloudConfig, timeout: Option<Duration>) -> Result<Client, ApiError> {
        let timeout = timeout.or(config.api_timeout).unwrap_or(DEFAULT_TIMEOUT);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("novamedic/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if !config.verify {
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(path) = &config.cacert {
            let pem = std::fs::read(path).map_err(|err| {
                ApiError::Tls(format!(
                    "cannot read the CA bundle {} (cacert or OS_CACERT): {err}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                ApiError::Tls(format!(
                    "the CA bundle {} is not PEM certificates: {err}",
                    path.display()
                ))
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = client_identity(&config)? {
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|err| ApiError::Tls(crate::error_chain(&err)))?;
        Ok(Client {
            http,
            config,
            timeout,
            session: Mutex::new(None),
            compute_version: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// Returns the compute microversion in use, once the first compute call
    /// chose it.
    pub fn compute_microversion(&self) -> Option<&str> {
        self.compute_version.get().map(String::as_str)
    }

    /// GETs `path` below `service`'s endpoint and decodes the JSON body.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.endpoint(service).await?);
        let (_, body) = self.get_url(service, &url, query).await?;
        decode(service, path, &body)
    }

    /// GETs `path` like [`Client::get`] and also returns the response's
    /// `Date` header, the service's own clock, when it has a valid one.
    pub async fn get_dated<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(T, Option<OffsetDateTime>), ApiError> {
        let url = format!("{}{path}", self.endpoint(service).await?);
        let (headers, body) = self.get_url(service, &url, query).await?;
        Ok((decode(service, path, &body)?, date_header(&headers)))
    }

    /// PUTs the JSON `body` to `path` below `service`'s endpoint and decodes
    /// the JSON response.
    pub async fn put<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        body: &Value,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.endpoint(service).await?);
        let (_, response) = self
            .send(Method::PUT, service, &url, &[], Some(body))
            .await?;
        serde_json::from_str(&response).map_err(|err| ApiError::Decode {
            service,
            method: "PUT",
            path: path.to_string(),
            cause: err.to_string(),
        })
    }

    /// GETs every page of a collection: the items under `items_key`,
    /// following the `rel: next` link under `links_key` until it is absent.
    /// Only the link's query string is used, on the catalog's URL, so the
    /// token never goes to a host the catalog did not name.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        query: &[(&str, String)],
        items_key: &str,
        links_key: &str,
    ) -> Result<Vec<T>, ApiError> {
        let base = format!("{}{path}", self.endpoint(service).await?);
        let mut items = Vec::new();
        let mut next_query: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = match &next_query {
                None => self.get_url(service, &base, query).await?.1,
                Some(raw) => {
                    self.get_url(service, &format!("{base}?{raw}"), &[])
                        .await?
                        .1
                }
            };
            let mut page: Value = decode(service, path, &body)?;
            let page_items = page
                .get_mut(items_key)
                .map(Value::take)
                .unwrap_or(Value::Null);
            let page_items: Vec<T> =
                serde_json::from_value(page_items).map_err(|err| ApiError::Decode {
                    service,
                    method: "GET",
                    path: path.to_string(),
                    cause: format!("{items_key}: {err}"),
                })?;
            let empty = page_items.is_empty();
            items.extend(page_items);
            let next = next_link_query(&page, links_key);
            if empty || next.is_none() || next == next_query {
                return Ok(items);
            }
            next_query = next;
        }
        tracing::warn!(%service, path, pages = MAX_PAGES, "stopped following next links");
        Ok(items)
    }

    /// Returns `service`'s endpoint URL without a trailing slash: the
    /// override when the cloud sets one, else the catalog entry for the
    /// cloud's interface and region.
    pub async fn endpoint(&self, service: Service) -> Result<String, ApiError> {
        if let Some(url) = self.config.endpoint_overrides.get(service.service_type()) {
            return Ok(url.trim_end_matches('/').to_string());
        }
        if service == Service::Identity {
            if let Some(url) = &self.config.auth_url {
                return Ok(url.trim_end_matches('/').to_string());
            }
        }
        let guard = self.current_session().await?;
        let session = guard.as_ref().expect("session is set");
        let interface = self.config.interface.as_str();
        let region = self.config.region_name.as_deref();
        for service_type in service.catalog_types() {
            let endpoints = session
                .catalog
                .iter()
                .filter(|entry| entry.service_type == *service_type)
                .flat_map(|entry| entry.endpoints.iter());
            for endpoint in endpoints {
                let endpoint_region = endpoint.region_id.as_deref().or(endpoint.region.as_deref());
                let region_matches = region.is_none() || endpoint_region == region;
                if endpoint.interface == interface && region_matches {
                    return Ok(endpoint.url.trim_end_matches('/').to_string());
                }
            }
        }
        Err(ApiError::NoEndpoint {
            service,
            interface: interface.to_string(),
            region: region.map(str::to_string),
            override_key: format!(
                "{}_endpoint_override",
                service.service_type().replace('-', "_")
            ),
        })
    }

    /// Sends one GET with the token and the service's headers.
    async fn get_url(
        &self,
        service: Service,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<(HeaderMap, String), ApiError> {
        self.send(Method::GET, service, url, query, None).await
    }

    /// Sends one request with the token and the service's headers. A 401 on
    /// a Keystone token renews the token and retries once.
    async fn send(
        &self,
        method: Method,
        service: Service,
        url: &str,
        query: &[(&str, String)],
        json_body: Option<&Value>,
    ) -> Result<(HeaderMap, String), ApiError> {
        let method_name = method_name(&method);
        let path = path_of(url);
        let mut renewed = false;
        loop {
            let (token, renewable) = {
                let guard = self.current_session().await?;
                let session = guard.as_ref().expect("session is set");
                (session.token.clone(), session.renewable)
            };
            let mut request = self
                .http
                .request(method.clone(), url)
                .timeout(self.timeout)
                .header(ACCEPT, "application/json")
                .header("X-Auth-Token", secret_header(&token)?)
                .query(query);
            if let Some(json_body) = json_body {
                request = request.json(json_body);
            }
            if service == Service::Compute {
                let version = self.negotiate_compute_version(&token, url).await;
                request = request.header("OpenStack-API-Version", format!("compute {version}"));
            }
            if service == Service::Placement {
                request = request.header(
                    "OpenStack-API-Version",
                    format!("placement {PLACEMENT_MICROVERSION}"),
                );
            }
            let response = request
                .send()
                .await
                .map_err(|err| self.transport_error(service, method_name, &path, err))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .text()
                .await
                .map_err(|err| self.transport_error(service, method_name, &path, err))?;
            let request_id = request_id(&headers);
            tracing::debug!(%service, method = method_name, path, status = status.as_u16(), request_id, "OpenStack call");
            if status == StatusCode::UNAUTHORIZED && renewable && !renewed {
                tracing::info!(%service, path, "token rejected; authenticating again");
                self.forget_token(&token).await;
                renewed = true;
                continue;
            }
            if !status.is_success() {
                return Err(ApiError::Status {
                    service,
                    method: method_name,
                    path,
                    status: status.as_u16(),
                    message: error_message(service, &body),
                    request_id,
                });
            }
            return Ok((headers, body));
        }
    }

    /// Returns the locked session, authenticating first when there is none
    /// or its renewal time has passed.
    async fn current_session(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Session>>, ApiError> {
        let mut guard = self.session.lock().await;
        let fresh = guard
            .as_ref()
            .is_some_and(|session| match session.renew_at {
                Some(renew_at) => OffsetDateTime::now_utc() < renew_at,
                None => true,
            });
        if !fresh {
            *guard = Some(self.authenticate().await?);
        }
        Ok(guard)
    }

    /// Drops the cached token if it is still `rejected`, so the next call
    /// authenticates; a token another call already renewed is kept.
    async fn forget_token(&self, rejected: &Secret) {
        let mut guard = self.session.lock().await;
        if guard
            .as_ref()
            .is_some_and(|session| &session.token == rejected)
        {
            *guard = None;
        }
    }

    async fn authenticate(&self) -> Result<Session, ApiError> {
        let config = &self.config;
        let Some(auth_url) = &config.auth_url else {
            let token = config.token.clone().unwrap_or_default();
            return Ok(Session {
                token,
                renew_at: None,
                catalog: Vec::new(),
                renewable: false,
            });
        };
        let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
        let path = path_of(&url);
        let response = self
            .http
            .post(&url)
            .timeout(self.timeout)
            .header(ACCEPT, "application/json")
            .json(&auth_request(config))
            .send()
            .await
            .map_err(|err| self.transport_error(Service::Identity, "POST", &path, err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(|err| self.transport_error(Service::Identity, "POST", &path, err))?;
        if !status.is_success() {
            return Err(ApiError::Status {
                service: Service::Identity,
                method: "POST",
                path,
                status: status.as_u16(),
                message: error_message(Service::Identity, &body),
                request_id: request_id(&headers),
            });
        }
        let token = headers
            .get("X-Subject-Token")
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(Secret::new)
            .ok_or_else(|| ApiError::Decode {
                service: Service::Identity,
                method: "POST",
                path: path.clone(),
                cause: "no X-Subject-Token header".to_string(),
            })?;
        let fields: TokenBody = decode(Service::Identity, &path, &body)?;
        let issued_at = OffsetDateTime::now_utc();
        let renew_at = fields
            .token
            .expires_at
            .as_deref()
            .and_then(|text| {
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|expires_at| {
                let margin = RENEW_BEFORE_EXPIRY.min((expires_at - issued_at) / 2);
                expires_at - margin.max(time::Duration::ZERO)
            });
        tracing::info!(
            cloud = config.name,
            expires_at = fields.token.expires_at,
            "authenticated with Keystone"
        );
        Ok(Session {
            token,
            renew_at,
            catalog: fields.token.catalog,
            renewable: true,
        })
    }

    /// Chooses the compute microversion once: [`COMPUTE_MICROVERSION`], or
    /// the cloud's maximum from the version document at `GET {compute_url}`
    /// when that is lower. Without a readable version document the client
    /// keeps the pin, and Nova returns 406 if it is out of range.
    async fn negotiate_compute_version(&self, token: &Secret, request_url: &str) -> String {
        let wanted = format!("{}.{}", COMPUTE_MICROVERSION.0, COMPUTE_MICROVERSION.1);
        let root = match self.endpoint(Service::Compute).await {
            Ok(root) => root,
            Err(_) => return wanted,
        };
        if request_url.trim_end_matches('/') == root {
            return self.compute_version.get().cloned().unwrap_or(wanted);
        }
        self.compute_version
            .get_or_init(|| async {
                let Ok(header) = secret_header(token) else {
                    return wanted;
                };
                let response = self
                    .http
                    .get(format!("{root}/"))
                    .timeout(self.timeout)
                    .header(ACCEPT, "application/json")
                    .header("X-Auth-Token", header)
                    .send()
                    .await;
                let document = match response {
                    Ok(response) if response.status().is_success() => {
                        response.json::<Value>().await.ok()
                    }
                    _ => None,
                };
                let chosen = document
                    .as_ref()
                    .and_then(|document| document.get("version"))
                    .and_then(|version| choose_version(version, COMPUTE_MICROVERSION))
                    .unwrap_or(wanted);
                tracing::debug!(microversion = chosen, "compute microversion chosen");
                chosen
            })
            .await
            .clone()
    }

    fn transport_error(
        &self,
        service: Service,
        method: &'static str,
        path: &str,
        err: reqwest::Error,
    ) -> ApiError {
        if err.is_timeout() {
            return ApiError::TimedOut {
                service,
                method,
                path: path.to_string(),
                timeout_seconds: self.timeout.as_secs().max(1),
            };
        }
        ApiError::Unreachable {
            service,
            method,
            path: path.to_string(),
            cause: crate::error_chain(&err.without_url()),
        }
    }
}

/// Picks the microversion for a version document `{"version": "2.100",
/// "min_version": "2.1"}`: `wanted` when the range contains it, else the
/// range's nearer end.
fn choose_version(version: &Value, wanted: (u32, u32)) -> Option<String> {
    let max = parse_version(version.get("version")?.as_str()?)?;
    let min = version
        .get("min_version")
        .and_then(Value::as_str)
        .and_then(parse_version)
        .unwrap_or((2, 1));
    let chosen = wanted.min(max).max(min);
    Some(format!("{}.{}", chosen.0, chosen.1))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Builds the body of `POST /v3/auth/tokens` for the cloud's auth type.
fn auth_request(config: &CloudConfig) -> Value {
    let identity = match config.auth_type {
        AuthType::Password => json!({
            "methods": ["password"],
            "password": {"user": user(config, Some(config.password.clone().unwrap_or_default()))},
        }),
        AuthType::ApplicationCredential => {
            let secret = config
                .application_credential_secret
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            let credential = match &config.application_credential_id {
                Some(id) => json!({"id": id, "secret": secret}),
                None => json!({
                    "name": config.application_credential_name,
                    "secret": secret,
                    "user": user(config, None),
                }),
            };
            json!({"methods": ["application_credential"], "application_credential": credential})
        }
        AuthType::Token => json!({
            "methods": ["token"],
            "token": {"id": config.token.as_ref().map(Secret::expose).unwrap_or_default()},
        }),
    };
    let mut auth = json!({"identity": identity});
    if config.auth_type != AuthType::ApplicationCredential {
        if let Some(scope) = project_scope(config) {
            auth["scope"] = scope;
        }
    }
    json!({"auth": auth})
}

fn user(config: &CloudConfig, password: Option<Secret>) -> Value {
    let mut user = match &config.user_id {
        Some(id) => json!({"id": id}),
        None => json!({
            "name": config.username,
            "domain": domain(config.user_domain_id.as_ref(), config.user_domain_name.as_ref()),
        }),
    };
    if let Some(password) = password {
        user["password"] = Value::String(password.expose().to_string());
    }
    user
}

fn project_scope(config: &CloudConfig) -> Option<Value> {
    if let Some(id) = &config.project_id {
        return Some(json!({"project": {"id": id}}));
    }
    let name = config.project_name.as_ref()?;
    Some(json!({"project": {
        "name": name,
        "domain": domain(config.project_domain_id.as_ref(), config.project_domain_name.as_ref()),
    }}))
}

/// Builds a domain reference by id, else by name, else Keystone's
/// `default` domain.
fn domain(id: Option<&String>, name: Option<&String>) -> Value {
    match (id, name) {
        (Some(id), _) => json!({"id": id}),
        (None, Some(name)) => json!({"name": name}),
        (None, None) => json!({"id": "default"}),
    }
}

fn secret_header(token: &Secret) -> Result<HeaderValue, ApiError> {
    let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
        ApiError::Tls("the token contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Returns the static name of the methods the client sends, for errors.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::PUT => "PUT",
        Method::POST => "POST",
        _ => "GET",
    }
}

/// Parses an HTTP `Date` header (RFC 7231 IMF-fixdate, always GMT).
fn date_header(headers: &HeaderMap) -> Option<OffsetDateTime> {
    let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822).ok()
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_string))
}

/// Returns the path of a URL, for messages: no scheme, host or query.
fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|url| url.path().to_string())
        .unwrap_or_else(|_| url.to_string())
}

fn decode<T: DeserializeOwned>(service: Service, path: &str, body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|err| ApiError::Decode {
        service,
        method: "GET",
        path: path.to_string(),
        cause: err.to_string(),
    })
}

/// Returns the query string of the `rel: next` link in `page[links_key]`.
fn next_link_query(page: &Value, links_key: &str) -> Option<String> {
    let href = page
        .get(links_key)?
        .as_array()?
        .iter()
        .find(|link| link.get("rel").and_then(Value::as_str) == Some("next"))?
        .get("href")?
        .as_str()?;
    let query = match reqwest::Url::parse(href) {
        Ok(url) => url.query()?.to_string(),
        Err(_) => href.split_once('?')?.1.to_string(),
    };
    (!query.is_empty()).then_some(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_choice_within_range() {
        let cases = [
            (json!({"version": "2.100", "min_version": "2.1"}), "2.88"),
            (json!({"version": "2.60", "min_version": "2.1"}), "2.60"),
            (json!({"version": "2.53"}), "2.53"),
            (json!({"version": "3.5", "min_version": "3.0"}), "3.0"),
        ];
        for (document, expected) in cases {
            assert_eq!(
                choose_version(&document, COMPUTE_MICROVERSION).as_deref(),
                Some(expected),
                "{document}"
            );
        }
        assert_eq!(
            choose_version(&json!({"version": ""}), COMPUTE_MICROVERSION),
            None
        );
    }

    #[test]
    fn date_header_is_parsed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::DATE,
            HeaderValue::from_static("Sat, 05 Dec 2026 02:46:09 GMT"),
        );
        let date = date_header(&headers).expect("a valid Date header");
        assert_eq!(date.unix_timestamp(), 1_796_438_769);
        assert_eq!(date_header(&HeaderMap::new()), None);
    }

    #[test]
    fn next_link_keeps_only_query() {
        let page = json!({"servers_links": [
            {"rel": "next", "href": "https://elsewhere.example.net/v2.1/servers/detail?limit=2&marker=abc"}
        ]});
        assert_eq!(
            next_link_query(&page, "servers_links").as_deref(),
            Some("limit=2&marker=abc")
        );
        assert_eq!(next_link_query(&json!({}), "servers_links"), None);
    }

    #[test]
    fn password_request_scoped_by_name() {
        let config = CloudConfig {
            name: "t".into(),
            auth_type: AuthType::Password,
            auth_url: Some("http://127.0.0.1/v3".into()),
            username: Some("oncall-bot".into()),
            user_id: None,
            user_domain_name: Some("Default".into()),
            user_domain_id: None,
            project_name: Some("admin".into()),
            project_id: None,
            project_domain_name: Some("Default".into()),
            project_domain_id: None,
            password: Some(Secret::new("pw")),
            application_credential_id: None,
            application_credential_name: None,
            application_credential_secret: None,
            token: None,
            region_name: None,
            interface: "public".into(),
            cacert: None,
            cert: None,
            key: None,
            verify: true,
            api_timeout: None,
            endpoint_overrides: Default::default(),
            sources: Vec::new(),
        };
        let body = auth_request(&config);
        assert_eq!(
            body,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "oncall-bot", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}
            }})
        );
    }
}
