//! The demo's simulated ONVIF camera and the network namespaces it and the
//! nodes' onvif handlers live in (see the diagram in `demo.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::{NAMESPACE, apply};
use crate::ControlPlane;
use crate::agents::Agent;
use crate::process::Process;

/// The demo camera's WS-Discovery identity: its Device's id is `urn:uuid:` and this.
pub const CAMERA_UUID: &str = "5c0ffee0-a3b1-4c2d-8e4f-00000000d3e0";
/// The demo camera's password, given to the handlers through the Secret that
/// `examples/onvif/cameras.yaml` names.
const CAMERA_PASSWORD: &str = "demo-only-password";
const LAN_ADDRESS: &str = "10.78.0.1";
const CAMERA_ADDRESS: &str = "10.78.0.2";
const CAMERA_PORT: u16 = 8080;
/// The agents' embedded handlers when onvif is served from the namespace
/// instead: an agent's own onvif handler would probe the host's networks.
pub(super) const AGENT_HANDLERS_WITHOUT_ONVIF: &str = "debug-echo,modbus,opcua,bluetooth,udev";

/// The simulated ONVIF camera (`ambit-demo-camera`) in a network namespace
/// of its own, joined by a veth pair to the namespace where each node's
/// `ambit-handler --handler onvif` runs:
///
/// ```text
///   <lan_netns>: one ambit-handler per node, lan0 10.78.0.1/24
///        ▲ veth pair (multicast routed here only)
///   <camera_netns>: cam0 10.78.0.2/24, ONVIF on :8080, WS-Discovery on :3702
/// ```
///
/// The namespaces go when this is dropped, or when the demo's process ends
/// however it ends.
#[derive(Debug)]
pub struct OnvifCamera {
    /// The namespace the nodes' onvif handlers run in.
    pub lan_netns: String,
    /// The camera's namespace.
    pub camera_netns: String,
    /// The camera's ONVIF device service URL.
    pub device_service: String,
    camera: Process,
    handlers: Vec<Process>,
    _namespaces: Namespaces,
}

impl OnvifCamera {
    /// Makes the namespaces and starts the camera in one. `Ok(Err(why))`
    /// when this machine cannot make namespaces (not root, no `ip`): the demo
    /// then runs without the camera and prints why.
    pub fn start(
        control_plane: &ControlPlane,
        bin_dir: &Path,
    ) -> anyhow::Result<Result<Self, String>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Err(
                "it needs root to make network namespaces (run the demo with sudo to see it)"
                    .into(),
            ));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Ok(Err(
                "`ip` (iproute2) is missing: run `make setup`, which installs it".into(),
            ));
        }
        let base = format!("ambit-demo-{}", std::process::id());
        let (lan, cam) = (format!("{base}-lan"), format!("{base}-cam"));
        let namespaces = match Namespaces::create(&lan, &cam) {
            Ok(namespaces) => namespaces,
            Err(error) => return Ok(Err(format!("cannot make network namespaces: {error}"))),
        };
        let binary = bin_dir.join("ambit-demo-camera");
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            binary.display()
        );
        let mut camera = Command::new("ip");
        camera
            .args(["netns", "exec", &cam])
            .arg(binary)
            .args(["--address", CAMERA_ADDRESS, "--port"])
            .arg(CAMERA_PORT.to_string())
            .args(["--uuid", CAMERA_UUID])
            .env("AMBIT_DEMO_CAMERA_PASSWORD", CAMERA_PASSWORD);
        let camera = control_plane.spawn_process("onvif-camera", camera)?;
        Ok(Ok(Self {
            lan_netns: lan,
            camera_netns: cam,
            device_service: format!("http://{CAMERA_ADDRESS}:{CAMERA_PORT}/onvif/device_service"),
            camera,
            handlers: vec![],
            _namespaces: namespaces,
        }))
    }

    /// Starts `ambit-handler --handler onvif` for `agent` in the LAN
    /// namespace; it registers on the agent's socket (unix sockets do not
    /// care about network namespaces).
    pub fn serve(
        &mut self,
        control_plane: &ControlPlane,
        bin_dir: &Path,
        agent: &Agent,
    ) -> anyhow::Result<()> {
        let binary = bin_dir.join("ambit-handler");
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            binary.display()
        );
        let mut handler = Command::new("ip");
        handler
            .args(["netns", "exec", &self.lan_netns])
            .arg(binary)
            .args(["--handler", "onvif"])
            .env("AMBIT_SOCKET_DIR", &agent.socket_dir)
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into()),
            );
        let name = format!("onvif-handler-{}", agent.node);
        self.handlers
            .push(control_plane.spawn_process(&name, handler)?);
        Ok(())
    }

    /// Waits until the camera serves (it prints `ready` then).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(self.camera.log())
            .is_ok_and(|log| log.lines().any(|line| line.starts_with("ready ")))
        {
            self.camera.check_running()?;
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the ONVIF camera did not start in 30 s:\n{}",
                    crate::process::tail(self.camera.log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Gives the handlers the camera's credentials (the Secret that
    /// `examples/onvif/cameras.yaml` names) and applies that DeviceSet.
    pub(super) async fn apply(client: &Client, examples_dir: &Path) -> anyhow::Result<()> {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("onvif-cameras".into()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([
                ("username".into(), "admin".into()),
                ("password".into(), CAMERA_PASSWORD.into()),
            ])),
            ..Default::default()
        };
        Api::<Secret>::namespaced(client.clone(), NAMESPACE)
            .create(&kube::api::PostParams::default(), &secret)
            .await?;
        // The simulated camera answers Probes at once, where real ones may
        // wait 500 ms: a shorter first probe cycle brings its Device sooner.
        let cameras = std::fs::read_to_string(examples_dir.join("onvif/cameras.yaml"))?;
        apply(
            client,
            &cameras.replace("matchTimeout: 3s", "matchTimeout: 1s"),
        )
        .await
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
    fn create(lan: &str, cam: &str) -> Result<Self, String> {
        let guard = Command::new("sh")
            .args(["-c", NETNS_GUARD, "ambit-netns-guard", lan, cam])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start sh: {error}"))?;
        // From here on, dropping `namespaces` deletes whatever was made.
        let namespaces = Self { guard };
        ip(&["netns", "add", lan])?;
        ip(&["netns", "add", cam])?;
        ip(&[
            "-n", lan, "link", "add", "lan0", "type", "veth", "peer", "name", "cam0", "netns", cam,
        ])?;
        for (ns, dev, address) in [(lan, "lan0", LAN_ADDRESS), (cam, "cam0", CAMERA_ADDRESS)] {
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
        Ok(namespaces)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
    }
}

/// Runs `ip args`; the error is its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("cannot run ip: {error}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
