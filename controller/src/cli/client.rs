//! The operator commands: call the controller, print the response, and turn
//! failures into messages and exit codes.

use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_proto::view::{EventView, NodeView, PolicyView, RestartView};
use novamedic_tls::{TlsFiles, TlsMaterial};
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use super::{exit, render, EventsArgs, OutputFormat, RestartArgs};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest reply the CLI accepts. ListNodes returns the whole fleet in one
/// message, about 3 KiB a node, so tonic's 4 MiB default stops near 1,500
/// nodes; this allows some 80,000.
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// Deadline of calls that only read state.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra time a restart call gets beyond its wait, so the controller's own
/// DEADLINE_EXCEEDED status arrives before the client gives up.
const RESTART_CALL_MARGIN: Duration = Duration::from_secs(10);

/// A command that did not succeed: the message for stderr and the exit code.
/// An empty message prints nothing.
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

pub(super) type Outcome = Result<u8, Failure>;

/// Footer of the `nodes` table when the controller serves plain text.
const PLAINTEXT_WARNING: &str = "WARNING: the controller runs with --insecure-plaintext: its \
connections are neither encrypted nor authenticated, and anyone who reaches it may restart \
nova-compute\n";

/// The controller to call and the client certificate to call it with.
#[derive(Clone, Debug)]
pub struct Target {
    /// `https://HOST:PORT`, or `http://HOST:PORT` for a plain-text controller.
    pub url: String,
    /// Certificate, key and CA for an https URL; `None` leaves them unset.
    pub tls: Option<TlsFiles>,
}

pub async fn nodes(target: &Target, format: OutputFormat) -> Outcome {
    let url = target.url.as_str();
    let mut client = connect(target).await?;
    let mut request = tonic::Request::new(v1::ListNodesRequest {});
    request.set_timeout(READ_TIMEOUT);
    let response = client
        .list_nodes(request)
        .await
        .map_err(|status| call_failure(url, status))?
        .into_inner();
    let nodes = response.nodes;
    match format {
        OutputFormat::Json => {
            print_json(&nodes.iter().map(NodeView::from_status).collect::<Vec<_>>())?
        }
        OutputFormat::Table | OutputFormat::Markdown => {
            let mut text = render::nodes(&nodes, crate::clock::now_unix_ms());
            if response.insecure_plaintext {
                text.push_str(PLAINTEXT_WARNING);
            }
            write_stdout(&text)?
        }
    }
    Ok(0)
}

pub async fn node_show(target: &Target, format: OutputFormat, node: &str) -> Outcome {
    let url = target.url.as_str();
    let mut client = connect(target).await?;
    let mut request = tonic::Request::new(v1::GetNodeRequest {
        node: node.to_string(),
    });
    request.set_timeout(READ_TIMEOUT);
    let status = client
        .get_node(request)
        .await
        .map_err(|status| call_failure(url, status))?
        .into_inner();
    match format {
        OutputFormat::Json => print_json(&NodeView::from_status(&status))?,
        OutputFormat::Table | OutputFormat::Markdown => {
            write_stdout(&render::node(&status, crate::clock::now_unix_ms()))?
        }
    }
    Ok(0)
}

pub async fn restart(target: &Target, format: OutputFormat, args: &RestartArgs) -> Outcome {
    let url = target.url.as_str();
    let mut client = connect(target).await?;
    let wait = args.wait;
    let mut request = tonic::Request::new(v1::RestartRequest {
        node: args.node.clone(),
        reason: args.reason.clone(),
        requested_by: requester_identity(),
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    });
    request.set_timeout(wait + RESTART_CALL_MARGIN);
    let response = client
        .restart_nova_compute(request)
        .await
        .map_err(|status| call_failure(url, status))?
        .into_inner();
    let view = RestartView::from_response(&response);
    match format {
        OutputFormat::Json => print_json(&view)?,
        OutputFormat::Table | OutputFormat::Markdown => write_stdout(&render::restart(&view))?,
    }
    Ok(outcome_exit_code(view.outcome))
}

pub async fn events(target: &Target, format: OutputFormat, args: &EventsArgs) -> Outcome {
    let url = target.url.as_str();
    let mut client = connect(target).await?;
    let mut request = tonic::Request::new(v1::ListEventsRequest {
        node: args.node.clone().unwrap_or_default(),
        limit: args.limit,
    });
    request.set_timeout(READ_TIMEOUT);
    let events = client
        .list_events(request)
        .await
        .map_err(|status| call_failure(url, status))?
        .into_inner()
        .events;
    match format {
        OutputFormat::Json => {
            print_json(&events.iter().map(EventView::from_wire).collect::<Vec<_>>())?
        }
        OutputFormat::Table | OutputFormat::Markdown => write_stdout(&render::events(&events))?,
    }
    Ok(0)
}

/// A call of the policy part of the operator API.
#[derive(Debug)]
pub enum PolicyCall {
    Show,
    Pause {
        reason: String,
    },
    Resume,
    Silence {
        node: String,
        seconds: u64,
        reason: String,
    },
    Unsilence {
        node: String,
    },
    Clear {
        node: String,
    },
}

pub async fn policy(target: &Target, format: OutputFormat, call: PolicyCall) -> Outcome {
    let url = target.url.as_str();
    let mut client = connect(target).await?;
    let requested_by = requester_identity();
    let reply = match call {
        PolicyCall::Show => client.get_policy(timed(v1::GetPolicyRequest {})).await,
        PolicyCall::Pause { reason } => {
            let request = v1::PausePolicyRequest {
                reason,
                requested_by,
            };
            client.pause_policy(timed(request)).await
        }
        PolicyCall::Resume => {
            let request = v1::ResumePolicyRequest { requested_by };
            client.resume_policy(timed(request)).await
        }
        PolicyCall::Silence {
            node,
            seconds,
            reason,
        } => {
            let request = v1::SilenceNodeRequest {
                node,
                duration_seconds: seconds,
                reason,
                requested_by,
            };
            client.silence_node(timed(request)).await
        }
        PolicyCall::Unsilence { node } => {
            let request = v1::UnsilenceNodeRequest { node, requested_by };
            client.unsilence_node(timed(request)).await
        }
        PolicyCall::Clear { node } => {
            let request = v1::ClearNodeRequest { node, requested_by };
            client.clear_node(timed(request)).await
        }
    };
    let status = reply
        .map_err(|status| call_failure(url, status))?
        .into_inner();
    let view = PolicyView::from_wire(&status);
    match format {
        OutputFormat::Json => print_json(&view)?,
        OutputFormat::Table | OutputFormat::Markdown => {
            write_stdout(&render::policy(&view, crate::clock::now_unix_ms()))?
        }
    }
    Ok(0)
}

/// Wraps a request that only reads or flips state with the read deadline.
fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(READ_TIMEOUT);
    request
}

/// Returns the exit code for a restart's outcome word from [`RestartView`].
fn outcome_exit_code(outcome: &str) -> u8 {
    match outcome {
        "succeeded" => 0,
        "timed_out" => exit::TIMED_OUT,
        _ => exit::FAILED,
    }
}

pub(super) async fn connect(target: &Target) -> Result<OperatorServiceClient<Channel>, Failure> {
    let url = target.url.as_str();
    let endpoint = endpoint(target)?;
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|err| Failure {
            exit_code: exit::UNAVAILABLE,
            message: format!(
                "cannot reach the controller at {url}: {}; is `novamedic serve` running? \
                 set --controller or NOVAMEDIC_CONTROLLER",
                connect_cause(&err)
            ),
        })?;
    Ok(OperatorServiceClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// Parses the controller URL, `https://HOST:PORT` or, for a plain-text
/// controller, `http://HOST:PORT`, and sets up the client certificate.
fn endpoint(target: &Target) -> Result<Endpoint, Failure> {
    let url = target.url.as_str();
    let usage = |problem: &str| Failure {
        exit_code: exit::USAGE,
        message: format!(
            "{problem} {url:?}; expected one like https://127.0.0.1:7400 \
             (set --controller or NOVAMEDIC_CONTROLLER)"
        ),
    };
    let uri: tonic::codegen::http::Uri =
        url.parse().map_err(|_| usage("invalid controller URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| usage("the controller URL has no host:"))?;
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|_| usage("invalid controller URL"))?;
    match uri.scheme_str() {
        Some("http") => Ok(endpoint),
        Some("https") => with_client_tls(endpoint, host, target.tls.as_ref()),
        None => Err(usage(
            "the controller URL needs the https:// or http:// scheme:",
        )),
        Some(_) => Err(usage("invalid controller URL")),
    }
}

/// Adds the operator's certificate and the CA that signs the controller's.
fn with_client_tls(
    endpoint: Endpoint,
    host: &str,
    files: Option<&TlsFiles>,
) -> Result<Endpoint, Failure> {
    let usage = |message: String| Failure {
        exit_code: exit::USAGE,
        message,
    };
    let files = files.ok_or_else(|| {
        usage(
            "an https:// controller needs a client certificate: set --tls-cert, --tls-key and \
             --tls-ca (or NOVAMEDIC_TLS_CERT, NOVAMEDIC_TLS_KEY and NOVAMEDIC_TLS_CA)"
                .to_string(),
        )
    })?;
    let material = TlsMaterial::load(files).map_err(|err| usage(err.to_string()))?;
    let verifier = novamedic_tls::rustls_config::server_verifier(&material)
        .map_err(|err| usage(format!("cannot use the CA {}: {err}", files.ca.display())))?;
    let config = ClientTlsConfig::new()
        .domain_name(host.trim_start_matches('[').trim_end_matches(']'))
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem));
    endpoint
        .tls_config_with_verifier(config, verifier)
        .map_err(|err| usage(format!("cannot set up TLS: {}", crate::error_chain(&err))))
}

/// Returns the innermost cause of a connection failure in plain words, such
/// as "connection refused", instead of tonic's layered message.
fn connect_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(source) = cause.source() {
        if let Some(io) = source.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
                _ => io.to_string(),
            };
        }
        cause = source;
    }
    cause.to_string()
}

/// Maps a failed call to `url` to a message and exit code, telling a service
/// that is not a novamedic controller, and a connection that broke, apart
/// from a controller's own errors.
pub(super) fn call_failure(url: &str, status: tonic::Status) -> Failure {
    let chain = source_chain(&status);
    if status.code() == Code::Unimplemented || chain.contains("protocol error") {
        return Failure {
            exit_code: exit::UNAVAILABLE,
            message: format!(
                "the service at {url} is not a novamedic controller ({}); \
                 check --controller or NOVAMEDIC_CONTROLLER",
                if chain.is_empty() {
                    status.message()
                } else {
                    &chain
                }
            ),
        };
    }
    if is_transport_failure(&status) {
        return Failure {
            exit_code: exit::UNAVAILABLE,
            message: format!(
                "the service at {url} closed the connection ({chain}); it may not be a \
                 novamedic controller, or the controller restarted"
            ),
        };
    }
    status_failure(status)
}

/// The causes of a failed call, `outer: inner`, without the status itself.
fn source_chain(status: &tonic::Status) -> String {
    std::error::Error::source(status)
        .map(crate::error_chain)
        .unwrap_or_default()
}

/// Whether the call failed in the connection rather than in the controller.
fn is_transport_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::transport::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Maps a gRPC status from the controller to the CLI's exit codes.
fn status_failure(status: tonic::Status) -> Failure {
    if status.message().contains("message length too large") {
        return Failure {
            exit_code: exit::FAILED,
            message: format!(
                "the controller's reply is larger than the {} MiB this client accepts ({}); \
                 use `novamedic node show NODE` for single nodes",
                MAX_REPLY_BYTES >> 20,
                status.message()
            ),
        };
    }
    let exit_code = match status.code() {
        Code::NotFound => exit::NOT_FOUND,
        Code::Unavailable => exit::UNAVAILABLE,
        Code::DeadlineExceeded | Code::Cancelled => exit::TIMED_OUT,
        Code::Aborted => exit::IN_PROGRESS,
        Code::InvalidArgument => exit::USAGE,
        _ => exit::FAILED,
    };
    if matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ) {
        return Failure {
            exit_code,
            message: format!("permission denied: {}", status.message()),
        };
    }
    let message = match status.code() {
        Code::Unavailable
        | Code::NotFound
        | Code::DeadlineExceeded
        | Code::InvalidArgument
        | Code::Aborted
        | Code::FailedPrecondition => status.message().to_string(),
        code => format!("{}: {}", code.description(), status.message()),
    };
    Failure { exit_code, message }
}

/// Returns the identity recorded as `requested_by`: `$SUDO_USER` (the person
/// behind sudo), else `$USER`, else the name of the real user id, at this host.
///
/// Under mutual TLS the controller records the certificate's name instead;
/// this claim is used only by a plain-text controller, which cannot check it.
fn requester_identity() -> String {
    let user = ["SUDO_USER", "USER"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_else(real_user_name);
    format!("{user}@{}", host_name())
}

/// Returns the name of the process's real user id from /etc/passwd, or
/// `uid:N` when no entry names it.
fn real_user_name() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_name_for(&passwd, uid))
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// Finds the name of `uid` in the text of a passwd(5) file.
fn user_name_for(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

pub(super) fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|err| Failure {
        exit_code: exit::FAILED,
        message: format!("cannot encode the response as JSON: {err}"),
    })?;
    write_stdout(&format!("{text}\n"))
}

/// Writes command output to stdout. A reader that went away (`| head`) ends
/// the command quietly with exit 0, as for other Unix tools; any other write
/// error, such as a full disk, fails it.
pub(super) fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure {
            exit_code: 0,
            message: String::new(),
        }),
        Err(err) => Err(Failure {
            exit_code: exit::FAILED,
            message: format!("cannot write to stdout: {err}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_exit_codes() {
        let cases = [
            (Code::NotFound, exit::NOT_FOUND),
            (Code::Unavailable, exit::UNAVAILABLE),
            (Code::DeadlineExceeded, exit::TIMED_OUT),
            (Code::InvalidArgument, exit::USAGE),
            (Code::Aborted, exit::IN_PROGRESS),
            (Code::FailedPrecondition, exit::FAILED),
            (Code::Internal, exit::FAILED),
        ];
        for (code, expected) in cases {
            let failure = status_failure(tonic::Status::new(code, "boom"));
            assert_eq!(failure.exit_code, expected, "{code:?}");
        }
    }

    #[test]
    fn outcomes_map_to_exit_codes() {
        assert_eq!(outcome_exit_code("succeeded"), 0);
        assert_eq!(outcome_exit_code("failed"), exit::FAILED);
        assert_eq!(outcome_exit_code("rejected"), exit::FAILED);
        assert_eq!(outcome_exit_code("timed_out"), exit::TIMED_OUT);
        assert_eq!(outcome_exit_code("unknown"), exit::FAILED);
    }

    #[test]
    fn user_name_comes_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      broken\n\
                      alice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
        assert_eq!(user_name_for(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name_for(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name_for(passwd, 1001), None);
        let uid = rustix::process::getuid().as_raw();
        let name = real_user_name();
        assert!(!name.is_empty());
        let real_passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if user_name_for(&real_passwd, uid).is_none() {
            assert_eq!(name, format!("uid:{uid}"));
        }
    }

    #[test]
    fn requester_has_user_and_host() {
        let identity = requester_identity();
        let (user, host) = identity.split_once('@').expect("user@host");
        assert!(!user.is_empty());
        assert!(!host.is_empty());
    }
}
