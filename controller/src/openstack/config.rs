//! Credentials, loaded the way the `openstack` command line loads them.
//!
//! A cloud named by `--os-cloud` or `OS_CLOUD` comes from the first
//! `clouds.yaml` found, with the first `secure.yaml` found deep-merged over
//! it. `OS_*` variables override its keys, and command-line flags override
//! both. With no cloud named, the `OS_*` variables alone make the cloud.
//! When neither is given and `clouds.yaml` contains exactly one cloud, that one
//! is used, as openstacksdk does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::secret::Secret;

/// The variables of a process, passed in so tests need not change the real
/// environment.
pub type Environment = BTreeMap<String, String>;

/// Returns the process's environment as an [`Environment`], skipping
/// variables whose names or values are not UTF-8.
pub fn process_environment() -> Environment {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// The authentication method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    /// Keystone v3 password, project-scoped.
    Password,
    /// Keystone v3 application credential; the scope is the credential's.
    ApplicationCredential,
    /// A token given in advance. With an `auth_url`, Keystone exchanges it
    /// for a scoped token with a catalog; without one, it is sent as is to
    /// the endpoint overrides (clouds without Keystone, such as test
    /// deployments with Nova's `noauth2`, which expects `user:project`).
    Token,
}

/// A fully merged cloud: what the client needs to authenticate and find
/// endpoints.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml, or `envvars` for one built from
    /// `OS_*` variables.
    pub name: String,
    pub auth_type: AuthType,
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub user_domain_name: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub password: Option<Secret>,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub application_credential_secret: Option<Secret>,
    pub token: Option<Secret>,
    pub region_name: Option<String>,
    /// Endpoint interface: `public` (the default), `internal` or `admin`.
    pub interface: String,
    /// CA bundle for TLS, unless `verify` is false.
    pub cacert: Option<PathBuf>,
    /// Client certificate for clouds that ask for one (`cert`, `OS_CERT`),
    /// PEM. It may hold the private key too.
    pub cert: Option<PathBuf>,
    /// Private key of `cert` when it sits in its own file (`key`, `OS_KEY`).
    pub key: Option<PathBuf>,
    /// False for `verify: false` or `--insecure`: TLS certificates are not
    /// checked at all.
    pub verify: bool,
    /// Timeout of each request (`api_timeout`).
    pub api_timeout: Option<Duration>,
    /// Endpoint URLs by service type (`compute_endpoint_override`, ...),
    /// used instead of the catalog.
    pub endpoint_overrides: BTreeMap<String, String>,
    /// The files the cloud was read from, for logs.
    pub sources: Vec<PathBuf>,
}

/// Options given on the command line; each overrides the same key from the
/// files and the environment. Keys are clouds.yaml keys, `auth` keys without
/// the `auth.` prefix (`username`, `project_name`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub cloud: Option<String>,
    pub values: BTreeMap<String, String>,
    /// The setting that names the cloud, for the fix an error suggests.
    pub named_by: CloudSetting,
}

/// The setting that names the cloud to load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloudSetting {
    /// `--os-cloud` or `OS_CLOUD`, as for `novamedic diagnose`.
    #[default]
    CommandLine,
    /// `cloud` in the `[openstack]` table of the controller's configuration
    /// file, or `OS_CLOUD` in the controller's environment.
    ControllerConfig,
}

impl CloudSetting {
    /// Names the setting in an error's fix.
    fn name(self) -> &'static str {
        match self {
            CloudSetting::CommandLine => "--os-cloud or OS_CLOUD",
            CloudSetting::ControllerConfig => {
                "`cloud = \"NAME\"` in the [openstack] table of controller.toml"
            }
        }
    }

    /// Names the way to give credentials without clouds.yaml.
    fn environment(self) -> &'static str {
        match self {
            CloudSetting::CommandLine => {
                "source an openrc file that sets OS_AUTH_URL and the other OS_* variables"
            }
            CloudSetting::ControllerConfig => {
                "set OS_AUTH_URL and the other OS_* variables in the controller's environment"
            }
        }
    }
}

/// A configuration problem, with the key or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "cloud {name:?} is not in {files}; clouds there: {available}; check {}",
        named_by.name()
    )]
    UnknownCloud {
        name: String,
        files: String,
        available: String,
        named_by: CloudSetting,
    },
    #[error(
        "no OpenStack credentials: set {} to a cloud in clouds.yaml, or {}",
        named_by.name(),
        named_by.environment()
    )]
    NoCloud { named_by: CloudSetting },
    #[error(
        "several clouds are defined in {files} ({available}) and none is selected; \
         set {} to one of them",
        named_by.name()
    )]
    SeveralClouds {
        files: String,
        available: String,
        named_by: CloudSetting,
    },
    #[error("{key} is missing for auth type {auth_type}: {fix}")]
    Missing {
        key: &'static str,
        auth_type: &'static str,
        fix: &'static str,
    },
    #[error("invalid {key} {value:?}: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "the environment defines a cloud named {name:?} (OS_CLOUD_NAME or the \
         default envvars), and so does clouds.yaml; rename one of them"
    )]
    EnvironmentCloudClash { name: String },
}

/// The clouds.yaml and secure.yaml candidates, in search order.
#[derive(Clone, Debug, Default)]
pub struct SearchPaths {
    pub clouds: Vec<PathBuf>,
    pub secure: Vec<PathBuf>,
}

impl SearchPaths {
    /// Builds the standard search order for `env`: `OS_CLIENT_CONFIG_FILE`
    /// (or `OS_CLIENT_SECURE_FILE`) first, then the current directory,
    /// `$XDG_CONFIG_HOME/openstack`, `~/.config/openstack`, each
    /// `$XDG_CONFIG_DIRS` entry plus `/openstack` (default `/etc/xdg`), and
    /// `/etc/openstack`; in each, the `.yaml`, `.yml` and `.json` names.
    pub fn standard(env: &Environment, current_dir: &Path) -> SearchPaths {
        let mut dirs = vec![current_dir.to_path_buf()];
        let home = env.get("HOME").filter(|home| !home.is_empty());
        match env.get("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
            Some(dir) => dirs.push(Path::new(dir).join("openstack")),
            None => {
                if let Some(home) = home {
                    dirs.push(Path::new(home).join(".config/openstack"));
                }
            }
        }
        if let Some(home) = home {
            dirs.push(Path::new(home).join(".config/openstack"));
        }
        let xdg_dirs = env
            .get("XDG_CONFIG_DIRS")
            .filter(|dirs| !dirs.is_empty())
            .map_or("/etc/xdg", String::as_str);
        for dir in xdg_dirs.split(':').filter(|dir| !dir.is_empty()) {
            dirs.push(Path::new(dir).join("openstack"));
        }
        dirs.push(PathBuf::from("/etc/openstack"));
        dirs.dedup();

        let candidates = |stem: &str, first: Option<&String>| -> Vec<PathBuf> {
            let mut files: Vec<PathBuf> = first.map(PathBuf::from).into_iter().collect();
            for dir in &dirs {
                for ext in ["yaml", "yml", "json"] {
                    files.push(dir.join(format!("{stem}.{ext}")));
                }
            }
            files
        };
        SearchPaths {
            clouds: candidates("clouds", env.get("OS_CLIENT_CONFIG_FILE")),
            secure: candidates("secure", env.get("OS_CLIENT_SECURE_FILE")),
        }
    }
}

/// Variables that select a cloud or a file rather than setting a key.
const SELECTOR_VARIABLES: [&str; 5] = [
    "OS_CLOUD",
    "OS_REGION_NAME",
    "OS_CLIENT_CONFIG_FILE",
    "OS_CLIENT_SECURE_FILE",
    "OS_CLOUD_NAME",
];

/// Keys that live under `auth:` in clouds.yaml.
const AUTH_KEYS: [&str; 19] = [
    "auth_url",
    "username",
    "user_id",
    "password",
    "user_domain_name",
    "user_domain_id",
    "project_name",
    "project_id",
    "project_domain_name",
    "project_domain_id",
    "domain_name",
    "domain_id",
    "default_domain_id",
    "default_domain_name",
    "system_scope",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
    "token",
];

/// Loads the cloud selected by `overrides.cloud`, else `OS_CLOUD`, else the
/// environment, else the only cloud in clouds.yaml.
pub fn load(
    env: &Environment,
    paths: &SearchPaths,
    overrides: &Overrides,
) -> Result<CloudConfig, ConfigError> {
    let clouds_file = first_existing(&paths.clouds);
    let secure_file = first_existing(&paths.secure);
    let mut files = Value::Object(Map::new());
    let mut sources = Vec::new();
    if let Some(path) = &clouds_file {
        files = read_document(path)?;
        sources.push(path.clone());
    }
    if let Some(path) = &secure_file {
        deep_merge(&mut files, read_document(path)?);
        sources.push(path.clone());
    }
    let file_clouds = files
        .get("clouds")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();

    let env_layer = environment_layer(env);
    let env_cloud_name = env
        .get("OS_CLOUD_NAME")
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| "envvars".to_string());
    if env_layer.is_some() && file_clouds.contains_key(&env_cloud_name) {
        return Err(ConfigError::EnvironmentCloudClash {
            name: env_cloud_name,
        });
    }
    let named = overrides
        .cloud
        .clone()
        .or_else(|| env.get("OS_CLOUD").cloned())
        .filter(|name| !name.is_empty());

    let (name, mut cloud) = match (named, env_layer.clone()) {
        (Some(name), _) => {
            let Some(cloud) = file_clouds.get(&name) else {
                return Err(ConfigError::UnknownCloud {
                    files: if sources.is_empty() {
                        "no clouds.yaml (none found in the search path)".to_string()
                    } else {
                        describe_paths(&sources)
                    },
                    available: describe_names(file_clouds.keys()),
                    name,
                    named_by: overrides.named_by,
                });
            };
            let mut cloud = normalize(cloud.clone());
            if let Some(layer) = env_layer {
                deep_merge(&mut cloud, layer);
            }
            (name, cloud)
        }
        (None, Some(layer)) => {
            sources.clear();
            (env_cloud_name, layer)
        }
        (None, None) if file_clouds.len() == 1 => {
            let (name, cloud) = file_clouds.iter().next().expect("one cloud");
            (name.clone(), normalize(cloud.clone()))
        }
        (None, None) if !overrides.values.is_empty() => {
            sources.clear();
            ("defaults".to_string(), Value::Object(Map::new()))
        }
        (None, None) if file_clouds.len() > 1 => {
            return Err(ConfigError::SeveralClouds {
                files: describe_paths(&sources),
                available: describe_names(file_clouds.keys()),
                named_by: overrides.named_by,
            })
        }
        (None, None) => {
            return Err(ConfigError::NoCloud {
                named_by: overrides.named_by,
            })
        }
    };
    deep_merge(&mut cloud, nest_keys(&overrides.values));
    let region = overrides
        .values
        .get("region_name")
        .or_else(|| env.get("OS_REGION_NAME"))
        .filter(|region| !region.is_empty())
        .cloned();
    resolve(name, &cloud, region, sources)
}

fn first_existing(paths: &[PathBuf]) -> Option<PathBuf> {
    paths.iter().find(|path| path.is_file()).cloned()
}

fn describe_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn describe_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Reads a YAML or JSON file (JSON is YAML) into a JSON value.
fn read_document(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_yaml::from_str(&text).map_err(|err| ConfigError::Parse {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    Ok(if value.is_null() {
        Value::Object(Map::new())
    } else {
        value
    })
}

/// Merges `over` into `base` key by key; objects merge recursively, and any
/// other value in `over` replaces the one in `base`.
fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Rewrites `-` to `_` in keys at the top level and under `auth`, as
/// openstacksdk accepts both spellings.
fn normalize(cloud: Value) -> Value {
    let Value::Object(map) = cloud else {
        return Value::Object(Map::new());
    };
    map.into_iter()
        .map(|(key, value)| {
            let value = if key == "auth" {
                match value {
                    Value::Object(auth) => Value::Object(
                        auth.into_iter()
                            .map(|(key, value)| (key.replace('-', "_"), value))
                            .collect(),
                    ),
                    other => other,
                }
            } else {
                value
            };
            (key.replace('-', "_"), value)
        })
        .collect::<Map<_, _>>()
        .into()
}

/// Builds the cloud that the `OS_*` variables describe, or `None` when only
/// selector variables are set.
fn environment_layer(env: &Environment) -> Option<Value> {
    let mut values = BTreeMap::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix("OS_") else {
            continue;
        };
        if SELECTOR_VARIABLES.contains(&name.as_str())
            || ["TEST", "STD", "LOG"]
                .iter()
                .any(|skip| key.starts_with(skip))
            || value.is_empty()
        {
            continue;
        }
        let key = match key.to_ascii_lowercase().as_str() {
            "tenant_name" => "project_name".to_string(),
            "tenant_id" => "project_id".to_string(),
            "endpoint_type" => "interface".to_string(),
            other => other.to_string(),
        };
        values.insert(key, value.clone());
    }
    (!values.is_empty()).then(|| nest_keys(&values))
}

/// Turns flat keys into a clouds.yaml-shaped object, with auth keys under
/// `auth`.
fn nest_keys(values: &BTreeMap<String, String>) -> Value {
    let mut top = Map::new();
    let mut auth = Map::new();
    for (key, value) in values {
        let key = key.replace('-', "_");
        if AUTH_KEYS.contains(&key.as_str()) {
            auth.insert(key, Value::String(value.clone()));
        } else if key != "region_name" {
            top.insert(key, Value::String(value.clone()));
        }
    }
    if !auth.is_empty() {
        top.insert("auth".to_string(), Value::Object(auth));
    }
    Value::Object(top)
}

/// Returns a value as text; numbers and booleans are accepted where strings
/// are expected, as in `identity_api_version: 3`.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn flag(value: Option<&Value>, key: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(raw) = text(value) else {
        return Ok(None);
    };
    match raw.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(Some(true)),
        "false" | "no" | "0" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::Invalid {
            key,
            value: raw,
            expected: "true or false",
        }),
    }
}

fn resolve(
    name: String,
    cloud: &Value,
    region_override: Option<String>,
    sources: Vec<PathBuf>,
) -> Result<CloudConfig, ConfigError> {
    let auth = cloud.get("auth").cloned().unwrap_or(Value::Null);
    let auth_text = |key: &str| text(auth.get(key));
    let top_text = |key: &str| text(cloud.get(key));
    let secret = |key: &str| auth_text(key).map(Secret::new);

    if let Some(version) = top_text("identity_api_version") {
        if version.trim_start_matches('v') != "3" && !version.starts_with("3.") {
            return Err(ConfigError::Invalid {
                key: "identity_api_version",
                value: version,
                expected: "3; Keystone v2 is not supported",
            });
        }
    }

    let token = secret("token");
    let application_credential_secret = secret("application_credential_secret");
    let auth_type = match top_text("auth_type").as_deref() {
        Some("password" | "v3password") => AuthType::Password,
        Some("v3applicationcredential" | "application_credential" | "applicationcredential") => {
            AuthType::ApplicationCredential
        }
        Some("token" | "v3token" | "admin_token" | "noauth" | "none") => AuthType::Token,
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "auth_type",
                value: other.to_string(),
                expected: "password, v3applicationcredential or token",
            })
        }
        None if application_credential_secret.is_some() => AuthType::ApplicationCredential,
        None if token.is_some() && auth_text("password").is_none() => AuthType::Token,
        None => AuthType::Password,
    };

    let auth_url = auth_text("auth_url").map(|url| identity_v3_url(&url));
    let default_domain_id = auth_text("default_domain_id");
    let default_domain_name = auth_text("default_domain_name");
    let config = CloudConfig {
        name,
        auth_type,
        auth_url,
        username: auth_text("username"),
        user_id: auth_text("user_id"),
        user_domain_name: auth_text("user_domain_name").or(default_domain_name.clone()),
        user_domain_id: auth_text("user_domain_id").or(default_domain_id.clone()),
        project_name: auth_text("project_name"),
        project_id: auth_text("project_id"),
        project_domain_name: auth_text("project_domain_name").or(default_domain_name),
        project_domain_id: auth_text("project_domain_id").or(default_domain_id),
        password: secret("password"),
        application_credential_id: auth_text("application_credential_id"),
        application_credential_name: auth_text("application_credential_name"),
        application_credential_secret,
        token,
        region_name: resolve_region(cloud, region_override)?,
        interface: interface(top_text("interface"))?,
        cacert: top_text("cacert").map(PathBuf::from),
        cert: top_text("cert").map(PathBuf::from),
        key: top_text("key").map(PathBuf::from),
        verify: verify(cloud)?,
        api_timeout: api_timeout(top_text("api_timeout"))?,
        endpoint_overrides: endpoint_overrides(cloud),
        sources,
    };
    check_complete(&config)?;
    Ok(config)
}

/// Appends `/v3` to an identity URL that does not end with it.
fn identity_v3_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v3")
    }
}

fn resolve_region(
    cloud: &Value,
    region_override: Option<String>,
) -> Result<Option<String>, ConfigError> {
    let listed: Vec<String> = cloud
        .get("regions")
        .and_then(Value::as_array)
        .map(|regions| {
            regions
                .iter()
                .filter_map(|region| text(Some(region)).or_else(|| text(region.get("name"))))
                .collect()
        })
        .unwrap_or_default();
    let region = region_override
        .or_else(|| text(cloud.get("region_name")))
        .or_else(|| listed.first().cloned());
    if let Some(region) = &region {
        if !listed.is_empty() && !listed.contains(region) {
            return Err(ConfigError::Invalid {
                key: "region_name",
                value: region.clone(),
                expected: "one of the cloud's regions: list",
            });
        }
    }
    Ok(region)
}

fn interface(value: Option<String>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok("public".to_string());
    };
    let normalized = value.trim_end_matches("URL").to_ascii_lowercase();
    match normalized.as_str() {
        "public" | "internal" | "admin" => Ok(normalized),
        _ => Err(ConfigError::Invalid {
            key: "interface",
            value,
            expected: "public, internal or admin",
        }),
    }
}

/// `verify: false` (or `insecure: true`, `OS_INSECURE=true`) turns off
/// certificate checks, whatever `cacert` is set to.
fn verify(cloud: &Value) -> Result<bool, ConfigError> {
    if flag(cloud.get("insecure"), "insecure")? == Some(true) {
        return Ok(false);
    }
    Ok(flag(cloud.get("verify"), "verify")?.unwrap_or(true))
}

fn api_timeout(value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => {
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        _ => Err(ConfigError::Invalid {
            key: "api_timeout",
            value,
            expected: "a positive number of seconds",
        }),
    }
}

/// Collects `<service>_endpoint_override` keys; `volume`, `volumev3` and
/// `block_storage` all name the block-storage service.
fn endpoint_overrides(cloud: &Value) -> BTreeMap<String, String> {
    let mut overrides = BTreeMap::new();
    let Some(map) = cloud.as_object() else {
        return overrides;
    };
    for (key, value) in map {
        let Some(service) = key.strip_suffix("_endpoint_override") else {
            continue;
        };
        let Some(url) = text(Some(value)) else {
            continue;
        };
        let service = match service {
            "volume" | "volumev3" | "volumev2" | "block_storage" | "block_store" => "block-storage",
            other => other,
        };
        overrides.insert(service.to_string(), url);
    }
    overrides
}

fn check_complete(config: &CloudConfig) -> Result<(), ConfigError> {
    match config.auth_type {
        AuthType::Password => {
            if config.auth_url.is_none() {
                return Err(missing(
                    "auth_url",
                    "password",
                    "set auth.auth_url or OS_AUTH_URL",
                ));
            }
            if config.username.is_none() && config.user_id.is_none() {
                return Err(missing(
                    "username",
                    "password",
                    "set auth.username or OS_USERNAME (or a user id)",
                ));
            }
            if config.password.is_none() {
                return Err(missing(
                    "password",
                    "password",
                    "set auth.password in secure.yaml or OS_PASSWORD",
                ));
            }
        }
        AuthType::ApplicationCredential => {
            if config.auth_url.is_none() {
                return Err(missing(
                    "auth_url",
                    "v3applicationcredential",
                    "set auth.auth_url or OS_AUTH_URL",
                ));
            }
            if config.application_credential_secret.is_none() {
                return Err(missing(
                    "application_credential_secret",
                    "v3applicationcredential",
                    "set it in secure.yaml or OS_APPLICATION_CREDENTIAL_SECRET",
                ));
            }
            if config.application_credential_id.is_none()
                && config.application_credential_name.is_none()
            {
                return Err(missing(
                    "application_credential_id",
                    "v3applicationcredential",
                    "set auth.application_credential_id or OS_APPLICATION_CREDENTIAL_ID",
                ));
            }
        }
        AuthType::Token => {
            if config.token.is_none() {
                return Err(missing("token", "token", "set auth.token or OS_TOKEN"));
            }
            if config.auth_url.is_none() && config.endpoint_overrides.is_empty() {
                return Err(missing(
                    "auth_url",
                    "token",
                    "set auth.auth_url, or endpoint overrides such as \
                     compute_endpoint_override for a cloud without Keystone",
                ));
            }
        }
    }
    Ok(())
}

fn missing(key: &'static str, auth_type: &'static str, fix: &'static str) -> ConfigError {
    ConfigError::Missing {
        key,
        auth_type,
        fix,
    }
}

#[cfg(test)]
mod tests;
