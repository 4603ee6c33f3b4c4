//! Nodes that fall ill, against the real control plane: a node whose Ready
//! condition turns False keeps its Device entries (and broker) for the
//! controller's toleration (20 s in tests), then loses them; a node that
//! only heartbeats changes nothing. A Device without a broker has no pod
//! whose status changes with its node's: only the Node's own events can
//! get it reconciled, so it shows that they do. The node is taken from KWOK (its
//! annotation removed) so the test, not KWOK, writes its status, as a
//! kubelet that stopped reporting Ready would.

use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::Device;
use ambit_tests::{nodes, wait};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

mod support;

use support::{TIMEOUT, cluster, pod_broker, running_on, set};

/// The controller's NotReady toleration in tests (`tests/src/controllers.rs`).
const TOLERATION: Duration = Duration::from_secs(20);

fn nodes_of(device: &Device) -> Vec<String> {
    let entries = device.status.iter().flat_map(|s| &s.nodes);
    entries.map(|n| n.node.clone()).collect()
}

/// Takes `node` from KWOK and sets its Ready condition to `ready`.
async fn set_ready(nodes: &Api<Node>, node: &str, ready: &str) -> anyhow::Result<()> {
    let unmanaged = json!({ "metadata": { "annotations": { nodes::KWOK_ANNOTATION.0: null } } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(unmanaged))
        .await?;
    let now = Time(Timestamp::now());
    let status = json!({ "status": { "conditions": [{
        "type": "Ready", "status": ready, "reason": "AmbitTest", "message": "set by the test",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    }] } });
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Strategic(status))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_not_ready_node_keeps_its_entries_for_the_toleration_then_loses_them()
-> anyhow::Result<()> {
    let mut c = cluster("node-not-ready", &[&[], &[]]).await?;
    let sets: Api<ambit_crds::v1alpha1::DeviceSet> = c.env.api();
    let details = json!({ "shared": true, "devices": ["cam"] });
    sets.create(
        &PostParams::default(),
        &set("cams", 2, details, pod_broker())?,
    )
    .await?;
    let details = json!({ "shared": true, "devices": ["mic"] });
    sets.create(
        &PostParams::default(),
        &set("mics", 2, details, json!(null))?,
    )
    .await?;
    let pods: Api<Pod> = c.env.api();
    wait::list_until(&pods, TIMEOUT, "two brokers", |ps| {
        running_on(ps).len() == 2
    })
    .await?;
    let devices: Api<Device> = c.env.api();
    wait::list_until(&devices, TIMEOUT, "two Devices on both nodes", |ds| {
        ds.len() == 2 && ds.iter().all(|d| nodes_of(d).len() == 2)
    })
    .await?;

    let ill = c.agents[0].node.clone();
    let well = c.agents[1].node.clone();
    // The ill node's agent went silent with it (alive, it would write its
    // entry again). The start's writes settle first, so no reconcile they
    // cause happens to see the node ill.
    c.agents[0].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node_api: Api<Node> = Api::all(c.env.client.clone());
    set_ready(&node_api, &ill, "False").await?;
    let since = Instant::now();

    // A heartbeat alone (the same condition, a later lastHeartbeatTime)
    // neither removes nor resets anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let beat = json!({ "status": { "conditions": [{
        "type": "Ready", "status": "False", "reason": "AmbitTest", "message": "set by the test",
        "lastHeartbeatTime": Time(Timestamp::now()),
    }] } });
    node_api
        .patch_status(&ill, &PatchParams::default(), &Patch::Strategic(beat))
        .await?;

    let gone = wait::list_until(&devices, TIMEOUT, "the ill node's entries to go", |ds| {
        ds.len() == 2 && ds.iter().all(|d| !nodes_of(d).contains(&ill))
    })
    .await?;
    let after = since.elapsed();
    assert!(
        after >= TOLERATION - Duration::from_secs(1),
        "the entry went {after:?} after the node turned NotReady, before the {TOLERATION:?} toleration"
    );
    for device in &gone {
        assert_eq!(nodes_of(device), std::slice::from_ref(&well));
    }
    wait::list_until(&pods, TIMEOUT, "only the well node's broker", |ps| {
        ps.len() == 1 && running_on(ps) == vec![well.clone()]
    })
    .await?;
    Ok(())
}
