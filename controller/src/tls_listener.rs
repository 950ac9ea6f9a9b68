//! The controller's mutual-TLS listener: TLS handshakes off the accept loop,
//! and certificates, CA and CRL that reload without a restart.
//!
//! A reload replaces the config used for new connections only; open
//! connections keep the certificates they were accepted with. A reload that
//! fails keeps the previous material and logs why.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use novamedic_tls::{rustls, TlsFiles, TlsMaterial};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the gRPC server to take them.
const ACCEPTED_BUFFER: usize = 64;

/// The server's current TLS config and the files it came from.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

/// TLS files that cannot be turned into a server config.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Material(#[from] novamedic_tls::MaterialError),
    #[error("cannot build the TLS server config: {0}")]
    Config(#[from] rustls::Error),
}

impl ServerTls {
    /// Loads and checks `files`.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsSetupError> {
        let config = build(files)?;
        Ok(ServerTls {
            files: files.clone(),
            current: RwLock::new(config),
        })
    }

    /// Reads the files again. On success new connections use them; on
    /// failure the previous config stays and the error is logged and
    /// returned.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        match build(&self.files) {
            Ok(config) => {
                *self.current.write().expect("TLS config lock poisoned") = config;
                tracing::info!(cert = %self.files.cert.display(), ca = %self.files.ca.display(), crl = ?self.files.crl, "reloaded TLS certificates");
                Ok(())
            }
            Err(err) => {
                tracing::error!(error = %crate::error_chain(&err), "TLS reload failed; keeping the previous certificates");
                Err(err)
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        let config = Arc::clone(&self.current.read().expect("TLS config lock poisoned"));
        TlsAcceptor::from(config)
    }
}

fn build(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let material = TlsMaterial::load(files)?;
    Ok(novamedic_tls::rustls_config::server_config(&material)?)
}

/// Accepts TCP connections on `listener` and yields those whose TLS
/// handshake succeeded. Each handshake runs on its own task, so a slow or
/// silent client does not hold up the others. The accept loop ends when the
/// returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = accepted_tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Usually a full file table; pause so the loop does
                        // not spin while it lasts.
                        tracing::warn!(error = %err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = tls.acceptor();
            let accepted_tx = accepted_tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted_tx.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(peer = %peer, error = %err, "TLS handshake failed");
                    }
                    Err(_elapsed) => {
                        tracing::warn!(peer = %peer, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(accepted_rx)
}
