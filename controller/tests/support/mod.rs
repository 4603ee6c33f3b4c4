//! What the controller's test binaries share: a cluster of KWOK nodes with
//! an agent on each and one controller, and DeviceSet builders.

#![allow(dead_code)]

use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSet;
use ambit_tests::agents::Agent;
use ambit_tests::controllers::Controller;
use ambit_tests::{TestEnv, nodes};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

pub const CONTROLLER: &str = env!("CARGO_BIN_EXE_ambit-controller");
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub env: TestEnv,
    pub agents: Vec<Agent>,
    pub controllers: Vec<Controller>,
}

/// `nodes` KWOK nodes (with `labels` per node), an agent on each, and one controller.
pub async fn cluster(test: &str, labels: &[&[(&str, &str)]]) -> anyhow::Result<Cluster> {
    let env = TestEnv::new(test).await?;
    ambit_tests::crds::install(&env.client).await?;
    env.wait_for_default_service_account().await?;
    let agent_binary = Controller::sibling_binary(CONTROLLER, "ambit-agent")?;
    let mut agents = vec![];
    for (i, node_labels) in labels.iter().enumerate() {
        let name = nodes::create(
            &env.client,
            &format!("{}-{i}", env.namespace),
            1,
            node_labels,
        )
        .await?
        .remove(0);
        agents.push(Agent::start(
            env.control_plane,
            &agent_binary,
            &name,
            &env.namespace,
        )?);
    }
    for agent in &agents {
        agent.wait_ready().await?;
    }
    let controller =
        Controller::start(env.control_plane, CONTROLLER.as_ref(), &env.namespace, "c1")?;
    controller.wait_leading(TIMEOUT).await?;
    Ok(Cluster {
        env,
        agents,
        controllers: vec![controller],
    })
}

pub fn set(name: &str, capacity: i32, details: Value, broker: Value) -> anyhow::Result<DeviceSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": name },
        "spec": {
            "discovery": { "handler": "debug-echo", "details": details, "gracePeriodSeconds": 2 },
            "capacity": capacity,
            "broker": broker,
        },
    }))?)
}

pub fn pod_broker() -> Value {
    json!({ "pod": { "containers": [{ "name": "broker", "image": "example/broker:1" }] } })
}

pub fn running_on(pods: &[Pod]) -> Vec<String> {
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    nodes
}
