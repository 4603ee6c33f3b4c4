//! Real Modbus peers for the tests: pymodbus servers running
//! `examples/modbus/plc-simulator.py`, on loopback addresses only
//! (127.0.0.0/8) or on one end of a socat pty pair.
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

use ambit_discovery::{Device, DeviceStream};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SETUP: &str = "run the setup first: `make setup` (or ./scripts/setup.sh) installs \
                     pymodbus and pyserial (scripts/setup-pip.txt) and socat (scripts/setup-deps.txt)";

/// Fails the test unless python3 with pymodbus and pyserial, and socat, are there.
pub fn require_peers() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let python = std::process::Command::new("python3")
            .args(["-c", "import pymodbus, serial; print(pymodbus.__version__)"])
            .output();
        match python {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "python3 cannot import pymodbus and pyserial ({}): {SETUP}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(error) => panic!("python3 is missing ({error}): {SETUP}"),
        }
        let socat = std::process::Command::new("socat").arg("-V").output();
        if !socat.is_ok_and(|out| out.status.success()) {
            panic!("socat is missing: {SETUP}");
        }
    });
}

fn simulator_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modbus/plc-simulator.py")
}

/// A TCP port that is free on every one of `hosts` (all loopback).
pub fn free_port(hosts: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind(SocketAddrV4::new(hosts[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let others: Vec<_> = hosts[1..]
            .iter()
            .map(|host| TcpListener::bind(SocketAddrV4::new(*host, port)))
            .collect();
        if others.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no port free on all of {hosts:?}");
}

/// A running simulator; killed when dropped.
#[derive(Debug)]
pub struct Simulator {
    args: Vec<String>,
    child: Option<Child>,
}

impl Simulator {
    /// Starts `plc-simulator.py` with `args` and waits until it serves.
    pub async fn start(args: &[&str]) -> Self {
        require_peers();
        let mut simulator = Self {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        simulator.restart().await;
        simulator
    }

    /// A TCP simulator on `host:port`, with more `args`.
    pub async fn tcp(host: Ipv4Addr, port: u16, args: &[&str]) -> Self {
        let (host, port) = (host.to_string(), port.to_string());
        let mut all = vec!["--host", &host, "--port", &port];
        all.extend_from_slice(args);
        Self::start(&all).await
    }

    /// Kills the server, as a power cut would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again with the same arguments.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut child = Command::new("python3")
            .arg(simulator_script())
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line == "ready" => {}
            other => panic!("simulator {:?} did not start: {other:?}", self.args),
        }
        self.child = Some(child);
    }
}

/// A socat pty pair: two linked serial ports in a temporary directory.
#[derive(Debug)]
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub async fn new() -> Self {
        require_peers();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("ttyPLC"), dir.path().join("ttyHOST"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .kill_on_drop(true)
            .spawn()
            .expect("socat starts");
        for _ in 0..100 {
            if a.exists() && b.exists() {
                return Self {
                    a,
                    b,
                    child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("socat made no pty pair");
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

/// The ids of a set.
pub fn ids(set: &[Device]) -> Vec<String> {
    set.iter().map(|device| device.id.clone()).collect()
}

/// Asserts that no set comes within `quiet`.
pub async fn assert_quiet(stream: &mut DeviceStream, quiet: Duration) {
    let next = tokio::time::timeout(quiet, stream.next()).await;
    assert!(next.is_err(), "expected no new set, got {next:?}");
}

/// Reads sets until one has exactly the ids `expected` (a scan that ran
/// while a server stopped or started may see half of it first).
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
