//! Ambit's node agent: runs the discovery handlers that DeviceSets ask for
//! and records what they find as Device objects, calmly.
//!
//! Three flows, one folder each (each folder's header says what enters
//! and leaves it):
//!
//! ```text
//!  discovery/  DeviceSets ──► supervisor ──► discovery task per set ──► handler (embedded or external)
//!                                                     │ complete sets, errors
//!  recording/  Device watch ──► recorder (ledger: tracker, desired) ◄──┘ ── writes only what changed ──► API
//!                  │ offers
//!  access/     cdi, deviceplugin, dra ──► the kubelet and the container runtime
//! ```
//!
//! See `docs/agent.md` for the behaviour (grace periods, restart calm,
//! writes) and the metrics.

mod access;
mod config;
mod discovery;
pub mod metrics;
mod recording;

pub use access::{cdi, dra, kubelet, offers};
pub use recording::{desired, tracker};

use std::sync::Arc;

use ambit_crds::contract;
use ambit_discovery::{DiscoveryHandler, REGISTRATION_SOCKET, RegistrationService};
use ambit_telemetry::tasks::{Ended, Tasks};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

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
    /// `--handlers` names a handler this build does not have.
    #[error("no embedded handler named {name:?}; this build has: {compiled}")]
    UnknownHandler {
        /// The name asked for.
        name: String,
        /// The handlers compiled in.
        compiled: String,
    },
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
    /// A long-lived task ended: the agent cannot do its job any more.
    #[error("the {task} task stopped: {reason}")]
    Stopped {
        /// The task (`http`, `device watch`, `recorder`, …).
        task: &'static str,
        /// Why: its error, its panic message, or that it returned.
        reason: String,
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
        #[cfg(feature = "mdns")]
        Arc::new(ambit_mdns::Mdns::new()),
        #[cfg(feature = "modbus")]
        Arc::new(ambit_modbus::Modbus::new()),
        #[cfg(feature = "mqtt")]
        Arc::new(ambit_mqtt::Mqtt::new()),
        #[cfg(feature = "onvif")]
        Arc::new(ambit_onvif::Onvif::new()),
        #[cfg(feature = "opcua")]
        Arc::new(ambit_opcua::OpcUa::new()),
        #[cfg(feature = "bluetooth")]
        Arc::new(ambit_bluetooth::Bluetooth::new()),
        #[cfg(feature = "udev")]
        Arc::new(ambit_udev::Udev::new()),
    ]
}

/// The embedded handlers `names` asks for (all of them when empty, none
/// for `none`); an unknown name is an error that lists the ones compiled in.
pub fn choose_handlers(
    compiled: Vec<Arc<dyn DiscoveryHandler>>,
    names: &[String],
) -> Result<Vec<Arc<dyn DiscoveryHandler>>, Error> {
    let names: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(compiled);
    }
    if names == ["none"] {
        return Ok(vec![]);
    }
    let known: Vec<String> = compiled.iter().map(|h| h.name().to_owned()).collect();
    if let Some(unknown) = names.iter().find(|n| !known.iter().any(|k| k == *n)) {
        return Err(Error::UnknownHandler {
            name: (*unknown).to_owned(),
            compiled: known.join(", "),
        });
    }
    Ok(compiled
        .into_iter()
        .filter(|h| names.contains(&h.name()))
        .collect())
}

/// Runs the agent until Ctrl-C or SIGTERM, or until one of its long-lived
/// tasks ends (an error: `/healthz` then says which, and why).
///
/// ```text
///  run ─ Tasks ─┬─ http                (/metrics, /healthz, /readyz; first, so probes pass while the API is away)
///               ├─ device watch         (the one Device watch: adoption, spec hashes, offers)
///               ├─ recorder             (tracker, writes, Events)
///               ├─ handler registrations, DeviceSet watch (the supervisor and its discovery tasks)
///               └─ CDI specs, device plugins, slot writer, slot reclaimer, DRA publisher, DRA sockets
///  registration socket server: the main future (stops gracefully on SIGTERM)
/// ```
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
    let mut shutdown = std::pin::pin!(ambit_telemetry::shutdown_signal());
    let mut tasks = Tasks::default();

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry, &node_name);
    let (ready, ready_rx) = watch::channel(false);
    let (unhealthy, health) = watch::channel(None);
    let not_ready = "not ready: DeviceSets not listed yet";
    let http =
        ambit_telemetry::serve_with_health(metrics_addr, registry, ready_rx, not_ready, health);
    tasks.spawn("http", async move {
        http.await.map_err(|source| Error::Http {
            addr: metrics_addr,
            source,
        })
    });

    let writer = recording::writes::Writer {
        client: client.clone(),
        node: node_name.clone(),
        manager: contract::agent_manager(&node_name),
        metrics: metrics.clone(),
    };
    let events = recording::events::Events::new(client.clone(), &node_name, metrics.clone());

    // The one Device watch. Its first listing, with this node's
    // DeviceReports, is what a previous run recorded: the recorder takes
    // it over before anything else runs.
    let (inputs, receiver) = mpsc::channel(1024);
    let (followed, watch) = recording::devices::follow(
        client.clone(),
        namespace.clone(),
        node_name.clone(),
        inputs.clone(),
    );
    tasks.spawn("device watch", watch);
    let recording::devices::Followed { recorded, offers } = followed;
    let first = async {
        let reports =
            recording::reports::list_own(client.clone(), namespace.as_deref(), &node_name);
        let (recorded, reports) = tokio::join!(recorded, reports);
        (recorded.unwrap_or_default(), reports)
    };
    let (recorded, reports) = tokio::select! {
        first = first => first,
        ended = tasks.ended() => return Err(stopped(ended, &unhealthy)),
        () = &mut shutdown => return Ok(()),
    };
    let recorder = recording::recorder::Recorder::new(writer, events, &recorded, &reports);
    drop((recorded, reports));
    tasks.spawn("recorder", recorder.run(receiver));

    // Handlers: embedded now, external as they register.
    let options = HandlerOptions {
        debug_echo_dir: args.debug_echo_dir.clone(),
    };
    let embedded = choose_handlers(embedded_handlers(&options), &args.handlers)?;
    info!(handlers = ?embedded.iter().map(|h| h.name()).collect::<Vec<_>>(), "embedded handlers");
    let handlers = discovery::handlers::Handlers::new(embedded, metrics.clone());
    let available = handlers.subscribe();
    std::fs::create_dir_all(&socket_dir).map_err(|source| Error::SocketDir {
        path: socket_dir.clone(),
        source,
    })?;
    let (registration, registrations) = RegistrationService::new(node_name.clone());
    let server = registration
        .bind(&socket_dir.join(REGISTRATION_SOCKET))
        .map_err(Error::Registration)?;
    tasks.spawn("handler registrations", handlers.follow(registrations));

    let supervisor = discovery::supervisor::Supervisor::new(
        client.clone(),
        namespace,
        node_name.clone(),
        inputs,
        metrics.clone(),
    );

    // What this node offers pods, for the kubelet and the container runtime.
    let access = &args.access;
    let cdi = match config::enabled(&access.cdi_dir) {
        Some(dir) => cdi::follow(
            &mut tasks,
            dir.to_owned(),
            node_name.clone(),
            offers.clone(),
        ),
        None => watch::channel(cdi::Written::default()).1,
    };
    if let Some(dir) = config::enabled(&access.device_plugin_dir) {
        let settings = access::deviceplugin::Settings {
            node: node_name.clone(),
            dir: dir.to_owned(),
            pod_resources: config::enabled(&access.pod_resources_socket).map(ToOwned::to_owned),
            reclaim_grace: std::time::Duration::from_secs(access.slot_reclaim_grace_seconds),
        };
        access::deviceplugin::spawn(
            &mut tasks,
            client.clone(),
            settings,
            offers.clone(),
            supervisor.per_device(),
            cdi.clone(),
            metrics.clone(),
        );
    }
    dra::spawn(
        &mut tasks,
        client.clone(),
        dra::Settings {
            node: node_name.clone(),
            publish: access.dra,
            registry_dir: (access.dra && !access.plugins_registry_dir.as_os_str().is_empty())
                .then(|| access.plugins_registry_dir.clone()),
            plugin_dir: access.dra_plugin_dir.clone(),
        },
        offers.clone(),
        cdi.clone(),
    )
    .map_err(Error::DraPlugin)?;

    tasks.spawn("DeviceSet watch", supervisor.run(available, ready));

    tokio::select! {
        result = server.run(&mut shutdown) => result.map_err(Error::Registration)?,
        ended = tasks.ended() => return Err(stopped(ended, &unhealthy)),
    }
    info!("stopped");
    Ok(())
}

/// A task ended: `/healthz` says so (for as long as the process takes to
/// exit), and it is why `run` fails.
fn stopped(ended: Ended, unhealthy: &watch::Sender<Option<String>>) -> Error {
    let error = Error::Stopped {
        task: ended.task,
        reason: ended.reason,
    };
    error!(%error, "stopping");
    unhealthy.send_replace(Some(error.to_string()));
    error
}

#[cfg(all(test, feature = "debug-echo"))]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_chosen_by_name_and_unknown_names_are_refused() {
        let all = || embedded_handlers(&HandlerOptions::default());
        let count = all().len();
        assert_eq!(
            choose_handlers(all(), &[]).map(|h| h.len()).ok(),
            Some(count)
        );
        let chosen = choose_handlers(all(), &["debug-echo".into(), " ".into()]);
        let names: Vec<String> = chosen
            .iter()
            .flatten()
            .map(|h| h.name().to_owned())
            .collect();
        assert_eq!(names, vec!["debug-echo".to_owned()]);
        assert_eq!(
            choose_handlers(all(), &["none".into()])
                .map(|h| h.len())
                .ok(),
            Some(0)
        );
        let error = choose_handlers(all(), &["zigbee".into()])
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("zigbee") && e.contains("debug-echo")),
            "{error:?}"
        );
    }
}
