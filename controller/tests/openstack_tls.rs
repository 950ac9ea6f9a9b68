//! The OpenStack client against an HTTPS endpoint that requires a client
//! certificate: `cacert` trusts the server, `cert` and `key` (`OS_CERT`,
//! `OS_KEY`) authenticate the client, and a missing or broken client
//! identity gives an error that names the files, never the key.

use std::path::Path;
use std::sync::Arc;

use novamedic::openstack::config::{self, Environment, Overrides, SearchPaths};
use novamedic::openstack::{Client, Service};
use novamedic_tls::{issue, CertKind, TlsFiles, TlsMaterial};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// An HTTPS server on 127.0.0.1 that requires a client certificate signed
/// by the CA in `ca_dir` and responds to every request with the peer's
/// certificate count in a JSON body. Returns its port.
async fn start_server(ca_dir: &Path) -> u16 {
    let server = issue::issue(
        ca_dir,
        CertKind::Controller,
        "127.0.0.1",
        &["localhost".to_string()],
        1,
    )
    .expect("server certificate");
    let material = TlsMaterial::load(&TlsFiles {
        cert: server.cert,
        key: server.key,
        ca: issue::ca_cert_path(ca_dir),
        crl: None,
    })
    .expect("server material");

    // The controller's own config speaks h2 only; this server speaks
    // HTTP/1.1, as most OpenStack endpoints behind a proxy do.
    let mut config =
        (*novamedic_tls::rustls_config::server_config(&material).expect("config")).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();

    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A handshake without a client certificate fails here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peers = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = format!("{{\"client_certificates\": {peers}}}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn environment(port: u16, ca_dir: &Path, extra: &[(&str, String)]) -> Environment {
    let mut env: Environment = [
        ("OS_AUTH_TYPE", "token".to_string()),
        ("OS_TOKEN", "admin:admin".to_string()),
        (
            "OS_IMAGE_ENDPOINT_OVERRIDE",
            format!("https://127.0.0.1:{port}"),
        ),
        (
            "OS_CACERT",
            issue::ca_cert_path(ca_dir).display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    for (name, value) in extra {
        env.insert(name.to_string(), value.clone());
    }
    env
}

fn client(env: &Environment) -> Result<Client, String> {
    let cloud = config::load(env, &SearchPaths::default(), &Overrides::default())
        .map_err(|err| err.to_string())?;
    Client::new(cloud, None).map_err(|err| err.to_string())
}

#[tokio::test]
async fn client_certificate_accepted_by_server() {
    let ca_dir = tempfile::tempdir().unwrap();
    issue::init_ca(ca_dir.path(), "novamedic test CA").unwrap();
    let port = start_server(ca_dir.path()).await;
    let operator = issue::issue(ca_dir.path(), CertKind::Operator, "oncall", &[], 1).unwrap();

    // Certificate and key in their own files.
    let env = environment(
        port,
        ca_dir.path(),
        &[
            ("OS_CERT", operator.cert.display().to_string()),
            ("OS_KEY", operator.key.display().to_string()),
        ],
    );
    let answer: Value = client(&env)
        .unwrap()
        .get(Service::Image, "/v2/images", &[])
        .await
        .expect("the server accepts the client certificate");
    assert_eq!(answer["client_certificates"], 1, "{answer}");

    // Both in one file, as `cert` alone.
    let combined = ca_dir.path().join("combined.pem");
    let mut pem = std::fs::read(&operator.cert).unwrap();
    pem.extend(std::fs::read(&operator.key).unwrap());
    std::fs::write(&combined, pem).unwrap();
    let env = environment(
        port,
        ca_dir.path(),
        &[("OS_CERT", combined.display().to_string())],
    );
    let answer: Value = client(&env)
        .unwrap()
        .get(Service::Image, "/v2/images", &[])
        .await
        .expect("a combined PEM file works");
    assert_eq!(answer["client_certificates"], 1, "{answer}");

    // Without one, the server ends the handshake.
    let err = client(&environment(port, ca_dir.path(), &[]))
        .unwrap()
        .get::<Value>(Service::Image, "/v2/images", &[])
        .await
        .expect_err("no client certificate");
    let err = err.to_string();
    assert!(err.contains("Glance"), "the error names the service: {err}");
    assert!(
        err.to_ascii_lowercase().contains("certificate"),
        "the error says a certificate is missing: {err}"
    );
}

#[tokio::test]
async fn broken_client_identity_names_files() {
    let dir = tempfile::tempdir().unwrap();
    issue::init_ca(dir.path(), "novamedic test CA").unwrap();
    let operator = issue::issue(dir.path(), CertKind::Operator, "oncall", &[], 1).unwrap();
    let key_text = std::fs::read_to_string(&operator.key).unwrap();

    let key_only = client(&environment(
        1,
        dir.path(),
        &[("OS_KEY", operator.key.display().to_string())],
    ))
    .err()
    .expect("a key without a certificate is refused");
    assert!(key_only.contains("OS_CERT"), "{key_only}");

    let missing = client(&environment(
        1,
        dir.path(),
        &[("OS_CERT", "/nonexistent/client.pem".to_string())],
    ))
    .err()
    .expect("a missing certificate file is refused");
    assert!(missing.contains("/nonexistent/client.pem"), "{missing}");

    // The key alone in the certificate's place: no certificate in the PEM.
    let swapped = client(&environment(
        1,
        dir.path(),
        &[("OS_CERT", operator.key.display().to_string())],
    ))
    .err()
    .expect("a key in the certificate's place is refused");
    assert!(
        swapped.contains(&operator.key.display().to_string()),
        "{swapped}"
    );
    let key_body = key_text
        .lines()
        .find(|line| !line.starts_with("-----"))
        .unwrap();
    assert!(!swapped.contains(key_body), "the key leaked: {swapped}");
}
