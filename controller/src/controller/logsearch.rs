//! Searching nova-compute's log files on one node: checks, delivery down
//! the agent's stream, the wait for the result, and an audit event.
//!
//! A search only reads on the node, so it is not recorded as a command in
//! the store and neither waits for nor blocks a restart. Its answer can
//! hold log lines, so who asked, for what, and how much came back is
//! written to the event history.

use std::time::Duration;

use novamedic_proto::v1;
use novamedic_proto::view::rfc3339_from_unix_ms;

use super::Controller;
use crate::clock::{format_age, now_unix_ms};
use crate::fleet::{kind, CommandRejection};
use crate::store::NewEvent;

/// Wait used when a request sets wait_ms 0.
pub const DEFAULT_SEARCH_WAIT: Duration = Duration::from_secs(30);

/// Maximum wait a request may set.
pub const MAX_SEARCH_WAIT: Duration = Duration::from_secs(120);

/// Extra wait beyond the agent's budget, for the result to travel back.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// Time allowed to put the command into the agent's stream buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The reason a log search got no result.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("node is required")]
    MissingNode,
    #[error("search is required: name the instance UUID or request ids and the window")]
    MissingSearch,
    #[error(
        "wait of {requested_seconds} s is above the maximum of {max_seconds} s for a log search"
    )]
    WaitTooLong {
        requested_seconds: u64,
        max_seconds: u64,
    },
    #[error("node {node} is not known to this controller; `novamedic nodes` lists known nodes")]
    UnknownNode { node: String },
    #[error("agent on {node} is not connected (last seen {last_seen})")]
    NotConnected { node: String, last_seen: String },
    #[error(
        "agent {agent_version} on {node} does not announce the {capability} capability; \
         upgrade the agent"
    )]
    MissingCapability {
        node: String,
        capability: &'static str,
        agent_version: String,
    },
    #[error("agent on {node} disconnected before the search could be sent")]
    NotDelivered { node: String },
    #[error("agent on {node} disconnected before answering the search")]
    Disconnected { node: String },
    #[error("no answer from {node} within {wait_seconds} s; search a shorter window")]
    NoAnswer { node: String, wait_seconds: f64 },
}

impl Controller {
    /// Asks the node's agent to search nova-compute's log files and waits
    /// for the answer. `requested_by` is recorded with the search.
    pub async fn search_logs(
        &self,
        request: v1::SearchNodeLogsRequest,
        requested_by: &str,
    ) -> Result<v1::SearchNodeLogsResponse, SearchError> {
        let node = request.node.trim().to_string();
        if node.is_empty() {
            return Err(SearchError::MissingNode);
        }
        let search = request.search.ok_or(SearchError::MissingSearch)?;
        let wait = match request.wait_ms {
            0 => DEFAULT_SEARCH_WAIT,
            ms => Duration::from_millis(ms),
        };
        if wait > MAX_SEARCH_WAIT {
            return Err(SearchError::WaitTooLong {
                requested_seconds: wait.as_secs(),
                max_seconds: MAX_SEARCH_WAIT.as_secs(),
            });
        }

        let command_id = uuid::Uuid::new_v4().to_string();
        let ticket = self
            .fleet
            .begin_search(&node, &command_id)
            .map_err(|rejection| rejection_error(&node, rejection))?;
        let what = describe(&search);
        let message = v1::ControllerMessage {
            body: Some(v1::controller_message::Body::Command(v1::Command {
                command_id: command_id.clone(),
                timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                requested_by: requested_by.to_string(),
                reason: what.clone(),
                action: Some(v1::command::Action::SearchLogs(search)),
            })),
        };
        if ticket
            .sender
            .send_timeout(message, SEND_TIMEOUT)
            .await
            .is_err()
        {
            self.fleet.abandon_search(&node, &command_id);
            return Err(SearchError::NotDelivered { node });
        }
        tracing::info!(node = ?node, command_id = ?command_id, requested_by, "log search sent");

        let answer = tokio::time::timeout(wait + ANSWER_MARGIN, ticket.reply).await;
        self.fleet.abandon_search(&node, &command_id);
        let result = match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_closed)) => return Err(SearchError::Disconnected { node }),
            Err(_elapsed) => {
                return Err(SearchError::NoAnswer {
                    node,
                    wait_seconds: wait.as_secs_f64(),
                })
            }
        };
        self.record_search(&node, &command_id, requested_by, &what, &result)
            .await;
        Ok(v1::SearchNodeLogsResponse {
            node,
            result: Some(result),
        })
    }

    async fn record_search(
        &self,
        node: &str,
        command_id: &str,
        requested_by: &str,
        what: &str,
        result: &v1::CommandResult,
    ) {
        let event = NewEvent {
            time_unix_ms: now_unix_ms(),
            node: node.to_string(),
            kind: kind::LOG_SEARCH.to_string(),
            detail: format!("{what}: {}", result.detail),
            actor: requested_by.to_string(),
            command_id: command_id.to_string(),
        };
        if let Err(err) = self.store.append_event(&event).await {
            tracing::error!(node, command_id, error = %crate::error_chain(&err), "cannot record a log search");
        }
    }
}

/// Names what a search looks for, for the history and the agent's log.
fn describe(search: &v1::SearchLogs) -> String {
    let mut parts = Vec::new();
    if !search.instance_uuid.is_empty() {
        parts.push(format!("instance {}", search.instance_uuid));
    }
    if !search.request_ids.is_empty() {
        parts.push(format!("{} request ids", search.request_ids.len()));
    }
    let window = |ms| rfc3339_from_unix_ms(ms).unwrap_or_else(|| ms.to_string());
    format!(
        "searched nova-compute's logs for {} from {} to {}",
        parts.join(" and "),
        window(search.start_unix_ms),
        window(search.end_unix_ms)
    )
}

fn rejection_error(node: &str, rejection: CommandRejection) -> SearchError {
    let node = node.to_string();
    match rejection {
        CommandRejection::NotConnected { last_seen_unix_ms } => SearchError::NotConnected {
            node,
            last_seen: match rfc3339_from_unix_ms(last_seen_unix_ms) {
                Some(time) => format!("{time}, {}", format_age(now_unix_ms() - last_seen_unix_ms)),
                None => "never".to_string(),
            },
        },
        CommandRejection::MissingCapability {
            capability,
            agent_version,
        } => SearchError::MissingCapability {
            node,
            capability,
            agent_version,
        },
        CommandRejection::UnknownNode => SearchError::UnknownNode { node },
        // begin_search gives neither: a search needs no unit and waits for
        // no other command.
        CommandRejection::NoUnit | CommandRejection::InProgress { .. } => {
            SearchError::NotDelivered { node }
        }
    }
}
