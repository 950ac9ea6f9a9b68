//! `novamedic serve`: both gRPC services on one listener, the stale check, and
//! a bounded graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use novamedic_proto::v1::agent_service_server::AgentServiceServer;
use novamedic_proto::v1::operator_service_server::OperatorServiceServer;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::agent_api::AgentApi;
use crate::alerting::Alerter;
use crate::auth::Authority;
use crate::config::{ServerConfig, Transport};
use crate::controller::{Controller, FLUSH_INTERVAL};
use crate::metrics::Metrics;
use crate::nova_view::NovaWatch;
use crate::operator_api::OperatorApi;
use crate::store::Store;
use crate::tls_listener::ServerTls;

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// How often nodes are checked for missing reports. Stale marking is late by
/// at most this much.
const STALE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Largest reply sent to operators, matched by the CLI's decoding limit.
/// NOTE: ListNodes is not paginated yet; the whole fleet goes in one reply.
/// Agent messages keep tonic's 4 MiB decoding limit, so an agent cannot make
/// the controller buffer more than that per message.
const MAX_OPERATOR_REPLY_BYTES: usize = crate::cli::MAX_REPLY_BYTES;

/// HTTP/2 pings on idle connections, so a vanished agent's stream is closed
/// (and the node shown disconnected) within about a minute.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A start-up failure that only a change of the configuration fixes, such
/// as an unreadable header file, an unknown cloud or an address already in
/// use. `novamedic serve` exits with the usage code for it, which the
/// systemd unit does not restart on.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct InvalidConfig(#[from] anyhow::Error);

/// Marks `err` as a configuration problem, see [`InvalidConfig`].
fn invalid_config(err: impl Into<anyhow::Error>) -> anyhow::Error {
    InvalidConfig(err.into()).into()
}

/// Binds `config.listen` and serves until SIGTERM or SIGINT. SIGHUP reloads
/// the TLS certificates, CA and CRL for new connections.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let reload = reload_signal()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
        .map_err(invalid_config)?;
    serve_with_reload(listener, &config, shutdown, reload).await
}

/// Serves like [`serve_with_reload`] with no way to reload the TLS files.
pub async fn serve_with_listener(
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_with_reload(listener, config, shutdown, Arc::new(Notify::new())).await
}

/// Serves both services on `listener` until `shutdown` completes, then closes
/// agent streams, drains connections for up to `config.shutdown_drain` and
/// closes the database. Each notification of `reload` reads the TLS files
/// again. `config.listen` is ignored; tests pass a listener bound to
/// 127.0.0.1:0. The metrics listener, when `[metrics] listen` is set, is
/// bound here.
pub async fn serve_with_reload(
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
    reload: Arc<Notify>,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics.listen {
        None => None,
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!("cannot listen on {address} for metrics ([metrics] listen)")
                })
                .map_err(invalid_config)?,
        ),
    };
    run(listener, metrics_listener, config, shutdown, reload).await
}

/// Serves like [`serve_with_listener`], with `/metrics` on
/// `metrics_listener` whatever `config.metrics` sets. Tests bind it to
/// 127.0.0.1:0.
pub async fn serve_with_metrics_listener(
    listener: TcpListener,
    metrics_listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let reload = Arc::new(Notify::new());
    run(listener, Some(metrics_listener), config, shutdown, reload).await
}

async fn run(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
    reload: Arc<Notify>,
) -> anyhow::Result<()> {
    let local_addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let tls = match &config.transport {
        Transport::MutualTls(files) => Some(Arc::new(ServerTls::load(files)?)),
        Transport::Plaintext => None,
    };
    let metrics = Arc::new(Metrics::default());
    let alerter = Alerter::new(&config.alerting, Arc::clone(&metrics)).map_err(invalid_config)?;
    let alerter = Arc::new(alerter);
    let nova = nova_watch(config).map_err(invalid_config)?;
    let store = Store::open(&config.db).await?;
    let mut controller = Controller::load(
        store,
        config.restart.clone(),
        config.policy.clone(),
        config.policy_source.clone(),
        Arc::clone(&alerter),
        metrics,
    )
    .await?;
    if let Some(nova) = &nova {
        controller = controller.with_nova(Arc::clone(nova));
    }
    let controller = Arc::new(controller);
    let authority = Arc::new(Authority {
        plaintext: tls.is_none(),
        roles: config.roles.clone(),
    });
    tracing::info!(listen = %local_addr, db = %config.db.display(), mutual_tls = tls.is_some(), version = crate::VERSION, "controller serving");
    if tls.is_none() {
        tracing::warn!(
            "serving plain-text gRPC: connections are not encrypted, agents are not \
             authenticated and every operator request is allowed; use this only on a trusted network"
        );
    }

    let mut background = alerter.start();
    background.push(tokio::spawn(mark_stale_forever(Arc::clone(&controller))));
    // The flusher is stopped, not aborted, so a batch in flight commits.
    let (flush_stop_tx, flush_stop_rx) = oneshot::channel::<()>();
    let flusher = tokio::spawn(flush_reports_until(Arc::clone(&controller), flush_stop_rx));
    background.push(tokio::spawn(reload_forever(tls.clone(), reload)));
    if let Some(metrics_listener) = metrics_listener {
        background.push(tokio::spawn(crate::metrics::http::serve(
            metrics_listener,
            Arc::clone(&controller),
        )));
    }
    if let Some(nova) = nova {
        background.push(tokio::spawn(crate::nova_view::poll::poll_forever(nova)));
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(AgentServiceServer::new(AgentApi::new(
            Arc::clone(&controller),
            Arc::clone(&authority),
        )))
        .add_service(
            OperatorServiceServer::new(OperatorApi::new(Arc::clone(&controller), authority))
                .max_encoding_message_size(MAX_OPERATOR_REPLY_BYTES),
        );
    let stopped = async {
        let _ = stop_rx.await;
    };
    let mut server: ServerTask = match tls {
        Some(tls) => {
            let incoming = crate::tls_listener::incoming(listener, tls);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => {
            let incoming = TcpListenerStream::new(listener);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
    };

    tokio::select! {
        joined = &mut server => {
            background.iter().for_each(JoinHandle::abort);
            flusher.abort();
            joined.context("the gRPC server task failed")?.context("the gRPC server failed")?;
            anyhow::bail!("the gRPC server stopped without being asked to");
        }
        () = shutdown => {}
    }

    // Alerts still queued are dropped: the firing ones end by themselves
    // at their endsAt, and the next controller raises the active ones again.
    background.iter().for_each(JoinHandle::abort);
    let _ = flush_stop_tx.send(());
    let _ = flusher.await;
    // Dropping every stream sender ends the agents' response streams, which
    // lets the graceful shutdown finish instead of waiting on streams that
    // never end by themselves.
    controller.close_all_streams().await;
    let _ = stop_tx.send(());
    drain(server, config.shutdown_drain).await;
    controller.store().close().await;
    tracing::info!("controller stopped");
    Ok(())
}

/// Builds the Nova poller of the `[openstack]` table, or none without one.
/// A policy that disables services on escalation needs it.
fn nova_watch(config: &ServerConfig) -> anyhow::Result<Option<Arc<NovaWatch>>> {
    let Some(settings) = &config.openstack else {
        anyhow::ensure!(
            !config.policy.node.disable_service_on_escalation,
            "the policy {} sets disable_service_on_escalation, but no cloud is configured: add \
             an [openstack] table to the controller's configuration or set it to false",
            config.policy_source
        );
        tracing::info!("no cloud configured; Nova's view of the fleet is not polled");
        return Ok(None);
    };
    let current_dir = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let client = crate::nova_view::connect(
        settings,
        &crate::openstack::config::process_environment(),
        &current_dir,
    )?;
    Ok(Some(Arc::new(NovaWatch::new(client, settings.clone()))))
}

/// Waits for the server to finish its open requests, and cuts them after
/// `drain_timeout`.
async fn drain(mut server: ServerTask, drain_timeout: Duration) {
    tracing::info!(
        drain_timeout_ms = drain_timeout.as_millis() as u64,
        "draining connections"
    );
    match tokio::time::timeout(drain_timeout, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %crate::error_chain(&err), "the gRPC server failed while draining")
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "the gRPC server task failed while draining"),
        Err(_elapsed) => {
            tracing::warn!("drain timed out; closing the remaining connections");
            server.abort();
        }
    }
}

async fn mark_stale_forever(controller: Arc<Controller>) {
    let mut ticks = tokio::time::interval(STALE_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        controller.mark_stale().await;
    }
}

/// Writes the pending routine reports once per [`FLUSH_INTERVAL`] until
/// `stop` fires. A stop never cuts a flush short; the final flush at
/// shutdown happens in `close_all_streams`.
async fn flush_reports_until(controller: Arc<Controller>, mut stop: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => controller.flush_reports().await,
            _ = &mut stop => return,
        }
    }
}

/// Reloads the TLS files at each notification; without TLS it only logs
/// that there is nothing to reload.
async fn reload_forever(tls: Option<Arc<ServerTls>>, reload: Arc<Notify>) {
    loop {
        reload.notified().await;
        match &tls {
            // The error is logged by `reload`, and the old config stays.
            Some(tls) => {
                let _ = tls.reload();
            }
            None => {
                tracing::info!("reload requested; plain-text mode has no certificates to reload")
            }
        }
    }
}

/// Installs a SIGHUP handler and returns the notification it triggers.
pub fn reload_signal() -> anyhow::Result<Arc<Notify>> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let reload = Arc::new(Notify::new());
    let notify = Arc::clone(&reload);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", "reloading TLS certificates");
            notify.notify_one();
        }
    });
    Ok(reload)
}

/// Installs handlers for SIGTERM and SIGINT and returns a future that
/// completes, after logging which one, when either arrives.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}
