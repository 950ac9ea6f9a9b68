//! The destination of the probe's call: the brokers, credentials and virtual host
//! of nova's `transport_url`, the control exchange and nova-compute's
//! routing key, read the way oslo.messaging 14 reads them.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use crate::collect::nova_conf::{MessagingSettings, RabbitTls};

/// Port of a broker the URL names without one, as oslo.messaging's
/// `impl_rabbit.Connection.__init__` chooses it.
pub const DEFAULT_AMQP_PORT: u16 = 5672;

/// Topic of nova-compute's RPC server (`nova.compute.rpcapi.RPC_TOPIC`).
pub const COMPUTE_TOPIC: &str = "compute";

/// A password that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One broker of the transport URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
}

impl Broker {
    /// Returns `host:port`, the broker's name in reports and logs.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Everything one probe needs to call nova-compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Tried in order until one accepts the connection.
    pub brokers: Vec<Broker>,
    pub virtual_host: String,
    /// The control exchange, a topic exchange nova's services declare.
    pub exchange: String,
    /// `compute.HOST`, the queue of this node's nova-compute.
    pub routing_key: String,
    pub tls: RabbitTls,
}

/// The reason no target could be built. The messages never contain the URL,
/// which contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("nova's transport_url is not set in {files}")]
    MissingUrl { files: String },
    #[error("nova's transport_url uses the {scheme:?} driver; the probe speaks RabbitMQ (rabbit://) only")]
    UnsupportedScheme { scheme: String },
    #[error("nova's transport_url is invalid: {reason}")]
    InvalidUrl { reason: String },
}

impl ProbeTarget {
    /// Builds the target from nova's settings. `hostname` is the node's host
    /// name, nova's default `[DEFAULT] host` (`socket.gethostname()`).
    pub fn from_settings(
        settings: &MessagingSettings,
        hostname: &str,
        files: &[PathBuf],
    ) -> Result<Self, TargetError> {
        let Some(url) = settings.transport_url.as_deref() else {
            let files = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TargetError::MissingUrl { files });
        };
        let (brokers, virtual_host) = parse_transport_url(url)?;
        let host = settings.host.as_deref().unwrap_or(hostname);
        Ok(ProbeTarget {
            brokers,
            virtual_host,
            exchange: settings.control_exchange.clone(),
            routing_key: format!("{COMPUTE_TOPIC}.{host}"),
            tls: settings.tls.clone(),
        })
    }
}

/// Parses `rabbit://USER:PASS@HOST:PORT,USER:PASS@HOST2/VHOST?OPTIONS` as
/// `oslo_messaging.transport.TransportURL.parse` does: hosts are separated
/// by commas, each with its own optional credentials, user and password are
/// percent-decoded, an IPv6 host is in brackets, and the path without its
/// leading slash is the virtual host. A missing virtual host is `/`, and a
/// missing user or password is empty, as in `impl_rabbit.Connection`.
pub fn parse_transport_url(url: &str) -> Result<(Vec<Broker>, String), TargetError> {
    let invalid = |reason: &str| TargetError::InvalidUrl {
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("it has no scheme such as rabbit://"))?;
    // oslo.messaging allows "driver+transport://"; the driver is the part
    // before the plus.
    let driver = scheme.split('+').next().unwrap_or(scheme);
    if !matches!(driver, "rabbit" | "kombu") {
        return Err(TargetError::UnsupportedScheme {
            scheme: scheme.to_string(),
        });
    }
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (netloc, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash + 1..]),
        None => (rest, ""),
    };
    let virtual_host = decode(path, "virtual host")?;
    let virtual_host = if virtual_host.is_empty() {
        "/".to_string()
    } else {
        virtual_host
    };

    let mut brokers = Vec::new();
    for entry in netloc.split(',').filter(|entry| !entry.is_empty()) {
        brokers.push(parse_host(entry)?);
    }
    if brokers.is_empty() {
        return Err(invalid("it names no broker host"));
    }
    Ok((brokers, virtual_host))
}

fn parse_host(entry: &str) -> Result<Broker, TargetError> {
    let invalid = |reason: String| TargetError::InvalidUrl { reason };
    let (credentials, address) = match entry.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, entry),
    };
    let (username, password) = match credentials {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (decode(user, "user")?, decode(password, "password")?),
            None => (decode(credentials, "user")?, String::new()),
        },
        None => (String::new(), String::new()),
    };

    let (host, port_text) = if let Some(bracketed) = address.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or_else(|| invalid("an IPv6 host lacks its closing ]".to_string()))?;
        let after = &bracketed[end + 1..];
        (&bracketed[..end], after.strip_prefix(':'))
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("a broker entry has no host".to_string()));
    }
    let port = match port_text.filter(|text| !text.is_empty()) {
        None => DEFAULT_AMQP_PORT,
        Some(text) => text
            .parse()
            .map_err(|_| invalid(format!("port {text:?} of host {host} is not a number")))?,
    };
    Ok(Broker {
        host: host.to_string(),
        port,
        username,
        password: Secret(password),
    })
}

/// Percent-decodes one part of the URL. The error names the part, never its
/// value, because the part may be the password.
fn decode(text: &str, part: &str) -> Result<String, TargetError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| TargetError::InvalidUrl {
            reason: format!("its {part} is not valid UTF-8 after percent-decoding"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(host: &str, port: u16, username: &str, password: &str) -> Broker {
        Broker {
            host: host.into(),
            port,
            username: username.into(),
            password: Secret(password.into()),
        }
    }

    #[test]
    fn one_host_with_vhost() {
        let (brokers, vhost) =
            parse_transport_url("rabbit://nova:novamedic-test@127.0.0.1:5672/nova").unwrap();
        assert_eq!(
            brokers,
            vec![broker("127.0.0.1", 5672, "nova", "novamedic-test")]
        );
        assert_eq!(vhost, "nova");
    }

    #[test]
    fn several_hosts_each_with_credentials() {
        let (brokers, vhost) =
            parse_transport_url("rabbit://a:pa@rabbit1:5672,b:pb@rabbit2,rabbit3:5673/?ssl=1")
                .unwrap();
        assert_eq!(
            brokers,
            vec![
                broker("rabbit1", 5672, "a", "pa"),
                broker("rabbit2", 5672, "b", "pb"),
                broker("rabbit3", 5673, "", ""),
            ]
        );
        assert_eq!(vhost, "/");
    }

    #[test]
    fn percent_encoded_credentials_and_vhost() {
        let (brokers, vhost) =
            parse_transport_url("rabbit://us%40er:p%3Ass%2Fw%40rd%25@[::1]:5671/open%2Fstack")
                .unwrap();
        assert_eq!(brokers, vec![broker("::1", 5671, "us@er", "p:ss/w@rd%")]);
        assert_eq!(brokers[0].address(), "[::1]:5671");
        assert_eq!(vhost, "open/stack");
    }

    #[test]
    fn password_with_at_sign_splits_at_last() {
        let (brokers, _) = parse_transport_url("rabbit://nova:a@b@host/").unwrap();
        assert_eq!(brokers, vec![broker("host", 5672, "nova", "a@b")]);
    }

    #[test]
    fn no_path_means_root_vhost() {
        let (_, vhost) = parse_transport_url("rabbit://host").unwrap();
        assert_eq!(vhost, "/");
    }

    #[test]
    fn invalid_urls_never_show_the_password() {
        let cases = [
            ("amqp://nova:hunter2@host/", "rabbit://"),
            ("nova:hunter2@host", "no scheme"),
            ("rabbit://nova:hunter2@host:56x72/", "not a number"),
            ("rabbit://nova:hunter2@/", "no host"),
            ("rabbit:///nova", "no broker"),
            ("rabbit://nova:hunter2@[::1/", "closing ]"),
            ("rabbit://nova:hunter2%ff@host/", "password"),
        ];
        for (url, expected) in cases {
            let message = parse_transport_url(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
        }
    }

    #[test]
    fn target_uses_host_or_hostname() {
        let mut settings = MessagingSettings {
            transport_url: Some("rabbit://nova:pw@rabbit:5672/nova".into()),
            control_exchange: "nova".into(),
            host: None,
            tls: RabbitTls::default(),
        };
        let target = ProbeTarget::from_settings(&settings, "node-a", &[]).unwrap();
        assert_eq!(target.routing_key, "compute.node-a");
        assert_eq!(target.exchange, "nova");
        assert_eq!(target.virtual_host, "nova");

        settings.host = Some("compute-07".into());
        settings.control_exchange = "openstack".into();
        let target = ProbeTarget::from_settings(&settings, "node-a", &[]).unwrap();
        assert_eq!(target.routing_key, "compute.compute-07");
        assert_eq!(target.exchange, "openstack");
        assert!(!format!("{target:?}").contains("pw\""), "{target:?}");
    }

    #[test]
    fn missing_url_names_the_files() {
        let settings = MessagingSettings::default();
        let err = ProbeTarget::from_settings(
            &settings,
            "node-a",
            &[PathBuf::from("/etc/nova/nova.conf")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("/etc/nova/nova.conf"), "{err}");
    }
}
