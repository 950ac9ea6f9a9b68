//! The caller's identity: the identity a client's TLS certificate proves, and the
//! operator roles the configuration grants to certificate names.
//!
//! Under mutual TLS the listener has already verified the certificate
//! against the CA and the CRL; this module reads its name and kind. In
//! plain-text mode there is no certificate, every operator request is
//! allowed and the actor is the user name the client sends.

use novamedic_tls::{CertKind, PeerIdentity};
use tonic::{Request, Status};

/// Permission level of a caller of the operator API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// List nodes, show a node, list events.
    Viewer,
    /// Everything a viewer may do, plus restart.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// Certificate names (CN of operator certificates) per role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub operators: Vec<String>,
    pub viewers: Vec<String>,
}

impl Roles {
    /// Whether `name` has `role`. The operator role includes the viewer's.
    pub fn grants(&self, name: &str, role: Role) -> bool {
        let listed = |names: &[String]| names.iter().any(|listed| listed == name);
        match role {
            Role::Operator => listed(&self.operators),
            Role::Viewer => listed(&self.operators) || listed(&self.viewers),
        }
    }
}

/// The access rules of one controller.
#[derive(Clone, Debug)]
pub struct Authority {
    /// True when the listener speaks plain text and no client is
    /// authenticated.
    pub plaintext: bool,
    pub roles: Roles,
}

impl Authority {
    /// The verified identity of the client that sent `request`, or `None` in
    /// plain-text mode.
    pub fn peer<T>(&self, request: &Request<T>) -> Result<Option<PeerIdentity>, Status> {
        if self.plaintext {
            return Ok(None);
        }
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("no client certificate; this controller requires mutual TLS")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("no client certificate; this controller requires mutual TLS")
        })?;
        PeerIdentity::from_der(leaf).map(Some).map_err(|problem| {
            Status::unauthenticated(format!("unusable client certificate: {problem}"))
        })
    }

    /// Checks that the caller has `role` and returns the name to record
    /// as the actor: the certificate's name, or under plain text
    /// `claimed_user` as the client sent it.
    pub fn require<T>(
        &self,
        request: &Request<T>,
        role: Role,
        claimed_user: &str,
    ) -> Result<String, Status> {
        let Some(peer) = self.peer(request)? else {
            return Ok(claimed_user.trim().to_string());
        };
        if peer.kind != Some(CertKind::Operator) {
            return Err(Status::permission_denied(format!(
                "{} is not an operator certificate (its OU is not \"operator\"), so it holds no \
                 role; the {} role is needed. Use a certificate issued with \
                 `novamedic certs issue --kind operator`",
                peer.describe(),
                role.as_str()
            )));
        }
        if !self.roles.grants(&peer.name, role) {
            let key = match role {
                Role::Operator => "operators",
                Role::Viewer => "viewers or operators",
            };
            return Err(Status::permission_denied(format!(
                "{} lacks the {} role; add {:?} to [roles] {key} in the controller's configuration",
                peer.name,
                role.as_str(),
                peer.name
            )));
        }
        Ok(peer.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_includes_viewer() {
        let roles = Roles {
            operators: vec!["alice".into()],
            viewers: vec!["bob".into()],
        };
        assert!(roles.grants("alice", Role::Operator));
        assert!(roles.grants("alice", Role::Viewer));
        assert!(roles.grants("bob", Role::Viewer));
        assert!(!roles.grants("bob", Role::Operator));
        assert!(!roles.grants("carol", Role::Viewer));
    }
}
