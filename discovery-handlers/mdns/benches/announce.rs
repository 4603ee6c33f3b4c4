//! Announcement latency of the mdns handler:
//! `cargo bench -p ambit-mdns --bench announce`.
//!
//! The tests' link (tests/support: two network namespaces joined by a veth
//! pair; needs root) with python-zeroconf as the responder in one and the
//! handler in the other, as the agent embeds it. Each round the responder
//! is told to register a new service without probing (python-zeroconf's
//! `cooperating_responders`, so its first announcement goes out at once),
//! timing from just before the command is written to the responder's stdin
//! to the handler's stream yielding a set with the device; then the
//! service's goodbye, waited for, before the next round. This is the
//! handler's share of "announcement → Device" (the responder's command
//! parsing included): the agent's write of the Device object comes on top
//! (see the udev bench for that part).
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_ANNOUNCES` | 25 | announcements |
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
use support::{Discovery, Lan, RESPONDER_V4, RESPONDER_V6, Responder};

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() -> anyhow::Result<()> {
    if !bench::is_bench_run() {
        say!("announce: a benchmark; run it with `cargo bench -p ambit-mdns --bench announce`");
        return Ok(());
    }
    let rounds = bench::count_from_env("AMBIT_BENCH_ANNOUNCES", 25)?.max(1);
    let Some(lan) = Lan::new() else {
        return Ok(());
    };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery = Discovery::start(json!({"serviceTypes": ["_http._tcp"]})).await;
        let mut latencies = Latencies::default();
        for round in 0..rounds {
            let name = format!("bench-{round:03}");
            let id = format!("{name}._http._tcp.local");
            let service = json!({"op": "register", "name": name, "type": "_http._tcp",
                "port": 8080, "txt": {"round": round}, "fast": true,
                "addresses": [RESPONDER_V4, RESPONDER_V6]});
            let sent = Instant::now();
            responder.send(&service);
            discovery.until(&[id.as_str()]).await;
            latencies.push(sent.elapsed());
            tokio::task::block_in_place(|| responder.expect("ok"));
            let mut goodbye = service;
            goodbye["op"] = "unregister".into();
            responder.run(&goodbye);
            discovery.until(&[]).await;
        }
        say!(
            "mdns announce latency: service announced (python-zeroconf) → device in the handler's set, {} announcements, {} profile, {} cores",
            latencies.len(),
            bench::profile(),
            bench::cores()
        );
        say!("  {}", latencies.summary());
    });
    Ok(())
}
