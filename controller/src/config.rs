//! The controller's configuration: flags, each also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Ambit's cluster controller: runs brokers and services for Devices and
/// keeps the cluster tidy as nodes and devices come and go.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ambit-controller", version, about)]
pub struct Args {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "AMBIT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Only serve this namespace (default: all namespaces).
    #[arg(long, env = "AMBIT_NAMESPACE")]
    pub namespace: Option<String>,

    /// How long a NotReady node keeps its entries in Devices (and so its
    /// brokers) before they are removed.
    #[arg(long, env = "AMBIT_NODE_NOT_READY_TOLERATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub node_not_ready_toleration: Duration,

    /// The Lease that elects the active replica.
    #[arg(long, env = "AMBIT_LEASE_NAME", default_value = "ambit-controller")]
    pub lease_name: String,

    /// The namespace of the Lease (usually the controller's own).
    #[arg(long, env = "AMBIT_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease (usually the pod name).
    #[arg(long, env = "AMBIT_POD_NAME")]
    pub identity: Option<String>,

    /// How long a leader's Lease lasts without renewal: a standby takes over
    /// at most this long after the leader dies. The leader renews it when a
    /// third of it has passed, so a renewal may take two thirds of it.
    #[arg(long, env = "AMBIT_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
}
