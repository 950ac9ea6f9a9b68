//! `novamedic diagnose`: loads OpenStack credentials, diagnoses one server
//! or every server in ERROR, and reads the controller's reports of the
//! hosts involved.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_proto::view::NodeView;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use super::client::{connect, print_json, write_stdout, Outcome, Target, READ_TIMEOUT};
use super::logs::{host_logs, request_search};
use super::{exit, Failure, OutputFormat};
use crate::diagnose::{
    self, all, markdown, text, DiagnoseError, FleetSource, HostLogQuery, HostLogs,
};
use crate::openstack::config::{self, Overrides, SearchPaths};
use crate::openstack::{ApiError, Client};

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// Server id or exact name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub server: Option<String>,

    /// Diagnose every instance in ERROR that the credentials see, grouped
    /// by likely cause.
    #[arg(long)]
    pub all: bool,

    /// With --all: only instances that involve this compute host, as the
    /// server's host or the host of a failed build event.
    #[arg(long, value_name = "HOST", requires = "all")]
    pub host: Option<String>,

    /// Time each OpenStack request may take: seconds (90) or a number with
    /// s, m, h or d (30s, 5m) [default: the cloud's api_timeout, else 30s].
    #[arg(long, value_name = "DURATION", value_parser = super::duration::parse)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub openstack: OpenStackArgs,
}

/// Credential flags, named as in the `openstack` command line. Each
/// overrides the cloud's key and the `OS_*` variable of the same name.
#[derive(Debug, Args)]
pub struct OpenStackArgs {
    /// Cloud in clouds.yaml [env: OS_CLOUD].
    #[arg(long = "os-cloud", value_name = "NAME")]
    pub cloud: Option<String>,
    /// Keystone URL [env: OS_AUTH_URL].
    #[arg(long = "os-auth-url", value_name = "URL")]
    pub auth_url: Option<String>,
    /// password, v3applicationcredential or token [env: OS_AUTH_TYPE].
    #[arg(long = "os-auth-type", value_name = "TYPE")]
    pub auth_type: Option<String>,
    #[arg(long = "os-username", value_name = "NAME")]
    pub username: Option<String>,
    #[arg(long = "os-user-id", value_name = "ID")]
    pub user_id: Option<String>,
    /// Prefer secure.yaml or OS_PASSWORD: a flag is visible in the process list.
    #[arg(long = "os-password", value_name = "PASSWORD")]
    pub password: Option<String>,
    #[arg(long = "os-user-domain-name", value_name = "NAME")]
    pub user_domain_name: Option<String>,
    #[arg(long = "os-project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    #[arg(long = "os-project-id", value_name = "ID")]
    pub project_id: Option<String>,
    #[arg(long = "os-project-domain-name", value_name = "NAME")]
    pub project_domain_name: Option<String>,
    #[arg(long = "os-application-credential-id", value_name = "ID")]
    pub application_credential_id: Option<String>,
    #[arg(long = "os-application-credential-secret", value_name = "SECRET")]
    pub application_credential_secret: Option<String>,
    /// A token: a Keystone token, or `user:project` for Nova's noauth2.
    #[arg(long = "os-token", value_name = "TOKEN")]
    pub token: Option<String>,
    #[arg(long = "os-region-name", value_name = "REGION")]
    pub region_name: Option<String>,
    /// public, internal or admin [env: OS_INTERFACE].
    #[arg(long = "os-interface", value_name = "INTERFACE")]
    pub interface: Option<String>,
    /// CA bundle for TLS [env: OS_CACERT].
    #[arg(long = "os-cacert", value_name = "PATH")]
    pub cacert: Option<String>,
    /// Client certificate, PEM, for clouds that ask for one [env: OS_CERT].
    #[arg(long = "os-cert", value_name = "PATH")]
    pub cert: Option<String>,
    /// Private key of --os-cert when in its own file [env: OS_KEY].
    #[arg(long = "os-key", value_name = "PATH")]
    pub key: Option<String>,
    /// Do not verify TLS certificates.
    #[arg(long)]
    pub insecure: bool,
    /// Endpoint of a service instead of the catalog's, such as
    /// compute=http://127.0.0.1:8774/v2.1; repeat for each service
    /// (compute, image, network, block-storage, placement).
    #[arg(long = "os-endpoint", value_name = "SERVICE=URL")]
    pub endpoints: Vec<String>,
}

impl OpenStackArgs {
    fn overrides(&self) -> Result<Overrides, Failure> {
        let mut values = BTreeMap::new();
        let flags = [
            ("auth_url", &self.auth_url),
            ("auth_type", &self.auth_type),
            ("username", &self.username),
            ("user_id", &self.user_id),
            ("password", &self.password),
            ("user_domain_name", &self.user_domain_name),
            ("project_name", &self.project_name),
            ("project_id", &self.project_id),
            ("project_domain_name", &self.project_domain_name),
            ("application_credential_id", &self.application_credential_id),
            (
                "application_credential_secret",
                &self.application_credential_secret,
            ),
            ("token", &self.token),
            ("region_name", &self.region_name),
            ("interface", &self.interface),
            ("cacert", &self.cacert),
            ("cert", &self.cert),
            ("key", &self.key),
        ];
        for (key, value) in flags {
            if let Some(value) = value.as_ref().filter(|value| !value.is_empty()) {
                values.insert(key.to_string(), value.clone());
            }
        }
        if self.insecure {
            values.insert("verify".to_string(), "false".to_string());
        }
        for endpoint in &self.endpoints {
            let Some((service, url)) = endpoint.split_once('=').filter(|(service, url)| {
                [
                    "compute",
                    "image",
                    "network",
                    "block-storage",
                    "volume",
                    "placement",
                ]
                .contains(service)
                    && !url.is_empty()
            }) else {
                return Err(usage(format!(
                    "invalid --os-endpoint {endpoint:?}; expected SERVICE=URL with SERVICE one of \
                     compute, image, network, block-storage, volume, placement, such as \
                     compute=http://127.0.0.1:8774/v2.1"
                )));
            };
            values.insert(
                format!("{}_endpoint_override", service.replace('-', "_")),
                url.to_string(),
            );
        }
        Ok(Overrides {
            cloud: self.cloud.clone(),
            values,
            named_by: config::CloudSetting::CommandLine,
        })
    }
}

pub async fn run(controller: &Target, format: OutputFormat, args: &DiagnoseArgs) -> Outcome {
    let client = openstack_client(args)?;
    let fleet = ControllerFleet::new(controller);
    if args.all {
        let progress = std::io::stderr().is_terminal();
        let summary = all::diagnose_all(&client, &fleet, args.host.as_deref(), progress)
            .await
            .map_err(|err| api_failure(&err))?;
        match format {
            OutputFormat::Json => print_json(&summary)?,
            OutputFormat::Markdown => write_stdout(&all::render_markdown(&summary))?,
            OutputFormat::Table => write_stdout(&all::render_text(&summary))?,
        }
        return Ok(0);
    }

    let server = args.server.as_deref().unwrap_or_default();
    let diagnosis = diagnose::diagnose(&client, &fleet, server)
        .await
        .map_err(|err| match err {
            DiagnoseError::NotFound(_) => Failure {
                exit_code: exit::NOT_FOUND,
                message: err.to_string(),
            },
            DiagnoseError::Ambiguous { .. } => usage(err.to_string()),
            DiagnoseError::Api(err) => api_failure(&err),
        })?;
    match format {
        OutputFormat::Json => print_json(&diagnosis)?,
        OutputFormat::Markdown => write_stdout(&markdown::render(&diagnosis))?,
        OutputFormat::Table => write_stdout(&text::render(&diagnosis))?,
    }
    Ok(0)
}

fn openstack_client(args: &DiagnoseArgs) -> Result<Client, Failure> {
    let env = config::process_environment();
    let current_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let paths = SearchPaths::standard(&env, &current_dir);
    let cloud = config::load(&env, &paths, &args.openstack.overrides()?)
        .map_err(|err| usage(crate::error_chain(&err)))?;
    tracing::debug!(
        cloud = cloud.name,
        files = ?cloud.sources,
        auth_type = ?cloud.auth_type,
        "OpenStack credentials loaded"
    );
    Client::new(cloud, args.timeout).map_err(|err| usage(err.to_string()))
}

fn usage(message: String) -> Failure {
    Failure {
        exit_code: exit::USAGE,
        message,
    }
}

/// Maps a failed OpenStack call to an exit code: rejected credentials are
/// a configuration problem, a service that is down is unavailable.
fn api_failure(err: &ApiError) -> Failure {
    let exit_code = match err.status() {
        Some(401) => exit::USAGE,
        Some(404) => exit::NOT_FOUND,
        _ if err.is_timeout() => exit::TIMED_OUT,
        _ if err.is_unavailable() => exit::UNAVAILABLE,
        _ => exit::FAILED,
    };
    let hint = match err.status() {
        Some(401) => "; check the credentials (--os-cloud, clouds.yaml, secure.yaml, OS_*)",
        Some(403) => "; diagnosis needs the admin role for hosts, faults and events",
        _ => "",
    };
    Failure {
        exit_code,
        message: format!("{}{hint}", crate::error_chain(err)),
    }
}

/// The controller's view of the fleet, over the operator API. Connects on
/// first use; a controller that cannot be reached leaves the fleet parts
/// of the report missing, with the reason.
struct ControllerFleet<'a> {
    target: &'a Target,
    client: OnceCell<Result<OperatorServiceClient<Channel>, String>>,
}

impl<'a> ControllerFleet<'a> {
    fn new(target: &'a Target) -> Self {
        ControllerFleet {
            target,
            client: OnceCell::new(),
        }
    }
}

/// Time the agent may spend on a log search.
const LOG_SEARCH_WAIT: Duration = Duration::from_secs(30);

impl ControllerFleet<'_> {
    async fn client(&self) -> Result<OperatorServiceClient<Channel>, String> {
        let client = self
            .client
            .get_or_init(|| async {
                connect(self.target)
                    .await
                    .map_err(|failure| failure.message)
            })
            .await;
        client.clone()
    }

    fn answered(&self, status: &tonic::Status) -> String {
        format!(
            "the controller at {} answered {}: {}",
            self.target.url,
            status.code().description(),
            status.message()
        )
    }
}

impl FleetSource for ControllerFleet<'_> {
    async fn search_logs(&self, node: &str, query: &HostLogQuery) -> Result<HostLogs, String> {
        let mut client = self.client().await?;
        let response = request_search(&mut client, node, query.to_wire(), LOG_SEARCH_WAIT)
            .await
            .map_err(|status| self.answered(&status))?;
        host_logs(&response)
    }

    async fn node(&self, node: &str) -> Result<Option<NodeView>, String> {
        let mut client = self.client().await?;
        let mut request = tonic::Request::new(v1::GetNodeRequest {
            node: node.to_string(),
        });
        request.set_timeout(READ_TIMEOUT);
        match client.get_node(request).await {
            Ok(response) => Ok(Some(NodeView::from_status(&response.into_inner()))),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(self.answered(&status)),
        }
    }
}
