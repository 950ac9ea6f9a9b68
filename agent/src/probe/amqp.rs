//! One RPC call to nova-compute over AMQP 0-9-1 with amqprs, on a
//! connection opened for this call and closed after it.
//!
//! The steps follow what oslo.messaging 14.0.3 (Debian 12) expects of a
//! caller:
//!
//! 1. Declare the reply queue before the call. nova-compute publishes its
//!    reply to the default exchange, declared passively, with the reply
//!    queue's name as routing key and as mandatory, and gives up on a reply
//!    the broker returns (`_drivers/impl_rabbit.py`, `Connection.direct_send`;
//!    `_drivers/amqpdriver.py`, `AMQPIncomingMessage.reply`). Older
//!    releases published to a direct exchange named after the reply queue,
//!    so the probe also declares that exchange and binds the queue to it.
//! 2. Publish to the control exchange with routing key `compute.HOST`, as
//!    nova's own callers do (`_drivers/amqpdriver.py`, `AMQPDriverBase._send`
//!    with a target server, then `Connection.topic_send`). The call is
//!    mandatory, so a missing queue comes back as basic.return instead of
//!    silence. Its expiration equals the timeout, so a wedged nova-compute
//!    does not collect probes in its queue.
//! 3. Wait for the reply whose `_msg_id` is the call's.

use std::time::{Duration, Instant};

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicConsumeArguments, BasicPublishArguments, Channel, ExchangeDeclareArguments,
    QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use tokio::sync::mpsc;

use super::envelope::{self, CallIds};
use super::target::{Broker, ProbeTarget};

/// Time allowed to close the connection after the call; the outcome is
/// already known, so a slow close is only logged at debug level.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Content type of every oslo.messaging message (kombu's JSON serializer).
const CONTENT_TYPE: &str = "application/json";

/// The outcome of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// nova-compute replied; `failure_class` is the remote exception, if any.
    Replied {
        latency: Duration,
        failure_class: Option<String>,
    },
    /// The call was routed to a queue and no reply came in time.
    NoReply,
    /// The broker returned the call: nothing is bound to the routing key.
    Returned { reply_text: String },
    /// The control exchange does not exist on the virtual host.
    NoExchange { reply_text: String },
    /// No broker accepted a connection.
    BrokerUnreachable { reason: String },
    /// A broker accepted the connection but the call could not be made,
    /// for example because it refused the login.
    BrokerError { reason: String },
}

/// Calls nova-compute at `target` and waits at most `timeout` for the
/// reply. Returns the outcome and the broker used (`host:port`), if any.
pub async fn call(target: &ProbeTarget, timeout: Duration) -> (CallOutcome, Option<String>) {
    let mut unreachable = Vec::new();
    for broker in &target.brokers {
        let connection = match connect(target, broker, timeout).await {
            Ok(connection) => connection,
            Err(ConnectError::Unreachable(reason)) => {
                unreachable.push(format!("{}: {reason}", broker.address()));
                continue;
            }
            Err(ConnectError::Refused(reason)) => {
                let reason = format!("{}: {reason}", broker.address());
                return (CallOutcome::BrokerError { reason }, Some(broker.address()));
            }
        };
        let outcome = call_on(&connection, target, timeout).await;
        if tokio::time::timeout(CLOSE_TIMEOUT, connection.close())
            .await
            .is_err()
        {
            tracing::debug!(broker = %broker.address(), "closing the probe connection timed out");
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => CallOutcome::BrokerError {
                reason: redact(&reason, broker),
            },
        };
        return (outcome, Some(broker.address()));
    }
    let reason = unreachable.join("; ");
    (CallOutcome::BrokerUnreachable { reason }, None)
}

enum ConnectError {
    /// No TCP or TLS session: the broker is down or cannot be reached.
    Unreachable(String),
    /// The broker accepted the TCP connection but rejected the AMQP one.
    Refused(String),
}

async fn connect(
    target: &ProbeTarget,
    broker: &Broker,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let mut arguments = OpenConnectionArguments::new(
        &broker.host,
        broker.port,
        &broker.username,
        broker.password.expose(),
    );
    arguments
        .virtual_host(&target.virtual_host)
        .connection_name("novamedic-agent rpc probe");
    if target.tls.enabled {
        let adaptor = tls_adaptor(target, broker).map_err(ConnectError::Unreachable)?;
        arguments.tls_adaptor(adaptor);
    }
    match tokio::time::timeout(timeout, Connection::open(&arguments)).await {
        Err(_) => Err(ConnectError::Unreachable(format!(
            "no connection within {} ms",
            timeout.as_millis()
        ))),
        Ok(Err(amqprs::error::Error::NetworkError(reason))) => {
            Err(ConnectError::Unreachable(redact(&reason, broker)))
        }
        Ok(Err(err)) => Err(ConnectError::Refused(redact(&err.to_string(), broker))),
        Ok(Ok(connection)) => Ok(connection),
    }
}

/// Builds the TLS settings from `[oslo_messaging_rabbit]`: the CA file, or
/// the built-in web PKI roots without one, and a client certificate when
/// both `ssl_cert_file` and `ssl_key_file` are set.
///
/// NOTE: rustls always checks the certificate and the broker's host name.
/// oslo.messaging 14 checks the certificate only with `ssl_ca_file` and the
/// name only with `ssl_enforce_hostname_verification`
/// (`_drivers/impl_rabbit.py`, `Connection._fetch_ssl_params`). A broker
/// that nova accepts can therefore fail here, as "broker unreachable". No
/// test runs a TLS broker yet, so this path is checked by type only.
fn tls_adaptor(target: &ProbeTarget, broker: &Broker) -> Result<TlsAdaptor, String> {
    // amqprs leaves the choice of crypto provider to the application, and
    // installing it twice is harmless. ring builds without cmake, unlike
    // aws-lc-rs; rustls deprecated ring's provider only because it lacks
    // post-quantum key exchange, which no RabbitMQ release requires.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_file = target.tls.ca_file.as_deref();
    let adaptor = match (&target.tls.cert_file, &target.tls.key_file) {
        (Some(cert), Some(key)) => {
            // with_client_auth panics on a key it cannot use, so check first.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                TlsAdaptor::with_client_auth(ca_file, cert, key, broker.host.clone())
            }))
            .map_err(|_| format!("invalid TLS client key {}", key.display()))?
        }
        _ => TlsAdaptor::without_client_auth(ca_file, broker.host.clone()),
    };
    adaptor.map_err(|err| format!("cannot set up TLS: {err}"))
}

/// Events of the probe's channel that its callback forwards.
#[derive(Debug)]
enum ChannelEvent {
    Returned(String),
    Closed { code: u16, text: String },
}

struct ForwardingCallback {
    events: mpsc::UnboundedSender<ChannelEvent>,
}

#[async_trait::async_trait]
impl ChannelCallback for ForwardingCallback {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.events.send(ChannelEvent::Closed {
            code: close.reply_code(),
            text: close.reply_text().clone(),
        });
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, _ack: Ack) {}

    async fn publish_nack(&mut self, _channel: &Channel, _nack: Nack) {}

    async fn publish_return(
        &mut self,
        _channel: &Channel,
        ret: Return,
        _properties: BasicProperties,
        _content: Vec<u8>,
    ) {
        let _ = self
            .events
            .send(ChannelEvent::Returned(ret.reply_text().clone()));
    }
}

/// AMQP reply code of a channel closed for a missing entity.
const NOT_FOUND: u16 = 404;

async fn call_on(
    connection: &Connection,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<CallOutcome, String> {
    let deadline = Instant::now() + timeout;
    let setup = async {
        let channel = connection
            .open_channel(None)
            .await
            .map_err(|err| format!("cannot open a channel: {err}"))?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        channel
            .register_callback(ForwardingCallback { events: events_tx })
            .await
            .map_err(|err| format!("cannot register the channel callback: {err}"))?;
        let ids = CallIds::random();
        declare_reply_queue(&channel, &ids.reply_queue).await?;
        let (_, replies) = channel
            .basic_consume_rx(
                BasicConsumeArguments::new(&ids.reply_queue, "")
                    .manual_ack(false)
                    .exclusive(true)
                    .finish(),
            )
            .await
            .map_err(|err| format!("cannot consume the reply queue: {err}"))?;
        Ok::<_, String>((channel, events_rx, replies, ids))
    };
    let (channel, mut events, mut replies, ids) =
        match tokio::time::timeout_at(deadline.into(), setup).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "broker did not set up the reply queue within {} ms",
                    timeout.as_millis()
                ))
            }
        };

    let properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE)
        .with_content_encoding("utf-8")
        .with_delivery_mode(amqprs::DELIVERY_MODE_TRANSIENT)
        .with_expiration(&expiration_ms(timeout))
        .finish();
    let publish = BasicPublishArguments::new(&target.exchange, &target.routing_key)
        .mandatory(true)
        .finish();
    let published_at = Instant::now();
    channel
        .basic_publish(properties, envelope::call_body(&ids), publish)
        .await
        .map_err(|err| format!("cannot publish the call: {err}"))?;

    let wait_until = tokio::time::Instant::from_std(published_at + timeout);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(wait_until) => return Ok(CallOutcome::NoReply),
            event = events.recv() => match event {
                Some(ChannelEvent::Returned(reply_text)) => {
                    return Ok(CallOutcome::Returned { reply_text });
                }
                Some(ChannelEvent::Closed { code: NOT_FOUND, text }) => {
                    return Ok(CallOutcome::NoExchange { reply_text: text });
                }
                Some(ChannelEvent::Closed { code, text }) => {
                    return Err(format!("broker closed the channel: {code} {text}"));
                }
                None => return Err("the channel's callback ended".to_string()),
            },
            message = replies.recv() => {
                let Some(message) = message else {
                    return Err("the broker cancelled the reply consumer".to_string());
                };
                let body = message.content.unwrap_or_default();
                match envelope::parse_reply(&body, &ids.msg_id) {
                    Ok(reply) => {
                        return Ok(CallOutcome::Replied {
                            latency: published_at.elapsed(),
                            failure_class: reply.failure_class,
                        });
                    }
                    // A late reply to an earlier probe cannot reach this
                    // queue, so anything else is logged and skipped.
                    Err(err) => tracing::debug!(error = %err, "ignored a message on the reply queue"),
                }
            }
        }
    }
}

/// Declares the reply queue (exclusive, so the broker deletes it with the
/// connection) and, for oslo.messaging before 13, a direct exchange of the
/// same name bound to it.
async fn declare_reply_queue(channel: &Channel, queue: &str) -> Result<(), String> {
    channel
        .queue_declare(
            QueueDeclareArguments::new(queue)
                .exclusive(true)
                .auto_delete(true)
                .finish(),
        )
        .await
        .map_err(|err| format!("cannot declare the reply queue: {err}"))?;
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(queue, "direct")
                .auto_delete(true)
                .finish(),
        )
        .await
        .map_err(|err| format!("cannot declare the reply exchange: {err}"))?;
    channel
        .queue_bind(QueueBindArguments::new(queue, queue, queue).finish())
        .await
        .map_err(|err| format!("cannot bind the reply queue: {err}"))?;
    Ok(())
}

/// Returns the per-message expiration in milliseconds, at least 1: the
/// broker drops a call still queued after the probe gave up on it.
pub fn expiration_ms(timeout: Duration) -> String {
    timeout.as_millis().max(1).to_string()
}

/// Removes the broker's password from a message, should a library ever
/// echo it.
fn redact(message: &str, broker: &Broker) -> String {
    let password = broker.password.expose();
    if password.is_empty() {
        return message.to_string();
    }
    message.replace(password, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_the_timeout_in_ms() {
        assert_eq!(expiration_ms(Duration::from_secs(5)), "5000");
        assert_eq!(expiration_ms(Duration::from_millis(1500)), "1500");
        assert_eq!(expiration_ms(Duration::ZERO), "1");
    }
}
