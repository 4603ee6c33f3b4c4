//! Hot-plug latency of the udev handler, end to end:
//! `cargo bench -p ambit-udev --bench hotplug`.
//!
//! A real control plane (the ambit-tests harness), one KWOK node, and a
//! release-built `ambit-agent` (with the udev handler embedded) running
//! under umockdev's preload, so its libudev sees a umockdev testbed. A
//! DeviceSet matches FTDI serial adapters. Each round plugs in an adapter
//! with a serial number not seen before (so each plug makes a new Device),
//! timing from just before the testbed is told to add it — the "add"
//! uevents follow within the command — to the Device object's creation as
//! a watch on the API server reports it; then unplugs it.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_PLUGS` | 20 | plug events |
//! | `AMBIT_AGENT_BIN` | a release build made now, default features | the `ambit-agent` to run (must have the `udev` feature) |
//!
//! Prints p50/p90/max; never fails for being slow. Under `cargo test` (no
//! `--bench` argument) it only says how to run it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_tests::agents::Agent;
use ambit_tests::bench::{self, Creations, Latencies};
use ambit_tests::{TestEnv, crds, nodes};
use anyhow::bail;
use kube::api::PostParams;
use support::Testbed;

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() -> anyhow::Result<()> {
    if !bench::is_bench_run() {
        say!("hotplug: a benchmark; run it with `cargo bench -p ambit-udev --bench hotplug`");
        return Ok(());
    }
    let plugs = bench::count_from_env("AMBIT_BENCH_PLUGS", 20)?;
    let agent = bench::release_agent()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Box::pin(bench(agent, plugs.max(1))))
}

async fn bench(agent_bin: PathBuf, plugs: usize) -> anyhow::Result<()> {
    let records = tempfile::tempdir()?;
    let template = std::fs::read_to_string(support::record("serial-adapter"))?;
    let mut testbed = Testbed::start().await?;

    let env = TestEnv::new("udev-hotplug").await?;
    crds::install(&env.client).await?;
    let node = nodes::create(&env.client, &env.namespace, 1, &[])
        .await?
        .remove(0);
    let agent = Agent::start_with_env(
        env.control_plane,
        &agent_bin,
        &node,
        &env.namespace,
        &testbed.env(),
    )?;
    agent.wait_ready().await?;

    let mut creations = Creations::watch(env.api());

    let set = serde_json::from_value(serde_json::json!({
        "apiVersion": "ambit.dev/v1alpha1",
        "kind": "DeviceSet",
        "metadata": { "name": "adapters", "namespace": env.namespace },
        "spec": { "discovery": {
            "handler": "udev",
            "details": { "rules": [r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403""#] },
            "gracePeriodSeconds": 0,
        } },
    }))?;
    env.api::<ambit_crds::v1alpha1::DeviceSet>()
        .create(&PostParams::default(), &set)
        .await?;

    let mut latencies = Latencies::default();
    for round in 0..plugs {
        let serial = format!("BENCH{round:04}");
        let name = format!("adapter-{round}");
        let path = records.path().join(format!("{name}.umockdev"));
        // New device nodes each time too: umockdev does not let a node
        // name be used again once taken.
        let record = template
            .replace("serial=A10K3XYZ", &format!("serial={serial}"))
            .replace("ttyUSB0", &format!("ttyUSB{round}"))
            .replace("MINOR=0", &format!("MINOR={round}"))
            .replace("dev=188:0", &format!("dev=188:{round}"))
            .replace("usb/001/003", &format!("usb/002/{:03}", round + 1));
        std::fs::write(&path, record)?;
        let id = format!("usb-0403:6001:{serial}/if00/tty");
        let plugged = Instant::now();
        testbed.add_file(&path).await?;
        let created = match creations.of(&id, Duration::from_secs(30)).await {
            Ok(at) => at,
            Err(error) => bail!("{error}; agent log:\n{}", agent.log()),
        };
        latencies.push(created.saturating_duration_since(plugged));
        testbed.remove(support::SERIAL_ADAPTER).await?;
        // Let the agent see the removal before the next plug.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(agent);
    testbed.stop().await;

    say!(
        "udev hot-plug latency: uevent \"add\" → Device created (watch), {} plugs, release agent, {} cores",
        latencies.len(),
        bench::cores()
    );
    say!("  {}", latencies.summary());
    Ok(())
}
