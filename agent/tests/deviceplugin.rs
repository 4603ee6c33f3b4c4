//! Device plugins and CDI specs, end to end: real agent processes on KWOK
//! nodes against the real control plane, debug-echo devices, and a played
//! kubelet per agent (`support/kubelet.rs`). The kubelet cannot run here (it
//! needs a container runtime), so the tests play its side of the real gRPC
//! protocols, from the upstream protos: its Registration service, the
//! plugin calls it makes (options, ListAndWatch, Allocate) and its
//! pod-resources API.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::{TestEnv, wait};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::plugins::{
    AGENT, TIMEOUT, agents, allocations, create_set, devices, res, socket_files,
};

#[tokio::test]
async fn devices_are_served_allocated_reclaimed_and_withdrawn() -> anyhow::Result<()> {
    let env = TestEnv::new("dp-local").await?;
    ambit_tests::crds::install(&env.client).await?;
    let mut agents = agents(&env, 1, &[]).await?;
    let (agent, kubelet) = &mut agents[0];
    let kubelet = kubelet
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no kubelet"))?;
    create_set(
        &env,
        "cams",
        2,
        json!({ "devices": [{ "id": "cam-1", "properties": { "ROOM": "lab" } }, "cam-2"] }),
        true,
    )
    .await?;
    let found = devices(&env, 2).await?;
    let cam1 = found["cam-1"].name_any();
    let cam2 = found["cam-2"].name_any();

    // Registered: a resource per device and one for the set.
    let seen = kubelet
        .wait("three resources with their slots", |s| {
            s.lists.len() == 3 && s.lists.get(&res("cams")).is_some_and(|l| l.len() == 4)
        })
        .await?;
    let mut registered: Vec<(String, String, String)> = seen
        .registrations
        .iter()
        .map(|r| {
            (
                r.resource_name.clone(),
                r.endpoint.clone(),
                r.version.clone(),
            )
        })
        .collect();
    registered.sort();
    let mut expected: Vec<(String, String, String)> = [&cam1, &cam2, &"cams".to_owned()]
        .iter()
        .map(|n| (res(n), format!("ambit-{n}.sock"), "v1beta1".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(registered, expected);
    assert_eq!(kubelet.registered(), 3, "each resource registers once");
    assert!(seen.registrations.iter().all(|r| {
        r.options
            .as_ref()
            .is_some_and(|o| o.get_preferred_allocation_available)
    }),);
    let healthy = |ids: &[&str]| -> BTreeMap<String, String> {
        ids.iter()
            .map(|id| ((*id).to_owned(), "Healthy".to_owned()))
            .collect()
    };
    assert_eq!(
        seen.lists[&res(&cam1)],
        healthy(&[&format!("{cam1}-0"), &format!("{cam1}-1")])
    );

    // cam-1 gains a device node and a mount: the CDI spec follows.
    let devices_api: Api<Device> = env.api();
    devices_api
        .patch(
            &cam1,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": {
                "deviceNodes": [{ "hostPath": "/dev/null", "containerPath": "/dev/cam" }],
                "mounts": [{ "hostPath": "/tmp", "containerPath": "/data", "readOnly": true }],
            } })),
        )
        .await?;
    let spec_file = agent.cdi_dir.join(format!("ambit.dev-device_{cam1}.json"));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let spec: Value = loop {
        if let Ok(text) = std::fs::read_to_string(&spec_file)
            && let Ok(spec) = serde_json::from_str::<Value>(&text)
            && spec["devices"][0]["containerEdits"]["deviceNodes"].is_array()
        {
            break spec;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no CDI spec with device nodes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(spec["cdiVersion"], "0.5.0");
    assert_eq!(spec["kind"], "ambit.dev/device");
    assert_eq!(spec["devices"][0]["name"], cam1.as_str());
    assert!(
        agent
            .cdi_dir
            .join(format!("ambit.dev-device_{cam2}.json"))
            .exists()
    );

    // Allocate through the device's resource.
    let id = format!("{cam1}-0");
    let response = kubelet.allocate(&res(&cam1), &[&id]).await??;
    // Like the kubelet, list the pod as soon as it has its device.
    let pod = format!("{}/user-pod", env.namespace);
    kubelet.set_pod(&pod, &res(&cam1), &[&id]);
    assert_eq!(response.envs["ROOM"], "lab");
    assert_eq!(response.envs["AMBIT_DEVICE"], cam1);
    assert_eq!(response.envs["AMBIT_DEVICE_SET"], "cams");
    assert_eq!(response.envs["AMBIT_DEVICE_ID"], "cam-1");
    assert_eq!(response.envs["AMBIT_NODE_NAME"], agent.node);
    assert_eq!(response.devices.len(), 1);
    assert_eq!(
        (
            response.devices[0].host_path.as_str(),
            response.devices[0].container_path.as_str(),
            response.devices[0].permissions.as_str()
        ),
        ("/dev/null", "/dev/cam", "rw")
    );
    assert_eq!(response.mounts.len(), 1);
    assert!(response.mounts[0].read_only);
    assert_eq!(
        response
            .cdi_devices
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>(),
        [format!("ambit.dev/device={cam1}")]
    );
    let node = agent.node.clone();
    let device = wait::until(
        &devices_api,
        &cam1,
        TIMEOUT,
        "slot 0 claimed",
        |d: Option<&Device>| {
            d.is_some_and(|d| allocations(d).iter().any(|a| a.slot == 0 && a.node == node))
        },
    )
    .await?;
    assert_eq!(allocations(&device).len(), 1);

    // The set's resource will not hand the same slot out again.
    kubelet
        .wait("the slot unhealthy in the set's resource", |s| {
            s.lists
                .get(&res("cams"))
                .and_then(|l| l.get(&id))
                .is_some_and(|h| h == "Unhealthy")
        })
        .await?;
    let refused = kubelet.allocate(&res("cams"), &[&id]).await?;
    let status =
        refused.expect_err("the set's resource must refuse a slot held through the device's");
    assert!(
        status.message().contains("already allocated through"),
        "{status:?}"
    );
    // An id that is no device of the resource.
    let status = kubelet
        .allocate(&res(&cam1), &["nothing-0"])
        .await?
        .expect_err("unknown id");
    assert!(
        status.message().contains("is not a device of resource"),
        "{status:?}"
    );

    // A pod holds it: the entry names the pod. The pod goes: the slot is freed.
    wait::until(
        &devices_api,
        &cam1,
        TIMEOUT,
        "the entry to name the pod",
        |d: Option<&Device>| {
            d.is_some_and(|d| {
                allocations(d)
                    .iter()
                    .any(|a| a.pod.as_deref() == Some(pod.as_str()))
            })
        },
    )
    .await?;
    kubelet.set_pod(&pod, &res(&cam1), &[]);
    let reclaimed = wait::until(
        &devices_api,
        &cam1,
        TIMEOUT,
        "the slot to be reclaimed",
        |d: Option<&Device>| d.is_some_and(|d| allocations(d).is_empty()),
    )
    .await;
    if reclaimed.is_err() {
        let d = devices_api.get(&cam1).await?;
        eprintln!(
            "the Device's fields:\n{}\nthe agent's log:\n{}",
            serde_json::to_string_pretty(&d.metadata.managed_fields)?,
            agent.log()
        );
    }
    reclaimed?;
    kubelet
        .wait("the slot healthy again in the set", |s| {
            s.lists
                .get(&res("cams"))
                .and_then(|l| l.get(&id))
                .is_some_and(|h| h == "Healthy")
        })
        .await?;

    // cam-2 goes: its resource, socket and CDI spec go; the set shrinks.
    agent.set_offline(&["cam-2"])?;
    kubelet
        .wait("the set without cam-2", |s| {
            s.lists.get(&res("cams")).is_some_and(|l| l.len() == 2)
        })
        .await?;
    let socket = kubelet.dir.join(format!("ambit-{cam2}.sock"));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while socket.exists()
        || agent
            .cdi_dir
            .join(format!("ambit.dev-device_{cam2}.json"))
            .exists()
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "cam-2's socket or CDI spec stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kubelet.list(&res(&cam2)).is_empty(),
        "cam-2's resource was emptied"
    );
    let metrics = agent.get("/metrics").await?.1;
    assert!(
        metrics.contains(&format!(
            "ambit_agent_slots{{namespace=\"{}\",device_set=\"cams\",node=\"{}\",state=\"free\"}} 2",
            env.namespace, agent.node
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "ambit_agent_slot_allocation_errors_total{reason=\"held_by_other_resource\"} 1"
        )
    );
    Ok(())
}

#[tokio::test]
async fn two_nodes_never_hold_one_slot_of_a_shared_device() -> anyhow::Result<()> {
    let env = TestEnv::new("dp-shared").await?;
    ambit_tests::crds::install(&env.client).await?;
    // The controller folds the nodes' reports into the shared Devices.
    let binary = ambit_tests::controllers::Controller::sibling_binary(AGENT, "ambit-controller")?;
    let _controller = ambit_tests::controllers::Controller::start(
        env.control_plane,
        &binary,
        &env.namespace,
        "fold",
    )?;
    let agents = agents(&env, 2, &[]).await?;
    create_set(
        &env,
        "plcs",
        1,
        json!({ "shared": true, "devices": ["plc-1", "plc-2"] }),
        true,
    )
    .await?;
    let api: Api<Device> = env.api();
    let both = wait::list_until(&api, TIMEOUT, "two Devices seen by both nodes", |ds| {
        ds.len() == 2
            && ds
                .iter()
                .all(|d| d.status.as_ref().is_some_and(|s| s.nodes.len() == 2))
    })
    .await?;
    let by_id: BTreeMap<String, String> = both
        .iter()
        .map(|d| (d.spec.id.clone(), d.name_any()))
        .collect();
    let kubelets: Vec<&Kubelet> = agents.iter().filter_map(|(_, k)| k.as_ref()).collect();
    for kubelet in &kubelets {
        kubelet
            .wait("both devices", |s| {
                s.lists.get(&res("plcs")).is_some_and(|l| l.len() == 2)
                    && by_id.values().all(|name| s.lists.contains_key(&res(name)))
            })
            .await?;
    }

    // Both nodes ask for the one slot of plc-1 at once: exactly one gets it.
    let plc1 = &by_id["plc-1"];
    let id = format!("{plc1}-0");
    let resource = res(plc1);
    let ids = [id.as_str()];
    let (a, b) = tokio::join!(
        kubelets[0].allocate(&resource, &ids),
        kubelets[1].allocate(&resource, &ids)
    );
    let (a, b) = (a?, b?);
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one node gets the slot: {a:?} / {b:?}"
    );
    let (winner, loser) = if a.is_ok() { (0, 1) } else { (1, 0) };
    let device = wait::until(
        &api,
        plc1,
        TIMEOUT,
        "the winner's entry",
        |d: Option<&Device>| d.is_some_and(|d| allocations(d).len() == 1),
    )
    .await?;
    assert_eq!(allocations(&device)[0].node, agents[winner].0.node);

    // The loser's kubelet sees the slot Unhealthy, and asking again fails.
    kubelets[loser]
        .wait("the slot unhealthy on the other node", |s| {
            s.lists
                .get(&res(plc1))
                .and_then(|l| l.get(&id))
                .is_some_and(|h| h == "Unhealthy")
        })
        .await?;
    let status = kubelets[loser]
        .allocate(&res(plc1), &[&id])
        .await?
        .expect_err("the slot is taken");
    assert!(
        status
            .message()
            .contains(&format!("held by node {}", agents[winner].0.node))
            || status.message().contains("held by another node"),
        "{status:?}"
    );
    // The other device is free on the loser's node, through the set.
    let plc2 = format!("{}-0", by_id["plc-2"]);
    kubelets[loser].allocate(&res("plcs"), &[&plc2]).await??;
    Ok(())
}

#[tokio::test]
async fn kubelet_and_agent_restarts_keep_slots_and_registrations() -> anyhow::Result<()> {
    let env = TestEnv::new("dp-restart").await?;
    ambit_tests::crds::install(&env.client).await?;
    let mut agents = agents(&env, 1, &[]).await?;
    let (agent, kubelet) = &mut agents[0];
    let mut kubelet = kubelet
        .take()
        .ok_or_else(|| anyhow::anyhow!("no kubelet"))?;
    create_set(&env, "usb", 1, json!({ "devices": ["usb-1"] }), true).await?;
    let found = devices(&env, 1).await?;
    let usb = found["usb-1"].name_any();
    kubelet
        .wait("two resources", |s| s.lists.len() == 2)
        .await?;
    let id = format!("{usb}-0");
    kubelet.allocate(&res("usb"), &[&id]).await??;
    let pod = format!("{}/p", env.namespace);
    kubelet.set_pod(&pod, &res("usb"), &[&id]);
    let api: Api<Device> = env.api();
    let before = wait::until(
        &api,
        &usb,
        TIMEOUT,
        "the entry with its pod",
        |d: Option<&Device>| d.is_some_and(|d| allocations(d).iter().any(|a| a.pod.is_some())),
    )
    .await?;

    // The kubelet restarts: sockets deleted, a new kubelet.sock.
    let registrations = kubelet.wait("", |_| true).await?.registrations.len();
    kubelet.restart().await?;
    let seen = kubelet
        .wait("both resources registered again", |s| {
            s.registrations.len() == registrations + 2 && s.lists.len() == 2
        })
        .await?;
    assert_eq!(
        seen.lists[&res(&usb)][&id],
        "Unhealthy",
        "held through the set"
    );
    assert_eq!(seen.lists[&res("usb")][&id], "Healthy");
    let mut files = socket_files(&kubelet.dir);
    files.sort();
    assert_eq!(
        files,
        [
            format!("ambit-{usb}.sock"),
            "ambit-usb.sock".into(),
            "kubelet.sock".into()
        ]
    );

    // The agent is killed and comes back: same sockets, slot still held.
    agent.kill();
    agent.restart(env.control_plane)?;
    agent.wait_ready().await?;
    kubelet
        .wait("the new agent registered", |s| {
            s.registrations.len() >= registrations + 4
        })
        .await?;
    // The pod is known again through pod-resources, so the set's resource
    // keeps the slot.
    kubelet
        .wait("the slot held through the set", |s| {
            s.lists
                .get(&res("usb"))
                .and_then(|l| l.get(&id))
                .is_some_and(|h| h == "Healthy")
                && s.lists
                    .get(&res(&usb))
                    .and_then(|l| l.get(&id))
                    .is_some_and(|h| h == "Unhealthy")
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api.get(&usb).await?;
    assert_eq!(
        allocations(&after),
        allocations(&before),
        "the slot entry is unchanged"
    );
    assert_eq!(
        socket_files(&kubelet.dir),
        [
            format!("ambit-{usb}.sock"),
            "ambit-usb.sock".into(),
            "kubelet.sock".into()
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_set_is_one_resource_unless_it_asks_for_one_per_device() -> anyhow::Result<()> {
    let env = TestEnv::new("dp-per-set").await?;
    ambit_tests::crds::install(&env.client).await?;
    let agents = agents(&env, 1, &[]).await?;
    let kubelet = agents[0]
        .1
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no kubelet"))?;
    create_set(
        &env,
        "lines",
        1,
        json!({ "devices": ["l-1", "l-2", "l-3"] }),
        false,
    )
    .await?;
    let found = devices(&env, 3).await?;
    let names: Vec<String> = found.values().map(|d| d.name_any()).collect();

    // By default: the set's resource only, one socket, one registration.
    kubelet
        .wait("the set's resource with its three devices", |s| {
            s.lists.get(&res("lines")).is_some_and(|l| l.len() == 3)
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        kubelet.seen().lists.keys().cloned().collect::<Vec<_>>(),
        [res("lines")]
    );
    assert_eq!(kubelet.registered(), 1);
    assert_eq!(
        socket_files(&kubelet.dir),
        ["ambit-lines.sock", "kubelet.sock"]
    );

    // Asked for: each Device is a resource too, from the running agent.
    let sets: Api<DeviceSet> = env.api();
    let per_device = |on: bool| json!({ "spec": { "devicePlugin": { "perDevice": on } } });
    sets.patch(
        "lines",
        &PatchParams::default(),
        &Patch::Merge(per_device(true)),
    )
    .await?;
    kubelet
        .wait("a resource per device beside the set's", |s| {
            names
                .iter()
                .all(|n| s.lists.get(&res(n)).is_some_and(|l| l.len() == 1))
        })
        .await?;
    assert_eq!(kubelet.registered(), 4);

    // No longer asked for: the devices' resources are emptied and their
    // sockets go; the set's stays as it was.
    sets.patch(
        "lines",
        &PatchParams::default(),
        &Patch::Merge(per_device(false)),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while socket_files(&kubelet.dir) != ["ambit-lines.sock", "kubelet.sock"] {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the devices' sockets stayed: {:?}",
            socket_files(&kubelet.dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in &names {
        assert!(kubelet.list(&res(name)).is_empty(), "{name} still listed");
    }
    assert_eq!(kubelet.list(&res("lines")).len(), 3);
    let set_registrations = kubelet
        .seen()
        .registrations
        .iter()
        .filter(|r| r.resource_name == res("lines"))
        .count();
    assert_eq!(
        set_registrations, 1,
        "the set's resource did not register again"
    );
    Ok(())
}

#[tokio::test]
async fn empty_paths_switch_device_plugins_and_cdi_off() -> anyhow::Result<()> {
    let env = TestEnv::new("dp-off").await?;
    ambit_tests::crds::install(&env.client).await?;
    let off = [
        ("AMBIT_DEVICE_PLUGIN_DIR", ""),
        ("AMBIT_POD_RESOURCES_SOCKET", ""),
        ("AMBIT_CDI_DIR", ""),
    ];
    let agents = agents(&env, 1, &off).await?;
    let agent = &agents[0].0;
    create_set(&env, "off", 1, json!({ "devices": ["x"] }), true).await?;
    devices(&env, 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(socket_files(&agent.kubelet_dir.join("device-plugins")).is_empty());
    assert!(socket_files(&agent.cdi_dir).is_empty());
    Ok(())
}
