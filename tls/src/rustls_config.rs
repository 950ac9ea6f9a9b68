//! rustls configs built from checked [`TlsMaterial`].

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::TlsMaterial;

/// The controller's server config: it requires a client certificate signed
/// by the configured CA and not revoked by the configured CRLs, and offers
/// only HTTP/2.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = crate::crypto_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::clone(&material.roots),
        Arc::clone(&provider),
    )
    .with_crls(material.crls.iter().cloned())
    .only_check_end_entity_revocation()
    .build()
    .map_err(|err| rustls::Error::General(err.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OneCert(Arc::clone(&material.key))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The clients' check of the controller's certificate: signed by the
/// configured CA and not revoked by the configured CRLs.
pub fn server_verifier(
    material: &TlsMaterial,
) -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::clone(&material.roots),
        crate::crypto_provider(),
    )
    .with_crls(material.crls.iter().cloned())
    .only_check_end_entity_revocation()
    .build()
    .map_err(|err| rustls::Error::General(err.to_string()))?;
    Ok(verifier)
}

/// Offers the same certificate to every client, whatever its SNI.
#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
