//! Dynamic Resource Allocation on the node.
//!
//! ```text
//!  offers ──► publish: this node's pool (local devices) ──► ResourceSlices ──► kube-scheduler allocates claims
//!  kubelet ──plugins_registry/ambit.dev-reg.sock──► registration (GetInfo)
//!  kubelet ──plugins/ambit.dev/dra.sock──► NodePrepareResources ──► ResourceClaim's allocation ──► CDI ids
//! ```
//!
//! Shared devices are published by the controller, one pool per device
//! whose node selector names every node that sees it (one writer for a
//! fact that spans nodes); the model is `ambit_dra` (crate `dra/`).

mod plugin;
mod publish;

use std::path::PathBuf;

use ambit_telemetry::tasks::Tasks;
use kube::Client;
use tokio::sync::watch;

use crate::access::cdi;
use crate::access::offers::Offers;

pub use plugin::{DRA_SOCKET, REGISTRATION_SOCKET};

/// Where the DRA side runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node.
    pub node: String,
    /// Publish this node's pool as ResourceSlices.
    pub publish: bool,
    /// The kubelet's plugin-registration directory; `None`: no kubelet plugin.
    pub registry_dir: Option<PathBuf>,
    /// Where the plugin's own socket goes.
    pub plugin_dir: PathBuf,
}

/// Starts publishing and the kubelet plugin, as configured, as supervised
/// tasks; fails if the plugin's sockets cannot be bound.
pub fn spawn(
    tasks: &mut Tasks,
    client: Client,
    settings: Settings,
    offers: watch::Receiver<Offers>,
    cdi: watch::Receiver<cdi::Written>,
) -> Result<(), ambit_discovery::TransportError> {
    if settings.publish {
        tasks.spawn(
            "DRA publisher",
            publish::run(client.clone(), settings.node.clone(), offers.clone()),
        );
    }
    if let Some(registry_dir) = &settings.registry_dir {
        plugin::spawn(
            tasks,
            client,
            settings.node.clone(),
            registry_dir,
            &settings.plugin_dir,
            offers,
            cdi,
        )?;
    }
    Ok(())
}
