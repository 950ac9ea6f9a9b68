//! Event kinds the controller records. Scripts filter on them, so they are an
//! interface: add new ones, never rename.

/// First Hello ever from a node.
pub const NODE_REGISTERED: &str = "node_registered";
/// An agent's stream was accepted.
pub const AGENT_CONNECTED: &str = "agent_connected";
/// An agent's stream ended.
pub const AGENT_DISCONNECTED: &str = "agent_disconnected";
/// A new stream from a node replaced one that was still open.
pub const STREAM_REPLACED: &str = "stream_replaced";
/// An agent's stream was rejected because its certificate does not prove
/// the node it claims, or the node is connected under another certificate.
pub const STREAM_REJECTED: &str = "stream_rejected";
/// The node's health status changed, including to and from stale.
pub const HEALTH_CHANGED: &str = "health_changed";
/// nova-compute's unit changed state or was restarted.
pub const UNIT_STATE_CHANGED: &str = "unit_state_changed";
/// A command went down an agent's stream.
pub const COMMAND_SENT: &str = "command_sent";
/// A command finished, or could not be delivered.
pub const COMMAND_RESULT: &str = "command_result";
/// A command result came from a node other than the command's target; it was
/// not applied to the command.
pub const COMMAND_RESULT_REJECTED: &str = "command_result_rejected";
/// A command result named a command id this controller never issued.
pub const COMMAND_RESULT_UNMATCHED: &str = "command_result_unmatched";
/// An operator searched nova-compute's log files on the node; the detail
/// names the instance or requests, the window and what came back.
pub const LOG_SEARCH: &str = "log_search";
/// The self-healing policy decided something about a node: watching a
/// condition, holding back and why, restarting, verifying, escalating.
pub const POLICY_DECISION: &str = "policy_decision";
/// The storm guard paused all automation.
pub const STORM_GUARD: &str = "storm_guard";
/// An operator paused, resumed, silenced, unsilenced or cleared automation.
pub const POLICY_CONTROL: &str = "policy_control";
/// novamedic disabled a node's nova-compute service in Nova because the node
/// needs a human (`disable_service_on_escalation`).
pub const NOVA_SERVICE_DISABLED: &str = "nova_service_disabled";
/// novamedic enabled again the service it had disabled, after an operator
/// cleared the node.
pub const NOVA_SERVICE_ENABLED: &str = "nova_service_enabled";
/// novamedic left a node's service in Nova as it was, and why: already
/// disabled, disabled again by someone else, or not found.
pub const NOVA_SERVICE_UNCHANGED: &str = "nova_service_unchanged";
/// A change of a node's service in Nova failed.
pub const NOVA_SERVICE_CHANGE_FAILED: &str = "nova_service_change_failed";
