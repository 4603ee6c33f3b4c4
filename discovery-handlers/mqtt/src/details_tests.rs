use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn plan_of(details: serde_json::Value) -> Result<Plan, String> {
    let request = DiscoverRequest::new(details);
    plan(&request).map_err(|e| e.message().to_owned())
}

fn with_properties(details: serde_json::Value, props: &[(&str, &str)]) -> Result<Plan, String> {
    let mut request = DiscoverRequest::new(details);
    request.properties = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    plan(&request).map_err(|e| e.message().to_owned())
}

#[test]
fn defaults_are_sparkplug_everything_with_the_documented_limits() {
    let plan = plan_of(json!({"brokers": ["mqtt://10.0.0.5"]})).unwrap();
    assert_eq!(plan.brokers[0].url, "tcp://10.0.0.5:1883");
    assert!(matches!(&plan.watch, Watch::Sparkplug(s) if !s.include_edge_nodes));
    assert_eq!(plan.client_id, DEFAULT_CLIENT_ID);
    assert_eq!(plan.keep_alive, DEFAULT_KEEP_ALIVE);
    assert_eq!(plan.limits.max_devices, DEFAULT_MAX_DEVICES);
    assert_eq!(plan.limits.max_metrics, DEFAULT_MAX_METRICS);
    assert_eq!(plan.limits.max_payload_bytes, DEFAULT_MAX_PAYLOAD_BYTES);
    assert!(plan.credentials.is_none());
}

#[test]
fn broker_urls_are_normalised_and_bad_ones_named_by_index() {
    // Without MQTT_CA_CERT a tls:// broker is checked against the system's
    // roots (tls.rs), so the plan is valid.
    let plan = plan_of(json!({"brokers": ["tcp://a:1", "mqtts://[::1]"]})).unwrap();
    assert!(plan.tls.ca.is_none());
    let plan = with_properties(
        json!({"brokers": ["tcp://a:1", "mqtts://[::1]", "ssl://b"]}),
        &[(CA_CERT, "pem")],
    )
    .unwrap();
    let urls: Vec<_> = plan.brokers.iter().map(|b| b.url.as_str()).collect();
    assert_eq!(urls, ["tcp://a:1", "tls://[::1]:8883", "tls://b:8883"]);
    for (url, want) in [
        ("http://a", "brokers[0]: \"http://a\" has scheme \"http\""),
        ("a:1883", "brokers[0]: \"a:1883\" is not a broker URL"),
        ("tcp://a:0", "brokers[0]: \"tcp://a:0\" has port \"0\""),
        (
            "tcp://a:1883/x",
            "brokers[0]: \"tcp://a:1883/x\" must be scheme://host:port",
        ),
        ("tcp://:1883", "brokers[0]: \"tcp://:1883\" has no host"),
    ] {
        let got = plan_of(json!({ "brokers": [url] })).unwrap_err();
        assert!(got.starts_with(want), "{url}: {got}");
    }
    assert!(plan_of(json!({"brokers": []})).is_err_and(|e| e.starts_with("brokers:")));
}

#[test]
fn every_field_error_names_the_field() {
    let b = json!(["tcp://h:1883"]);
    for (details, want) in [
        (json!({"brokers": b, "mode": "x"}), "mode: unknown variant"),
        (json!({"brokers": b, "groups": ["a/b"]}), "groups[0]:"),
        (
            json!({"brokers": b, "edgeNodes": ["[x"]}),
            "sparkplug.edgeNodes[0]:",
        ),
        (json!({"brokers": b, "devices": []}), "devices:"),
        (
            json!({"brokers": b, "topic": "a/+"}),
            "topic: only for mode: topics",
        ),
        (json!({"brokers": b, "mode": "topics"}), "topic: required"),
        (
            json!({"brokers": b, "mode": "topics", "topic": "a/+"}),
            "idLevel: required",
        ),
        (
            json!({"brokers": b, "mode": "topics", "topic": "a/+", "idLevel": 0}),
            "idLevel: level 0",
        ),
        (
            json!({"brokers": b, "mode": "topics", "topic": "a/#", "idLevel": 0}),
            "topic: level 1 is #",
        ),
        (
            json!({"brokers": b, "mode": "topics", "topic": "a/x+", "idLevel": 1}),
            "topic: level 1",
        ),
        (
            json!({"brokers": b, "mode": "topics", "topic": "+", "idLevel": 0, "groups": ["a"]}),
            "groups: only for mode: sparkplug",
        ),
        (
            json!({"brokers": b, "mode": "topics", "topic": "+", "idLevel": 0, "timeout": "0s"}),
            "timeout: 0s is out of range",
        ),
        (json!({"brokers": b, "clientId": "a b"}), "clientId:"),
        (
            json!({"brokers": b, "keepAlive": "1s"}),
            "keepAlive: 1s is out of range",
        ),
        (
            json!({"brokers": b, "maxDevices": 0}),
            "maxDevices: 0 is out of range",
        ),
        (
            json!({"brokers": b, "maxMetrics": 5000}),
            "maxMetrics: 5000 is out of range",
        ),
        (
            json!({"brokers": b, "maxPayloadBytes": 0}),
            "maxPayloadBytes: 0 is out of range",
        ),
        (json!({"brokers": b, "colour": 1}), "unknown field `colour`"),
    ] {
        let got = plan_of(details.clone()).unwrap_err();
        assert!(got.contains(want), "{details}: {got}");
    }
}

#[test]
fn topics_mode_presence_is_online_value_or_timeout() {
    let b = json!(["tcp://h:1883"]);
    let p = plan_of(json!({"brokers": b, "mode": "topics", "topic": "d/+/s", "idLevel": 1, "onlineValue": "on"})).unwrap();
    assert!(
        matches!(&p.watch, Watch::Topics(t) if t.timeout.is_none() && t.online_value.as_deref() == Some("on"))
    );
    let p =
        plan_of(json!({"brokers": b, "mode": "topics", "topic": "d/+/s", "idLevel": 1})).unwrap();
    assert!(matches!(&p.watch, Watch::Topics(t) if t.timeout == Some(DEFAULT_TIMEOUT)));
}

#[test]
fn credentials_and_tls_come_from_properties_and_never_show_in_debug() {
    let b = json!({"brokers": ["tls://h"]});
    let p = with_properties(
        b.clone(),
        &[
            (USERNAME, "u"),
            (PASSWORD, "hunter2"),
            (CA_CERT, "CA-PEM"),
            (CLIENT_CERT, "C"),
            (CLIENT_KEY, "K"),
        ],
    )
    .unwrap();
    assert_eq!(
        p.credentials,
        Some(Credentials("u".into(), "hunter2".into()))
    );
    let debug = format!("{p:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let debug = format!("{:?}", p.tls);
    assert!(!debug.contains("CA-PEM") && !debug.contains('K'), "{debug}");
    let e = with_properties(b.clone(), &[(PASSWORD, "x"), (CA_CERT, "c")]).unwrap_err();
    assert!(e.starts_with("properties.MQTT_PASSWORD:"), "{e}");
    let e = with_properties(b, &[(CLIENT_CERT, "x"), (CA_CERT, "c")]).unwrap_err();
    assert!(e.starts_with("properties.MQTT_CLIENT_KEY:"), "{e}");
}

#[test]
fn the_examples_details_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mqtt");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let set: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let details = set["spec"]["discovery"]["details"].clone();
        let props = [(USERNAME, "u"), (PASSWORD, "p"), (CA_CERT, "pem")];
        let result = with_properties(details, &props);
        assert!(result.is_ok(), "{}: {result:?}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 2);
}
