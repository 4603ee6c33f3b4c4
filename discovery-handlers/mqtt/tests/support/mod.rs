//! Real peers for the mqtt handler's tests: Debian's mosquitto broker on a
//! free loopback port (password file made with mosquitto_passwd, TLS
//! certificates made with rcgen), and Sparkplug B edge nodes on Eclipse
//! Tahu's Node.js client (npm sparkplug-client, pinned, installed once
//! into the tests' cache, ~/.cache/ambit/npm). They live in
//! `ambit_tests::peers::mqtt`, which the demo shares; these are the tests'
//! panicking wrappers, in group `plant`.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic fails the test"
)]

use std::path::Path;
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};
use ambit_tests::peers::{self, LineProcess, mqtt::EdgeNodeConfig};
use futures::StreamExt;
use serde_json::Value;

pub use ambit_tests::peers::mqtt::{Certs, PASSWORD, USER};

pub fn free_port() -> u16 {
    peers::free_port().expect("a free port")
}

pub fn certs(dir: &Path) -> Certs {
    peers::mqtt::certs(dir).unwrap()
}

/// A mosquitto broker with a password file; plain TCP on `port`, and TLS
/// on `tls_port` when started with certificates.
pub struct Mosquitto(peers::mqtt::Mosquitto);

impl std::ops::Deref for Mosquitto {
    type Target = peers::mqtt::Mosquitto;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Mosquitto {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Mosquitto {
    pub fn start(dir: &Path, certs: Option<&Certs>) -> Self {
        Self(peers::mqtt::Mosquitto::start(dir, certs).unwrap())
    }

    /// (Re)starts the broker on the same ports; returns once it listens.
    pub fn restart(&mut self) {
        self.0.restart().unwrap();
    }
}

/// A Sparkplug B edge node process (Tahu's client) in group `plant`.
pub struct EdgeNode(LineProcess);

impl EdgeNode {
    pub fn start(url: &str, password: &str, node: &str, devices: &[&str], bd_seq: u64) -> Self {
        Self::start_with(url, password, node, devices, bd_seq, None)
    }

    pub fn start_with(
        url: &str,
        password: &str,
        node: &str,
        devices: &[&str],
        bd_seq: u64,
        ca_file: Option<&Path>,
    ) -> Self {
        let command = EdgeNodeConfig {
            url,
            password,
            group: "plant",
            node,
            devices,
            bd_seq,
            ca_file,
        }
        .command()
        .unwrap();
        Self(LineProcess::spawn("the edge node", command).unwrap())
    }

    pub fn send(&mut self, command: &str) {
        self.0.send(command).unwrap();
    }

    /// Waits for a line starting with `prefix` on the node's stdout.
    pub fn expect(&self, prefix: &str) {
        self.0.expect(prefix, Duration::from_secs(20)).unwrap();
    }

    /// Kills the process: the broker then publishes its will (NDEATH).
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// A running discovery and the last set it reported.
pub struct Discovery {
    stream: DeviceStream,
    pub last: Vec<Device>,
}

impl Discovery {
    pub async fn start(details: Value, properties: &[(&str, &str)]) -> Self {
        let mut request = DiscoverRequest::new(details);
        request.node_name = "test-node".into();
        request.properties = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut stream = ambit_mqtt::Mqtt::new().discover(request).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.is_empty(), "the first set is empty: {first:?}");
        // Let the handler connect and subscribe before peers publish.
        tokio::time::sleep(Duration::from_millis(700)).await;
        Self {
            stream,
            last: first,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.last.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Waits until the reported ids are `want` (sorted).
    pub async fn until(&mut self, want: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.ids() != want {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(set))) => self.last = set,
                Ok(Some(Err(error))) => panic!("discovery failed: {error}"),
                Ok(None) => panic!("discovery ended"),
                Err(_) => panic!("timed out waiting for {want:?}; have {:?}", self.ids()),
            }
        }
    }

    /// Asserts nothing new is reported for `quiet`.
    pub async fn unchanged_for(&mut self, quiet: Duration) {
        if let Ok(next) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("unexpected update: {next:?}");
        }
    }

    /// The error the stream ends with.
    pub async fn error(&mut self) -> DiscoveryError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(set))) => self.last = set,
                Ok(Some(Err(error))) => return error,
                Ok(None) => panic!("discovery ended without an error"),
                Err(_) => panic!("timed out waiting for an error"),
            }
        }
    }
}
