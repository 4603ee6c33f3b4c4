//! The agent's configuration: flags, each also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Ambit's node agent: discovers devices for DeviceSets and records them as
/// Device objects.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ambit-agent", version, about)]
pub struct Args {
    /// The name of the node this agent runs on (usually from the downward API).
    #[arg(long, env = "AMBIT_NODE_NAME")]
    pub node_name: String,

    /// Where the agent serves its registration socket and handlers serve theirs.
    #[arg(long, env = "AMBIT_SOCKET_DIR", default_value = ambit_discovery::DEFAULT_SOCKET_DIR)]
    pub socket_dir: PathBuf,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "AMBIT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Only serve DeviceSets in this namespace (default: all namespaces).
    #[arg(long, env = "AMBIT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Directory whose `offline` file lists debug-echo devices to hide (for
    /// tests and demos).
    #[arg(long, env = "AMBIT_DEBUG_ECHO_DIR")]
    pub debug_echo_dir: Option<PathBuf>,
}
