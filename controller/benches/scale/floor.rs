//! The floor of the controller benchmark: the writes the controller made
//! for each Device while converging (its conditions applied, its broker pod
//! created, a `BrokerCreated` Event posted), made again from one plain
//! client with as many at once as the controller's reconciles (32), into a
//! namespace nothing watches. The Devices are copied there first (not
//! timed); the pods are bound to a node that does not exist, so neither
//! kube-scheduler nor KWOK takes them up. What the controller takes beyond
//! this is its own.

use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::Device;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const FLOOR: &str = "bench-floor";
const AT_ONCE: usize = 32;

/// The time the floor's writes took.
pub async fn measure(client: &Client, namespace: &str) -> anyhow::Result<Duration> {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": FLOOR } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    crate::default_account(client, FLOOR).await?;
    let devices = Api::<Device>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await?
        .items;
    let copies: Api<Device> = Api::namespaced(client.clone(), FLOOR);
    let setup = PatchParams::apply("floor-setup").force();
    stream::iter(&devices)
        .map(|d| {
            let copy = json!({
                "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
                "metadata": { "name": d.name_any() },
                "spec": d.spec,
            });
            let (copies, setup) = (&copies, &setup);
            async move {
                copies
                    .patch(&d.name_any(), setup, &Patch::Apply(&copy))
                    .await
            }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect::<Vec<_>>()
        .await?;

    let work: Vec<(Value, Value)> = devices
        .iter()
        .zip(&pods)
        .map(|(d, p)| Ok((conditions_of(d), pod_copy(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), FLOOR);
    let events: Api<Event> = Api::namespaced(client.clone(), FLOOR);
    let manager = PatchParams::apply("ambit-controller").force();
    let started = Instant::now();
    stream::iter(work)
        .map(|(status, pod)| {
            let (copies, pods_api, events, manager) = (&copies, &pods_api, &events, &manager);
            async move {
                let name = status["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                copies
                    .patch_status(&name, manager, &Patch::Apply(&status))
                    .await?;
                let pod: Pod = serde_json::from_value(pod)?;
                pods_api.create(&PostParams::default(), &pod).await?;
                let event: Event = serde_json::from_value(event_for(&name, &pod.name_any()))?;
                events.create(&PostParams::default(), &event).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

/// The status patch the controller applied: the Device's conditions.
fn conditions_of(device: &Device) -> Value {
    json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": device.name_any() },
        "status": { "conditions": device.status.as_ref().map(|s| &s.conditions) },
    })
}

/// The broker pod as the controller created it, bound to no real node.
fn pod_copy(pod: &Pod) -> anyhow::Result<Value> {
    let mut spec = serde_json::to_value(&pod.spec)?;
    spec["nodeName"] = json!("floor-nowhere");
    Ok(json!({
        "metadata": { "name": pod.name_any(), "labels": pod.labels() },
        "spec": spec,
    }))
}

fn event_for(device: &str, pod: &str) -> Value {
    json!({
        "metadata": { "generateName": format!("{device}-") },
        "eventTime": format!("{:.6}", k8s_openapi::jiff::Timestamp::now()),
        "reportingController": "ambit.dev/controller",
        "reportingInstance": "floor",
        "action": "Reconciling",
        "reason": "BrokerCreated",
        "type": "Normal",
        "note": format!("created broker pod {pod}"),
        "regarding": { "apiVersion": "ambit.dev/v1alpha1", "kind": "Device", "namespace": FLOOR, "name": device },
    })
}
