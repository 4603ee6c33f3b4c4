use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceReport};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

const SET: SetView<'static> = SetView {
    namespace: "plant",
    name: "plcs",
    uid: "uid-plcs",
    capacity: 2,
};

fn at(second: i64) -> String {
    Timestamp::from_second(1_800_000_000 + second)
        .unwrap()
        .to_string()
}

fn report(node: &str, shard: i32, devices: &[(&str, i64, &str)]) -> DeviceReport {
    let devices: Vec<_> = devices
        .iter()
        .map(|(id, since, model)| json!({ "id": id, "since": at(*since), "properties": { "MODEL": model } }))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceReport",
        "metadata": { "name": format!("r-{node}-{shard}"), "namespace": "plant" },
        "spec": { "deviceSet": "plcs", "node": node, "shard": shard, "devices": devices },
    }))
    .unwrap()
}

/// The Device as the fold's writes would leave it.
fn written(write: &Write) -> Device {
    let mut device = write.object.clone().expect("an object");
    device.status = Some(ambit_crds::v1alpha1::DeviceStatus {
        nodes: write.nodes.clone().unwrap_or_default(),
        conditions: write.available.clone().into_iter().collect(),
        ..Default::default()
    });
    device.metadata.generation = Some(1);
    device
}

/// A write's Available condition: (status, reason, message, generation).
fn available(write: &Write) -> Option<(String, String, String, Option<i64>)> {
    write.available.as_ref().map(|c| {
        (
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    })
}

fn ready(_: &str) -> Option<NodeHealth> {
    Some(NodeHealth::Ready)
}

const TOLERATION: Duration = Duration::from_secs(60);

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_100).unwrap()
}

#[test]
fn three_nodes_seeing_one_device_make_one_device_with_three_entries() {
    let reports = [
        report("edge-3", 0, &[("plc-1", 30, "S7")]),
        report("edge-1", 0, &[("plc-1", 10, "S7")]),
        report("edge-2", 0, &[("plc-1", 20, "S7")]),
    ];
    let plan = plan(&SET, &reports, &[], ready, TOLERATION, now());
    assert_eq!(plan.writes.len(), 1);
    let device = written(&plan.writes[0]);
    assert_eq!(
        device.metadata.name.as_deref(),
        Some(names::device_name("plcs", "plc-1", None).as_str())
    );
    assert!(device.spec.shared && device.spec.node.is_none());
    assert_eq!(device.spec.capacity, 2, "from the set");
    assert_eq!(device.owner_references()[0].uid, "uid-plcs");
    let nodes: Vec<(&str, String)> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| (n.node.as_str(), n.since.0.to_string()))
        .collect();
    assert_eq!(
        nodes,
        [("edge-1", at(10)), ("edge-2", at(20)), ("edge-3", at(30))]
    );
    assert_eq!(
        available(&plan.writes[0]),
        Some((
            "True".into(),
            "Seen".into(),
            "seen by 3 node(s)".into(),
            Some(1)
        )),
        "the entries' condition goes with them: the Device reconciler has nothing to write"
    );
}

#[test]
fn what_is_already_so_is_not_written_again() {
    let reports = [
        report("edge-1", 0, &[("plc-1", 10, "S7")]),
        report("edge-2", 0, &[("plc-1", 20, "S7")]),
    ];
    let first = plan(&SET, &reports, &[], ready, TOLERATION, now());
    let device = written(&first.writes[0]);
    let again = plan(&SET, &reports, &[&device], ready, TOLERATION, now());
    assert!(again.writes.is_empty(), "{:?}", again.writes);
    // Written or not, every device is in the plan, for its DRA pool.
    let folded: Vec<(&str, &[String])> = again
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.nodes.as_slice()))
        .collect();
    let both = ["edge-1".to_owned(), "edge-2".to_owned()];
    assert_eq!(folded, [(device.name_any().as_str(), &both[..])]);
    assert_eq!(again.devices[0].spec, device.spec);

    // A third node: only the entries change.
    let more = [
        reports[0].clone(),
        reports[1].clone(),
        report("edge-3", 0, &[("plc-1", 30, "S7")]),
    ];
    let third = plan(&SET, &more, &[&device], ready, TOLERATION, now());
    assert_eq!(third.writes.len(), 1);
    assert!(third.writes[0].object.is_none(), "the spec is as it was");
    assert_eq!(third.writes[0].nodes.as_ref().map(Vec::len), Some(3));
    let condition = third.writes[0].available.as_ref();
    assert_eq!(
        condition.map(|c| c.message.as_str()),
        Some("seen by 3 node(s)")
    );
    let before = device.status.as_ref().map(|s| &s.conditions[0]);
    assert_eq!(
        condition.map(|c| &c.last_transition_time),
        before.map(|c| &c.last_transition_time),
        "still True: the transition time stays"
    );
}

#[test]
fn the_first_node_by_name_decides_the_properties() {
    let reports = [
        report("edge-2", 0, &[("plc-1", 20, "S7-1500")]),
        report("edge-1", 0, &[("plc-1", 10, "S7")]),
    ];
    let plan = plan(&SET, &reports, &[], ready, TOLERATION, now());
    assert_eq!(written(&plan.writes[0]).spec.properties["MODEL"], "S7");
}

#[test]
fn nodes_gone_or_not_ready_past_the_toleration_do_not_count() {
    let reports = [
        report("ready", 0, &[("plc-1", 10, "S7")]),
        report("flaky", 0, &[("plc-1", 10, "S7")]),
        report("dead", 0, &[("plc-1", 10, "S7")]),
        report("deleted", 0, &[("plc-1", 10, "S7")]),
    ];
    let health = |node: &str| match node {
        "ready" => Some(NodeHealth::Ready),
        "flaky" => Some(NodeHealth::NotReadySince(now() - Duration::from_secs(10))),
        "dead" => Some(NodeHealth::NotReadySince(now() - Duration::from_secs(600))),
        _ => None,
    };
    let plan = plan(&SET, &reports, &[], health, TOLERATION, now());
    let device = written(&plan.writes[0]);
    let nodes: Vec<&str> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(nodes, ["flaky", "ready"]);
    assert_eq!(
        plan.devices[0].nodes,
        ["flaky", "ready"],
        "its pool's nodes too"
    );
    assert_eq!(
        plan.recheck,
        Some(Duration::from_secs(50)),
        "when flaky stops counting"
    );
}

#[test]
fn a_node_in_two_shards_gets_one_entry_with_the_earlier_since() {
    let reports = [
        report("edge-1", 0, &[("plc-1", 30, "S7")]),
        report("edge-1", 1, &[("plc-1", 10, "S7"), ("plc-2", 10, "S7")]),
    ];
    let plan = plan(&SET, &reports, &[], ready, TOLERATION, now());
    assert_eq!(plan.writes.len(), 2);
    let device = written(&plan.writes[0]);
    let nodes: Vec<String> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| n.since.0.to_string())
        .collect();
    assert_eq!(nodes, [at(10)]);
}

#[test]
fn a_device_no_report_lists_is_emptied_once_and_local_devices_are_left_alone() {
    let reports = [report("edge-1", 0, &[("plc-1", 10, "S7")])];
    let listed = written(&plan(&SET, &reports, &[], ready, TOLERATION, now()).writes[0]);
    let local: Device = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": "plcs-local", "namespace": "plant" },
        "spec": { "deviceSet": "plcs", "id": "/dev/ttyUSB0", "shared": false, "node": "edge-1", "capacity": 1 },
        "status": { "nodes": [{ "node": "edge-1", "since": at(0) }] },
    }))
    .unwrap();
    let gone = plan(&SET, [], &[&listed, &local], ready, TOLERATION, now());
    assert_eq!(gone.writes.len(), 1, "{:?}", gone.writes);
    let write = &gone.writes[0];
    assert_eq!(write.name, listed.name_any());
    assert!(write.object.is_none());
    assert_eq!(write.nodes, Some(vec![]));
    assert_eq!(
        available(write).map(|a| (a.0, a.1)),
        Some(("False".into(), "NotSeen".into()))
    );
    let mut emptied = listed.clone();
    emptied.status = None;
    let again = plan(&SET, [], &[&emptied, &local], ready, TOLERATION, now());
    assert!(again.writes.is_empty(), "already empty: {:?}", again.writes);
}
