//! The floor: how fast this very API server takes the same writes from one
//! plain client, in the same run. The agents' Devices are copied (names,
//! labels, annotations, spec, status: the same sizes) into a namespace no
//! agent watches, and applied the way Ambit applies them — a local
//! Device's spec, then its node's entry under that node's field manager; a
//! shared Device's spec, then all its entries in one write (the
//! controller's fold) — 32 Devices at a time, with the same client
//! library. Convergence is then reported as a ratio to it: how far
//! Ambit is from what the API server can do, not from a number.

use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::Device;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Writes at once, as the agent's recorder allows.
const IN_FLIGHT: usize = 32;
/// The namespace of the copies.
const NAMESPACE: &str = "bench-floor";

/// The floor of one run.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Every copy applied, spec then status.
    pub took: Duration,
    /// Writes made (a spec and an entry per node per local Device; a spec
    /// and one status per shared Device).
    pub writes: usize,
}

/// Copies every Device of `namespace` and times their applies.
pub async fn measure(client: &Client, namespace: &str) -> anyhow::Result<Floor> {
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let source: Api<Device> = Api::namespaced(client.clone(), namespace);
    let copies: Vec<Device> = source
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(copy)
        .collect();
    let target: Api<Device> = Api::namespaced(client.clone(), NAMESPACE);
    // What the agents write: each Device's spec once (a node that finds
    // the spec there skips it), and each node's entry, under its own field
    // manager; as many at once as the agents together allow.
    let nodes = copies
        .iter()
        .map(|d| d.status.as_ref().map_or(0, |s| s.nodes.len()))
        .max()
        .unwrap_or(1)
        .max(1);
    let start = Instant::now();
    futures::stream::iter(copies.iter().map(|device| {
        let target = &target;
        async move {
            let name = device.name_any();
            let entries = device
                .status
                .as_ref()
                .map(|s| s.nodes.clone())
                .unwrap_or_default();
            let first = entries.first().map_or("none", |e| e.node.as_str());
            let mut spec = device.clone();
            spec.status = None;
            let params = PatchParams::apply(&format!("bench-floor/{first}")).force();
            target.patch(&name, &params, &Patch::Apply(&spec)).await?;
            let name = name.as_str();
            if device.spec.shared {
                let status = json!({
                    "apiVersion": "ambit.dev/v1alpha1",
                    "kind": "Device",
                    "metadata": { "name": name },
                    "status": { "nodes": entries },
                });
                let params = PatchParams::apply("bench-floor/nodes").force();
                target
                    .patch_status(name, &params, &Patch::Apply(&status))
                    .await?;
                return anyhow::Ok(());
            }
            futures::stream::iter(entries.iter().map(|entry| async move {
                let status = json!({
                    "apiVersion": "ambit.dev/v1alpha1",
                    "kind": "Device",
                    "metadata": { "name": name },
                    "status": { "nodes": [entry] },
                });
                let params = PatchParams::apply(&format!("bench-floor/{}", entry.node));
                target
                    .patch_status(name, &params, &Patch::Apply(&status))
                    .await?;
                anyhow::Ok(())
            }))
            .buffer_unordered(nodes)
            .try_collect::<Vec<()>>()
            .await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(Floor {
        took: start.elapsed(),
        writes: copies
            .iter()
            .map(|d| {
                let entries = d.status.as_ref().map_or(0, |s| s.nodes.len());
                1 + if d.spec.shared {
                    entries.min(1)
                } else {
                    entries
                }
            })
            .sum(),
    })
}

/// A Device as an apply of it would send: what the agent wrote, nothing
/// the server added.
fn copy(device: Device) -> Device {
    let Device {
        metadata,
        spec,
        status,
    } = device;
    Device {
        metadata: ObjectMeta {
            name: metadata.name,
            labels: metadata.labels,
            annotations: metadata.annotations,
            ..ObjectMeta::default()
        },
        spec,
        status,
    }
}
