//! The demo's simulated LAN: two network namespaces joined by a veth pair,
//! the simulated devices that speak multicast protocols on one end (the
//! ONVIF camera, the mDNS-announced printer), and each node's external
//! handlers for them on the other (see the diagram in `demo.rs`).

use std::path::Path;
use std::process::Command;

use ambit_crds::v1alpha1::Device;
use kube::Client;

use super::mdns::MdnsPrinter;
use super::onvif::OnvifCamera;
use crate::ControlPlane;
use crate::agents::Agent;
use crate::peers::ip;
use crate::process::Process;

/// The agents' embedded handlers when onvif and mdns are served from the
/// LAN namespace instead: an agent's own would probe the host's networks.
pub(super) const AGENT_HANDLERS_WITHOUT_LAN: &str = "debug-echo,modbus,mqtt,opcua,bluetooth,udev";
/// The handlers each node runs in the LAN namespace, in one `ambit-handler`.
const LAN_HANDLERS: &str = "onvif,mdns";
const LAN_ADDRESS: &str = "10.78.0.1";
/// The camera's address on the devices' end of the link.
pub(super) const CAMERA_ADDRESS: &str = "10.78.0.2";
/// The printer's address, a second one on the devices' end.
pub(super) const PRINTER_ADDRESS: &str = "10.78.0.3";

/// The devices' namespace and the LAN namespace where each node's
/// `ambit-handler --handler onvif,mdns` runs:
///
/// ```text
///   <lan_netns>: one ambit-handler per node, lan0 10.78.0.1/24
///        ▲ veth pair (multicast routed here only)
///   <devices_netns>: dev0 10.78.0.2/24: ONVIF camera on :8080, WS-Discovery on :3702
///                    dev0 10.78.0.3/24: IPP printer announced by mDNS (:5353)
/// ```
///
/// The namespaces go when this is dropped, or when the demo's process ends
/// however it ends.
#[derive(Debug)]
pub struct Lan {
    /// The namespace the nodes' handlers run in.
    pub lan_netns: String,
    /// The devices' namespace.
    pub devices_netns: String,
    /// The simulated ONVIF camera.
    pub camera: OnvifCamera,
    /// The simulated mDNS-announced printer.
    pub printer: MdnsPrinter,
    handlers: Vec<Process>,
    _namespaces: Namespaces,
}

impl Lan {
    /// Makes the namespaces and starts the devices in one. `Ok(Err(why))`
    /// when this machine cannot make namespaces (not root, no `ip`): the demo
    /// then runs without these devices and prints why.
    pub fn start(
        control_plane: &ControlPlane,
        bin_dir: &Path,
    ) -> anyhow::Result<Result<Self, String>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Err(
                "it needs root to make network namespaces (run the demo with sudo to see them)"
                    .into(),
            ));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Ok(Err(
                "`ip` (iproute2) is missing: run `make setup`, which installs it".into(),
            ));
        }
        let base = format!("ambit-demo-{}", std::process::id());
        let (lan, devices) = (format!("{base}-lan"), format!("{base}-dev"));
        let namespaces = match Namespaces::create(&lan, &devices) {
            Ok(namespaces) => namespaces,
            Err(error) => return Ok(Err(format!("cannot make network namespaces: {error}"))),
        };
        let camera = OnvifCamera::start(control_plane, bin_dir, &devices)?;
        let printer = MdnsPrinter::start(control_plane, &devices)?;
        Ok(Ok(Self {
            lan_netns: lan,
            devices_netns: devices,
            camera,
            printer,
            handlers: vec![],
            _namespaces: namespaces,
        }))
    }

    /// Starts `ambit-handler --handler onvif,mdns` for `agent` in the LAN
    /// namespace; it registers on the agent's socket (unix sockets do not
    /// care about network namespaces).
    pub fn serve(
        &mut self,
        control_plane: &ControlPlane,
        bin_dir: &Path,
        agent: &Agent,
    ) -> anyhow::Result<()> {
        let mut handler = Command::new("ip");
        handler
            .args(["netns", "exec", &self.lan_netns])
            .arg(super::binary(bin_dir, "ambit-handler")?)
            .args(["--handler", LAN_HANDLERS])
            .env("AMBIT_SOCKET_DIR", &agent.socket_dir)
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into()),
            );
        let name = format!("lan-handlers-{}", agent.node);
        self.handlers
            .push(control_plane.spawn_process(&name, handler)?);
        Ok(())
    }

    /// Waits until the camera serves and the printer is announced, then
    /// applies their DeviceSets.
    pub(super) async fn apply(
        &mut self,
        client: &Client,
        examples_dir: &Path,
    ) -> anyhow::Result<()> {
        self.camera.wait_ready().await?;
        OnvifCamera::apply(client, examples_dir).await?;
        self.printer.wait_announced().await?;
        MdnsPrinter::apply(client, examples_dir).await
    }

    /// Whether the camera (described) and the printer are Devices that all
    /// `nodes` see.
    pub(super) fn seen_by_all(devices: &[Device], nodes: usize) -> bool {
        let camera = format!("urn:uuid:{}", super::CAMERA_UUID);
        super::seen_by_all(devices, &camera, nodes, &["ONVIF_STREAM_URI"])
            && super::seen_by_all(devices, super::PRINTER_ID, nodes, &["MDNS_ADDRESS"])
    }
}

/// Two network namespaces joined by a veth pair, multicast routed over it.
/// A shell that waits for this process's end (its stdin closes then, however
/// the process ends) deletes them; dropping this closes that pipe at once.
#[derive(Debug)]
struct Namespaces {
    guard: std::process::Child,
}

/// Deletes the namespaces given as arguments once stdin closes; ignores the
/// Ctrl-C that the terminal sends the whole process group.
const NETNS_GUARD: &str = r#"
trap '' INT HUP TERM
cat >/dev/null
for ns in "$@"; do ip netns del "$ns" 2>/dev/null; done
"#;

impl Namespaces {
    fn create(lan: &str, devices: &str) -> Result<Self, String> {
        let guard = Command::new("sh")
            .args(["-c", NETNS_GUARD, "ambit-netns-guard", lan, devices])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start sh: {error}"))?;
        // From here on, dropping `namespaces` deletes whatever was made.
        let namespaces = Self { guard };
        ip(&["netns", "add", lan])?;
        ip(&["netns", "add", devices])?;
        ip(&[
            "-n", lan, "link", "add", "lan0", "type", "veth", "peer", "name", "dev0", "netns",
            devices,
        ])?;
        for (ns, dev, address) in [
            (lan, "lan0", LAN_ADDRESS),
            (devices, "dev0", CAMERA_ADDRESS),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])?;
        }
        let printer = format!("{PRINTER_ADDRESS}/24");
        ip(&["-n", devices, "addr", "add", &printer, "dev", "dev0"])?;
        Ok(namespaces)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
    }
}
