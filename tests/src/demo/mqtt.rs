//! The demo's simulated Sparkplug B edge node: Debian's mosquitto on a free
//! loopback port (password file, see [`crate::peers::mqtt`]) and a Tahu edge
//! node (`examples/mqtt/edge-node.js`) publishing its births to it. The
//! agents' embedded mqtt handlers reach the broker on loopback, through
//! `examples/mqtt/deviceset.yaml` (its broker URL rewritten, the credentials
//! from the Secret it names).

use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::Device;
use anyhow::Context;
use kube::api::ListParams;
use kube::{Api, Client};

use super::{NAMESPACE, apply_example, create_secret, seen_by_all, wait_for_line};
use crate::ControlPlane;
use crate::peers::mqtt::{EdgeNodeConfig, Mosquitto, PASSWORD, USER};
use crate::process::Process;

/// The edge node's Sparkplug group (`examples/mqtt/deviceset.yaml` takes `plant*`).
pub const SPARKPLUG_GROUP: &str = "plant";
/// The edge node.
pub const SPARKPLUG_NODE: &str = "line-1";
/// The edge node's devices.
pub const SPARKPLUG_DEVICES: [&str; 2] = ["pump-1", "valve-1"];

/// The Devices' ids: `spb://<group>/<node>/<device>`.
pub fn sparkplug_ids() -> Vec<String> {
    SPARKPLUG_DEVICES
        .iter()
        .map(|device| format!("spb://{SPARKPLUG_GROUP}/{SPARKPLUG_NODE}/{device}"))
        .collect()
}

/// The broker and the edge node publishing to it.
#[derive(Debug)]
pub struct SparkplugNode {
    /// The broker's URL, `tcp://127.0.0.1:<port>`.
    pub broker_url: String,
    broker: Process,
    edge_node: Process,
    /// The edge node's commands (`rebirth`).
    stdin: ChildStdin,
}

impl SparkplugNode {
    /// Starts the broker and the edge node (installing Tahu's client first if
    /// `make setup` has not); the node connects once the broker listens.
    pub(super) fn start(control_plane: &ControlPlane) -> anyhow::Result<Self> {
        let dir = control_plane.dir.join("mqtt");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let config = Mosquitto::configure(&dir, None)?;
        let broker = control_plane.spawn_process("mosquitto", config.command())?;
        let broker_url = config.url();
        let edge_node = EdgeNodeConfig {
            url: &broker_url,
            password: PASSWORD,
            group: SPARKPLUG_GROUP,
            node: SPARKPLUG_NODE,
            devices: &SPARKPLUG_DEVICES,
            bd_seq: 0,
            ca_file: None,
        }
        .command()?;
        let (edge_node, stdin) =
            control_plane.spawn_piped_process("sparkplug-edge-node", edge_node)?;
        Ok(Self {
            broker_url,
            broker,
            edge_node,
            stdin,
        })
    }

    /// Waits until the edge node has published its births (it prints `born`).
    pub(super) async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.broker.check_running()?;
        wait_for_line(
            &mut self.edge_node,
            "born",
            Duration::from_secs(30),
            "the Sparkplug edge node",
        )
        .await
    }

    /// Gives the handlers the broker's credentials (the Secret that
    /// `examples/mqtt/deviceset.yaml` names) and applies that DeviceSet,
    /// pointed at this broker.
    pub(super) async fn apply(&self, client: &Client, examples_dir: &Path) -> anyhow::Result<()> {
        create_secret(
            client,
            "plant-broker",
            &[("username", USER), ("password", PASSWORD)],
        )
        .await?;
        apply_example(
            client,
            examples_dir,
            "mqtt/deviceset.yaml",
            &[("tcp://127.0.0.1:1883", &self.broker_url)],
        )
        .await
    }

    /// Sparkplug births are not retained, and the agents' handlers subscribe
    /// only once the set is applied, after the node's first births: so, as a
    /// primary host application's Rebirth request would, this asks the edge
    /// node for its births again, each second, until each of its devices is
    /// a Device that all `nodes` see (a rebirth's blink is what the agents'
    /// grace period is for).
    pub(super) async fn rebirth_until_seen(
        &mut self,
        client: &Client,
        nodes: usize,
    ) -> anyhow::Result<()> {
        let devices: Api<Device> = Api::namespaced(client.clone(), NAMESPACE);
        let ids = sparkplug_ids();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = devices.list(&ListParams::default()).await?.items;
            if ids.iter().all(|id| seen_by_all(&seen, id, nodes, &[])) {
                return Ok(());
            }
            self.broker.check_running()?;
            self.edge_node.check_running()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Sparkplug devices {ids:?} were not seen by every node in 60 s; the edge node's log:\n{}",
                crate::process::tail(self.edge_node.log(), 20)
            );
            writeln!(self.stdin, "rebirth")
                .and_then(|()| self.stdin.flush())
                .context("failed to ask the Sparkplug edge node for its births")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
