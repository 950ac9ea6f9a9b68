//! The `/metrics` HTTP listener. Plain HTTP without authentication, like
//! most exporters: bind it to an address only the Prometheus server reaches.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::controller::Controller;

/// Content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, controller: Arc<Controller>) {
    let address = listener.local_addr().map_or_else(
        |err| format!("unknown ({err})"),
        |address| address.to_string(),
    );
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(controller);
    tracing::info!(listen = %address, "serving Prometheus metrics at /metrics");
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(listen = %address, error = %err, "the metrics listener failed");
    }
}

async fn scrape(
    axum::extract::State(controller): axum::extract::State<Arc<Controller>>,
) -> impl IntoResponse {
    let text = controller.render_metrics().await;
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text)
}
