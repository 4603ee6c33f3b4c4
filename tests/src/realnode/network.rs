//! The network of a group of real nodes, made only of namespaces the harness
//! creates (none is named in /run/netns: each lives as long as the process
//! that holds it, so nothing outlives the test binary).
//!
//! ```text
//!  host namespace                       hub namespace: bridge hub0
//!   kube-apiserver 127.0.0.1:<port>       │            │
//!     ▲ socat tcp ← <dir>/api.sock        │ veth       │ veth
//!     │   (a unix socket: a file, so it   │            │
//!     │    crosses network namespaces)   eth0         eth0
//!     │                               node-0 ns      node-1 ns
//!     └──── socat 10.96.0.1:443 ──── 10.251.0.10    10.251.0.11
//!           (the `kubernetes`          cni0 10.250.0.1  cni0 10.250.1.1
//!            Service, on lo)            pods 10.250.0.x  pods 10.250.1.x
//! ```
//!
//! Every node routes the other nodes' pod ranges through the hub, forwards
//! between its bridge and the hub (`ip_forward` is per namespace), and serves
//! the API server's Service address on its loopback, so the kubelet, pods
//! with `hostNetwork` and pods behind the bridge all reach the API server at
//! `https://10.96.0.1:443`, as in-cluster clients expect. That one address
//! is all the "kube-proxy" these nodes have: other Services are not routed.

use std::path::Path;
use std::process::Command;

use super::config::{API_SERVICE_IP, node_ip, pod_cidr};

/// A command run in the network namespace of process `pid`.
pub fn in_netns(pid: u32, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg(program);
    cmd
}

/// Runs `cmd` to its end; fails with its output when it fails.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    let output = cmd.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{:?} failed ({}): {}",
        cmd,
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

fn ip(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = in_netns(pid, "ip");
    cmd.args(args);
    run(cmd)
}

/// Brings up the hub's loopback and bridge (in the namespace of `hub`).
pub fn setup_hub(hub: u32) -> anyhow::Result<()> {
    ip(hub, &["link", "set", "lo", "up"])?;
    ip(hub, &["link", "add", "hub0", "type", "bridge"])?;
    ip(hub, &["link", "set", "hub0", "up"])
}

/// Joins node `index` (its namespace held by `node`) to the hub, gives it
/// its address, the Service address, forwarding and the routes to the
/// other `count - 1` nodes' pods.
pub fn setup_node(hub: u32, node: u32, index: u8, count: u8) -> anyhow::Result<()> {
    let port = format!("n{index}");
    let node_pid = node.to_string();
    ip(
        hub,
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &node_pid,
        ],
    )?;
    ip(hub, &["link", "set", &port, "master", "hub0", "up"])?;
    let address = format!("{}/24", node_ip(index));
    ip(node, &["link", "set", "lo", "up"])?;
    ip(
        node,
        &["addr", "add", &format!("{API_SERVICE_IP}/32"), "dev", "lo"],
    )?;
    ip(node, &["addr", "add", &address, "dev", "eth0"])?;
    ip(node, &["link", "set", "eth0", "up"])?;
    for other in (0..count).filter(|&other| other != index) {
        let via = node_ip(other).to_string();
        ip(node, &["route", "add", &pod_cidr(other), "via", &via])?;
    }
    let mut forward = in_netns(node, "sh");
    forward.args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    run(forward)
}

/// The command that serves the API server inside node `node`'s namespace:
/// `10.96.0.1:443` forwarded to the unix socket `api_socket`.
pub fn api_listener(node: u32, api_socket: &Path) -> Command {
    let mut cmd = in_netns(node, "socat");
    cmd.arg(format!(
        "TCP-LISTEN:443,bind={API_SERVICE_IP},fork,reuseaddr"
    ))
    .arg(format!("UNIX-CONNECT:{}", api_socket.display()));
    cmd
}

/// The command that forwards the unix socket `api_socket` to the API
/// server's loopback `port`, in the host's namespace.
pub fn api_forwarder(api_socket: &Path, port: u16) -> Command {
    let mut cmd = Command::new("socat");
    cmd.arg(format!(
        "UNIX-LISTEN:{},fork,unlink-early,mode=600",
        api_socket.display()
    ))
    .arg(format!("TCP:127.0.0.1:{port}"));
    cmd
}
