//! The gRPC service for the operator CLI and automation.

use std::sync::Arc;

use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_server::OperatorService;
use tonic::{Request, Response, Status};

use crate::auth::{Authority, Role};
use crate::controller::{Controller, RestartError};

/// Events returned when a request sets limit 0.
pub const DEFAULT_EVENT_LIMIT: u32 = 50;

/// Most events one request may return.
pub const MAX_EVENT_LIMIT: u32 = 1000;

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

    /// Checks that the caller holds `role`, logging a refusal.
    fn require<T>(
        &self,
        request: &Request<T>,
        role: Role,
        claimed_user: &str,
    ) -> Result<String, Status> {
        self.authority
            .require(request, role, claimed_user)
            .inspect_err(|status| {
                tracing::warn!(role = role.as_str(), error = %status.message(), "operator request refused");
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
        let nodes = self.controller.fleet().statuses();
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
        match self.controller.fleet().status(node.trim()) {
            Some(status) => Ok(Response::new(status)),
            None => Err(Status::not_found(format!(
                "node {node} is not known to this controller; `novamedic nodes` lists known nodes"
            ))),
        }
    }

    async fn restart_nova_compute(
        &self,
        request: Request<v1::RestartRequest>,
    ) -> Result<Response<v1::RestartResponse>, Status> {
        let actor = self.require(&request, Role::Operator, &request.get_ref().requested_by)?;
        let mut request = request.into_inner();
        // Under mutual TLS the certificate's name replaces whatever name the
        // client sent, so the history records an authenticated identity.
        request.requested_by = actor;
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
            if self.controller.fleet().status(node).is_none() {
                return Err(Status::not_found(format!(
                    "node {node} is not known to this controller; `novamedic nodes` lists \
                     known nodes"
                )));
            }
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
}

/// Maps a restart failure to the status code the API documents for it.
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
