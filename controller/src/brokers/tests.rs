use ambit_crds::contract::{DEVICE_LABEL, SET_LABEL};
use serde_json::json;

use super::*;

fn set() -> DeviceSet {
    serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": "plcs", "namespace": "plant", "uid": "set-uid" },
        "spec": {
            "discovery": { "handler": "debug-echo" },
            "capacity": 2,
            "broker": { "pod": {
                "containers": [{ "name": "broker", "image": "b:1", "env": [{ "name": "MODEL", "value": "mine" }] }],
                "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] },
                        { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["b"] }] },
                    ],
                } } },
            } },
        },
    }))
    .unwrap()
}

fn device(nodes: &[(&str, i64)]) -> Device {
    let entries: Vec<_> = nodes
        .iter()
        .map(|(n, since)| json!({ "node": n, "since": format!("2026-01-01T00:00:{since:02}Z") }))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": "plcs-0123456789abcdef", "namespace": "plant", "uid": "dev-uid" },
        "spec": { "deviceSet": "plcs", "id": "plc-1", "shared": true, "capacity": 2,
                  "properties": { "MODEL": "S7", "IP": "10.0.0.5" } },
        "status": { "nodes": entries },
    }))
    .unwrap()
}

fn template(set: &DeviceSet) -> PodSpec {
    set.spec
        .broker
        .as_ref()
        .and_then(|b| b.pod.clone())
        .unwrap()
}

fn nodes_of(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| node_of(p).map(str::to_owned))
        .collect()
}

fn with_phase(mut pod: Pod, phase: &str) -> Pod {
    pod.status = Some(serde_json::from_value(json!({ "phase": phase })).unwrap());
    pod
}

#[test]
fn capacity_limits_pods_and_the_oldest_nodes_get_them() {
    let (set, device) = (set(), device(&[("c", 3), ("a", 1), ("b", 2)]));
    let plan = plan(&device, &set, &template(&set), &[], &BTreeMap::new());
    assert_eq!(nodes_of(&plan.create), ["a", "b"]);
    assert_eq!(plan.over_capacity, ["c"]);
    assert!(plan.delete.is_empty());
}

#[test]
fn running_pods_stay_where_they_are() {
    let (set, device) = (set(), device(&[("a", 1), ("b", 2), ("c", 3)]));
    let t = template(&set);
    let on_c = broker_pod(&device, &set, &t, "c");
    let on_b = broker_pod(&device, &set, &t, "b");
    let plan = plan(&device, &set, &t, &[&on_c, &on_b], &BTreeMap::new());
    assert!(
        plan.create.is_empty(),
        "a is older, but c's pod is healthy: no reshuffle"
    );
    assert!(plan.delete.is_empty());
    assert_eq!(plan.over_capacity, ["a"]);
}

#[test]
fn pods_of_nodes_that_lost_the_device_go_and_free_their_slot() {
    let (set, device) = (set(), device(&[("a", 1), ("c", 3)]));
    let t = template(&set);
    let on_b = broker_pod(&device, &set, &t, "b");
    let on_a = broker_pod(&device, &set, &t, "a");
    let plan = plan(&device, &set, &t, &[&on_a, &on_b], &BTreeMap::new());
    assert_eq!(plan.delete, vec![(on_b.name_any(), Removal::NodeLost)]);
    assert_eq!(nodes_of(&plan.create), ["c"]);
}

#[test]
fn ended_and_outdated_pods_are_replaced_after_they_are_gone() {
    let (set, device) = (set(), device(&[("a", 1), ("b", 2)]));
    let t = template(&set);
    let failed = with_phase(broker_pod(&device, &set, &t, "a"), "Failed");
    let mut old = broker_pod(&device, &set, &t, "b");
    old.annotations_mut().insert(SPEC_HASH.into(), "old".into());
    let plan = plan(&device, &set, &t, &[&failed, &old], &BTreeMap::new());
    assert_eq!(
        plan.delete,
        vec![
            (failed.name_any(), Removal::Ended),
            (old.name_any(), Removal::Outdated)
        ]
    );
    assert!(
        plan.create.is_empty(),
        "the replacements wait until the old pods are gone"
    );

    let mut terminating = broker_pod(&device, &set, &t, "a");
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let plan = super::plan(&device, &set, &t, &[&terminating], &BTreeMap::new());
    assert_eq!(
        nodes_of(&plan.create),
        ["b"],
        "a terminating pod holds its slot and its node"
    );
}

#[test]
fn a_failing_node_waits_out_its_backoff() {
    let (set, device) = (set(), device(&[("a", 1)]));
    let backoff = BTreeMap::from([("a".to_owned(), Duration::from_secs(20))]);
    let plan = plan(&device, &set, &template(&set), &[], &backoff);
    assert!(plan.create.is_empty());
    assert_eq!(plan.retry_after, Some(Duration::from_secs(20)));
}

#[test]
fn node_pinning_is_anded_into_every_user_term() {
    let (set, device) = (set(), device(&[("a", 1)]));
    let pod = broker_pod(&device, &set, &template(&set), "a");
    let spec = pod.spec.unwrap();
    let terms = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .unwrap()
        .node_selector_terms;
    assert_eq!(
        terms.len(),
        2,
        "the user's two alternatives stay alternatives"
    );
    for term in terms {
        assert_eq!(
            term.match_expressions.unwrap().len(),
            1,
            "the user's own requirement is kept"
        );
        let fields = term.match_fields.unwrap();
        assert_eq!(fields[0].key, "metadata.name");
        assert_eq!(fields[0].values.as_deref(), Some(&["a".to_owned()][..]));
    }
}

#[test]
fn pods_carry_properties_identity_labels_and_owner() {
    let (set, device) = (set(), device(&[("a", 1)]));
    let pod = broker_pod(&device, &set, &template(&set), "a");
    let env = pod.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let value = |name: &str| {
        env.iter()
            .rev()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("IP").as_deref(), Some("10.0.0.5"));
    assert_eq!(
        value("MODEL").as_deref(),
        Some("mine"),
        "the container's own variable wins"
    );
    assert_eq!(value("AMBIT_NODE_NAME").as_deref(), Some("a"));
    assert_eq!(pod.labels()[DEVICE_LABEL], "plcs-0123456789abcdef");
    assert_eq!(pod.labels()[SET_LABEL], "plcs");
    assert_eq!(pod.owner_references()[0].uid, "dev-uid");
    assert_eq!(pod.name_any(), pod_name(&device, "a"));
}
