//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Healthy means the process is alive and serving; what "ready" means is
//! the service's to say (the agent: DeviceSets listed; the controller:
//! caches synced), through the watch channel it hands over.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    not_ready: &'static str,
}

/// Serves the endpoints on `addr` until the process ends; `/readyz` answers
/// 200 while `ready` holds `true`, 503 with `not_ready` otherwise.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<bool>,
    not_ready: &'static str,
) -> std::io::Result<()> {
    let state = AppState {
        registry: Arc::new(registry),
        ready,
        not_ready,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, state.not_ready)
    }
}
