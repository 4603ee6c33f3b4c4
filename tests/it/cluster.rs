//! What the rest of the control plane does with Ambit's objects: server-side
//! apply keeps each agent's entry its own, kube-controller-manager's garbage
//! collector follows ownerReferences, kube-scheduler binds pods to KWOK
//! nodes, KWOK runs them, and deleting a node behaves as in a real cluster.

use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::{TestEnv, nodes, wait};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn env(test: &str) -> anyhow::Result<TestEnv> {
    let env = TestEnv::new(test).await?;
    ambit_tests::crds::install(&env.client).await?;
    Ok(env)
}

fn device_set(name: &str) -> anyhow::Result<DeviceSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": name },
        "spec": { "discovery": { "handler": "debug-echo" } },
    }))?)
}

fn device_of(set: &DeviceSet, id: &str) -> anyhow::Result<Device> {
    let owner = set
        .controller_owner_ref(&())
        .ok_or_else(|| anyhow::anyhow!("set has no uid"))?;
    Ok(serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": {
            "name": ambit_crds::names::device_name(&set.name_any(), id, None),
            "ownerReferences": [owner],
        },
        "spec": { "deviceSet": set.name_any(), "id": id, "shared": true, "capacity": 1 },
    }))?)
}

/// What an agent on `node` applies to claim its entry (or, with `None`, to
/// give it up): only its own fields, under its own field manager.
fn node_entry(name: &str, node: Option<&str>, since: &str) -> serde_json::Value {
    let nodes: Vec<_> = node
        .map(|n| json!({ "node": n, "since": since }))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": name },
        "status": { "nodes": nodes },
    })
}

#[tokio::test]
async fn two_agents_own_their_own_node_entries() -> anyhow::Result<()> {
    let env = env("ssa").await?;
    let sets: Api<DeviceSet> = env.api();
    let set = sets
        .create(&PostParams::default(), &device_set("plc")?)
        .await?;
    let devices: Api<Device> = env.api();
    let device = devices
        .create(
            &PostParams::default(),
            &device_of(&set, "opc.tcp://10.0.0.5:4840/")?,
        )
        .await?;
    let name = device.name_any();

    let apply = |node: &'static str, entry: Option<&'static str>, since: String| {
        let devices = devices.clone();
        let name = name.clone();
        async move {
            let params = PatchParams::apply(&ambit_crds::contract::agent_manager(node)).force();
            devices
                .patch_status(
                    &name,
                    &params,
                    &Patch::Apply(node_entry(&name, entry, &since)),
                )
                .await
        }
    };

    // Both agents write at the same moment, over and over.
    for round in 0..10 {
        let since = format!("2026-01-01T00:00:{round:02}Z");
        let (a, b) = tokio::join!(
            apply("edge-a", Some("edge-a"), since.clone()),
            apply("edge-b", Some("edge-b"), since.clone())
        );
        a?;
        b?;
        let status = devices.get_status(&name).await?.status.unwrap_or_default();
        let mut seen: Vec<(&str, String)> = status
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.since.0.to_string()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![("edge-a", since.clone()), ("edge-b", since.clone())],
            "round {round}: both entries, each as its agent wrote it"
        );
    }

    // Agent A no longer sees the device: it applies without its entry.
    apply("edge-a", None, String::new()).await?;
    let status = devices.get_status(&name).await?.status.unwrap_or_default();
    let left: Vec<&str> = status.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(left, vec!["edge-b"], "removing A's entry leaves B's");

    let managers: Vec<String> = devices
        .get_status(&name)
        .await?
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&ambit_crds::contract::agent_manager("edge-b")),
        "{managers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_device_set_garbage_collects_its_devices() -> anyhow::Result<()> {
    let env = env("gc").await?;
    let sets: Api<DeviceSet> = env.api();
    let set = sets
        .create(&PostParams::default(), &device_set("cams")?)
        .await?;
    let devices: Api<Device> = env.api();
    let mut names = vec![];
    for id in ["cam-1", "cam-2", "cam-3"] {
        names.push(
            devices
                .create(&PostParams::default(), &device_of(&set, id)?)
                .await?
                .name_any(),
        );
    }

    sets.delete("cams", &DeleteParams::background()).await?;
    for name in &names {
        wait::deleted(&devices, name, TIMEOUT).await?;
    }
    Ok(())
}

fn pod_on(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "nodeSelector": { "kubernetes.io/hostname": node },
            "containers": [{ "name": "broker", "image": "example/broker:1" }],
        },
    }))?)
}

fn running_on(node: &str) -> impl Fn(Option<&Pod>) -> bool + '_ {
    move |pod| {
        pod.is_some_and(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    }
}

#[tokio::test]
async fn a_pinned_pod_is_scheduled_onto_its_kwok_node_and_runs() -> anyhow::Result<()> {
    let env = env("schedule").await?;
    let nodes = nodes::create(&env.client, &env.namespace, 3, &[("zone", "a")]).await?;
    env.wait_for_default_service_account().await?;
    let pods: Api<Pod> = env.api();
    let target = &nodes[1];
    pods.create(&PostParams::default(), &pod_on("pinned", target)?)
        .await?;

    let pod = wait::until(
        &pods,
        "pinned",
        TIMEOUT,
        "the pod to run on its node",
        running_on(target),
    )
    .await?;
    let status = pod.status.unwrap_or_default();
    assert!(status.pod_ip.is_some(), "KWOK gives the pod an IP");
    assert!(
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "kube-scheduler bound it"
    );
    Ok(())
}

#[tokio::test]
async fn pods_of_a_deleted_node_are_removed_as_in_a_real_cluster() -> anyhow::Result<()> {
    let env = env("node-gone").await?;
    let nodes = nodes::create(&env.client, &env.namespace, 1, &[]).await?;
    env.wait_for_default_service_account().await?;
    let pods: Api<Pod> = env.api();
    pods.create(&PostParams::default(), &pod_on("orphan", &nodes[0])?)
        .await?;
    wait::until(
        &pods,
        "orphan",
        TIMEOUT,
        "the pod to run",
        running_on(&nodes[0]),
    )
    .await?;

    // The pod garbage collector of kube-controller-manager deletes pods bound
    // to nodes that no longer exist (after its 40 s quarantine).
    nodes::delete(&env.client, &nodes[0]).await?;
    wait::deleted(&pods, "orphan", Duration::from_secs(150)).await?;
    Ok(())
}

#[tokio::test]
async fn owned_pods_follow_their_owner() -> anyhow::Result<()> {
    let env = env("owned-pod").await?;
    let nodes = nodes::create(&env.client, &env.namespace, 1, &[]).await?;
    env.wait_for_default_service_account().await?;
    let sets: Api<DeviceSet> = env.api();
    let set = sets
        .create(&PostParams::default(), &device_set("meters")?)
        .await?;
    let devices: Api<Device> = env.api();
    let device = devices
        .create(&PostParams::default(), &device_of(&set, "meter-1")?)
        .await?;

    let mut pod = pod_on("broker", &nodes[0])?;
    pod.metadata.owner_references = device.controller_owner_ref(&()).map(|o| vec![o]);
    let pods: Api<Pod> = env.api();
    pods.create(&PostParams::default(), &pod).await?;
    wait::until(
        &pods,
        "broker",
        TIMEOUT,
        "the broker to run",
        running_on(&nodes[0]),
    )
    .await?;

    // Set → Device → Pod: one delete cascades through both levels.
    sets.delete("meters", &DeleteParams::background()).await?;
    wait::deleted(&pods, "broker", TIMEOUT).await?;
    assert!(devices.get_opt(&device.name_any()).await?.is_none());
    Ok(())
}
