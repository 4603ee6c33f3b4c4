//! The validation table: each case is what a user might apply, and either the
//! message the API server must answer with, or `None` for accepted input.

use ambit_crds::v1alpha1::{Device, DeviceSet};
use kube::api::PostParams;
use serde_json::{Value, json};

use super::{dynamic, env, merge_patch, object};

fn set_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let pod = json!({ "containers": [{ "name": "broker", "image": "example/broker:1" }] });
    let job = json!({ "template": { "spec": {
        "containers": [{ "name": "job", "image": "example/job:1" }], "restartPolicy": "Never",
    }}});
    vec![
        (
            "minimal",
            json!({ "discovery": { "handler": "debug-echo" } }),
            None,
        ),
        (
            "full",
            json!({
                "discovery": {
                    "handler": "opcua",
                    "details": { "discoveryUrls": ["opc.tcp://10.0.0.5:4840/"], "nested": { "a": [1, 2] } },
                    "properties": [
                        { "name": "username", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "user" } } },
                        { "name": "MODE", "value": "fast" },
                        { "name": "_cfg", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "k" } } },
                    ],
                    "gracePeriodSeconds": 30,
                },
                "capacity": 3,
                "brokerProperties": { "SAMPLE_RATE": "10" },
                "broker": { "pod": pod },
                "deviceService": { "ports": [{ "port": 80 }] },
                "setService": { "ports": [{ "port": 80 }] },
            }),
            None,
        ),
        (
            "job broker",
            json!({ "discovery": { "handler": "udev" }, "broker": { "job": job } }),
            None,
        ),
        (
            "capacity zero",
            json!({ "discovery": { "handler": "udev" }, "capacity": 0 }),
            Some("capacity must be at least 1"),
        ),
        (
            "capacity huge",
            json!({ "discovery": { "handler": "udev" }, "capacity": 5000 }),
            Some("capacity must be at most 1024"),
        ),
        (
            "pod and job",
            json!({ "discovery": { "handler": "udev" }, "broker": { "pod": pod, "job": job } }),
            Some("broker must set exactly one of pod or job"),
        ),
        (
            "empty broker",
            json!({ "discovery": { "handler": "udev" }, "broker": {} }),
            Some("broker must set exactly one of pod or job"),
        ),
        (
            "handler not a DNS label",
            json!({ "discovery": { "handler": "OPC_UA" } }),
            Some("discovery.handler must be a DNS-1123 label"),
        ),
        (
            "property name not an env var",
            json!({ "discovery": { "handler": "udev", "properties": [{ "name": "1-bad", "value": "x" }] } }),
            Some("property names must be environment variable names"),
        ),
        (
            "property with value and valueFrom",
            json!({ "discovery": { "handler": "udev", "properties": [{
                "name": "user", "value": "x",
                "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } },
            }] } }),
            Some("a discovery property must set exactly one of value or valueFrom"),
        ),
        (
            "property with neither",
            json!({ "discovery": { "handler": "udev", "properties": [{ "name": "user" }] } }),
            Some("a discovery property must set exactly one of value or valueFrom"),
        ),
        (
            "valueFrom with two sources",
            json!({ "discovery": { "handler": "udev", "properties": [{ "name": "user", "valueFrom": {
                "secretKeyRef": { "name": "s", "key": "k" },
                "configMapKeyRef": { "name": "c", "key": "k" },
            } }] } }),
            Some("valueFrom must set exactly one of secretKeyRef or configMapKeyRef"),
        ),
        (
            "duplicate property names",
            json!({ "discovery": { "handler": "udev", "properties": [
                { "name": "user", "value": "a" }, { "name": "user", "value": "b" },
            ] } }),
            Some("Duplicate value"),
        ),
        (
            "brokerProperties name not an env var",
            json!({ "discovery": { "handler": "udev" }, "brokerProperties": { "sample-rate": "10" } }),
            Some("brokerProperties names must be environment variable names"),
        ),
        (
            "negative grace period",
            json!({ "discovery": { "handler": "udev", "gracePeriodSeconds": -1 } }),
            Some("discovery.gracePeriodSeconds must be between 0 and 86400"),
        ),
        (
            "details not an object",
            json!({ "discovery": { "handler": "udev", "details": "KERNEL==video*" } }),
            Some("must be of type object"),
        ),
        (
            "per-device resources asked for",
            json!({ "discovery": { "handler": "udev" }, "devicePlugin": { "perDevice": true } }),
            None,
        ),
        (
            "device-plugin brokers with per-device resources left at their default",
            json!({ "discovery": { "handler": "udev" }, "broker": { "pod": pod, "access": "DevicePlugin" } }),
            None,
        ),
        (
            "device-plugin brokers without per-device resources",
            json!({
                "discovery": { "handler": "udev" },
                "broker": { "pod": pod, "access": "DevicePlugin" },
                "devicePlugin": { "perDevice": false },
            }),
            Some("broker.access DevicePlugin asks for each device's own resource"),
        ),
        (
            "DRA brokers without per-device resources",
            json!({
                "discovery": { "handler": "udev" },
                "broker": { "pod": pod, "access": "DRA" },
                "devicePlugin": { "perDevice": false },
            }),
            None,
        ),
        (
            "no discovery",
            json!({ "capacity": 1 }),
            Some("spec.discovery: Required value"),
        ),
    ]
}

fn device_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    vec![
        (
            "shared",
            json!({ "deviceSet": "s", "id": "opc.tcp://10.0.0.5:4840/", "shared": true, "capacity": 1 }),
            None,
        ),
        (
            "local",
            json!({
                "deviceSet": "s", "id": "/dev/video0", "shared": false, "node": "edge-1", "capacity": 2,
                "properties": { "DEVNODE": "/dev/video0" },
                "deviceNodes": [{ "hostPath": "/dev/video0", "permissions": "rw" }],
                "mounts": [{ "hostPath": "/run/udev", "containerPath": "/run/udev", "readOnly": true }],
            }),
            None,
        ),
        (
            "local without node",
            json!({ "deviceSet": "s", "id": "x", "shared": false, "capacity": 1 }),
            Some("a local device (shared: false) must name its node, and a shared device must not"),
        ),
        (
            "shared with node",
            json!({ "deviceSet": "s", "id": "x", "shared": true, "node": "edge-1", "capacity": 1 }),
            Some("a local device (shared: false) must name its node, and a shared device must not"),
        ),
        (
            "capacity zero",
            json!({ "deviceSet": "s", "id": "x", "shared": true, "capacity": 0 }),
            Some("capacity must be at least 1"),
        ),
        (
            "bad permissions",
            json!({ "deviceSet": "s", "id": "x", "shared": false, "node": "n", "capacity": 1,
                    "deviceNodes": [{ "hostPath": "/dev/ttyUSB0", "permissions": "rwx" }] }),
            Some("permissions must be made of the letters r, w and m"),
        ),
        (
            "empty id",
            json!({ "deviceSet": "s", "id": "", "shared": true, "capacity": 1 }),
            Some("spec.id"),
        ),
    ]
}

#[tokio::test]
async fn every_rule_rejects_its_bad_input_with_its_own_message() -> anyhow::Result<()> {
    let env = env("validation").await?;
    let sets = dynamic::<DeviceSet>(&env.client, &env.namespace);
    let devices = dynamic::<Device>(&env.client, &env.namespace);
    let mut failures = vec![];

    let kinds = [
        (&sets, set_cases(), "set"),
        (&devices, device_cases(), "device"),
    ];
    for (api, cases, kind) in kinds {
        for (i, (case, spec, expected)) in cases.into_iter().enumerate() {
            let name = format!("{kind}-{i}");
            let result = match kind {
                "set" => {
                    api.create(&PostParams::default(), &object::<DeviceSet>(&name, spec)?)
                        .await
                }
                _ => {
                    api.create(&PostParams::default(), &object::<Device>(&name, spec)?)
                        .await
                }
            };
            match (result, expected) {
                (Ok(_), None) => {}
                (Err(kube::Error::Api(status)), Some(message))
                    if status.message.contains(message) => {}
                (outcome, expected) => failures.push(format!(
                    "{kind} case {case:?}: expected {expected:?}, got {:?}",
                    outcome.map(|_| "accepted").map_err(|e| e.to_string())
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn defaults_are_applied() -> anyhow::Result<()> {
    let env = env("defaults").await?;
    let sets = kube::Api::<DeviceSet>::namespaced(env.client.clone(), &env.namespace);
    let created = dynamic::<DeviceSet>(&env.client, &env.namespace)
        .create(
            &PostParams::default(),
            &object::<DeviceSet>("plain", json!({ "discovery": { "handler": "udev" } }))?,
        )
        .await?;
    assert_eq!(
        created.data["spec"]["capacity"], 1,
        "capacity defaults to 1"
    );
    let typed = sets.get("plain").await?;
    assert_eq!(typed.spec.capacity, 1);
    assert_eq!(typed.spec.discovery.handler, "udev");
    Ok(())
}

#[tokio::test]
async fn identity_fields_cannot_change_and_the_rest_can() -> anyhow::Result<()> {
    let env = env("immutable").await?;
    let sets = dynamic::<DeviceSet>(&env.client, &env.namespace);
    sets.create(
        &PostParams::default(),
        &object::<DeviceSet>("s", json!({ "discovery": { "handler": "udev" } }))?,
    )
    .await?;
    let devices = dynamic::<Device>(&env.client, &env.namespace);
    devices
        .create(&PostParams::default(), &object::<Device>("local", json!({
            "deviceSet": "s", "id": "/dev/video0", "shared": false, "node": "edge-1", "capacity": 1,
        }))?)
        .await?;

    let updates = [
        (
            &sets,
            "s",
            json!({ "spec": { "discovery": { "handler": "opcua" } } }),
            Some("discovery.handler cannot be changed after creation"),
        ),
        (
            &sets,
            "s",
            json!({ "spec": { "capacity": 4, "discovery": { "details": { "a": 1 } } } }),
            None,
        ),
        (
            &devices,
            "local",
            json!({ "spec": { "id": "/dev/video1" } }),
            Some("spec.id cannot be changed after creation"),
        ),
        (
            &devices,
            "local",
            json!({ "spec": { "deviceSet": "t" } }),
            Some("spec.deviceSet cannot be changed after creation"),
        ),
        (
            &devices,
            "local",
            json!({ "spec": { "shared": true, "node": null } }),
            Some("spec.shared cannot be changed after creation"),
        ),
        (
            &devices,
            "local",
            json!({ "spec": { "node": "edge-2" } }),
            Some("spec.node cannot be changed after creation"),
        ),
        // A re-plugged device keeps its identity and changes its device node in place.
        (
            &devices,
            "local",
            json!({ "spec": {
            "properties": { "DEVNODE": "/dev/video2" },
            "deviceNodes": [{ "hostPath": "/dev/video2" }],
        } }),
            None,
        ),
    ];
    let mut failures = vec![];
    for (api, name, patch, expected) in updates {
        match (merge_patch(api, name, patch.clone()).await, expected) {
            (Ok(_), None) => {}
            (Err(kube::Error::Api(status)), Some(message)) if status.message.contains(message) => {}
            (outcome, expected) => failures.push(format!(
                "patch {patch} of {name}: expected {expected:?}, got {:?}",
                outcome.map(|_| "accepted").map_err(|e| e.to_string())
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
