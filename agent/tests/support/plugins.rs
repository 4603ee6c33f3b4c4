//! What the device-plugin tests share: agents with played kubelets, a
//! debug-echo DeviceSet, and ways to read what came of it.

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_crds::v1alpha1::{Allocation, Device, DeviceSet};
use ambit_tests::agents::Agent;
use ambit_tests::{TestEnv, nodes, wait};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::kubelet::Kubelet;

pub const AGENT: &str = env!("CARGO_BIN_EXE_ambit-agent");
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Agents on fresh KWOK nodes with a 1 s reclaim grace, each with a played
/// kubelet, unless `extra` environment (switching parts off) is given.
pub async fn agents(
    env: &TestEnv,
    count: usize,
    extra: &[(&str, &str)],
) -> anyhow::Result<Vec<(Agent, Option<Kubelet>)>> {
    let names = nodes::create(&env.client, &env.namespace, count, &[]).await?;
    let mut env_vars = vec![("AMBIT_SLOT_RECLAIM_GRACE_SECONDS", "1")];
    env_vars.extend_from_slice(extra);
    let mut agents = vec![];
    for name in names {
        let dir = env
            .control_plane
            .dir
            .join("agents")
            .join(&name)
            .join("kubelet");
        // The kubelet is there before the agent, as on a node.
        let kubelet = if extra.is_empty() {
            Some(Kubelet::start(&dir)?)
        } else {
            None
        };
        let agent = Agent::start_with_env(
            env.control_plane,
            AGENT.as_ref(),
            &name,
            &env.namespace,
            &env_vars,
        )?;
        agents.push((agent, kubelet));
    }
    for (agent, _) in &agents {
        agent.wait_ready().await?;
    }
    Ok(agents)
}

/// A debug-echo DeviceSet; `per_device`: its Devices are resources of
/// their own too (`devicePlugin.perDevice`).
pub async fn create_set(
    env: &TestEnv,
    name: &str,
    capacity: i32,
    details: Value,
    per_device: bool,
) -> anyhow::Result<()> {
    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": name },
        "spec": {
            "discovery": { "handler": "debug-echo", "details": details, "gracePeriodSeconds": 1 },
            "capacity": capacity,
            "devicePlugin": { "perDevice": per_device },
        },
    }))?;
    env.api::<DeviceSet>()
        .create(&PostParams::default(), &set)
        .await?;
    Ok(())
}

/// The Devices of `set`, by id, once there are `count`.
pub async fn devices(env: &TestEnv, count: usize) -> anyhow::Result<BTreeMap<String, Device>> {
    let api: Api<Device> = env.api();
    let list = wait::list_until(&api, TIMEOUT, "the Devices", |ds| {
        ds.len() == count
            && ds
                .iter()
                .all(|d| d.status.as_ref().is_some_and(|s| !s.nodes.is_empty()))
    })
    .await?;
    Ok(list.into_iter().map(|d| (d.spec.id.clone(), d)).collect())
}

pub fn allocations(device: &Device) -> Vec<Allocation> {
    device
        .status
        .as_ref()
        .map(|s| s.allocations.clone())
        .unwrap_or_default()
}

pub fn res(name: &str) -> String {
    format!("ambit.dev/{name}")
}

pub fn socket_files(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
