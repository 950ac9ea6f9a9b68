//! The identity a certificate proves: its subject's CN and OU, its serial
//! number and its SHA-256 fingerprint.

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

/// Purpose a certificate was issued for, from its subject's OU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// A compute node's agent; OU `node`.
    Node,
    /// A person or script using the operator API; OU `operator`.
    Operator,
    /// The controller's server certificate; OU `controller`.
    Controller,
}

impl CertKind {
    pub const ALL: [CertKind; 3] = [CertKind::Node, CertKind::Operator, CertKind::Controller];

    /// The OU value that marks this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Node => "node",
            CertKind::Operator => "operator",
            CertKind::Controller => "controller",
        }
    }

    pub fn parse(text: &str) -> Option<CertKind> {
        CertKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of a verified peer certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject CN: the node name, operator name or controller name.
    pub name: String,
    /// Subject OU, when it is one of the known kinds.
    pub kind: Option<CertKind>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint: String,
}

impl PeerIdentity {
    /// Reads the identity of a DER certificate. Fails when the certificate
    /// cannot be parsed or its subject has no UTF-8 CN.
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|err| format!("cannot parse the certificate: {err}"))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| format!("the certificate's subject {subject} has no Common Name"))?
            .to_string();
        let kind = subject
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok())
            .find_map(CertKind::parse);
        Ok(PeerIdentity {
            name,
            kind,
            serial: cert.raw_serial_as_string().replace(':', ""),
            fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
        })
    }

    /// A short form for events and logs: name, kind, serial and the first
    /// 16 hex digits of the fingerprint.
    pub fn describe(&self) -> String {
        let kind = self.kind.map_or("unknown kind", CertKind::as_str);
        let short = &self.fingerprint[..self.fingerprint.len().min(16)];
        format!(
            "{} ({kind} certificate, serial {}, sha256 {short})",
            self.name, self.serial
        )
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
