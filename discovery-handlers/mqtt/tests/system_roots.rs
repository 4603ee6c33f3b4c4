//! A `tls://` broker without `MQTT_CA_CERT` is checked against the node's
//! system trust store. rustls-native-certs reads `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` instead of the platform's store when they are set; the
//! environment is the process's (and `unsafe` is forbidden here), so the
//! test runs its two halves as child processes of this same test binary,
//! each with a trust store of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ambit_discovery::{DiscoverRequest, DiscoveryError, DiscoveryHandler};
use serde_json::json;
use support::{Certs, Discovery, EdgeNode, Mosquitto, PASSWORD, USER};

/// Where the parent left the test CA and the broker's certificate.
const CERTS_DIR: &str = "AMBIT_TEST_CERTS_DIR";

#[test]
fn tls_brokers_without_a_ca_of_their_own_use_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path());
    let empty_dir = dir.path().join("no-certs");
    std::fs::create_dir(&empty_dir).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let child = |test: &str, trust: &Path| {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--ignored", "--nocapture"])
            .env("SSL_CERT_FILE", trust)
            .env("SSL_CERT_DIR", &empty_dir)
            .env(CERTS_DIR, dir.path())
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && log.contains("1 passed"),
            "{test}:\n{log}"
        );
    };
    child("child_without_any_root", &empty);
    child("child_with_the_test_ca_as_root", &dir.path().join("ca.pem"));
}

fn certs_from_parent() -> Certs {
    let dir = PathBuf::from(std::env::var_os(CERTS_DIR).expect("run by the parent test"));
    Certs {
        ca_pem: std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
    }
}

const CREDENTIALS: [(&str, &str); 2] = [("MQTT_USERNAME", USER), ("MQTT_PASSWORD", PASSWORD)];

/// A node with no trust store at all: a retried failure that says what to
/// set, not a silent empty set.
#[tokio::test]
#[ignore = "run by tls_brokers_without_a_ca_of_their_own_use_the_system_roots"]
async fn child_without_any_root() {
    let mut request =
        DiscoverRequest::new(json!({"brokers": ["tls://127.0.0.1:8883"], "groups": ["plant"]}));
    request.properties = CREDENTIALS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let error = match ambit_mqtt::Mqtt::new().discover(request).await {
        Ok(_) => panic!("discovery started without any CA certificate"),
        Err(error) => error,
    };
    assert!(
        matches!(&error, DiscoveryError::Failed(m) if m.contains("MQTT_CA_CERT")),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

/// The test CA as the node's only system root: the broker's certificate
/// chains to it, and discovery works with no CA in the properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by tls_brokers_without_a_ca_of_their_own_use_the_system_roots"]
async fn child_with_the_test_ca_as_root() {
    let certs = certs_from_parent();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), Some(&certs));
    let tls_url = format!("tls://127.0.0.1:{}", broker.tls_port.unwrap());
    let mut discovery = Discovery::start(
        json!({"brokers": [&tls_url], "groups": ["plant"]}),
        &CREDENTIALS,
    )
    .await;
    let mut node = EdgeNode::start_with(
        &tls_url,
        PASSWORD,
        "line1",
        &["press"],
        0,
        Some(&certs.ca_file),
    );
    node.expect("born");
    discovery.until(&["spb://plant/line1/press"]).await;
    node.kill();
    discovery.until(&[]).await;
}
