//! Birth latency of the mqtt handler: `cargo bench -p ambit-mqtt --bench birth`.
//!
//! Debian's mosquitto on loopback and a Sparkplug B edge node on Eclipse
//! Tahu's Node.js client (the tests' peers, `tests/support`); the handler
//! runs in this process, as the agent embeds it. Each round the node is
//! told to publish its births (NBIRTH + DBIRTH of a device), timing from
//! just before the command is written to the node's stdin to the handler's
//! stream yielding a set with the device; then the device's DDEATH, waited
//! for, before the next round. This is the handler's share of "birth →
//! Device": the agent's write of the Device object comes on top (see the
//! udev bench for that part).
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_BIRTHS` | 25 | birth events |
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
use std::time::Instant;

use ambit_tests::bench::{self, Latencies};
use serde_json::json;
use support::{Discovery, EdgeNode, Mosquitto, PASSWORD, USER};

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() {
    if !bench::is_bench_run() {
        say!("birth: a benchmark; run it with `cargo bench -p ambit-mqtt --bench birth`");
        return;
    }
    let births = bench::count_from_env("AMBIT_BENCH_BIRTHS", 25)
        .unwrap()
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(births));
}

async fn bench(births: usize) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), None);
    let mut discovery = Discovery::start(
        json!({"brokers": [broker.url()]}),
        &[("MQTT_USERNAME", USER), ("MQTT_PASSWORD", PASSWORD)],
    )
    .await;
    let mut node = EdgeNode::start(&broker.url(), PASSWORD, "bench", &["meter"], 0);
    node.expect("born");
    let id = "spb://plant/bench/meter";
    discovery.until(&[id]).await;
    let mut latencies = Latencies::default();
    for _ in 0..births {
        node.send("ddeath meter");
        discovery.until(&[]).await;
        let sent = Instant::now();
        node.send("rebirth");
        discovery.until(&[id]).await;
        latencies.push(sent.elapsed());
    }
    say!(
        "mqtt birth latency: births published (Tahu edge node) → device in the handler's set, {} births, {} profile, {} cores",
        latencies.len(),
        bench::profile(),
        bench::cores()
    );
    say!("  {}", latencies.summary());
}
