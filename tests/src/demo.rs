//! The demo: a local cluster with simulated devices, Ambit's agents and
//! controller, and a live view of devices and brokers appearing.
//!
//! ```text
//!  simulated PLC (pymodbus, 127.0.0.1) ─┐   mocked BLE sensors (dbusmock, private D-Bus) ─┐
//!  simulated OPC UA servers (asyncua, 127.0.0.1) ─┐                                        │
//!  Sparkplug B edge node plant/line-1: pump-1, valve-1 (Tahu) ─► mosquitto (127.0.0.1) ─┐  │
//!  control plane + N KWOK nodes ── agent per node (debug-echo, modbus, mqtt, opcua, bluetooth) ── controller
//!        │                    └─ unix socket ─► ambit-handler --handler onvif,mdns, one per node (as root)
//!        │                          in netns <demo>-lan (10.78.0.1) ◄─ veth ─► netns <demo>-dev:
//!        │                              10.78.0.2 simulated ONVIF camera (onvif-server)
//!        │                              10.78.0.3 IPP printer "Office Laser" announced by mDNS (python-zeroconf)
//!        └── examples/{debug-echo,modbus,bluetooth,opcua,mqtt,onvif,mdns}/*.yaml applied ──► Devices ──► broker pods
//! ```
//!
//! WS-Discovery and mDNS are multicast, which is off on the host's loopback
//! here and must never reach a real network: so the camera, the printer and
//! the nodes' onvif and mdns handlers live in two network namespaces of
//! their own, joined by a veth pair, and the agents (in the host's
//! namespace) reach their handlers over their unix sockets. Making
//! namespaces needs root; without it the demo runs without the camera and
//! the printer and says so. MQTT is unicast: the broker is on loopback, where
//! the agents' embedded mqtt handlers reach it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::agents::Agent;
use crate::controllers::Controller;
use crate::process::Process;
use crate::{ControlPlane, nodes};

mod lan;
mod mdns;
mod mqtt;
mod onvif;
mod simulators;

use lan::AGENT_HANDLERS_WITHOUT_LAN;
pub use lan::Lan;
pub use mdns::{MdnsPrinter, PRINTER_ID, PRINTER_INSTANCE};
pub use mqtt::{SPARKPLUG_DEVICES, SPARKPLUG_GROUP, SPARKPLUG_NODE, SparkplugNode, sparkplug_ids};
pub use onvif::{CAMERA_UUID, OnvifCamera};
pub use simulators::Simulators;

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
    /// The simulated devices.
    pub simulators: Simulators,
    /// The simulated LAN with the ONVIF camera and the mDNS printer, or why
    /// there is none.
    pub lan: Result<Lan, String>,
}

impl Demo {
    /// Starts everything: the simulated devices, `nodes` KWOK nodes with an
    /// agent each, the controller (binaries found in `bin_dir`), and applies
    /// the example DeviceSets of `examples_dir`.
    pub async fn start(bin_dir: &Path, nodes: usize, examples_dir: &Path) -> anyhow::Result<Self> {
        let control_plane = ControlPlane::start().await?;
        let client = control_plane.client().await?;
        crate::crds::install(&client).await?;
        let mut simulators = Simulators::start(&control_plane, examples_dir).await?;
        let mut lan = Lan::start(&control_plane, bin_dir)?;
        let names = nodes::create(&client, "demo-node", nodes, &[]).await?;
        let mut agents = vec![];
        let agent = binary(bin_dir, "ambit-agent")?;
        let mut env = vec![("DBUS_SYSTEM_BUS_ADDRESS", simulators.ble_bus.as_str())];
        if lan.is_ok() {
            env.push(("AMBIT_HANDLERS", AGENT_HANDLERS_WITHOUT_LAN));
        }
        for name in &names {
            let node = Agent::start_with_env(&control_plane, &agent, name, NAMESPACE, &env)?;
            if let Ok(lan) = &mut lan {
                lan.serve(&control_plane, bin_dir, &node)?;
            }
            agents.push(node);
        }
        let controller = Controller::start(
            &control_plane,
            &binary(bin_dir, "ambit-controller")?,
            NAMESPACE,
            "demo",
        )?;
        // Pods cannot be created before the namespace's default ServiceAccount
        // exists (the controller-manager makes it, a few seconds after start).
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), NAMESPACE);
        let exists = |sa: Option<&k8s_openapi::api::core::v1::ServiceAccount>| sa.is_some();
        crate::wait::until(
            &accounts,
            "default",
            Duration::from_secs(60),
            "the default ServiceAccount",
            exists,
        )
        .await?;
        for example in [
            "debug-echo/deviceset.yaml",
            "debug-echo/local-cameras.yaml",
            "bluetooth/thermometers.yaml",
        ] {
            apply_example(&client, examples_dir, example, &[]).await?;
        }
        // The example PLC set points at port 5020; the simulator got a free port.
        let port = format!("ports: [{}]", simulators.plc_port);
        apply_example(
            &client,
            examples_dir,
            "modbus/plc.yaml",
            &[("ports: [5020]", &port)],
        )
        .await?;
        // The example OPC UA set names ports 4841 and 4842; the servers got free ones.
        let [first, second] = simulators.opcua_ports.map(|p| format!("127.0.0.1:{p}/"));
        apply_example(
            &client,
            examples_dir,
            "opcua/servers.yaml",
            &[("127.0.0.1:4841/", &first), ("127.0.0.1:4842/", &second)],
        )
        .await?;
        simulators.sparkplug.apply(&client, examples_dir).await?;
        if let Ok(lan) = &mut lan {
            lan.apply(&client, examples_dir).await?;
        }
        simulators
            .sparkplug
            .rebirth_until_seen(&client, agents.len())
            .await?;
        Ok(Self {
            control_plane,
            agents,
            controller,
            simulators,
            lan,
        })
    }

    /// The current view, and whether everything has converged: every set
    /// Ready, every device seen, the brokers running, the Sparkplug devices
    /// seen by every node, and the ONVIF camera (described) and the mDNS
    /// printer (if there is a LAN) too.
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
        let cameras: Vec<&Device> = devices
            .iter()
            .filter(|d| d.spec.properties.contains_key("ONVIF_UUID"))
            .collect();
        if !cameras.is_empty() {
            let property = |d: &Device, key: &str| {
                d.spec
                    .properties
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "-".into())
            };
            out.push_str(&table(
                &["ONVIF CAMERA", "MANUFACTURER", "MODEL", "MAC", "STREAM URI"],
                cameras.iter().map(|d| {
                    let stream = match d.spec.properties.get("ONVIF_ERROR") {
                        Some(error) => format!("error: {error}"),
                        None => property(d, "ONVIF_STREAM_URI"),
                    };
                    vec![
                        d.name_any(),
                        property(d, "ONVIF_MANUFACTURER"),
                        property(d, "ONVIF_MODEL"),
                        property(d, "ONVIF_MAC_ADDRESS"),
                        stream,
                    ]
                }),
            ));
            out.push('\n');
        }
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
            && by_phase.keys().all(|p| p == "Running")
            && sparkplug_ids().iter().all(|id| {
                seen_by_all(&devices, id, self.agents.len(), &["SPARKPLUG_METRIC_COUNT"])
            })
            && (self.lan.is_err() || Lan::seen_by_all(&devices, self.agents.len()));
        Ok((out, converged))
    }
}

/// Whether the Device with `id` has the `properties` and is seen by `nodes` nodes.
fn seen_by_all(devices: &[Device], id: &str, nodes: usize, properties: &[&str]) -> bool {
    devices.iter().any(|d| {
        d.spec.id == id
            && properties
                .iter()
                .all(|key| d.spec.properties.contains_key(*key))
            && d.status.as_ref().is_some_and(|s| s.nodes.len() == nodes)
    })
}

/// Waits up to `within` until `process` (`what`) has logged a line starting
/// with `prefix`; fails with its log's end if it exits or stays silent.
async fn wait_for_line(
    process: &mut Process,
    prefix: &str,
    within: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !std::fs::read_to_string(process.log())
        .is_ok_and(|log| log.lines().any(|line| line.starts_with(prefix)))
    {
        process.check_running()?;
        if Instant::now() > deadline {
            anyhow::bail!(
                "{what} did not say {prefix:?} in {within:?}:\n{}",
                crate::process::tail(process.log(), 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Creates the Secret `name` with `entries`.
async fn create_secret(
    client: &Client,
    name: &str,
    entries: &[(&str, &str)],
) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            entries
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .with_context(|| format!("failed to create Secret {name}"))?;
    Ok(())
}

/// `name`, a binary of the workspace in `bin_dir`, which must be built.
fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    Ok(path)
}

/// Applies the example `path` of `examples_dir` (its DeviceSets), each of
/// `edits` (what the example says, what the demo needs instead) made first;
/// an edit the example no longer has the text for is an error.
async fn apply_example(
    client: &Client,
    examples_dir: &Path,
    path: &str,
    edits: &[(&str, &str)],
) -> anyhow::Result<()> {
    let file = examples_dir.join(path);
    let mut text = std::fs::read_to_string(&file)
        .with_context(|| format!("failed to read {}", file.display()))?;
    for (from, to) in edits {
        anyhow::ensure!(
            text.contains(from),
            "{} no longer says {from:?}",
            file.display()
        );
        text = text.replace(from, to);
    }
    apply(client, &text)
        .await
        .with_context(|| format!("failed to apply {}", file.display()))
}

/// Server-side applies every DeviceSet of a (multi-document) YAML text.
async fn apply(client: &Client, text: &str) -> anyhow::Result<()> {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
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

/// Installs, once, into the harness's cache, what the simulated devices
/// need beyond `scripts/setup.sh`'s packages: Eclipse Tahu's Sparkplug
/// client (npm) for the edge node and python-zeroconf (a venv) for the
/// printer's responder; says what it installs, and nothing when it is all
/// there. `make setup` runs this
/// (`ambit-demo --prepare`), and the demo itself when it has not.
pub fn prepare(out: &mut impl Write) -> anyhow::Result<()> {
    use crate::peers::{mdns, mqtt};
    if !mqtt::tahu_installed() {
        writeln!(
            out,
            "Installing the Sparkplug edge node's client (npm {}), once...",
            mqtt::TAHU_CLIENT
        )?;
    }
    mqtt::tahu_modules()?;
    if !mdns::zeroconf_installed() {
        writeln!(
            out,
            "Installing the mDNS printer's responder (pip {} in a venv), once...",
            mdns::ZEROCONF
        )?;
    }
    mdns::zeroconf_python()?;
    Ok(())
}

/// Runs the demo: prints the view as it changes; with `until_converged`,
/// returns once everything has converged (or fails after `timeout`).
pub async fn run(
    bin_dir: &Path,
    nodes: usize,
    examples_dir: &Path,
    until_converged: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Starting a local control plane with {nodes} KWOK nodes, an agent per node, the controller,\n\
         a simulated Modbus PLC, two simulated OPC UA servers, two mocked Bluetooth LE thermometers,\n\
         a simulated Sparkplug B edge node ({SPARKPLUG_GROUP}/{SPARKPLUG_NODE}: {}) on a mosquitto broker,\n\
         and, in network namespaces of their own, a simulated ONVIF camera and an mDNS-announced printer...",
        SPARKPLUG_DEVICES.join(", ")
    )?;
    prepare(&mut out)?;
    let demo = Demo::start(bin_dir, nodes, examples_dir).await?;
    writeln!(
        out,
        "Sparkplug B edge node {SPARKPLUG_GROUP}/{SPARKPLUG_NODE} publishing to mosquitto at {}.",
        demo.simulators.sparkplug.broker_url
    )?;
    match &demo.lan {
        Ok(lan) => writeln!(
            out,
            "ONVIF camera {} and mDNS printer \"{PRINTER_INSTANCE}\" in network namespace {}; \
             the nodes' onvif and mdns handlers in {}.",
            lan.camera.device_service, lan.devices_netns, lan.lan_netns
        )?,
        Err(why) => writeln!(
            out,
            "Note: no ONVIF camera and no mDNS printer in this run: {why}."
        )?,
    }
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
