//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Healthy means the process is alive, serving, and has not said otherwise:
//! a service that supervises its tasks hands over a health channel
//! ([`serve_with_health`]) and sets a reason in it when one of them ends,
//! so `/healthz` answers 503 with that reason until the process exits.
//! What "ready" means is the service's to say (the agent: DeviceSets
//! listed; the controller: leader election started), through the watch
//! channel it hands over.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Why the process is unhealthy (`Some`), or that it is healthy (`None`).
pub type Health = watch::Receiver<Option<String>>;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    not_ready: &'static str,
    health: Health,
}

/// Serves the endpoints on `addr` until the process ends; `/readyz` answers
/// 200 while `ready` holds `true`, 503 with `not_ready` otherwise;
/// `/healthz` always answers 200.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<bool>,
    not_ready: &'static str,
) -> std::io::Result<()> {
    let (_healthy, health) = watch::channel(None);
    serve_with_health(addr, registry, ready, not_ready, health).await
}

/// [`serve`], with `/healthz` answering 200 `ok` while `health` holds
/// `None` and 503 `unhealthy: <reason>` once it holds a reason.
pub async fn serve_with_health(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<bool>,
    not_ready: &'static str,
    health: Health,
) -> std::io::Result<()> {
    let state = AppState {
        registry: Arc::new(registry),
        ready,
        not_ready,
        health,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
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

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.borrow().as_deref() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}"),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(port: u16, path: &str) -> (u16, String) {
        let mut stream = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => break stream,
                // Not listening yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn healthz_says_why_once_a_reason_is_set() {
        let port = free_port();
        let (ready, ready_rx) = watch::channel(false);
        let (health, health_rx) = watch::channel(None);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = tokio::spawn(serve_with_health(
            addr,
            Registry::default(),
            ready_rx,
            "not ready: starting",
            health_rx,
        ));
        assert_eq!(get(port, "/healthz").await, (200, "ok".into()));
        assert_eq!(
            get(port, "/readyz").await,
            (503, "not ready: starting".into())
        );
        ready.send_replace(true);
        assert_eq!(get(port, "/readyz").await, (200, "ok".into()));

        health.send_replace(Some("leader election stopped: boom".into()));
        assert_eq!(
            get(port, "/healthz").await,
            (503, "unhealthy: leader election stopped: boom".into())
        );
        server.abort();
    }

    #[tokio::test]
    async fn serve_stays_healthy() {
        let port = free_port();
        let (_ready, ready_rx) = watch::channel(true);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = tokio::spawn(serve(addr, Registry::default(), ready_rx, "not ready"));
        assert_eq!(get(port, "/healthz").await, (200, "ok".into()));
        let (status, _) = get(port, "/metrics").await;
        assert_eq!(status, 200);
        server.abort();
    }
}
