//! The demo: a local cluster with simulated devices, Ambit's agents and
//! controller, and a live view of devices and brokers appearing.
//!
//! ```text
//!  simulated PLC (pymodbus, 127.0.0.1) ─┐   mocked BLE sensors (dbusmock, private D-Bus) ─┐
//!  simulated OPC UA servers (asyncua, 127.0.0.1) ─┐                                        │
//!  control plane + N KWOK nodes ── agent per node (debug-echo, modbus, bluetooth, opcua) ── controller
//!        │                    └─ unix socket ─► ambit-handler --handler onvif, one per node (as root)
//!        │                          in netns <demo>-lan (10.78.0.1) ◄─ veth ─► netns <demo>-cam (10.78.0.2):
//!        │                                                   simulated ONVIF camera (onvif-server)
//!        └── examples/{debug-echo,modbus,bluetooth,opcua,onvif}/*.yaml applied ──► Devices ──► broker pods
//! ```
//!
//! WS-Discovery is multicast, which is off on the host's loopback here and
//! must never reach a real network: so the camera and the nodes' onvif
//! handlers live in two network namespaces of their own, joined by a veth
//! pair, and the agents (in the host's namespace) reach their handler over
//! its unix socket. Making namespaces needs root; without it the demo runs
//! without the camera and says so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::agents::Agent;
use crate::controllers::Controller;
use crate::process::Process;
use crate::{ControlPlane, nodes};

mod onvif;

use onvif::AGENT_HANDLERS_WITHOUT_ONVIF;
pub use onvif::{CAMERA_UUID, OnvifCamera};

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
    /// The simulated ONVIF camera, or why there is none.
    pub camera: Result<OnvifCamera, String>,
}

/// Simulated devices that speak real protocols.
#[derive(Debug)]
pub struct Simulators {
    /// The simulated Modbus PLC's port on 127.0.0.1 (units 1 and 2).
    pub plc_port: u16,
    /// The private D-Bus bus where the mocked BLE sensors advertise.
    pub ble_bus: String,
    /// The simulated OPC UA servers' ports on 127.0.0.1 (two boilers).
    pub opcua_ports: [u16; 2],
    _plc: Process,
    _ble: Process,
    _opcua: [Process; 2],
}

impl Simulators {
    /// Starts a pymodbus PLC and two mocked BLE thermometers, and waits until
    /// both serve.
    pub async fn start(control_plane: &ControlPlane, examples_dir: &Path) -> anyhow::Result<Self> {
        let plc_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut plc = Command::new("python3");
        plc.arg(examples_dir.join("modbus/plc-simulator.py")).args([
            "--port",
            &plc_port.to_string(),
            "--unit",
            "1",
            "--unit",
            "2",
        ]);
        let plc = control_plane.spawn_process("plc-simulator", plc)?;

        let socket = control_plane.dir.join("ble-bus.sock");
        let mut ble = Command::new(examples_dir.join("bluetooth/mock-sensor.sh"));
        ble.args(["--sensors", "2", "--socket"]).arg(&socket);
        let ble = control_plane.spawn_process("ble-sensors", ble)?;

        // Two asyncua servers: a secured one and a ClientAndServer.
        let mut opcua_ports = [0; 2];
        let mut opcua = Vec::new();
        let servers: [&[&str]; 2] = [
            &["--name", "Boiler 1", "--secure"],
            &["--name", "Boiler 2", "--type", "clientAndServer"],
        ];
        for (index, args) in servers.into_iter().enumerate() {
            opcua_ports[index] = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut server = Command::new("python3");
            server
                .arg(examples_dir.join("opcua/opcua-server.py"))
                .args(["--port", &opcua_ports[index].to_string()])
                .args(args);
            opcua.push(control_plane.spawn_process(&format!("opcua-server-{index}"), server)?);
        }
        let opcua: [Process; 2] = opcua
            .try_into()
            .map_err(|_| anyhow::anyhow!("two OPC UA servers"))?;

        let deadline = Instant::now() + Duration::from_secs(60);
        let mut plc_ready = false;
        let mut opcua_ready = [false; 2];
        while !(plc_ready && socket.exists() && opcua_ready.iter().all(|ready| *ready)) {
            plc_ready = plc_ready
                || tokio::net::TcpStream::connect(("127.0.0.1", plc_port))
                    .await
                    .is_ok();
            for (ready, port) in opcua_ready.iter_mut().zip(opcua_ports) {
                *ready = *ready
                    || tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok();
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the simulators did not start (run `make setup`):\n{}\n{}\n{}\n{}",
                    crate::process::tail(plc.log(), 20),
                    crate::process::tail(ble.log(), 20),
                    crate::process::tail(opcua[0].log(), 20),
                    crate::process::tail(opcua[1].log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ble_bus = format!("unix:path={}", socket.display());
        Ok(Self {
            plc_port,
            ble_bus,
            opcua_ports,
            _plc: plc,
            _ble: ble,
            _opcua: opcua,
        })
    }
}

impl Demo {
    /// Starts everything: the simulated devices, `nodes` KWOK nodes with an
    /// agent each, the controller (binaries found in `bin_dir`), and applies
    /// the example DeviceSets of `examples_dir`.
    pub async fn start(bin_dir: &Path, nodes: usize, examples_dir: &Path) -> anyhow::Result<Self> {
        let control_plane = ControlPlane::start().await?;
        let client = control_plane.client().await?;
        crate::crds::install(&client).await?;
        let simulators = Simulators::start(&control_plane, examples_dir).await?;
        let mut camera = OnvifCamera::start(&control_plane, bin_dir)?;
        let names = nodes::create(&client, "demo-node", nodes, &[]).await?;
        let mut agents = vec![];
        let agent = bin_dir.join("ambit-agent");
        anyhow::ensure!(
            agent.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            agent.display()
        );
        let mut env = vec![("DBUS_SYSTEM_BUS_ADDRESS", simulators.ble_bus.as_str())];
        if camera.is_ok() {
            env.push(("AMBIT_HANDLERS", AGENT_HANDLERS_WITHOUT_ONVIF));
        }
        for name in &names {
            let node = Agent::start_with_env(&control_plane, &agent, name, NAMESPACE, &env)?;
            if let Ok(camera) = &mut camera {
                camera.serve(&control_plane, bin_dir, &node)?;
            }
            agents.push(node);
        }
        let controller = Controller::start(
            &control_plane,
            &bin_dir.join("ambit-controller"),
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
            apply(
                &client,
                &std::fs::read_to_string(examples_dir.join(example))?,
            )
            .await?;
        }
        // The example PLC set points at port 5020; the simulator got a free port.
        let plcs = std::fs::read_to_string(examples_dir.join("modbus/plc.yaml"))?;
        let port = simulators.plc_port;
        apply(
            &client,
            &plcs.replace("ports: [5020]", &format!("ports: [{port}]")),
        )
        .await?;
        // The example OPC UA set names ports 4841 and 4842; the servers got free ones.
        let boilers = std::fs::read_to_string(examples_dir.join("opcua/servers.yaml"))?;
        let [first, second] = simulators.opcua_ports;
        apply(
            &client,
            &boilers
                .replace("127.0.0.1:4841/", &format!("127.0.0.1:{first}/"))
                .replace("127.0.0.1:4842/", &format!("127.0.0.1:{second}/")),
        )
        .await?;
        if let Ok(camera) = &mut camera {
            camera.wait_ready().await?;
            OnvifCamera::apply(&client, examples_dir).await?;
        }
        Ok(Self {
            control_plane,
            agents,
            controller,
            simulators,
            camera,
        })
    }

    /// Whether the demo camera is a described Device that every node sees.
    fn camera_seen_by_all(&self, devices: &[Device]) -> bool {
        let id = format!("urn:uuid:{CAMERA_UUID}");
        devices.iter().any(|d| {
            d.spec.id == id
                && d.spec.properties.contains_key("ONVIF_STREAM_URI")
                && d.status
                    .as_ref()
                    .is_some_and(|s| s.nodes.len() == self.agents.len())
        })
    }

    /// The current view, and whether everything has converged: every set
    /// Ready, every device seen, the brokers running, and the ONVIF camera
    /// (if any) described and seen by every node.
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
            && (self.camera.is_err() || self.camera_seen_by_all(&devices));
        Ok((out, converged))
    }
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
         a simulated Modbus PLC, two simulated OPC UA servers, two mocked Bluetooth LE thermometers\n\
         and a simulated ONVIF camera (in network namespaces of its own)..."
    )?;
    let demo = Demo::start(bin_dir, nodes, examples_dir).await?;
    match &demo.camera {
        Ok(camera) => writeln!(
            out,
            "ONVIF camera {} in network namespace {}; the nodes' onvif handlers in {}.",
            camera.device_service, camera.camera_netns, camera.lan_netns
        )?,
        Err(why) => writeln!(out, "Note: no ONVIF camera in this run: {why}.")?,
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
