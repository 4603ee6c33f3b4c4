//! The demo: a local cluster with simulated devices, Ambit's agents and
//! controller, and a live view of devices and brokers appearing.
//!
//! ```text
//!  control plane + N KWOK nodes ── agent per node ── controller
//!        └── examples/debug-echo/*.yaml applied ──► Devices ──► broker pods (Running via KWOK)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::agents::Agent;
use crate::controllers::Controller;
use crate::{ControlPlane, nodes};

/// The namespace the demo applies its DeviceSets to.
pub const NAMESPACE: &str = "default";

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The control plane (its kubeconfig is what kubectl needs).
    pub control_plane: ControlPlane,
    /// The agents, one per node.
    pub agents: Vec<Agent>,
    /// The controller.
    pub controller: Controller,
}

impl Demo {
    /// Starts everything: `nodes` KWOK nodes with an agent each, the
    /// controller (binaries found in `bin_dir`), and applies every
    /// DeviceSet manifest in `examples`.
    pub async fn start(bin_dir: &Path, nodes: usize, examples: &[PathBuf]) -> anyhow::Result<Self> {
        let control_plane = ControlPlane::start().await?;
        let client = control_plane.client().await?;
        crate::crds::install(&client).await?;
        let names = nodes::create(&client, "demo-node", nodes, &[]).await?;
        let mut agents = vec![];
        let agent = bin_dir.join("ambit-agent");
        anyhow::ensure!(
            agent.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            agent.display()
        );
        for name in &names {
            agents.push(Agent::start(&control_plane, &agent, name, NAMESPACE)?);
        }
        let controller = Controller::start(
            &control_plane,
            &bin_dir.join("ambit-controller"),
            NAMESPACE,
            "demo",
        )?;
        for path in examples {
            apply(&client, path).await?;
        }
        Ok(Self {
            control_plane,
            agents,
            controller,
        })
    }

    /// The current view, and whether everything has converged: every set
    /// Ready, every device seen, the brokers running.
    pub async fn view(&self, client: &Client) -> anyhow::Result<(String, bool)> {
        let sets: Vec<DeviceSet> = Api::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await?
            .items;
        let devices: Vec<Device> = Api::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await?
            .items;
        let pods: Vec<Pod> = Api::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default().labels("ambit.dev/device-set"))
            .await?
            .items;

        let mut out = String::new();
        let ready = |s: &DeviceSet| {
            s.status
                .iter()
                .flat_map(|st| &st.conditions)
                .find(|c| c.type_ == "Ready")
                .map(|c| format!("{} ({})", c.status, c.reason))
        };
        out.push_str(&table(
            &["DEVICESET", "HANDLER", "DEVICES", "BROKERS READY", "READY"],
            sets.iter().map(|s| {
                let st = s.status.clone().unwrap_or_default();
                vec![
                    s.name_any(),
                    s.spec.discovery.handler.clone(),
                    st.devices.unwrap_or(0).to_string(),
                    st.ready_brokers.unwrap_or(0).to_string(),
                    ready(s).unwrap_or_else(|| "-".into()),
                ]
            }),
        ));
        out.push('\n');
        out.push_str(&table(
            &["DEVICE", "ID", "SHARED", "NODES"],
            devices.iter().map(|d| {
                let nodes: Vec<String> = d
                    .status
                    .iter()
                    .flat_map(|s| &s.nodes)
                    .map(|n| n.node.clone())
                    .collect();
                vec![
                    d.name_any(),
                    d.spec.id.clone(),
                    d.spec.shared.to_string(),
                    nodes.join(","),
                ]
            }),
        ));
        out.push('\n');
        let mut by_phase: BTreeMap<String, usize> = BTreeMap::new();
        out.push_str(&table(
            &["BROKER POD", "NODE", "PHASE"],
            pods.iter().map(|p| {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                *by_phase.entry(phase.clone()).or_default() += 1;
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "-".into());
                vec![p.name_any(), node, phase]
            }),
        ));
        let converged = !sets.is_empty()
            && !devices.is_empty()
            && sets
                .iter()
                .all(|s| ready(s).is_some_and(|r| r.starts_with("True")))
            && devices
                .iter()
                .all(|d| d.status.as_ref().is_some_and(|s| !s.nodes.is_empty()))
            && !pods.is_empty()
            && by_phase.keys().all(|p| p == "Running");
        Ok((out, converged))
    }
}

/// Server-side applies every object of a (multi-document) YAML file.
async fn apply(client: &Client, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let set: DeviceSet = serde::Deserialize::deserialize(document)?;
        let api: Api<DeviceSet> = Api::namespaced(client.clone(), NAMESPACE);
        api.patch(
            &set.name_any(),
            &PatchParams::apply("ambit-demo").force(),
            &Patch::Apply(&set),
        )
        .await?;
    }
    Ok(())
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs the demo: prints the view as it changes; with `until_converged`,
/// returns once everything has converged (or fails after `timeout`).
pub async fn run(
    bin_dir: &Path,
    nodes: usize,
    examples: &[PathBuf],
    until_converged: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Starting a local control plane with {nodes} KWOK nodes, an agent per node and the controller..."
    )?;
    let demo = Demo::start(bin_dir, nodes, examples).await?;
    let client = demo.control_plane.client().await?;
    writeln!(
        out,
        "Control plane ready in {:.1?}. Point kubectl at it with:\n\n  export KUBECONFIG={}\n  kubectl get ambit -A\n",
        demo.control_plane.start_time,
        demo.control_plane.kubeconfig.display()
    )?;
    writeln!(out, "Logs: {}\n", demo.control_plane.log_dir().display())?;

    let mut last = String::new();
    let mut converged_at: Option<Duration> = None;
    loop {
        let (view, converged) = demo.view(&client).await?;
        if view != last {
            writeln!(out, "--- {:.1?} after start ---\n{view}", started.elapsed())?;
            last = view;
        }
        if converged && converged_at.is_none() {
            let at = started.elapsed();
            converged_at = Some(at);
            writeln!(
                out,
                "Converged {at:.1?} after start: every DeviceSet Ready, every device seen, every broker Running."
            )?;
            if until_converged {
                return Ok(());
            }
            writeln!(out, "Still running; Ctrl-C stops everything and cleans up.")?;
        }
        if until_converged && started.elapsed() > timeout {
            anyhow::bail!("not converged after {timeout:?}; last view:\n{last}");
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                writeln!(out, "Stopping and cleaning up.")?;
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
