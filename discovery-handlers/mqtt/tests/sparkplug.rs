//! The mqtt handler against real peers: Debian's mosquitto broker and
//! Sparkplug B edge nodes on Eclipse Tahu's own Node.js client
//! (`support`). Fails, never skips, without them (scripts/setup-deps.txt,
//! node and npm).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Discovery, EdgeNode, Mosquitto, PASSWORD, USER};

fn credentials() -> [(&'static str, &'static str); 2] {
    [("MQTT_USERNAME", USER), ("MQTT_PASSWORD", PASSWORD)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_deaths_and_stale_deaths_of_a_tahu_edge_node() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None);
    let mut discovery = Discovery::start(
        json!({"brokers": [broker.url()], "groups": ["plant"], "includeEdgeNodes": true}),
        &credentials(),
    )
    .await;

    // Births make devices, with the birth certificate's metrics.
    let mut first = EdgeNode::start(&broker.url(), PASSWORD, "line1", &["pump", "valve"], 0);
    first.expect("born");
    discovery
        .until(&[
            "spb://plant/line1",
            "spb://plant/line1/pump",
            "spb://plant/line1/valve",
        ])
        .await;
    let pump = discovery
        .last
        .iter()
        .find(|d| d.id == "spb://plant/line1/pump")
        .unwrap();
    let p = |k: &str| pump.properties.get(k).map(String::as_str);
    assert_eq!(p("SPARKPLUG_GROUP"), Some("plant"));
    assert_eq!(p("SPARKPLUG_EDGE_NODE"), Some("line1"));
    assert_eq!(p("SPARKPLUG_DEVICE"), Some("pump"));
    assert_eq!(p("SPARKPLUG_METRIC_COUNT"), Some("2"));
    assert_eq!(p("SPARKPLUG_METRIC_0_NAME"), Some("Temperature"));
    assert_eq!(p("SPARKPLUG_METRIC_0_DATATYPE"), Some("Double"));
    assert_eq!(p("SPARKPLUG_METRIC_0_UNIT"), Some("degC"));
    assert_eq!(p("SPARKPLUG_METRIC_1_NAME"), Some("Running"));
    assert_eq!(p("MQTT_BROKER"), Some(broker.url().as_str()));
    assert!(
        pump.properties.values().all(|v| !v.contains(PASSWORD)),
        "no credentials in properties"
    );

    // DDEATH removes one device.
    first.send("ddeath valve");
    first.expect("ddeath");
    discovery
        .until(&["spb://plant/line1", "spb://plant/line1/pump"])
        .await;

    // Garbage on Sparkplug topics changes nothing and crashes nothing.
    for topic in [
        "spBv1.0/plant/NDEATH/line1",
        "spBv1.0/plant/DBIRTH/line1/pump",
        "spBv1.0/plant/DDEATH/line1/pump",
    ] {
        first.send(&format!("publish {topic} ffffffff0a"));
        first.expect("published");
    }
    discovery.unchanged_for(Duration::from_millis(500)).await;

    // A reborn node (new session, bdSeq 1) and then the old session's
    // will (NDEATH with bdSeq 0): the devices stay.
    // (Its NBIRTH drops the node's devices until their DBIRTHs follow, as
    // Sparkplug says; the agent's grace period hides the blink.)
    let mut second = EdgeNode::start(&broker.url(), PASSWORD, "line1", &["pump"], 1);
    second.expect("born");
    discovery.until(&["spb://plant/line1"]).await;
    discovery
        .until(&["spb://plant/line1", "spb://plant/line1/pump"])
        .await;
    first.kill();
    discovery.unchanged_for(Duration::from_millis(1000)).await;
    assert_eq!(
        discovery.ids(),
        ["spb://plant/line1", "spb://plant/line1/pump"]
    );

    // The current session's NDEATH removes the node and its devices.
    second.send("stop");
    second.expect("stopped");
    discovery.until(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_makes_devices_absent_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), None);
    let mut discovery = Discovery::start(json!({"brokers": [broker.url()]}), &credentials()).await;
    let node = EdgeNode::start(&broker.url(), PASSWORD, "line2", &["press"], 0);
    node.expect("born");
    discovery.until(&["spb://plant/line2/press"]).await;

    broker.kill();
    discovery.until(&[]).await;
    broker.restart();
    // Both reconnect; Tahu's client publishes its births again on connect.
    node.expect("born");
    discovery.until(&["spb://plant/line2/press"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_topics_with_retained_status_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = support::certs(dir.path());
    let broker = Mosquitto::start(dir.path(), Some(&certs));
    let tls_url = format!("tls://127.0.0.1:{}", broker.tls_port.unwrap());
    // The publisher: the Tahu process's MQTT connection, over TLS too.
    let mut publisher = EdgeNode::start_with(
        &tls_url,
        PASSWORD,
        "publisher",
        &[],
        0,
        Some(&certs.ca_file),
    );
    publisher.expect("born");
    for (id, status) in [
        ("pump-1", "online"),
        ("pump-2", "offline"),
        ("pump-3", "online"),
    ] {
        let hex: String = status.bytes().map(|b| format!("{b:02x}")).collect();
        publisher.send(&format!("publish site/{id}/status {hex} retain"));
        publisher.expect("published");
    }
    let mut properties = credentials().to_vec();
    properties.push(("MQTT_CA_CERT", certs.ca_pem.as_str()));
    let mut discovery = Discovery::start(
        json!({"brokers": [tls_url], "mode": "topics", "topic": "site/+/status", "idLevel": 1, "onlineValue": "online"}),
        &properties,
    )
    .await;
    let authority = tls_url.trim_start_matches("tls://");
    let one = format!("mqtt://{authority}/pump-1");
    let three = format!("mqtt://{authority}/pump-3");
    discovery.until(&[&one, &three]).await;
    assert_eq!(discovery.last[0].properties["MQTT_ID"], "pump-1");
    assert_eq!(
        discovery.last[0].properties["MQTT_TOPIC"],
        "site/pump-1/status"
    );

    let hex: String = "offline".bytes().map(|b| format!("{b:02x}")).collect();
    publisher.send(&format!("publish site/pump-3/status {hex} retain"));
    discovery.until(&[&one]).await;
    publisher.send("publish site/pump-1/status - retain");
    discovery.until(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_error_naming_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None);
    let mut discovery = Discovery::start(
        json!({"brokers": [broker.url()]}),
        &[("MQTT_USERNAME", USER), ("MQTT_PASSWORD", "wrong")],
    )
    .await;
    let error = discovery.error().await;
    let message = error.to_string();
    assert!(
        message.contains("refused the connection") && message.contains("MQTT_PASSWORD"),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "the password is not in the message"
    );
    assert!(
        error.is_retryable(),
        "the agent retries with backoff: {error:?}"
    );
}
