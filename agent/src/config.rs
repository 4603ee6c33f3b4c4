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

    /// Embedded handlers to run (repeat the flag or separate with commas);
    /// all compiled-in handlers when not given, none for `none`. External
    /// handlers register whatever this says.
    #[arg(long = "handlers", env = "AMBIT_HANDLERS", value_delimiter = ',')]
    pub handlers: Vec<String>,

    /// How pods get devices: the kubelet's sockets and the CDI directory.
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Where the kubelet and the container runtime look for what the agent
/// offers pods. An empty value switches that part off.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    /// The kubelet's device-plugin directory (its `kubelet.sock` and the
    /// plugins' sockets); empty: no device plugins.
    #[arg(
        long,
        env = "AMBIT_DEVICE_PLUGIN_DIR",
        value_parser = path_or_off,
        default_value = "/var/lib/kubelet/device-plugins"
    )]
    pub device_plugin_dir: PathBuf,

    /// The kubelet's pod-resources socket, to learn which pods hold which
    /// slots; empty: slots are only freed when their Device goes.
    #[arg(
        long,
        env = "AMBIT_POD_RESOURCES_SOCKET",
        value_parser = path_or_off,
        default_value = "/var/lib/kubelet/pod-resources/kubelet.sock"
    )]
    pub pod_resources_socket: PathBuf,

    /// The kubelet's plugin-registration directory, where the DRA plugin
    /// announces itself; empty: no DRA kubelet plugin.
    #[arg(
        long,
        env = "AMBIT_PLUGINS_REGISTRY_DIR",
        value_parser = path_or_off,
        default_value = "/var/lib/kubelet/plugins_registry"
    )]
    pub plugins_registry_dir: PathBuf,

    /// Where the DRA plugin serves its socket for the kubelet.
    #[arg(
        long,
        env = "AMBIT_DRA_PLUGIN_DIR",
        default_value = "/var/lib/kubelet/plugins/ambit.dev"
    )]
    pub dra_plugin_dir: PathBuf,

    /// Publish ResourceSlices for Dynamic Resource Allocation.
    #[arg(long, env = "AMBIT_DRA", default_value_t = true, action = clap::ArgAction::Set)]
    pub dra: bool,

    /// The CDI spec directory the container runtime reads; empty: no CDI specs.
    #[arg(long, env = "AMBIT_CDI_DIR", default_value = "/var/run/cdi", value_parser = path_or_off)]
    pub cdi_dir: PathBuf,

    /// How long a device-plugin slot that no pod is listed for (by the
    /// pod-resources API) stays held after it was allocated, in seconds.
    #[arg(long, env = "AMBIT_SLOT_RECLAIM_GRACE_SECONDS", default_value_t = 30)]
    pub slot_reclaim_grace_seconds: u64,
}

/// A path flag where an empty value (`--cdi-dir=` or `AMBIT_CDI_DIR=`)
/// switches the part off; clap's own path parser refuses empty values.
fn path_or_off(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}

/// `path`, unless it is empty (switched off).
pub fn enabled(path: &std::path::Path) -> Option<&std::path::Path> {
    (!path.as_os_str().is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn an_empty_path_switches_the_part_off() {
        let args = Args::try_parse_from([
            "ambit-agent",
            "--node-name=n",
            "--device-plugin-dir=",
            "--pod-resources-socket=",
            "--plugins-registry-dir=",
            "--cdi-dir=",
        ])
        .unwrap();
        let access = &args.access;
        for path in [
            &access.device_plugin_dir,
            &access.pod_resources_socket,
            &access.plugins_registry_dir,
            &access.cdi_dir,
        ] {
            assert_eq!(enabled(path), None);
        }
        let args = Args::try_parse_from(["ambit-agent", "--node-name=n"]).unwrap();
        assert_eq!(
            enabled(&args.access.cdi_dir),
            Some(std::path::Path::new("/var/run/cdi"))
        );
    }
}
