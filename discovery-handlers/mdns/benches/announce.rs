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
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Discovery, Lan, RESPONDER_V4, RESPONDER_V6, Responder};

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        say!("announce: a benchmark; run it with `cargo bench -p ambit-mdns --bench announce`");
        return;
    }
    let rounds: usize = std::env::var("AMBIT_BENCH_ANNOUNCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .max(1);
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery = Discovery::start(json!({"serviceTypes": ["_http._tcp"]})).await;
        let mut latencies = Vec::with_capacity(rounds);
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
        report(latencies);
    });
}

fn report(mut latencies: Vec<Duration>) {
    latencies.sort();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    say!(
        "mdns announce latency: service announced (python-zeroconf) → device in the handler's set, {} announcements, {} profile, {} cores",
        latencies.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    say!(
        "  p50 {:.1} ms   p90 {:.1} ms   max {:.1} ms   min {:.1} ms",
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(latencies[latencies.len() - 1]),
        ms(latencies[0]),
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
