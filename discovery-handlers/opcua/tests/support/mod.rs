//! Real OPC UA peers for the tests: asyncua servers running
//! `examples/opcua/opcua-server.py`, and async-opcua servers in the test
//! process, all on 127.0.0.1.
//!
//! Missing prerequisites fail the test with a message saying to run the
//! setup; nothing is skipped.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers shared by several test binaries: a panic fails the test"
)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoverRequest, DiscoveryHandler};
use ambit_opcua::OpcUa;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SETUP: &str = "run the setup first: `make setup` (or ./scripts/setup.sh) installs \
                     asyncua (scripts/setup-pip.txt)";

/// Fails the test unless python3 can import asyncua.
pub fn require_asyncua() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let python = std::process::Command::new("python3")
            .args(["-c", "import asyncua"])
            .output();
        match python {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "python3 cannot import asyncua ({}): {SETUP}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(error) => panic!("python3 is missing ({error}): {SETUP}"),
        }
    });
}

fn simulator_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/opcua/opcua-server.py")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// `opc.tcp://127.0.0.1:<port>/`, as the handler spells it.
pub fn url(port: u16) -> String {
    format!("opc.tcp://127.0.0.1:{port}/")
}

/// A running asyncua server; killed when dropped.
#[derive(Debug)]
pub struct Simulator {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Simulator {
    /// Starts `opcua-server.py` on a free port with `args` and waits until
    /// it serves.
    pub async fn start(args: &[&str]) -> Self {
        require_asyncua();
        let port = free_port();
        let mut simulator = Self {
            port,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        simulator.restart().await;
        simulator
    }

    pub fn url(&self) -> String {
        url(self.port)
    }

    /// Kills the server, as a power cut would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again, same port, same arguments.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut child = Command::new("python3")
            .arg(simulator_script())
            .args(["--port", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line == "ready" => {}
            other => panic!("simulator {:?} did not start: {other:?}", self.args),
        }
        self.child = Some(child);
    }
}

/// Starts discovery with `details`.
pub async fn discover(details: Value) -> DeviceStream {
    OpcUa::new()
        .discover(DiscoverRequest::new(details))
        .await
        .expect("valid details")
}

/// The next complete set, within `within`.
pub async fn next_set(stream: &mut DeviceStream, within: Duration) -> Vec<Device> {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("a device set in time")
        .expect("the stream stays open")
        .expect("no discovery error")
}

/// The ids of a set.
pub fn ids(set: &[Device]) -> Vec<String> {
    set.iter().map(|device| device.id.clone()).collect()
}

/// Sorted ids of these ports.
pub fn urls(ports: &[u16]) -> Vec<String> {
    let mut urls: Vec<String> = ports.iter().map(|port| url(*port)).collect();
    urls.sort();
    urls
}

/// Asserts that no set comes within `quiet`.
pub async fn assert_quiet(stream: &mut DeviceStream, quiet: Duration) {
    let next = tokio::time::timeout(quiet, stream.next()).await;
    assert!(next.is_err(), "expected no new set, got {next:?}");
}

/// Reads sets until one has exactly the ids `expected`.
pub async fn until_ids(
    stream: &mut DeviceStream,
    expected: &[String],
    within: Duration,
) -> Vec<Device> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let set = next_set(stream, left).await;
        if ids(&set) == expected {
            return set;
        }
    }
}

/// A self-signed client certificate naming `uri`, and its RSA key, both
/// PEM, made by asyncua's certificate helper (Python's cryptography).
pub fn client_certificate(uri: &str) -> (String, String) {
    require_asyncua();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import asyncio, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from asyncua.crypto.cert_gen import setup_self_signed_certificate
folder, uri = Path(sys.argv[1]), sys.argv[2]
asyncio.run(setup_self_signed_certificate(folder / "key.pem", folder / "cert.der", uri, "localhost",
    [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "Ambit test client"}))
cert = x509.load_der_x509_certificate((folder / "cert.der").read_bytes())
(folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.path())
        .arg(uri)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    (read("cert.pem"), read("key.pem"))
}

/// Starts discovery with `details` and `properties`.
pub async fn discover_with(details: Value, properties: &[(&str, &str)]) -> DeviceStream {
    let mut request = DiscoverRequest::new(details);
    request.properties = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    OpcUa::new().discover(request).await.expect("valid details")
}
