//! DNS-SD announcement → Device object, through a real agent:
//! `cargo bench -p ambit-mdns --bench device` (needs root: it makes network
//! namespaces).
//!
//! The tests' link (tests/support: two network namespaces joined by a veth
//! pair) with python-zeroconf as the responder in one; in the other, a
//! release `ambit-handler --handler mdns` (default features, as shipped),
//! registered over its unix socket with a release `ambit-agent` that runs in
//! the host's namespace (where the control plane's loopback is) on one KWOK
//! node. On a node the chart instead embeds the handler in an agent on the
//! host network; here the agent cannot join the link's namespace and still
//! reach the API server on loopback, so the external-handler path (one gRPC
//! message over a unix socket more) is what is timed.
//!
//! Each round the responder registers a new service without probing (so its
//! first announcement goes out at once), timing from just before the
//! command is written to the responder's stdin to the Device's creation as
//! a watch on the API server reports it. `benches/announce.rs` times the
//! handler's share alone.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_ANNOUNCES` | 25 | announcements |
//! | `AMBIT_AGENT_BIN` | a release build made now | the `ambit-agent` to run |
//! | `AMBIT_HANDLER_BIN` | a release build made now | the `ambit-handler` to run |
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
use std::process::Command;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{DeviceSet, HandlerState};
use ambit_tests::agents::Agent;
use ambit_tests::bench::{self, Creations, Latencies};
use ambit_tests::{TestEnv, crds, nodes, wait};
use anyhow::bail;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Lan, RESPONDER_V4, RESPONDER_V6, Responder};

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() -> anyhow::Result<()> {
    if !bench::is_bench_run() {
        say!("device: a benchmark; run it with `cargo bench -p ambit-mdns --bench device`");
        return Ok(());
    }
    let rounds = bench::count_from_env("AMBIT_BENCH_ANNOUNCES", 25)?.max(1);
    let agent = bench::release_agent()?;
    let handler = bench::release_binary("ambit-handlers", "ambit-handler", "AMBIT_HANDLER_BIN")?;
    let Some(lan) = Lan::new() else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Box::pin(run(&lan, &agent, &handler, rounds)))
}

async fn run(
    lan: &Lan,
    agent_bin: &std::path::Path,
    handler_bin: &std::path::Path,
    rounds: usize,
) -> anyhow::Result<()> {
    let mut responder = Responder::start(lan);
    let env = TestEnv::new("mdns-device").await?;
    crds::install(&env.client).await?;
    let node = nodes::create(&env.client, &env.namespace, 1, &[])
        .await?
        .remove(0);
    // The agent's own mdns handler off: the one on the link serves the name.
    let agent = Agent::start_with_env(
        env.control_plane,
        agent_bin,
        &node,
        &env.namespace,
        &[("AMBIT_HANDLERS", "debug-echo")],
    )?;
    agent.wait_ready().await?;
    let mut handler = Command::new("ip");
    handler
        .args(["netns", "exec", &lan.handler])
        .arg(handler_bin)
        .args(["--handler", "mdns"])
        .env("AMBIT_SOCKET_DIR", &agent.socket_dir)
        .env("RUST_LOG", "info");
    let handler = env.control_plane.spawn_process("mdns-handler", handler)?;

    let mut creations = Creations::watch(env.api());

    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": "web", "namespace": env.namespace },
        "spec": { "discovery": {
            "handler": "mdns",
            "details": { "serviceTypes": ["_http._tcp"] },
        } },
    }))?;
    let sets: Api<DeviceSet> = env.api();
    sets.create(&PostParams::default(), &set).await?;
    let running = wait::until(
        &sets,
        "web",
        Duration::from_secs(60),
        "the external mdns handler to run",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes
                    .iter()
                    .any(|n| n.handler == HandlerState::Available)
            })
        },
    )
    .await;
    if let Err(error) = running {
        bail!(
            "{error:#}\nagent log:\n{}\nhandler log:\n{}",
            agent.log(),
            ambit_tests::process::tail(handler.log(), 40)
        );
    }
    // Let the handler's first queries settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Latencies::default();
    for round in 0..rounds {
        let name = format!("bench-{round:03}");
        let id = format!("{name}._http._tcp.local");
        let service = json!({"op": "register", "name": name, "type": "_http._tcp",
            "port": 8080, "txt": {"round": round}, "fast": true,
            "addresses": [RESPONDER_V4, RESPONDER_V6]});
        let sent = Instant::now();
        responder.send(&service);
        let created = match creations.of(&id, Duration::from_secs(30)).await {
            Ok(at) => at,
            Err(error) => bail!(
                "{error}; agent log:\n{}\nhandler log:\n{}",
                agent.log(),
                ambit_tests::process::tail(handler.log(), 40)
            ),
        };
        latencies.push(created.saturating_duration_since(sent));
        tokio::task::block_in_place(|| responder.expect("ok"));
        // Apart, so each round times one announcement, not a queue of them.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(handler);
    drop(agent);

    say!(
        "mdns announce → Device: service announced (python-zeroconf) → Device created (watch), {} announcements, release agent + external handler, {} cores",
        latencies.len(),
        bench::cores()
    );
    say!("  {}", latencies.summary());
    Ok(())
}
