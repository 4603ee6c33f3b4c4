//! The controller as a real process, with real agents on KWOK nodes, against
//! the real control plane: the scheduler binds the broker pods it creates,
//! KWOK runs them, kube-controller-manager garbage-collects what it owns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::agents::Agent;
use ambit_tests::controllers::Controller;
use ambit_tests::{nodes, wait};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

mod support;

use support::{CONTROLLER, TIMEOUT, cluster, pod_broker, running_on, set};

fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn capacity_two_on_three_nodes_runs_exactly_two_brokers() -> anyhow::Result<()> {
    let c = cluster("capacity", &[&[], &[], &[]]).await?;
    let sets: Api<DeviceSet> = c.env.api();
    let details = json!({ "shared": true, "devices": [{ "id": "plc-1", "properties": { "IP": "10.0.0.5" } }] });
    sets.create(
        &PostParams::default(),
        &set("plcs", 2, details, pod_broker())?,
    )
    .await?;

    let pods: Api<Pod> = c.env.api();
    let running = wait::list_until(&pods, TIMEOUT, "two running brokers", |ps| {
        running_on(ps).len() == 2
    })
    .await?;
    let env: Vec<(String, String)> = running[0].spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&("IP".into(), "10.0.0.5".into())),
        "device properties reach the broker: {env:?}"
    );

    // The third node never gets one while the two are healthy: watch the
    // pods for a while and see nothing change.
    let before = uids(&running);
    let settled = tokio::time::timeout(
        Duration::from_secs(5),
        wait::list_until(&pods, TIMEOUT, "any change", |ps| uids(ps) != before),
    )
    .await;
    assert!(settled.is_err(), "the brokers changed: {settled:?}");
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 2);

    let ready = wait::until(
        &sets,
        "plcs",
        TIMEOUT,
        "Ready with 2 brokers",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.ready_brokers == Some(2)
                    && st.devices == Some(1)
                    && st
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        },
    )
    .await?;
    assert_eq!(
        ready.status.unwrap().observed_generation,
        ready.metadata.generation
    );
    drop(c.agents);
    Ok(())
}

#[tokio::test]
async fn the_users_affinity_still_holds_beside_the_node_pinning() -> anyhow::Result<()> {
    let c = cluster("affinity", &[&[("zone", "a")], &[("zone", "b")]]).await?;
    let sets: Api<DeviceSet> = c.env.api();
    let broker = json!({ "pod": {
        "containers": [{ "name": "broker", "image": "example/broker:1" }],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] }],
        } } },
    } });
    sets.create(
        &PostParams::default(),
        &set(
            "zoned",
            2,
            json!({ "shared": true, "devices": ["d1"] }),
            broker,
        )?,
    )
    .await?;
    let pods: Api<Pod> = c.env.api();
    let zone_a = c.agents[0].node.clone();
    let seen = wait::list_until(
        &pods,
        TIMEOUT,
        "one broker running in zone a, one unschedulable",
        |ps| {
            let unschedulable = ps.iter().any(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                    })
            });
            running_on(ps) == vec![zone_a.clone()] && unschedulable && ps.len() == 2
        },
    )
    .await?;
    let pending = seen
        .iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
        .unwrap();
    assert_eq!(
        pending.annotations()["ambit.dev/node"],
        c.agents[1].node,
        "the zone-b broker never ran outside zone a"
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_nodes_brokers_and_entries_go_and_a_new_node_gets_one() -> anyhow::Result<()> {
    let mut c = cluster("node-loss", &[&[], &[]]).await?;
    let sets: Api<DeviceSet> = c.env.api();
    sets.create(
        &PostParams::default(),
        &set(
            "cams",
            2,
            json!({ "shared": true, "devices": ["cam"] }),
            pod_broker(),
        )?,
    )
    .await?;
    let pods: Api<Pod> = c.env.api();
    wait::list_until(&pods, TIMEOUT, "two brokers", |ps| {
        running_on(ps).len() == 2
    })
    .await?;

    // The machine of node 0 goes away: its agent dies and the node is deleted.
    let lost = c.agents[0].node.clone();
    c.agents[0].kill();
    nodes::delete(&c.env.client, &lost).await?;
    let devices: Api<Device> = c.env.api();
    wait::list_until(&devices, TIMEOUT, "the lost node's entry to go", |ds| {
        ds.len() == 1
            && ds[0]
                .status
                .iter()
                .flat_map(|s| &s.nodes)
                .all(|n| n.node != lost)
    })
    .await?;
    let survivor = c.agents[1].node.clone();
    wait::list_until(&pods, TIMEOUT, "only the survivor's broker", |ps| {
        ps.len() == 1 && running_on(ps) == vec![survivor.clone()]
    })
    .await?;

    // A new node that sees the device gets the free slot.
    let agent_binary = Controller::sibling_binary(CONTROLLER, "ambit-agent")?;
    let fresh = nodes::create(&c.env.client, &format!("{}-new", c.env.namespace), 1, &[])
        .await?
        .remove(0);
    c.agents.push(Agent::start(
        c.env.control_plane,
        &agent_binary,
        &fresh,
        &c.env.namespace,
    )?);
    let mut both = vec![survivor.clone(), fresh.clone()];
    both.sort();
    wait::list_until(&pods, TIMEOUT, "a broker on the new node", |ps| {
        running_on(ps) == both
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_controller_restart_recreates_nothing() -> anyhow::Result<()> {
    let mut c = cluster("ctrl-restart", &[&[], &[]]).await?;
    let sets: Api<DeviceSet> = c.env.api();
    sets.create(
        &PostParams::default(),
        &set(
            "s",
            2,
            json!({ "shared": true, "count": 3, "prefix": "d" }),
            pod_broker(),
        )?,
    )
    .await?;
    let pods: Api<Pod> = c.env.api();
    let before = uids(
        &wait::list_until(&pods, TIMEOUT, "six brokers", |ps| {
            running_on(ps).len() == 6
        })
        .await?,
    );

    c.controllers[0].kill();
    c.controllers[0].restart(c.env.control_plane)?;
    c.controllers[0].wait_leading(TIMEOUT).await?;
    // Once it has reconciled every Device again, nothing may have changed.
    let deadline = Instant::now() + TIMEOUT;
    while c.controllers[0]
        .metric("ambit_controller_reconcile_duration_seconds_count{controller=\"device\"}")
        .await?
        < 3.0
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the restarted controller did not reconcile the Devices"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = uids(&pods.list(&ListParams::default()).await?.items);
    assert_eq!(after, before, "same broker pods, same uids");
    Ok(())
}

#[tokio::test]
async fn a_standby_takes_over_within_15_seconds_and_never_writes_before() -> anyhow::Result<()> {
    let mut c = cluster("failover", &[&[]]).await?;
    let standby = Controller::start(
        c.env.control_plane,
        CONTROLLER.as_ref(),
        &c.env.namespace,
        "c2",
    )?;
    let sets: Api<DeviceSet> = c.env.api();
    sets.create(
        &PostParams::default(),
        &set("a", 1, json!({ "devices": ["x"] }), pod_broker())?,
    )
    .await?;
    let pods: Api<Pod> = c.env.api();
    wait::list_until(&pods, TIMEOUT, "a broker", |ps| running_on(ps).len() == 1).await?;
    assert_eq!(standby.metric("ambit_controller_leader").await?, 0.0);
    assert_eq!(
        standby
            .metric("ambit_controller_reconcile_duration_seconds_count")
            .await?,
        0.0,
        "the standby reconciled nothing"
    );

    let killed = Instant::now();
    c.controllers[0].kill();
    standby.wait_leading(Duration::from_secs(15)).await?;
    let failover = killed.elapsed();
    let leases: Api<Lease> = c.env.api();
    let lease = leases.get("ambit-controller").await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("c2")
    );

    // The new leader does the work.
    sets.create(
        &PostParams::default(),
        &set("b", 1, json!({ "devices": ["y"] }), pod_broker())?,
    )
    .await?;
    wait::list_until(&pods, TIMEOUT, "the new leader's broker", |ps| {
        running_on(ps).len() == 2
    })
    .await?;
    eprintln!("failover took {failover:?}");
    Ok(())
}

#[tokio::test]
async fn jobs_and_services_follow_their_devices() -> anyhow::Result<()> {
    let c = cluster("jobs", &[&[]]).await?;
    let sets: Api<DeviceSet> = c.env.api();
    let mut job_set = set(
        "meters",
        1,
        json!({ "devices": ["m1", "m2"] }),
        json!({ "job": { "template": { "spec": {
            "containers": [{ "name": "read", "image": "example/reader:1" }], "restartPolicy": "Never",
        } } } }),
    )?;
    job_set.spec.device_service = Some(serde_json::from_value(
        json!({ "ports": [{ "port": 502 }] }),
    )?);
    job_set.spec.set_service = Some(serde_json::from_value(
        json!({ "ports": [{ "port": 80 }] }),
    )?);
    sets.create(&PostParams::default(), &job_set).await?;

    let jobs: Api<Job> = c.env.api();
    wait::list_until(&jobs, TIMEOUT, "two completed Jobs", |js| {
        js.len() == 2
            && js
                .iter()
                .all(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
    })
    .await?;
    let services: Api<Service> = c.env.api();
    let svcs = wait::list_until(
        &services,
        TIMEOUT,
        "a Service per device and one for the set",
        |ss| ss.len() == 3,
    )
    .await?;
    let selectors: Vec<BTreeMap<String, String>> = svcs
        .iter()
        .filter_map(|s| s.spec.as_ref()?.selector.clone())
        .collect();
    assert!(
        selectors
            .iter()
            .any(|s| s.get("ambit.dev/device-set").map(String::as_str) == Some("meters"))
    );
    assert_eq!(
        selectors
            .iter()
            .filter(|s| s.contains_key("ambit.dev/device"))
            .count(),
        2
    );

    // A device that goes away for good takes its Job and Service with it.
    c.agents[0].set_offline(&["m2"])?;
    wait::list_until(&jobs, TIMEOUT, "m2's Job to go", |js| js.len() == 1).await?;
    wait::list_until(&services, TIMEOUT, "m2's Service to go", |ss| ss.len() == 2).await?;
    let devices: Api<Device> = c.env.api();
    assert_eq!(
        devices.list(&ListParams::default()).await?.items.len(),
        1,
        "the unseen Device was deleted"
    );
    Ok(())
}
