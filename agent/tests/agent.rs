//! The agent as a real process — several of them, one per KWOK node —
//! against the real control plane, with the debug-echo handler embedded.
//! Device presence is switched per node through each agent's debug-echo
//! state directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet, HandlerState};
use ambit_tests::agents::{Agent, ExternalHandler};
use ambit_tests::controllers::Controller;
use ambit_tests::{TestEnv, nodes, wait};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const AGENT: &str = env!("CARGO_BIN_EXE_ambit-agent");
const TIMEOUT: Duration = Duration::from_secs(30);

async fn env(test: &str) -> anyhow::Result<TestEnv> {
    let env = TestEnv::new(test).await?;
    ambit_tests::crds::install(&env.client).await?;
    Ok(env)
}

/// `count` KWOK nodes, each with a running, ready agent.
async fn agents(env: &TestEnv, count: usize) -> anyhow::Result<Vec<Agent>> {
    let names = nodes::create(&env.client, &env.namespace, count, &[]).await?;
    let mut agents = vec![];
    for name in names {
        agents.push(Agent::start(
            env.control_plane,
            AGENT.as_ref(),
            &name,
            &env.namespace,
        )?);
    }
    for agent in &agents {
        agent.wait_ready().await?;
    }
    Ok(agents)
}

/// The controller, which folds the agents' DeviceReports into shared
/// Devices: without it a shared device is reported but has no Device.
fn fold(env: &TestEnv) -> anyhow::Result<Controller> {
    let binary = Controller::sibling_binary(AGENT, "ambit-controller")?;
    Controller::start(env.control_plane, &binary, &env.namespace, "fold")
}

fn echo_set(name: &str, handler: &str, details: Value) -> anyhow::Result<DeviceSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": name },
        "spec": { "discovery": { "handler": handler, "details": details, "gracePeriodSeconds": 2 } },
    }))?)
}

fn nodes_of(device: &Device) -> Vec<String> {
    let mut nodes: Vec<String> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| n.node.clone())
        .collect();
    nodes.sort();
    nodes
}

fn sorted(names: &[&Agent]) -> Vec<String> {
    let mut nodes: Vec<String> = names.iter().map(|a| a.node.clone()).collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn a_shared_device_is_one_device_with_an_entry_per_node() -> anyhow::Result<()> {
    let env = env("shared").await?;
    let _controller = fold(&env)?;
    let agents = agents(&env, 3).await?;
    let sets: Api<DeviceSet> = env.api();
    let details =
        json!({ "shared": true, "devices": [{ "id": "plc-1", "properties": { "MODEL": "S7" } }] });
    sets.create(
        &PostParams::default(),
        &echo_set("plcs", "debug-echo", details)?,
    )
    .await?;

    let devices: Api<Device> = env.api();
    let all = sorted(&agents.iter().collect::<Vec<_>>());
    let seen = wait::list_until(&devices, TIMEOUT, "one Device seen by 3 nodes", |ds| {
        ds.len() == 1 && nodes_of(&ds[0]) == all
    })
    .await?;
    let device = &seen[0];
    assert_eq!(device.spec.id, "plc-1");
    assert!(device.spec.shared && device.spec.node.is_none());
    assert_eq!(device.spec.properties["MODEL"], "S7");
    let uid = device.uid();

    // The device vanishes on one node: only that entry goes, after the grace.
    let vanished = Instant::now();
    agents[1].set_offline(&["plc-1"])?;
    let others = sorted(&[&agents[0], &agents[2]]);
    let after = wait::list_until(&devices, TIMEOUT, "the entry of node 1 to go", |ds| {
        ds.len() == 1 && nodes_of(&ds[0]) == others
    })
    .await?;
    assert!(
        vanished.elapsed() >= Duration::from_secs(2),
        "the entry went before its 2 s grace"
    );
    assert_eq!(after[0].uid(), uid, "the Device is the same object");

    // It comes back: the entry returns on the same object.
    agents[1].set_offline(&[])?;
    let back = wait::list_until(&devices, TIMEOUT, "node 1 to see it again", |ds| {
        ds.len() == 1 && nodes_of(&ds[0]) == all
    })
    .await?;
    assert_eq!(back[0].uid(), uid);
    Ok(())
}

#[tokio::test]
async fn local_devices_are_one_device_per_node() -> anyhow::Result<()> {
    let env = env("local").await?;
    let agents = agents(&env, 2).await?;
    let sets: Api<DeviceSet> = env.api();
    let details = json!({ "devices": ["cam-1"] });
    sets.create(
        &PostParams::default(),
        &echo_set("cams", "debug-echo", details)?,
    )
    .await?;

    let devices: Api<Device> = env.api();
    let seen = wait::list_until(&devices, TIMEOUT, "a Device per node", |ds| {
        ds.len() == 2 && ds.iter().all(|d| nodes_of(d).len() == 1)
    })
    .await?;
    for agent in &agents {
        let mine: Vec<&Device> = seen
            .iter()
            .filter(|d| d.spec.node.as_deref() == Some(&agent.node))
            .collect();
        assert_eq!(mine.len(), 1, "one Device for {}", agent.node);
        assert_eq!(nodes_of(mine[0]), vec![agent.node.clone()]);
        assert!(!mine[0].spec.shared);
        assert_eq!(
            mine[0].name_any(),
            ambit_crds::names::device_name("cams", "cam-1", Some(&agent.node))
        );
    }
    Ok(())
}

/// Every Device's uid and node entries (with their `since`).
fn snapshot(devices: &[Device]) -> BTreeMap<String, (String, Vec<(String, String)>)> {
    devices
        .iter()
        .map(|d| {
            let entries = d
                .status
                .iter()
                .flat_map(|s| &s.nodes)
                .map(|n| (n.node.clone(), n.since.0.to_string()))
                .collect();
            (d.name_any(), (d.uid().unwrap_or_default(), entries))
        })
        .collect()
}

/// Every API write the agent made, whatever the resource (Events included).
async fn writes(agent: &Agent) -> anyhow::Result<f64> {
    let (_, text) = agent.get("/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("ambit_agent_api_writes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn an_agent_restart_changes_nothing() -> anyhow::Result<()> {
    let env = env("restart").await?;
    let _controller = fold(&env)?;
    let mut agents = agents(&env, 2).await?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(
        &PostParams::default(),
        &echo_set(
            "net",
            "debug-echo",
            json!({ "shared": true, "count": 3, "prefix": "net" }),
        )?,
    )
    .await?;
    sets.create(
        &PostParams::default(),
        &echo_set("usb", "debug-echo", json!({ "count": 2, "prefix": "usb" }))?,
    )
    .await?;
    let devices: Api<Device> = env.api();
    let before = wait::list_until(
        &devices,
        TIMEOUT,
        "3 shared and 4 local Devices with all entries",
        |ds| {
            ds.len() == 7
                && ds
                    .iter()
                    .all(|d| nodes_of(d).len() == if d.spec.shared { 2 } else { 1 })
        },
    )
    .await?;
    let before = snapshot(&before);

    agents[0].kill();
    agents[0].restart(env.control_plane)?;
    agents[0].wait_ready().await?;
    // Past the 2 s grace: anything the restart were to remove is gone by now.
    wait_metric(&agents[0], "ambit_agent_devices{", 5.0).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = snapshot(&devices.list(&Default::default()).await?.items);
    assert_eq!(
        after, before,
        "same Devices, same uids, same entries and since"
    );
    assert_eq!(
        writes(&agents[0]).await?,
        0.0,
        "the restarted agent wrote nothing at all"
    );
    Ok(())
}

/// Waits until the sum of the samples of `metric` (a line prefix) is `value`.
async fn wait_metric(agent: &Agent, metric: &str, value: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, text) = agent.get("/metrics").await?;
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if (sum - value).abs() < f64::EPSILON {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{metric} is {sum}, not {value}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_details_are_reported_in_the_set_status_and_touch_no_device() -> anyhow::Result<()> {
    let env = env("bad-details").await?;
    let agents = agents(&env, 1).await?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(
        &PostParams::default(),
        &echo_set("bad", "debug-echo", json!({ "devices": 5 }))?,
    )
    .await?;

    let reported = wait::until(
        &sets,
        "bad",
        TIMEOUT,
        "the agent to report the error",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.nodes.iter().any(|n| n.handler == HandlerState::Failing))
        },
    )
    .await?;
    let entry = &reported.status.unwrap_or_default().nodes[0];
    assert_eq!(entry.node, agents[0].node);
    assert!(
        entry.last_error.contains("devices"),
        "the handler's message names the field: {:?}",
        entry.last_error
    );
    let devices: Api<Device> = env.api();
    assert!(devices.list(&Default::default()).await?.items.is_empty());

    // Fixing the set fixes the status.
    let fix = json!({ "spec": { "discovery": { "details": { "devices": ["ok-1"] } } } });
    sets.patch("bad", &PatchParams::default(), &Patch::Merge(fix))
        .await?;
    wait::until(
        &sets,
        "bad",
        TIMEOUT,
        "the error to clear",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes.iter().any(|n| {
                    n.handler == HandlerState::Available
                        && n.last_error.is_empty()
                        && n.devices == 1
                })
            })
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_secret_change_reaches_the_handler() -> anyhow::Result<()> {
    let env = env("secret").await?;
    let _agents = agents(&env, 1).await?;
    let secrets: Api<Secret> = env.api();
    let secret = |token: &str| -> anyhow::Result<Secret> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "creds" },
            "stringData": { "token": token },
        }))?)
    };
    secrets
        .create(&PostParams::default(), &secret("first")?)
        .await?;
    let mut set = echo_set("secured", "debug-echo", json!({ "devices": ["d-1"] }))?;
    set.spec.discovery.properties = serde_json::from_value(json!([
        { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
    ]))?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(&PostParams::default(), &set).await?;

    let devices: Api<Device> = env.api();
    let digest = |ds: &[Device]| {
        ds.first().and_then(|d| {
            d.spec
                .properties
                .get("DEBUG_ECHO_PROPERTIES_DIGEST")
                .cloned()
        })
    };
    let first =
        wait::list_until(&devices, TIMEOUT, "the device", |ds| digest(ds).is_some()).await?;
    let first = digest(&first);
    for device in devices.list(&Default::default()).await?.items {
        let text = serde_json::to_string(&device)?;
        assert!(
            !text.contains("first"),
            "the secret's value is not in the Device: {text}"
        );
    }

    secrets
        .patch(
            "creds",
            &PatchParams::apply("test").force(),
            &Patch::Apply(secret("second")?),
        )
        .await?;
    wait::list_until(
        &devices,
        TIMEOUT,
        "the handler to get the new value",
        |ds| digest(ds).is_some() && digest(ds) != first,
    )
    .await?;
    Ok(())
}

fn handler_binary() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(AGENT).with_file_name("ambit-handler");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p ambit-handlers` (make test does)",
        path.display()
    );
    Ok(path)
}

#[tokio::test]
async fn a_handler_that_registers_late_is_used_within_a_second_and_survives_restarts()
-> anyhow::Result<()> {
    let env = env("late-handler").await?;
    let _controller = fold(&env)?;
    let agents = agents(&env, 1).await?;
    let sets: Api<DeviceSet> = env.api();
    let details = json!({ "shared": true, "devices": ["ext-1", "ext-2"] });
    sets.create(
        &PostParams::default(),
        &echo_set("ext", "debug-echo-external", details)?,
    )
    .await?;
    wait::until(
        &sets,
        "ext",
        TIMEOUT,
        "the handler to be reported missing",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes
                    .iter()
                    .any(|n| n.handler == HandlerState::Unavailable)
            })
        },
    )
    .await?;

    let registered = Instant::now();
    let mut handler = ExternalHandler::start(
        env.control_plane,
        &handler_binary()?,
        &agents[0],
        "debug-echo-external",
    )?;
    let devices: Api<Device> = env.api();
    let seen = wait::list_until(&devices, TIMEOUT, "the external handler's devices", |ds| {
        ds.len() == 2 && ds.iter().all(|d| nodes_of(d).len() == 1)
    })
    .await?;
    let latency = registered.elapsed();
    assert!(
        latency < Duration::from_secs(3),
        "found {latency:?} after the handler started"
    );
    let before = snapshot(&seen);

    // kill -9 the handler and start it again: nothing changes.
    handler.restart(env.control_plane)?;
    wait::until(
        &sets,
        "ext",
        TIMEOUT,
        "discovery to run again",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes
                    .iter()
                    .any(|n| n.handler == HandlerState::Available && n.devices == 2)
            })
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        snapshot(&devices.list(&Default::default()).await?.items),
        before
    );
    Ok(())
}

#[tokio::test]
async fn metrics_and_health_endpoints_tell_the_truth() -> anyhow::Result<()> {
    let env = env("metrics").await?;
    let agents = agents(&env, 1).await?;
    let agent = &agents[0];
    assert_eq!(agent.get("/healthz").await?.0, 200);
    assert_eq!(agent.get("/readyz").await?.0, 200);

    let sets: Api<DeviceSet> = env.api();
    sets.create(
        &PostParams::default(),
        &echo_set("m", "debug-echo", json!({ "count": 4, "prefix": "m" }))?,
    )
    .await?;
    sets.create(
        &PostParams::default(),
        &echo_set("broken", "debug-echo", json!({ "count": "x" }))?,
    )
    .await?;
    let devices: Api<Device> = env.api();
    wait::list_until(&devices, TIMEOUT, "4 Devices with entries", |ds| {
        ds.len() == 4 && ds.iter().all(|d| nodes_of(d).len() == 1)
    })
    .await?;
    let ns = &env.namespace;
    let node = &agent.node;
    wait_metric(
        agent,
        &format!("ambit_agent_devices{{namespace=\"{ns}\",device_set=\"m\",node=\"{node}\"}}"),
        4.0,
    )
    .await?;
    wait_metric(
        agent,
        "ambit_agent_api_writes_total{verb=\"apply\",resource=\"devices\"}",
        4.0,
    )
    .await?;
    wait_metric(
        agent,
        "ambit_agent_api_writes_total{verb=\"apply\",resource=\"devices/status\"}",
        4.0,
    )
    .await?;

    let (_, text) = agent.get("/metrics").await?;
    for expected in [
        "ambit_agent_discovery_latency_seconds_count{handler=\"debug-echo\"} 1",
        "ambit_agent_discovery_errors_total{handler=\"debug-echo\",category=\"invalid_details\"} 1",
        "ambit_agent_handler_connected{handler=\"debug-echo\",kind=\"embedded\"} 1",
        "ambit_agent_api_writes_total{verb=\"apply\",resource=\"devicesets/status\"}",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(
        !text.contains("ambit_agent_api_errors_total{"),
        "no failed writes:\n{text}"
    );
    Ok(())
}
