use std::path::Path;

use super::*;

/// The committed manifests must be what the types generate. Regenerate with
/// `just crds` (or `cargo run -p ambit-cli -- crds --out crds/manifests`).
#[test]
fn committed_manifests_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for (file, yaml) in manifests().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        assert!(
            committed == yaml,
            "crds/manifests/{file} is stale: run `just crds` and commit the result"
        );
    }
}

const EMBEDDED: &[&str] = &[
    "DeviceSet.spec.broker.pod",
    "DeviceSet.spec.broker.job",
    "DeviceSet.spec.deviceService",
    "DeviceSet.spec.setService",
];

#[test]
fn every_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
            return;
        };
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            let described = prop
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| !d.trim().is_empty());
            if !described && !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                missing.push(here.clone());
            }
            // Embedded Kubernetes types keep only their own description
            // (see `schema::embedded`).
            if !EMBEDDED.contains(&here.as_str()) {
                walk(&here, prop, missing);
            }
        }
    }
    let mut missing = vec![];
    for crd in crds() {
        let crd = serde_json::to_value(crd).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(
            crd["spec"]["names"]["kind"].as_str().unwrap(),
            schema,
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

#[test]
fn status_lists_are_list_maps_keyed_for_server_side_apply() {
    let device = serde_json::to_value(v1alpha1::Device::crd()).unwrap();
    let nodes = &device["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["nodes"];
    assert_eq!(nodes["x-kubernetes-list-type"], "map");
    assert_eq!(
        nodes["x-kubernetes-list-map-keys"],
        serde_json::json!(["node"])
    );
}

#[test]
fn per_device_resources_follow_the_broker_unless_the_set_says() {
    use crate::v1alpha1::DeviceSetSpec;
    let spec = |extra: serde_json::Value| -> DeviceSetSpec {
        let mut spec = serde_json::json!({ "discovery": { "handler": "udev" } });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(spec).expect("a valid spec")
    };
    let pod = serde_json::json!({ "containers": [{ "name": "b", "image": "b:1" }] });
    assert!(!spec(serde_json::json!({})).per_device_resources());
    let device_plugin = serde_json::json!({ "broker": { "pod": pod, "access": "DevicePlugin" } });
    assert!(spec(device_plugin).per_device_resources());
    let dra = serde_json::json!({ "broker": { "pod": pod, "access": "DRA" } });
    assert!(!spec(dra).per_device_resources());
    let asked = serde_json::json!({ "devicePlugin": { "perDevice": true } });
    assert!(spec(asked).per_device_resources());
    let declined = serde_json::json!({ "devicePlugin": { "perDevice": false } });
    assert!(!spec(declined).per_device_resources());
}
