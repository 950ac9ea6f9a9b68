//! The gRPC service for the operator CLI and automation.

use std::sync::Arc;
use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_server::OperatorService;
use tonic::{Request, Response, Status};

use novamedic_proto::view::rfc3339_from_unix_ms;

use crate::auth::{Authority, Role};
use crate::clock::now_unix_ms;
use crate::controller::{Controller, RestartError, SearchError};

/// Events returned when a request sets limit 0.
pub const DEFAULT_EVENT_LIMIT: u32 = 50;

/// Most events one request may return.
pub const MAX_EVENT_LIMIT: u32 = 1000;

/// Maximum silence one request may set. A year covers any maintenance
/// window; a node to be left alone for longer belongs out of the fleet.
pub const MAX_SILENCE: Duration = Duration::from_secs(365 * 86_400);

/// Maximum length of an operator's reason, in characters. Reasons are stored
/// in the event history and printed in tables, so a few sentences is the
/// intended size.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Maximum length of the requester's name a plain-text client sends, in
/// characters; the CLI sends `user@host`.
pub const MAX_REQUESTER_CHARS: usize = 256;

/// The `OperatorService` implementation.
#[derive(Clone, Debug)]
pub struct OperatorApi {
    controller: Arc<Controller>,
    authority: Arc<Authority>,
}

impl OperatorApi {
    pub fn new(controller: Arc<Controller>, authority: Arc<Authority>) -> Self {
        OperatorApi {
            controller,
            authority,
        }
    }

    /// Checks that the caller has `role`, and logs a rejected request.
    fn require<T>(
        &self,
        request: &Request<T>,
        role: Role,
        claimed_user: &str,
    ) -> Result<String, Status> {
        self.authority
            .require(request, role, claimed_user)
            .inspect_err(|status| {
                tracing::warn!(role = role.as_str(), error = %status.message(), "operator request rejected");
            })
    }
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        self.require(&request, Role::Viewer, "")?;
        let mut nodes = self.controller.fleet().statuses();
        for status in &mut nodes {
            status.nova = Some(self.controller.nova_node_view(&status.node));
        }
        Ok(Response::new(v1::ListNodesResponse {
            nodes,
            insecure_plaintext: self.authority.plaintext,
        }))
    }

    async fn get_node(
        &self,
        request: Request<v1::GetNodeRequest>,
    ) -> Result<Response<v1::NodeStatus>, Status> {
        self.require(&request, Role::Viewer, "")?;
        let node = request.into_inner().node;
        let node = required_node(&node)?;
        match self.controller.fleet().status(node) {
            Some(mut status) => {
                status.nova = Some(self.controller.nova_node_view(&status.node));
                Ok(Response::new(status))
            }
            None => Err(unknown_node(node)),
        }
    }

    async fn restart_nova_compute(
        &self,
        request: Request<v1::RestartRequest>,
    ) -> Result<Response<v1::RestartResponse>, Status> {
        let actor = self.require(&request, Role::Operator, &request.get_ref().requested_by)?;
        let mut request = request.into_inner();
        required_node(&request.node)?;
        // The policy's own restarts skip this check: their reasons are
        // written by the controller, not sent by a client.
        request.reason = check_reason(&request.reason).map_err(Status::invalid_argument)?;
        // Under mutual TLS the certificate's name replaces whatever name the
        // client sent, so the history records an authenticated identity.
        request.requested_by = check_requester(&actor)?;
        tracing::info!(
            node = ?request.node,
            requested_by = ?request.requested_by,
            reason = ?request.reason,
            "restart requested"
        );
        match self.controller.restart(request).await {
            Ok(response) => Ok(Response::new(response)),
            Err(err) => Err(restart_status(&err)),
        }
    }

    /// Needs the operator role, though it only reads: the response contains
    /// nova-compute's log records in full (tracebacks, user and project
    /// ids), more than the redacted samples a viewer sees in reports.
    async fn search_node_logs(
        &self,
        request: Request<v1::SearchNodeLogsRequest>,
    ) -> Result<Response<v1::SearchNodeLogsResponse>, Status> {
        let actor = self.require(&request, Role::Operator, "")?;
        let actor = if actor.is_empty() {
            "unauthenticated operator (plain text)".to_string()
        } else {
            actor
        };
        let request = request.into_inner();
        match self.controller.search_logs(request, &actor).await {
            Ok(response) => Ok(Response::new(response)),
            Err(err) => Err(search_status(&err)),
        }
    }

    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        self.require(&request, Role::Viewer, "")?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_EVENT_LIMIT,
            limit => limit.min(MAX_EVENT_LIMIT),
        };
        let node = Some(request.node.trim()).filter(|node| !node.is_empty());
        if let Some(node) = node {
            self.known_node(node)?;
        }
        let events = self
            .controller
            .list_events(node, limit)
            .await
            .map_err(|err| {
                tracing::error!(error = %crate::error_chain(&err), "cannot list events");
                Status::internal(crate::error_chain(&err))
            })?;
        Ok(Response::new(v1::ListEventsResponse { events }))
    }

    async fn get_policy(
        &self,
        request: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        self.require(&request, Role::Viewer, "")?;
        Ok(Response::new(self.controller.policy_status().await))
    }

    async fn pause_policy(
        &self,
        request: Request<v1::PausePolicyRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        let requested_by = self.operator(&request, &request.get_ref().requested_by)?;
        let request = request.into_inner();
        let reason = check_reason(&request.reason).map_err(Status::invalid_argument)?;
        let status = self
            .controller
            .control_policy("", &requested_by, format!("paused: {reason}"), |engine| {
                engine.pause(now_unix_ms(), &requested_by, &reason)
            })
            .await;
        Ok(Response::new(status))
    }

    async fn resume_policy(
        &self,
        request: Request<v1::ResumePolicyRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        let requested_by = self.operator(&request, &request.get_ref().requested_by)?;
        let status = self
            .controller
            .control_policy("", &requested_by, "resumed".into(), |engine| {
                if let Some(pause) = engine.resume() {
                    tracing::info!(by = %requested_by, paused_by = %pause.by, reason = %pause.reason, "automation resumed");
                }
            })
            .await;
        Ok(Response::new(status))
    }

    async fn silence_node(
        &self,
        request: Request<v1::SilenceNodeRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        let requested_by = self.operator(&request, &request.get_ref().requested_by)?;
        let request = request.into_inner();
        let node = self.known_node(&request.node)?;
        let reason = check_reason(&request.reason).map_err(Status::invalid_argument)?;
        if request.duration_seconds == 0 {
            return Err(Status::invalid_argument(
                "duration_seconds is 0; silence a node for at least one second",
            ));
        }
        if request.duration_seconds > MAX_SILENCE.as_secs() {
            return Err(Status::invalid_argument(format!(
                "duration_seconds {} is above the maximum silence of {} s (365 days); \
                 silence the node again when it ends",
                request.duration_seconds,
                MAX_SILENCE.as_secs()
            )));
        }
        // Both factors are bounded above, so the product fits an i64.
        let until = now_unix_ms() + request.duration_seconds as i64 * 1_000;
        let detail = format!(
            "silenced until {}: {reason}",
            rfc3339_from_unix_ms(until).unwrap_or_default()
        );
        let status = self
            .controller
            .control_policy(&node, &requested_by, detail, |engine| {
                engine.silence(&node, until, &requested_by, &reason)
            })
            .await;
        Ok(Response::new(status))
    }

    async fn unsilence_node(
        &self,
        request: Request<v1::UnsilenceNodeRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        let requested_by = self.operator(&request, &request.get_ref().requested_by)?;
        let request = request.into_inner();
        let node = self.known_node(&request.node)?;
        let status = self
            .controller
            .control_policy(&node, &requested_by, "silence ended".into(), |engine| {
                engine.unsilence(&node);
            })
            .await;
        Ok(Response::new(status))
    }

    async fn clear_node(
        &self,
        request: Request<v1::ClearNodeRequest>,
    ) -> Result<Response<v1::PolicyStatus>, Status> {
        let requested_by = self.operator(&request, &request.get_ref().requested_by)?;
        let request = request.into_inner();
        let node = self.known_node(&request.node)?;
        let mut disabled_by_novamedic = None;
        let status = self
            .controller
            .control_policy(
                &node,
                &requested_by,
                "handed back to automation; restart history cleared".into(),
                |engine| {
                    engine.clear(&node);
                    disabled_by_novamedic = engine.take_service_disabled(&node);
                },
            )
            .await;
        if let Some(disabled) = disabled_by_novamedic {
            self.controller
                .enable_service_after_clear(&node, &requested_by, disabled)
                .await;
        }
        Ok(Response::new(status))
    }
}

impl OperatorApi {
    /// Checks the operator role and returns the identity to record: the
    /// certificate's name, or under plain text the name the client sent,
    /// which must not be empty.
    fn operator<T>(&self, request: &Request<T>, claimed_user: &str) -> Result<String, Status> {
        let actor = self.require(request, Role::Operator, claimed_user)?;
        check_requester(&actor)
    }

    /// Returns the trimmed node name: INVALID_ARGUMENT for an empty one,
    /// NOT_FOUND for a node never seen.
    fn known_node(&self, node: &str) -> Result<String, Status> {
        let node = required_node(node)?;
        if self.controller.fleet().status(node).is_none() {
            return Err(unknown_node(node));
        }
        Ok(node.to_string())
    }
}

/// Returns NOT_FOUND for a node the controller has never seen.
fn unknown_node(node: &str) -> Status {
    Status::not_found(format!(
        "node {node} is not known to this controller; `novamedic nodes` lists known nodes"
    ))
}

/// Returns the trimmed node name, or INVALID_ARGUMENT when it is empty.
fn required_node(node: &str) -> Result<&str, Status> {
    let node = node.trim();
    if node.is_empty() {
        return Err(Status::invalid_argument(
            "node is required; `novamedic nodes` lists known nodes",
        ));
    }
    Ok(node)
}

/// Returns the requester's name, trimmed, or INVALID_ARGUMENT when it is
/// empty or too long.
fn check_requester(requested_by: &str) -> Result<String, Status> {
    if requested_by.trim().is_empty() {
        return Err(Status::invalid_argument(
            "requested_by is required: the audit history records who asked",
        ));
    }
    check_text(requested_by, "requested_by", MAX_REQUESTER_CHARS).map_err(Status::invalid_argument)
}

/// Returns an operator's reason, trimmed, or why it cannot be recorded. The
/// CLI applies the same check before it calls the controller.
pub fn check_reason(reason: &str) -> Result<String, String> {
    check_text(reason, "reason", MAX_REASON_CHARS)
}

/// Returns a required text field, trimmed, or a message naming the field
/// when it is blank or longer than `max_chars` characters.
fn check_text(value: &str, field: &str, max_chars: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{field} is required"));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "{field} is {chars} characters long; the maximum is {max_chars}, so shorten it"
        ));
    }
    Ok(value.to_string())
}

/// Maps a restart failure to the status code the API documents for it.
fn search_status(err: &SearchError) -> Status {
    let message = crate::error_chain(err);
    match err {
        SearchError::MissingNode | SearchError::MissingSearch | SearchError::WaitTooLong { .. } => {
            Status::invalid_argument(message)
        }
        SearchError::UnknownNode { .. } => Status::not_found(message),
        SearchError::NotConnected { .. }
        | SearchError::NotDelivered { .. }
        | SearchError::Disconnected { .. } => Status::unavailable(message),
        SearchError::MissingCapability { .. } => Status::failed_precondition(message),
        SearchError::NoAnswer { .. } => Status::deadline_exceeded(message),
    }
}

fn restart_status(err: &RestartError) -> Status {
    let message = crate::error_chain(err);
    match err {
        RestartError::MissingNode
        | RestartError::MissingReason { .. }
        | RestartError::MissingRequester
        | RestartError::WaitTooLong { .. } => Status::invalid_argument(message),
        RestartError::UnknownNode { .. } => Status::not_found(message),
        RestartError::NotConnected { .. }
        | RestartError::NotDelivered { .. }
        | RestartError::ShuttingDown { .. } => Status::unavailable(message),
        RestartError::NoUnit { .. } | RestartError::MissingCapability { .. } => {
            Status::failed_precondition(message)
        }
        // ABORTED, the code for a concurrency conflict, lets clients tell "try
        // again later" apart from a node that cannot be restarted at all.
        RestartError::InProgress { .. } => Status::aborted(message),
        RestartError::NoResult { .. } => Status::deadline_exceeded(message),
        RestartError::NotRecorded(_) => Status::internal(message),
    }
}
