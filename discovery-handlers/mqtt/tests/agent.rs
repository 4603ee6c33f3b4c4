//! The mqtt handler inside a real agent, against the real control plane and
//! Debian's mosquitto: credentials come from a Secret, a refused password
//! shows in the DeviceSet's status naming the property (never its value),
//! and fixing the Secret alone restarts discovery: the handler connects and
//! the devices come, the DeviceSet untouched.
//!
//! Runs the `ambit-agent` built beside this test (`cargo build --workspace
//! --bins`, which `make test` does first).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic fails the test"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceSet, HandlerState};
use ambit_tests::agents::{Agent, workspace_binary};
use ambit_tests::{TestEnv, crds, nodes, wait};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{EdgeNode, Mosquitto, PASSWORD, USER};

const WRONG: &str = "not-the-password";

fn secret(namespace: &str, password: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("plant-broker".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            ("username".to_owned(), USER.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_secret_refused_then_fixed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Mosquitto::start(dir.path(), None);
    let env = TestEnv::new("mqtt-agent").await?;
    crds::install(&env.client).await?;
    let node = nodes::create(&env.client, &env.namespace, 1, &[])
        .await?
        .remove(0);
    let agent = Agent::start(
        env.control_plane,
        &workspace_binary("ambit-agent")?,
        &node,
        &env.namespace,
    )?;
    agent.wait_ready().await?;
    // Sparkplug devices are shared: the controller folds the agent's
    // report into their Devices.
    let _controller = ambit_tests::controllers::Controller::start(
        env.control_plane,
        &workspace_binary("ambit-controller")?,
        &env.namespace,
        "fold",
    )?;

    let secrets: Api<Secret> = env.api();
    secrets
        .create(&PostParams::default(), &secret(&env.namespace, WRONG))
        .await?;
    let mut edge = EdgeNode::start(&broker.url(), PASSWORD, "line1", &["pump"], 0);
    edge.expect("born");

    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": "plant", "namespace": env.namespace },
        "spec": { "discovery": {
            "handler": "mqtt",
            "details": { "brokers": [broker.url()], "groups": ["plant"] },
            "properties": [
                { "name": "MQTT_USERNAME",
                  "valueFrom": { "secretKeyRef": { "name": "plant-broker", "key": "username" } } },
                { "name": "MQTT_PASSWORD",
                  "valueFrom": { "secretKeyRef": { "name": "plant-broker", "key": "password" } } },
            ],
        } },
    }))?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(&PostParams::default(), &set).await?;

    // Refused: the node's entry says so and names the property, not the value.
    let refused = wait::until(
        &sets,
        "plant",
        Duration::from_secs(30),
        "the node's entry to report the refused password",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes.iter().any(|n| {
                    n.handler == HandlerState::Failing && n.last_error.contains("MQTT_PASSWORD")
                })
            })
        },
    )
    .await;
    if let Err(error) = refused {
        panic!("{error:#}; agent log:\n{}", agent.log());
    }
    let status = sets.get_status("plant").await?.status.unwrap();
    let entry = &status.nodes[0];
    assert!(
        !entry.last_error.contains(WRONG),
        "the password is not in the status: {}",
        entry.last_error
    );
    let devices: Api<Device> = env.api();
    assert!(devices.list(&Default::default()).await?.items.is_empty());

    // Fixed in the Secret alone: the handler connects, the entry recovers
    // and the devices come. Births are not retained: the node's came before
    // the handler subscribed, so it is asked to publish them again each
    // second (as a primary host application's Rebirth request would) until
    // the Device is there.
    secrets
        .patch(
            "plant-broker",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "password": PASSWORD } })),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ids: Vec<String> = devices
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|d| d.spec.id.clone())
            .collect();
        if ids == ["spb://plant/line1/pump"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Device after the Secret was fixed (have {ids:?}); agent log:\n{}",
            agent.log()
        );
        edge.send("rebirth");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait::until(
        &sets,
        "plant",
        Duration::from_secs(30),
        "the node's entry to recover",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes
                    .iter()
                    .any(|n| n.handler == HandlerState::Available && n.last_error.is_empty())
            })
        },
    )
    .await?;
    let set = sets.get("plant").await?;
    assert_eq!(set.metadata.generation, Some(1), "{}", set.name_any());
    drop(edge);
    Ok(())
}
