//! novamedic's mutual TLS, shared by the agent, the controller and the CLI.
//!
//! - [`files`]: loads and checks certificate, key, CA and CRL files.
//! - [`identity`]: the name and kind a peer's certificate proves.
//! - [`rustls_config`]: the controller's server config and the clients'
//!   verifier, both built from checked files.
//! - `issue` (feature `issue`): a small CA for `novamedic certs`.
//!
//! A peer's identity is the Common Name (CN) of its certificate's subject,
//! and its kind (node, operator or controller) is the subject's
//! Organizational Unit (OU). Subject alternative names are checked only for
//! the controller, whose DNS name or IP address the clients dial.

pub mod files;
pub mod identity;
#[cfg(feature = "issue")]
pub mod issue;
pub mod rustls_config;

pub use files::{MaterialError, TlsFiles, TlsMaterial};
pub use identity::{CertKind, PeerIdentity};

/// The crypto provider every config in this crate uses.
///
/// ring is chosen because it builds with a C compiler alone, where aws-lc-rs
/// needs cmake. rustls 0.23 deprecates ring's provider because it lacks
/// post-quantum key exchange; both sides here are novamedic, so the classic
/// groups suffice.
#[allow(deprecated)]
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
pub use rustls;
