//! Sparkplug birth → Device object, through a real agent:
//! `cargo bench -p ambit-mqtt --bench device`.
//!
//! A real control plane (the ambit-tests harness), one KWOK node and a
//! release-built `ambit-agent` with its default features (the mqtt handler
//! embedded, as shipped), Debian's mosquitto on loopback and a Sparkplug B
//! edge node on Eclipse Tahu's Node.js client. Each round the edge node is
//! told to publish the DBIRTH of a device not seen before (so each round
//! makes a new Device), timing from just before the command is written to
//! the node's stdin to the Device's creation as a watch on the API server
//! reports it. `benches/birth.rs` times the handler's share alone.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_BIRTHS` | 25 | birth events |
//! | `AMBIT_AGENT_BIN` | a release build made now | the `ambit-agent` to run |
//!
//! Prints p50/p90/max; never fails for being slow. Under `cargo test` (no
//! `--bench` argument) it only says how to run it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a panic ends it with the reason"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{DeviceSet, HandlerState};
use ambit_tests::agents::Agent;
use ambit_tests::bench::{self, Creations, Latencies};
use ambit_tests::{TestEnv, crds, nodes, wait};
use anyhow::bail;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{EdgeNode, Mosquitto, PASSWORD, USER};

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() -> anyhow::Result<()> {
    if !bench::is_bench_run() {
        say!("device: a benchmark; run it with `cargo bench -p ambit-mqtt --bench device`");
        return Ok(());
    }
    let births = bench::count_from_env("AMBIT_BENCH_BIRTHS", 25)?.max(1);
    let agent = bench::release_agent()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Box::pin(run(agent, births)))
}

async fn run(agent_bin: PathBuf, births: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Mosquitto::start(dir.path(), None);
    let env = TestEnv::new("mqtt-device").await?;
    crds::install(&env.client).await?;
    let node = nodes::create(&env.client, &env.namespace, 1, &[])
        .await?
        .remove(0);
    let agent = Agent::start(env.control_plane, &agent_bin, &node, &env.namespace)?;
    agent.wait_ready().await?;

    let mut creations = Creations::watch(env.api());

    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": "plant", "namespace": env.namespace },
        "spec": { "discovery": {
            "handler": "mqtt",
            "details": { "brokers": [broker.url()], "groups": ["plant"] },
            "properties": [
                { "name": "MQTT_USERNAME", "value": USER },
                { "name": "MQTT_PASSWORD", "value": PASSWORD },
            ],
        } },
    }))?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(&PostParams::default(), &set).await?;
    wait::until(
        &sets,
        "plant",
        Duration::from_secs(30),
        "the handler to run",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes
                    .iter()
                    .any(|n| n.handler == HandlerState::Available)
            })
        },
    )
    .await?;
    let mut edge = EdgeNode::start(&broker.url(), PASSWORD, "bench", &[], 0);
    edge.expect("born");
    // Let the handler's subscription and the node's birth settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Latencies::default();
    for round in 0..births {
        let device = format!("meter-{round}");
        let id = format!("spb://plant/bench/{device}");
        let sent = Instant::now();
        edge.send(&format!("dbirth {device}"));
        let created = match creations.of(&id, Duration::from_secs(30)).await {
            Ok(at) => at,
            Err(error) => bail!("{error}; agent log:\n{}", agent.log()),
        };
        latencies.push(created.saturating_duration_since(sent));
        // Apart, so each round times one birth, not a queue of them.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(edge);
    drop(agent);

    say!(
        "mqtt birth → Device: DBIRTH published (Tahu edge node) → Device created (watch), {} births, release agent, {} cores",
        latencies.len(),
        bench::cores()
    );
    say!("  {}", latencies.summary());
    Ok(())
}
