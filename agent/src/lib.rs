//! Ambit's node agent: runs the discovery handlers that DeviceSets ask for
//! and records what they find as Device objects, calmly.
//!
//! ```text
//!  DeviceSets ──► supervisor ──► discovery task per set ──► handler (embedded or external)
//!                     │                    │ complete sets
//!                     ▼                    ▼
//!                 recorder ◄───────────────┘ ── tracker (grace) ── writes only what changed ──► API
//!  registration socket ──► handlers map ──► supervisor (a new handler starts discovery at once)
//! ```
//!
//! See `docs/agent.md` for the behaviour (grace periods, restart calm,
//! writes) and the metrics.

mod config;
pub mod desired;
mod devices;
mod discovery;
pub mod dra;
mod events;
mod handlers;
pub mod kubelet;
pub mod metrics;
pub mod offers;
mod properties;
mod recorder;
mod supervisor;
pub mod tracker;
mod writes;

use std::sync::Arc;

use ambit_discovery::{DiscoveryHandler, REGISTRATION_SOCKET, RegistrationService};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tracing::info;

pub use config::{AccessArgs, Args};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client could be configured.
    #[error("failed to configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The socket directory could not be created.
    #[error("failed to create the socket directory {path}: {source}")]
    SocketDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The registration socket could not be served.
    #[error("failed to serve the registration socket: {0}")]
    Registration(#[source] ambit_discovery::TransportError),
    /// The kubelet DRA plugin's sockets could not be served.
    #[error("failed to serve the DRA plugin's sockets: {0}")]
    DraPlugin(#[source] ambit_discovery::TransportError),
    /// The metrics endpoint could not be served.
    #[error("failed to serve /metrics on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the embedded handlers are configured with.
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    /// debug-echo's state directory (its `offline` file hides devices).
    pub debug_echo_dir: Option<std::path::PathBuf>,
}

/// The handlers compiled into this build (one cargo feature each): the
/// agent embeds them, and `ambit discover` runs them.
pub fn embedded_handlers(options: &HandlerOptions) -> Vec<Arc<dyn DiscoveryHandler>> {
    let _ = options;
    vec![
        #[cfg(feature = "debug-echo")]
        Arc::new(ambit_debug_echo::DebugEcho::from_state_dir(
            options.debug_echo_dir.clone(),
        )),
        #[cfg(feature = "modbus")]
        Arc::new(ambit_modbus::Modbus::new()),
        #[cfg(feature = "bluetooth")]
        Arc::new(ambit_bluetooth::Bluetooth::new()),
    ]
}

/// Runs the agent until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<(), Error> {
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    let Args {
        node_name,
        socket_dir,
        metrics_addr,
        namespace,
        ..
    } = args.clone();
    info!(node = %node_name, socket_dir = %socket_dir.display(), "starting");

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry, &node_name);
    let writer = writes::Writer {
        client: client.clone(),
        node: node_name.clone(),
        manager: format!("ambit-agent/{node_name}"),
        metrics: metrics.clone(),
    };
    let events = events::Events::new(client.clone(), &node_name, metrics.clone());

    // Take over what a previous run recorded before anything else runs.
    let existing = devices::recorded_by(&client, namespace.as_deref(), &node_name).await;
    let (inputs, receiver) = mpsc::channel(1024);
    let recorder = recorder::Recorder::new(writer, events, &existing);
    drop(existing);
    tokio::spawn(recorder.run(receiver));
    tokio::spawn(devices::watch_deletions(
        client.clone(),
        namespace.clone(),
        inputs.clone(),
    ));

    // Handlers: embedded now, external as they register.
    let options = HandlerOptions {
        debug_echo_dir: args.debug_echo_dir.clone(),
    };
    let handlers = handlers::Handlers::new(embedded_handlers(&options), metrics.clone());
    let available = handlers.subscribe();
    std::fs::create_dir_all(&socket_dir).map_err(|source| Error::SocketDir {
        path: socket_dir.clone(),
        source,
    })?;
    let (registration, registrations) = RegistrationService::new(node_name.clone());
    let server = registration
        .bind(&socket_dir.join(REGISTRATION_SOCKET))
        .map_err(Error::Registration)?;
    tokio::spawn(handlers.follow(registrations));

    // What this node offers pods, for the kubelet and the container runtime.
    let offers = offers::follow(client.clone(), namespace.clone(), node_name.clone());
    let access = &args.access;
    dra::spawn(
        client.clone(),
        dra::Settings {
            node: node_name.clone(),
            publish: access.dra,
            registry_dir: (access.dra && !access.plugins_registry_dir.as_os_str().is_empty())
                .then(|| access.plugins_registry_dir.clone()),
            plugin_dir: access.dra_plugin_dir.clone(),
        },
        offers.clone(),
    )
    .map_err(Error::DraPlugin)?;

    let (ready, ready_rx) = watch::channel(false);
    let supervisor = supervisor::Supervisor::new(client, namespace, node_name, inputs, metrics);
    tokio::spawn(supervisor.run(available, ready));

    let not_ready = "not ready: DeviceSets not listed yet";
    let http = tokio::spawn(ambit_telemetry::serve(
        metrics_addr,
        registry,
        ready_rx,
        not_ready,
    ));
    tokio::select! {
        result = server.run(ambit_telemetry::shutdown_signal()) => result.map_err(Error::Registration)?,
        result = http => {
            if let Ok(Err(source)) = result {
                return Err(Error::Http { addr: metrics_addr, source });
            }
        }
    }
    info!("stopped");
    Ok(())
}
