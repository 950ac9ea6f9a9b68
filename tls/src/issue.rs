//! A small certificate authority for `novamedic certs`: one CA that signs
//! node, controller and operator certificates and keeps a revocation list.
//!
//! Layout of the CA directory:
//! - `ca.crt`, `ca.key`: the CA's certificate and key.
//! - `ca.crl`: the revocation list, signed again at every revocation.
//! - `KIND-NAME.crt`, `KIND-NAME.key`: issued certificates and their keys.
//!
//! Keys are written with mode 0600, certificates and the CRL with 0644.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::hex;
use crate::CertKind;

/// Validity of the CA certificate.
const CA_VALIDITY: Duration = Duration::days(3650);

/// Default validity of an issued certificate.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

/// Time until the CRL's next update. Verifiers here do not enforce it, so it
/// only informs other tools.
const CRL_VALIDITY: Duration = Duration::days(30);

/// A failed CA operation.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already exists; remove it or choose another directory", path.display())]
    Exists { path: PathBuf },
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("cannot build the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Files that `issue` writes.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Serial number, lowercase hex.
    pub serial: String,
}

/// Paths of the CA's own files in `dir`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

pub fn crl_path(dir: &Path) -> PathBuf {
    dir.join("ca.crl")
}

/// Path of an issued certificate; its key has the extension `.key`.
pub fn issued_cert_path(dir: &Path, kind: CertKind, name: &str) -> PathBuf {
    dir.join(format!("{kind}-{name}.crt"))
}

pub fn issued_key_path(dir: &Path, kind: CertKind, name: &str) -> PathBuf {
    dir.join(format!("{kind}-{name}.key"))
}

/// Creates a CA in `dir` (created if missing) with an empty CRL. Refuses to
/// overwrite an existing CA key.
pub fn init_ca(dir: &Path, common_name: &str) -> Result<(), IssueError> {
    std::fs::create_dir_all(dir).map_err(|source| IssueError::Io {
        action: "create the directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let key_path = ca_key_path(dir);
    if key_path.exists() {
        return Err(IssueError::Exists { path: key_path });
    }

    let key = KeyPair::generate()?;
    let params = ca_params(common_name);
    let cert = params.self_signed(&key)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&ca_cert_path(dir), cert.pem().as_bytes(), 0o644)?;

    let issuer = Issuer::new(params, key);
    write_crl(dir, &issuer, Vec::new())
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_VALIDITY;
    params
}

/// Signs a certificate of `kind` for `name` with the CA in `dir`. The
/// subject is `OU=KIND, CN=NAME`. Node and controller certificates also
/// carry `name` and every entry of `extra_sans` as subject alternative
/// names (an entry that parses as an IP address becomes an IP SAN).
pub fn issue(
    dir: &Path,
    kind: CertKind,
    name: &str,
    extra_sans: &[String],
    validity_days: u32,
) -> Result<Issued, IssueError> {
    check_name(name)?;
    let issuer = load_issuer(dir)?;
    let key = KeyPair::generate()?;

    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationalUnitName, kind.as_str());
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    let serial: [u8; 16] = rand_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match kind {
        CertKind::Controller => vec![ExtendedKeyUsagePurpose::ServerAuth],
        CertKind::Node | CertKind::Operator => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    if kind != CertKind::Operator {
        params.subject_alt_names = std::iter::once(name)
            .chain(extra_sans.iter().map(String::as_str))
            .map(san)
            .collect::<Result<_, _>>()?;
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(validity_days));

    let cert = params.signed_by(&key, &issuer)?;
    let issued = Issued {
        cert: issued_cert_path(dir, kind, name),
        key: issued_key_path(dir, kind, name),
        serial: hex(&serial),
    };
    write_file(&issued.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&issued.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(issued)
}

/// Adds the certificate at `cert` to the CA's revocation list and writes the
/// list again. Returns the revoked serial, lowercase hex.
pub fn revoke(dir: &Path, cert: &Path) -> Result<String, IssueError> {
    let issuer = load_issuer(dir)?;
    let pem = read_file(cert)?;
    let serial = pem_serial(&pem, cert)?;

    let mut revoked = revoked_serials(dir)?;
    if !revoked.contains(&serial) {
        revoked.push(serial.clone());
    }
    write_crl(dir, &issuer, revoked)?;
    Ok(hex(&serial))
}

fn write_crl(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    serials: Vec<Vec<u8>>,
) -> Result<(), IssueError> {
    let now = OffsetDateTime::now_utc();
    let crl_number = u64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(u64::MAX);
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .into_iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer)?;
    write_file(&crl_path(dir), crl.pem()?.as_bytes(), 0o644)
}

/// Serials already in the CA's CRL; none when it does not exist yet.
fn revoked_serials(dir: &Path) -> Result<Vec<Vec<u8>>, IssueError> {
    let path = crl_path(dir);
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(IssueError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    let invalid = |message: String| IssueError::Invalid {
        what: format!("revocation list {}", path.display()),
        message,
    };
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(&pem).map_err(|err| invalid(err.to_string()))?;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&parsed.contents)
            .map_err(|err| invalid(err.to_string()))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|revoked| revoked.raw_serial().to_vec())
        .collect())
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, IssueError> {
    let key_path = ca_key_path(dir);
    let key_pem = String::from_utf8_lossy(&read_file(&key_path)?).into_owned();
    let key = KeyPair::from_pem(&key_pem).map_err(|err| IssueError::Invalid {
        what: format!("CA key {}", key_path.display()),
        message: err.to_string(),
    })?;
    let cert_path = ca_cert_path(dir);
    let cert_pem = String::from_utf8_lossy(&read_file(&cert_path)?).into_owned();
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|err| IssueError::Invalid {
        what: format!("CA certificate {}", cert_path.display()),
        message: err.to_string(),
    })
}

fn pem_serial(pem: &[u8], path: &Path) -> Result<Vec<u8>, IssueError> {
    let invalid = |message: String| IssueError::Invalid {
        what: format!("certificate {}", path.display()),
        message,
    };
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|err| invalid(err.to_string()))?;
    let (_, cert) =
        X509Certificate::from_der(&parsed.contents).map_err(|err| invalid(err.to_string()))?;
    Ok(cert.raw_serial().to_vec())
}

/// A positive 128-bit serial: random, with the top bit cleared so the DER
/// integer needs no sign byte.
fn rand_serial() -> Result<[u8; 16], IssueError> {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(
        |_| IssueError::Invalid {
            what: "serial number".to_string(),
            message: "the system random number generator failed".to_string(),
        },
    )?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

fn san(entry: &str) -> Result<SanType, IssueError> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = entry
        .try_into()
        .map_err(|err: rcgen::Error| IssueError::Invalid {
            what: format!("subject alternative name {entry:?}"),
            message: err.to_string(),
        })?;
    Ok(SanType::DnsName(dns))
}

/// Accepts names that are also safe file names: 1 to 253 bytes of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot.
fn check_name(name: &str) -> Result<(), IssueError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 253 || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(IssueError::Invalid {
            what: format!("name {name:?}"),
            message: "a name has 1 to 253 of the characters A-Z, a-z, 0-9, '.', '_' and '-', \
                      and does not start with '.'"
                .to_string(),
        });
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, IssueError> {
    std::fs::read(path).map_err(|source| IssueError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to a temporary file with `mode` and renames it over
/// `path`, so a reader never sees a half-written file.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), IssueError> {
    let temporary = path.with_extension("tmp");
    let io_error = |action, source| IssueError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|source| io_error("create", source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error("write", source))?;
    std::fs::rename(&temporary, path).map_err(|source| io_error("rename into", source))
}
