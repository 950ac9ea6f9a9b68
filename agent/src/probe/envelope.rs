//! The oslo.messaging message envelope (version 2.0) of the probe's call
//! and of nova-compute's reply.
//!
//! A call is a JSON object with `method`, `args` and `version`, plus the
//! driver's keys `_msg_id` (matched by the reply), `_reply_q` (the queue the
//! reply goes to) and `_unique_id` (the server's duplicate filter). The
//! envelope wraps it as a JSON string: `{"oslo.version": "2.0",
//! "oslo.message": "..."}` (`oslo_messaging/_drivers/common.py`,
//! `serialize_msg`). The reply is another envelope whose message contains
//! `_msg_id`, `result`, `failure` and `ending`
//! (`_drivers/amqpdriver.py`, `AMQPIncomingMessage._send_reply`).

use serde_json::{json, Value};

/// Version of the envelope format, `_drivers/common.py` `_RPC_ENVELOPE_VERSION`.
pub const ENVELOPE_VERSION: &str = "2.0";

const VERSION_KEY: &str = "oslo.version";
const MESSAGE_KEY: &str = "oslo.message";

/// Method the probe calls. nova-compute has no such method, so its RPC
/// dispatcher replies with `NoSuchMethod` without running any nova code,
/// and the reply itself is the proof of life. oslo.messaging logs a missing
/// method at ERROR with a traceback, except one whose name ends in
/// `_ignore_errors`, which it logs at DEBUG (`rpc/server.py`,
/// `RPCServer._process_incoming`), so the probe leaves nova-compute's log
/// clean.
pub const PROBE_METHOD: &str = "novamedic_liveness_probe_ignore_errors";

/// Namespace and version of the call: nova's base RPC API (`nova/baserpc.py`,
/// `BaseRPCAPI`, version 1.1 in every nova since 2014), which every nova
/// service serves. A compatible version makes the dispatcher look up the
/// method instead of raising `UnsupportedVersion`, which is logged at ERROR.
pub const PROBE_NAMESPACE: &str = "baseapi";
pub const PROBE_VERSION: &str = "1.0";

/// Ids of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIds {
    /// `_msg_id`, echoed in the reply.
    pub msg_id: String,
    /// `_unique_id`; oslo.messaging drops a message whose id it has seen.
    pub unique_id: String,
    /// `_reply_q`, the queue the reply is published to.
    pub reply_queue: String,
}

impl CallIds {
    /// Returns ids of 32 random hex digits, the form `uuid.uuid4().hex`
    /// has in oslo.messaging.
    pub fn random() -> Self {
        let msg_id = random_hex();
        CallIds {
            reply_queue: format!("reply_novamedic_{msg_id}"),
            msg_id,
            unique_id: random_hex(),
        }
    }
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Returns the body of the probe's call, envelope included.
pub fn call_body(ids: &CallIds) -> Vec<u8> {
    let message = json!({
        "method": PROBE_METHOD,
        "args": {},
        "namespace": PROBE_NAMESPACE,
        "version": PROBE_VERSION,
        "_msg_id": ids.msg_id,
        "_reply_q": ids.reply_queue,
        "_unique_id": ids.unique_id,
    });
    let envelope = json!({
        VERSION_KEY: ENVELOPE_VERSION,
        MESSAGE_KEY: message.to_string(),
    });
    envelope.to_string().into_bytes()
}

/// nova-compute's reply to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Class of the remote exception, for example `NoSuchMethod`; `None`
    /// when the call succeeded.
    pub failure_class: Option<String>,
}

/// The reason a message on the reply queue is not the reply to this call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply is not JSON")]
    NotJson,
    #[error("reply envelope has version {0:?}, expected 2.0")]
    UnknownEnvelope(String),
    #[error("reply carries _msg_id {0:?}, not the probe's")]
    OtherCall(String),
}

/// Decodes a message from the reply queue and checks that it is the reply
/// to the call with `msg_id`. A message without an envelope is read as the bare
/// message, as `_drivers/common.py` `deserialize_msg` does.
pub fn parse_reply(body: &[u8], msg_id: &str) -> Result<Reply, ReplyError> {
    let outer: Value = serde_json::from_slice(body).map_err(|_| ReplyError::NotJson)?;
    let message = match outer.get(VERSION_KEY) {
        None => outer,
        Some(version) if version == ENVELOPE_VERSION => {
            let text = outer
                .get(MESSAGE_KEY)
                .and_then(Value::as_str)
                .ok_or(ReplyError::NotJson)?;
            serde_json::from_str(text).map_err(|_| ReplyError::NotJson)?
        }
        Some(version) => return Err(ReplyError::UnknownEnvelope(version.to_string())),
    };
    let reply_id = message.get("_msg_id").and_then(Value::as_str).unwrap_or("");
    if reply_id != msg_id {
        return Err(ReplyError::OtherCall(reply_id.to_string()));
    }
    Ok(Reply {
        failure_class: message.get("failure").and_then(failure_class),
    })
}

/// Returns the exception class of a `failure`, which oslo.messaging sends
/// as a JSON string with a `class` key (`_drivers/common.py`,
/// `serialize_remote_exception`). `null` means no failure.
fn failure_class(failure: &Value) -> Option<String> {
    let parsed: Value = match failure {
        Value::Null => return None,
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let class = parsed
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or("unknown exception");
    Some(class.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> CallIds {
        CallIds {
            msg_id: "0123456789abcdef0123456789abcdef".into(),
            unique_id: "fedcba9876543210fedcba9876543210".into(),
            reply_queue: "reply_novamedic_0123456789abcdef0123456789abcdef".into(),
        }
    }

    fn envelope(message: Value) -> Vec<u8> {
        json!({"oslo.version": "2.0", "oslo.message": message.to_string()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn call_body_is_a_version_2_envelope() {
        let body = call_body(&ids());
        let outer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(outer["oslo.version"], "2.0");
        assert_eq!(outer.as_object().unwrap().len(), 2, "{outer}");
        let inner: Value = serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["method"], PROBE_METHOD);
        assert_eq!(inner["args"], json!({}));
        assert_eq!(inner["namespace"], "baseapi");
        assert_eq!(inner["version"], PROBE_VERSION);
        assert!(PROBE_METHOD.ends_with("_ignore_errors"));
        assert_eq!(inner["_msg_id"], ids().msg_id);
        assert_eq!(inner["_reply_q"], ids().reply_queue);
        assert_eq!(inner["_unique_id"], ids().unique_id);
        assert!(inner.get("_timeout").is_none(), "no call monitor: {inner}");
    }

    #[test]
    fn random_ids_are_32_hex_digits_and_differ() {
        let first = CallIds::random();
        let second = CallIds::random();
        assert_eq!(first.msg_id.len(), 32);
        assert!(first.msg_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first.msg_id, second.msg_id);
        assert_ne!(first.msg_id, first.unique_id);
        assert!(first.reply_queue.ends_with(&first.msg_id));
    }

    #[test]
    fn no_such_method_reply_is_a_reply() {
        let failure = json!({
            "class": "NoSuchMethod",
            "module": "oslo_messaging.rpc.dispatcher",
            "message": "Endpoint does not support RPC method novamedic_liveness_probe_ignore_errors",
            "tb": [],
        })
        .to_string();
        let body = envelope(json!({
            "_msg_id": ids().msg_id,
            "result": null,
            "failure": failure,
            "ending": true,
        }));
        let reply = parse_reply(&body, &ids().msg_id).unwrap();
        assert_eq!(reply.failure_class.as_deref(), Some("NoSuchMethod"));
    }

    #[test]
    fn successful_and_bare_replies() {
        let message =
            json!({"_msg_id": ids().msg_id, "result": 1, "failure": null, "ending": true});
        let reply = parse_reply(&envelope(message.clone()), &ids().msg_id).unwrap();
        assert_eq!(reply.failure_class, None);
        let bare = message.to_string().into_bytes();
        assert_eq!(parse_reply(&bare, &ids().msg_id).unwrap(), reply);
    }

    #[test]
    fn foreign_or_broken_replies_are_rejected() {
        let other = envelope(json!({"_msg_id": "someone-else", "ending": true}));
        assert_eq!(
            parse_reply(&other, &ids().msg_id),
            Err(ReplyError::OtherCall("someone-else".into()))
        );
        assert_eq!(
            parse_reply(b"not json", &ids().msg_id),
            Err(ReplyError::NotJson)
        );
        let future = json!({"oslo.version": "3.0", "oslo.message": "{}"})
            .to_string()
            .into_bytes();
        assert!(matches!(
            parse_reply(&future, &ids().msg_id),
            Err(ReplyError::UnknownEnvelope(_))
        ));
    }
}
