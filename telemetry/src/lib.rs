//! What Ambit's long-running services share for the people who operate
//! them: logging set up the same way, and the same HTTP endpoints.
//!
//! - [`init_logging`]: `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
//! - [`shutdown_signal`]: resolves on Ctrl-C or SIGTERM (what Kubernetes sends).
//! - [`serve`]: `/metrics` (OpenMetrics text from a prometheus-client
//!   registry), `/healthz` (the process serves) and `/readyz` (a watch
//!   channel the service sets when it can do its job);
//!   [`serve_with_health`] also lets `/healthz` say the process is unhealthy
//!   and why (a service whose supervised task ended, on its way out).
//! - [`tasks::Tasks`]: a service's long-lived tasks, each in a span, and
//!   which one ended first and why.

mod http;
pub mod tasks;

pub use http::{Health, serve, serve_with_health};

/// Logs to stderr with `RUST_LOG` filtering (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // No SIGTERM handler could be installed: Ctrl-C still works.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
