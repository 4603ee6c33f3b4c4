//! `ambit-handler`: serves the compiled-in discovery handlers to the node
//! agent until SIGINT or SIGTERM. See the `ambit_handlers` library.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = ambit_handlers::Args::parse();
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    ambit_handlers::run(args, shutdown).await?;
    Ok(())
}
