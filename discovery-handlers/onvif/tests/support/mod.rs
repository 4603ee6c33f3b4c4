//! Real ONVIF peers for the tests, on a private link between two network
//! namespaces the test creates (multicast never touches the host's
//! interfaces):
//!
//! ```text
//!   <name>-h  (the handler)              <name>-c  (the cameras)
//!   veth0 10.77.0.1/24  ◄── veth pair ──► veth1 10.77.0.2/24
//!   route 224.0.0.0/4 dev veth0           route 224.0.0.0/4 dev veth1
//! ```
//!
//! Code runs inside a namespace on a thread that entered it (setns) with
//! its own current-thread runtime, so every socket it opens lives there.
//! Peers: the `onvif-server` crate (a camera's SOAP services and its own
//! WS-Discovery answers) and the PyPI `WSDiscovery` publisher
//! (`examples/onvif/wsd-publisher.py`: Hello, ProbeMatches, Bye).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream};
use async_trait::async_trait;
use futures::StreamExt;
use nix::sched::{CloneFlags, setns};
use onvif_server::{
    DeviceInfo, DeviceService, MediaService, NetworkInterface, OnvifError, OnvifServer,
};
use tokio::sync::oneshot;

pub const HOST_IP: &str = "10.77.0.1";
pub const CAMERA_IP: &str = "10.77.0.2";

const SETUP: &str = "run the setup first: `make setup` (or ./scripts/setup.sh) installs \
                     iproute2 (scripts/setup-deps.txt) and WSDiscovery (scripts/setup-pip.txt)";

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("`ip` is missing ({error}): {SETUP}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two namespaces joined by a veth pair; deleted when dropped, even when
/// the test fails.
#[derive(Debug)]
pub struct Netns {
    pub host: String,
    pub camera: String,
}

impl Netns {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the onvif tests create network namespaces and must run as root (CI does)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = format!(
            "ambit-onvif-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let net = Self {
            host: format!("{base}-h"),
            camera: format!("{base}-c"),
        };
        ip(&["netns", "add", &net.host]);
        ip(&["netns", "add", &net.camera]);
        ip(&[
            "-n",
            &net.host,
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
            "netns",
            &net.camera,
        ]);
        for (ns, dev, address) in [
            (&net.host, "veth0", HOST_IP),
            (&net.camera, "veth1", CAMERA_IP),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                dev,
            ]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]);
        }
        net
    }

    /// Runs `make()`'s future to its end on a thread inside namespace `ns`.
    pub fn run<F, T>(ns: &str, make: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: Future<Output = T>,
        T: Send + 'static,
    {
        let ns = ns.to_owned();
        std::thread::spawn(move || {
            enter(&ns);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(make())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.host, &self.camera] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn enter(ns: &str) {
    let file = File::open(Path::new("/run/netns").join(ns)).unwrap();
    setns(file, CloneFlags::CLONE_NEWNET).unwrap();
}

/// What the simulated camera says about itself.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub uuid: &'static str,
    pub port: u16,
    /// Answer Probes itself (onvif-server's WS-Discovery), or leave it to a publisher.
    pub discovery: bool,
    pub password: &'static str,
}

#[derive(Clone)]
struct Sim {
    port: u16,
}

#[async_trait]
impl DeviceService for Sim {
    async fn get_device_information(&self) -> Result<DeviceInfo, OnvifError> {
        Ok(DeviceInfo {
            manufacturer: "Ambit Test Optics".into(),
            model: "Sim-1".into(),
            firmware_version: "1.2.3".into(),
            serial_number: "SN-0042".into(),
            hardware_id: "hw-7".into(),
        })
    }

    async fn get_network_interfaces(&self) -> Result<Vec<NetworkInterface>, OnvifError> {
        Ok(vec![NetworkInterface {
            token: "eth0".into(),
            enabled: true,
            name: "eth0".into(),
            hw_address: "02-00-5E-10-00-01".into(),
            mtu: 1500,
        }])
    }
}

#[async_trait]
impl MediaService for Sim {
    async fn get_stream_uri(&self, profile: &str) -> Result<String, OnvifError> {
        Ok(format!(
            "rtsp://{CAMERA_IP}:8554/{profile}?port={}",
            self.port
        ))
    }
}

/// An `onvif-server` camera running in the camera namespace until dropped.
#[derive(Debug)]
pub struct Camera {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Camera {
    pub fn start(ns: &str, spec: CameraSpec) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let ns = ns.to_owned();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let sim = Sim { port: spec.port };
                let server = OnvifServer::builder()
                    .port(spec.port)
                    .advertised_host(CAMERA_IP)
                    .discovery_uuid(spec.uuid.parse().unwrap())
                    .device_service(sim.clone())
                    .media_service(sim)
                    .auth("admin", spec.password)
                    .build()
                    .unwrap();
                let serve = if spec.discovery {
                    // run() binds 0.0.0.0:<port> and answers Probes on 3702.
                    tokio::spawn(async move { server.run().await.map_err(|e| e.to_string()) })
                } else {
                    let router = server.into_router().unwrap();
                    let listener = tokio::net::TcpListener::bind((CAMERA_IP, spec.port))
                        .await
                        .unwrap();
                    tokio::spawn(async move {
                        axum::serve(listener, router)
                            .await
                            .map_err(|e| e.to_string())
                    })
                };
                // Ready once it accepts connections (its Probe listener starts first).
                while tokio::net::TcpStream::connect((CAMERA_IP, spec.port))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ready.send(()).unwrap();
                tokio::select! {
                    result = serve => panic!("camera stopped: {result:?}"),
                    _ = stopped => {}
                }
            });
        });
        is_ready
            .recv_timeout(Duration::from_secs(30))
            .expect("camera starts");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The WSDiscovery publisher announcing a camera, in namespace `ns`.
#[derive(Debug)]
pub struct Publisher {
    child: std::process::Child,
}

impl Publisher {
    pub fn start(ns: &str, uuid: &str, xaddr: &str, scopes: &[&str]) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/onvif/wsd-publisher.py");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, "python3"])
            .arg(script)
            .args(["--uuid", uuid, "--xaddr", xaddr]);
        for scope in scopes {
            command.args(["--scope", scope]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the publisher ({error}): {SETUP}"));
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the publisher did not start: {SETUP}");
        Self { child }
    }

    /// Stops it the polite way: it sends a Bye, then exits.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next complete set, within `within`.
pub async fn next_set(stream: &mut DeviceStream, within: Duration) -> Vec<Device> {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("a device set in time")
        .expect("the stream stays open")
        .expect("no discovery error")
}

/// Reads sets until `done` holds for one, within `within`.
pub async fn until(
    stream: &mut DeviceStream,
    within: Duration,
    done: impl Fn(&[Device]) -> bool,
) -> Vec<Device> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let set = next_set(stream, left).await;
        if done(&set) {
            return set;
        }
    }
}

/// Asserts that no set comes within `quiet`.
pub async fn assert_quiet(stream: &mut DeviceStream, quiet: Duration) {
    let next = tokio::time::timeout(quiet, stream.next()).await;
    assert!(next.is_err(), "expected no new set, got {next:?}");
}
