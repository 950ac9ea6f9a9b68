//! Restarting nova-compute on one node: checks, audit record, delivery down
//! the agent's stream, and the wait for the result.

use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::view::{outcome_name, rfc3339_from_unix_ms};

use super::Controller;
use crate::clock::{format_age, now_unix_ms};
use crate::fleet::{kind, CommandRejection, CommandTicket};
use crate::store::{NewCommand, NewEvent, StoreError};

/// Extra wait beyond the agent's budget, for the result to travel back.
const RESULT_MARGIN: Duration = Duration::from_secs(2);

/// Command kind of a restart, as metrics label it.
const RESTART_COMMAND_KIND: &str = "restart_unit";

/// Time allowed to put a command into an agent's stream buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The reason a restart request got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("node is required")]
    MissingNode,
    #[error("reason is required: say why nova-compute on {node} should restart")]
    MissingReason { node: String },
    #[error("requested_by is required: the audit history records who asked")]
    MissingRequester,
    #[error("wait of {requested_seconds} s is above this controller's maximum of {max_seconds} s")]
    WaitTooLong {
        requested_seconds: u64,
        max_seconds: u64,
    },
    #[error("node {node} is not known to this controller; `novamedic nodes` lists known nodes")]
    UnknownNode { node: String },
    #[error("agent on {node} is not connected (last seen {last_seen})")]
    NotConnected { node: String, last_seen: String },
    #[error("agent on {node} reported no nova-compute unit, so there is nothing to restart")]
    NoUnit { node: String },
    #[error(
        "agent {agent_version} on {node} does not announce the {capability} capability; \
         upgrade the agent"
    )]
    MissingCapability {
        node: String,
        capability: &'static str,
        agent_version: String,
    },
    #[error(
        "a restart of {node} is already in progress (command {command_id}, requested by \
         {requested_by}); wait for its result in `novamedic events --node {node}`"
    )]
    InProgress {
        node: String,
        command_id: String,
        requested_by: String,
    },
    #[error("cannot record the command, so it was not sent")]
    NotRecorded(#[source] StoreError),
    #[error("agent on {node} disconnected before the command could be sent; it was not executed")]
    NotDelivered { node: String },
    #[error(
        "no result from {node} within {wait_seconds} s; the command may still complete: \
         see `novamedic events --node {node}`"
    )]
    NoResult { node: String, wait_seconds: f64 },
    #[error(
        "the controller is shutting down; the outcome of command {command_id} on {node} is \
             unknown: see `novamedic events --node {node}` after it restarts"
    )]
    ShuttingDown { node: String, command_id: String },
}

impl RestartError {
    /// Returns whether the command may have reached the agent, so that the
    /// restart may have happened although no outcome arrived.
    pub fn may_have_run(&self) -> bool {
        matches!(
            self,
            RestartError::NoResult { .. } | RestartError::ShuttingDown { .. }
        )
    }
}

/// Options of a restart beyond the operator's request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartOptions {
    /// Ask the agent to reset the unit's failed state first. Only agents
    /// that announce the reset capability get such a command.
    pub reset_failed: bool,
}

impl Controller {
    /// Asks the node's agent to restart nova-compute and waits for the outcome.
    pub async fn restart(
        &self,
        request: v1::RestartRequest,
    ) -> Result<v1::RestartResponse, RestartError> {
        self.restart_with(request, RestartOptions::default()).await
    }

    /// [`Controller::restart`] with `options`.
    pub async fn restart_with(
        &self,
        request: v1::RestartRequest,
        options: RestartOptions,
    ) -> Result<v1::RestartResponse, RestartError> {
        let node = request.node.trim().to_string();
        if node.is_empty() {
            return Err(RestartError::MissingNode);
        }
        let reason = request.reason.trim().to_string();
        if reason.is_empty() {
            return Err(RestartError::MissingReason { node });
        }
        let requested_by = request.requested_by.trim().to_string();
        if requested_by.is_empty() {
            return Err(RestartError::MissingRequester);
        }
        let wait = self.wait_for(request.wait_ms)?;

        let command_id = uuid::Uuid::new_v4().to_string();
        let ticket = self
            .fleet
            .begin_restart(&node, &command_id, &requested_by, options.reset_failed)
            .map_err(|rejection| rejection_error(&node, rejection))?;
        let command = NewCommand {
            command_id: command_id.clone(),
            node: node.clone(),
            unit: ticket.unit.clone(),
            reason,
            requested_by,
            issued_at_unix_ms: now_unix_ms(),
        };

        if let Err(err) = self.record_sent(&command, options).await {
            self.fleet.abandon_command(&node, &command_id);
            return Err(RestartError::NotRecorded(err));
        }
        let trigger = if command.requested_by == super::policy::POLICY_ACTOR {
            "policy"
        } else {
            "operator"
        };
        self.metrics.restart_sent(trigger);
        let result = self.deliver_and_wait(&command, options, ticket, wait).await;
        let outcome = match &result {
            Ok(result) => outcome_name(result.outcome),
            Err(RestartError::NotDelivered { .. }) => "not_delivered",
            Err(RestartError::NoResult { .. }) => "no_result",
            Err(_) => "shutting_down",
        };
        self.metrics.command_finished(RESTART_COMMAND_KIND, outcome);
        self.fleet.abandon_command(&node, &command_id);
        Ok(v1::RestartResponse {
            command_id,
            node,
            unit: command.unit,
            result: Some(result?),
        })
    }

    fn wait_for(&self, wait_ms: u64) -> Result<Duration, RestartError> {
        let wait = match wait_ms {
            0 => self.limits.default_wait,
            ms => Duration::from_millis(ms),
        };
        if wait > self.limits.max_wait {
            return Err(RestartError::WaitTooLong {
                requested_seconds: wait.as_secs(),
                max_seconds: self.limits.max_wait.as_secs(),
            });
        }
        Ok(wait)
    }

    async fn record_sent(
        &self,
        command: &NewCommand,
        options: RestartOptions,
    ) -> Result<(), StoreError> {
        let action = if options.reset_failed {
            "reset-failed and restart"
        } else {
            "restart"
        };
        let event = NewEvent {
            time_unix_ms: command.issued_at_unix_ms,
            node: command.node.clone(),
            kind: kind::COMMAND_SENT.to_string(),
            detail: format!("{action} {}: {}", command.unit, command.reason),
            actor: command.requested_by.clone(),
            command_id: command.command_id.clone(),
        };
        self.store.record_command(command, &event).await
    }

    async fn deliver_and_wait(
        &self,
        command: &NewCommand,
        options: RestartOptions,
        ticket: CommandTicket,
        wait: Duration,
    ) -> Result<v1::CommandResult, RestartError> {
        let message = command_message(command, options, wait);
        let sent = ticket.sender.send_timeout(message, SEND_TIMEOUT).await;
        if let Err(err) = sent {
            tracing::warn!(node = ?command.node, command_id = ?command.command_id, error = %err, "command not delivered");
            self.finish_undelivered(command).await;
            return Err(RestartError::NotDelivered {
                node: command.node.clone(),
            });
        }
        tracing::info!(
            node = ?command.node,
            command_id = ?command.command_id,
            requested_by = ?command.requested_by,
            wait_ms = wait.as_millis() as u64,
            "restart sent"
        );

        match tokio::time::timeout(wait + RESULT_MARGIN, ticket.reply).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_closed)) => Err(RestartError::ShuttingDown {
                node: command.node.clone(),
                command_id: command.command_id.clone(),
            }),
            Err(_elapsed) => {
                tracing::warn!(node = ?command.node, command_id = ?command.command_id, "no result in time");
                Err(RestartError::NoResult {
                    node: command.node.clone(),
                    wait_seconds: wait.as_secs_f64(),
                })
            }
        }
    }

    /// Closes the command's record when it never reached the agent, so its
    /// row does not look like a command that may still run.
    async fn finish_undelivered(&self, command: &NewCommand) {
        let now = now_unix_ms();
        let result = v1::CommandResult {
            command_id: command.command_id.clone(),
            detail: "the agent's stream closed before the command was sent".to_string(),
            ..Default::default()
        };
        let event = NewEvent {
            time_unix_ms: now,
            node: command.node.clone(),
            kind: kind::COMMAND_RESULT.to_string(),
            detail: format!("not_delivered: {}", result.detail),
            actor: command.requested_by.clone(),
            command_id: command.command_id.clone(),
        };
        if let Err(err) = self
            .store
            .finish_command(&result, "not_delivered", now, &event)
            .await
        {
            tracing::error!(
                node = ?command.node,
                command_id = ?command.command_id,
                error = %crate::error_chain(&err),
                "cannot record that a command was not delivered"
            );
        }
    }
}

fn command_message(
    command: &NewCommand,
    options: RestartOptions,
    wait: Duration,
) -> v1::ControllerMessage {
    let restart = v1::RestartUnit {
        unit: command.unit.clone(),
        reset_failed: options.reset_failed,
    };
    v1::ControllerMessage {
        body: Some(v1::controller_message::Body::Command(v1::Command {
            command_id: command.command_id.clone(),
            timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            requested_by: command.requested_by.clone(),
            reason: command.reason.clone(),
            action: Some(v1::command::Action::RestartUnit(restart)),
        })),
    }
}

fn rejection_error(node: &str, rejection: CommandRejection) -> RestartError {
    let node = node.to_string();
    match rejection {
        CommandRejection::UnknownNode => RestartError::UnknownNode { node },
        CommandRejection::NotConnected { last_seen_unix_ms } => RestartError::NotConnected {
            node,
            last_seen: match rfc3339_from_unix_ms(last_seen_unix_ms) {
                Some(time) => format!("{time}, {}", format_age(now_unix_ms() - last_seen_unix_ms)),
                None => "never".to_string(),
            },
        },
        CommandRejection::NoUnit => RestartError::NoUnit { node },
        CommandRejection::MissingCapability {
            capability,
            agent_version,
        } => RestartError::MissingCapability {
            node,
            capability,
            agent_version,
        },
        CommandRejection::InProgress {
            command_id,
            requested_by,
        } => RestartError::InProgress {
            node,
            command_id,
            requested_by,
        },
    }
}
