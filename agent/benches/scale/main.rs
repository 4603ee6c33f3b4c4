//! The agent at scale (issue 3 §6), on a real control plane with KWOK nodes:
//! `cargo bench -p ambit-agent --bench scale`.
//!
//! - A: one agent, one node, a DeviceSet of 1,000 local debug-echo devices.
//! - B: ten agents on ten nodes seeing the same 1,000 shared devices.
//! - C (not run by default): `AMBIT_BENCH_NODES` agents, each seeing its own
//!   `AMBIT_BENCH_DEVICES` local devices (issue 16's C is 100 × 100).
//!
//! For each: convergence time (DeviceSet applied → every Device with every
//! node entry, seen through a watch), API requests per device and node
//! (kube-apiserver's `apiserver_request_total`, scraped before and after,
//! by verb and resource), the agents' memory (VmRSS, VmHWM) and CPU
//! (utime + stime), then a quiet window and the writes made during it.
//! Each run gets a fresh control plane. It prints figures; it never fails
//! for being slow.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_RUNS` | 3 | runs per scenario (median, min, max) |
//! | `AMBIT_BENCH_QUIET_SECS` | 300 | the steady-state window, on the last run of each scenario |
//! | `AMBIT_BENCH_IDLE_SECS` | 10 | agents ready → DeviceSet created (the control plane settles) |
//! | `AMBIT_BENCH_DEVICES` | 1000 | devices in the DeviceSet (in C: per node) |
//! | `AMBIT_BENCH_NODES` | 10 | nodes (agents) in scenarios B and C |
//! | `AMBIT_BENCH_SCENARIOS` | a,b | which scenarios |
//! | `AMBIT_BENCH_METRICS_DIR` | — | keep kube-apiserver's raw /metrics scrapes there |
//! | `AMBIT_BENCH_JSON` | — | append each scenario's figures to this file, one JSON object a line (`json.rs`); a relative path is from `agent/`, where cargo runs the bench |
//! | `AMBIT_AGENT_BIN` | the bench's own build | the agent binary to measure |
//! | `AMBIT_BENCH_AGENT_ENV` | — | more environment for the agents, `K=V,K=V`: for ablations (`AMBIT_DEVICE_PLUGIN_DIR=,AMBIT_CDI_DIR=,AMBIT_DRA=false` switches pod access off); figures as shipped are taken without it |
//! | `AMBIT_CONTROLLER_BIN` | `ambit-controller` beside the agent (`cargo build --release -p ambit-controller`) | the controller scenario B runs: it folds the agents' reports into the shared Devices |
//!
//! Under `cargo test` (no `--bench` argument) it only says how to run it.

mod floor;
mod json;
// The device-plugin tests' played kubelet; the bench uses a part of it.
#[allow(dead_code)]
#[path = "../../tests/support/kubelet.rs"]
mod kubelet;
mod report;
mod run;

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use report::say;
use run::Scenario;

#[derive(Debug)]
struct Config {
    runs: usize,
    quiet: Duration,
    idle: Duration,
    devices: usize,
    nodes: usize,
    scenarios: String,
    metrics_dir: Option<std::path::PathBuf>,
    json: Option<std::path::PathBuf>,
}

fn env_or<T: FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value:?}: {e}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        say!("scale: a benchmark; run it with `cargo bench -p ambit-agent --bench scale`");
        return Ok(());
    }
    let config = Config {
        runs: env_or("AMBIT_BENCH_RUNS", 3)?.max(1),
        quiet: Duration::from_secs(env_or("AMBIT_BENCH_QUIET_SECS", 300)?),
        idle: Duration::from_secs(env_or("AMBIT_BENCH_IDLE_SECS", 10)?),
        devices: env_or("AMBIT_BENCH_DEVICES", 1000)?,
        nodes: env_or("AMBIT_BENCH_NODES", 10)?,
        scenarios: env_or("AMBIT_BENCH_SCENARIOS", "a,b".to_owned())?,
        metrics_dir: std::env::var_os("AMBIT_BENCH_METRICS_DIR").map(Into::into),
        json: std::env::var_os("AMBIT_BENCH_JSON").map(Into::into),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Box::pin(bench(config)))
}

async fn bench(config: Config) -> anyhow::Result<()> {
    report::machine(&config)?;
    let mut scenarios = vec![];
    for name in config.scenarios.split(',').map(str::trim) {
        scenarios.push(match name {
            "a" => Scenario {
                name: "A",
                nodes: 1,
                devices: config.devices,
                shared: false,
            },
            "b" => Scenario {
                name: "B",
                nodes: config.nodes,
                devices: config.devices,
                shared: true,
            },
            "c" => Scenario {
                name: "C",
                nodes: config.nodes,
                devices: config.devices,
                shared: false,
            },
            other => anyhow::bail!("no scenario {other:?} (a, b, c)"),
        });
    }
    for scenario in scenarios {
        let mut runs = Vec::with_capacity(config.runs);
        for i in 0..config.runs {
            let options = run::Options {
                idle: config.idle,
                quiet: if i + 1 == config.runs {
                    config.quiet
                } else {
                    Duration::ZERO
                },
                metrics_dir: config.metrics_dir.clone(),
                tag: format!("{}-{}", scenario.name, i + 1),
            };
            let figures = run::run(scenario, &options).await?;
            report::run(scenario, i + 1, &figures)?;
            runs.push(figures);
        }
        report::scenario(scenario, &runs)?;
        if let Some(path) = &config.json {
            json::append(path, &json::ScenarioLine::new(scenario, &runs))?;
        }
    }
    Ok(())
}
