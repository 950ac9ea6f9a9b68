//! Loads the PEM files of a TLS setup and checks them before use: present,
//! readable, PEM, the key matching the certificate, the certificate within
//! its validity period.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Paths of the files one side of a connection needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate, PEM; intermediates may follow the leaf.
    pub cert: PathBuf,
    /// Private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign the peers' certificates, PEM.
    pub ca: PathBuf,
    /// Certificate revocation lists of the CA, PEM; optional.
    pub crl: Option<PathBuf>,
}

/// A file of a TLS setup that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{role} file {}: {problem}", path.display())]
pub struct MaterialError {
    /// Which file: "certificate", "private key", "CA" or "CRL".
    pub role: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

/// The checked contents of [`TlsFiles`].
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    pub files: TlsFiles,
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: Arc<CertifiedKey>,
    /// The key file's bytes, for APIs that take PEM.
    pub key_pem: Vec<u8>,
    /// The certificate file's bytes, for APIs that take PEM.
    pub cert_pem: Vec<u8>,
    pub roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl TlsMaterial {
    /// Reads and checks every file. The first problem found is returned.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, MaterialError> {
        let cert_pem = read(&files.cert, "certificate")?;
        let cert_chain = parse_certs(&cert_pem, &files.cert, "certificate")?;
        check_validity(&cert_chain[0], &files.cert, "certificate")?;

        let key_pem = read(&files.key, "private key")?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| MaterialError {
            role: "private key",
            path: files.key.clone(),
            problem: format!("contains no PEM private key ({err})"),
        })?;
        let key = certified_key(cert_chain.clone(), key_der, files)?;

        let ca_pem = read(&files.ca, "CA")?;
        let ca_certs = parse_certs(&ca_pem, &files.ca, "CA")?;
        let mut roots = RootCertStore::empty();
        for cert in ca_certs {
            check_validity(&cert, &files.ca, "CA")?;
            roots.add(cert).map_err(|err| MaterialError {
                role: "CA",
                path: files.ca.clone(),
                problem: format!("is not a usable CA certificate: {err}"),
            })?;
        }

        let crls = match &files.crl {
            None => Vec::new(),
            Some(path) => parse_crls(&read(path, "CRL")?, path)?,
        };
        Ok(TlsMaterial {
            files: files.clone(),
            cert_chain,
            key: Arc::new(key),
            key_pem,
            cert_pem,
            roots: Arc::new(roots),
            crls,
        })
    }
}

fn read(path: &Path, role: &'static str) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|err| MaterialError {
        role,
        path: path.to_path_buf(),
        problem: match err.kind() {
            std::io::ErrorKind::NotFound => "is missing".to_string(),
            _ => format!("cannot be read: {err}"),
        },
    })
}

fn parse_certs(
    pem: &[u8],
    path: &Path,
    role: &'static str,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let error = |problem: String| MaterialError {
        role,
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| error(format!("is not valid PEM: {err}")))?;
    if certs.is_empty() {
        return Err(error(
            "contains no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
        ));
    }
    Ok(certs)
}

fn parse_crls(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, MaterialError> {
    let error = |problem: String| MaterialError {
        role: "CRL",
        path: path.to_path_buf(),
        problem,
    };
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| error(format!("is not valid PEM: {err}")))?;
    if crls.is_empty() {
        return Err(error(
            "contains no PEM revocation list (-----BEGIN X509 CRL-----)".to_string(),
        ));
    }
    Ok(crls)
}

/// Rejects a certificate outside its validity period.
fn check_validity(
    der: &CertificateDer<'_>,
    path: &Path,
    role: &'static str,
) -> Result<(), MaterialError> {
    let error = |problem: String| MaterialError {
        role,
        path: path.to_path_buf(),
        problem,
    };
    let (_, cert) = X509Certificate::from_der(der).map_err(|err| {
        error(format!(
            "contains a certificate that cannot be parsed: {err}"
        ))
    })?;
    let validity = cert.validity();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if validity.not_after.timestamp() < now {
        return Err(error(format!(
            "the certificate for {} expired on {}",
            cert.subject(),
            validity.not_after
        )));
    }
    if validity.not_before.timestamp() > now {
        return Err(error(format!(
            "the certificate for {} is not valid before {}",
            cert.subject(),
            validity.not_before
        )));
    }
    Ok(())
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    files: &TlsFiles,
) -> Result<CertifiedKey, MaterialError> {
    let provider = crate::crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| MaterialError {
            role: "private key",
            path: files.key.clone(),
            problem: format!("is not a usable private key: {err}"),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| MaterialError {
        role: "private key",
        path: files.key.clone(),
        problem: format!(
            "does not match the certificate {}; give the key the certificate was issued for",
            files.cert.display()
        ),
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a self-signed certificate valid from `not_before` to
    /// `not_after` (days from now) and its key into `dir`.
    fn write_cert(dir: &Path, not_before: i64, not_after: i64) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["node".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(not_before);
        params.not_after = now + time::Duration::days(not_after);
        let cert = params.self_signed(&key).unwrap();
        let files = TlsFiles {
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            ca: dir.join("node.crt"),
            crl: None,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn valid_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), -1, 1);
        let material = TlsMaterial::load(&files).unwrap();
        assert_eq!(material.cert_chain.len(), 1);
        assert!(material.crls.is_empty());
    }

    #[test]
    fn expired_cert_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), -10, -1);
        let message = TlsMaterial::load(&files).unwrap_err().to_string();
        assert!(message.starts_with("certificate file"), "{message}");
        assert!(message.contains("node.crt"), "{message}");
        assert!(message.contains("expired on"), "{message}");
    }

    #[test]
    fn future_cert_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), 2, 10);
        let message = TlsMaterial::load(&files).unwrap_err().to_string();
        assert!(message.contains("is not valid before"), "{message}");
    }

    #[test]
    fn unreadable_and_non_pem_files_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), -1, 1);
        let key_is_directory = TlsFiles {
            key: dir.path().to_path_buf(),
            ..files.clone()
        };
        let message = TlsMaterial::load(&key_is_directory)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("private key file"), "{message}");
        assert!(message.contains("cannot be read"), "{message}");

        std::fs::write(dir.path().join("garbage.key"), "not a key\n").unwrap();
        let garbage_key = TlsFiles {
            key: dir.path().join("garbage.key"),
            ..files
        };
        let message = TlsMaterial::load(&garbage_key).unwrap_err().to_string();
        assert!(message.contains("garbage.key"), "{message}");
        assert!(message.contains("no PEM private key"), "{message}");
    }
}
