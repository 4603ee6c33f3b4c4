//! Machine-readable figures: with `AMBIT_BENCH_JSON=<path>`, one JSON object
//! per scenario is appended to that file as a line (JSON Lines), for
//! `scripts/plot-benchmarks.py`. The figures are the ones the Markdown
//! tables print (`report.rs`), medians over the runs.
//!
//! ```text
//!  runs of a scenario ─► ScenarioLine (serde) ─► one line appended to $AMBIT_BENCH_JSON
//! ```

use std::path::Path;

use serde::Serialize;

use crate::report::{agent_write, command, median, mib, per_device, secs, stats};
use crate::run::{AgentFigures, Figures, Scenario};

/// One scenario's line. Times in seconds, memory in MiB.
#[derive(Debug, Serialize)]
pub struct ScenarioLine {
    /// Which benchmark wrote the line: always `agent`.
    pub bench: &'static str,
    /// `A` (one node, local devices) or `B` (shared devices on every node).
    pub scenario: &'static str,
    /// Devices in the DeviceSet.
    pub devices: usize,
    /// Nodes, one agent each.
    pub nodes: usize,
    /// Whether every node sees the same devices.
    pub shared: bool,
    /// Device objects the run ends with.
    pub device_objects: usize,
    /// Runs the figures are taken over.
    pub runs: usize,
    /// DeviceSet created → every Device has every node entry (median).
    pub convergence_median_s: f64,
    /// The same, the fastest run.
    pub convergence_min_s: f64,
    /// The same, the slowest run.
    pub convergence_max_s: f64,
    /// The same writes from one plain client (median).
    pub floor_s: f64,
    /// Convergence ÷ floor (median of the runs' ratios).
    pub ratio: f64,
    /// Agent API writes per device per node over the load window (median).
    pub writes_per_device_node: f64,
    /// CPU time per agent, created → settled (median over agents and runs).
    pub agent_cpu_s: f64,
    /// VmRSS before the DeviceSet, max over agents (median over runs).
    pub agent_rss_idle_mib: f64,
    /// VmRSS after the load, max over agents (median over runs).
    pub agent_rss_settled_mib: f64,
    /// VmHWM after the load, max over agents (median over runs).
    pub agent_hwm_mib: f64,
    /// The quiet window's length, on the last run; absent when not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_s: Option<f64>,
    /// Agent CPU over the quiet window, % of one core (median over agents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_rest_cpu_pct: Option<f64>,
    /// Agent API writes over the quiet window (the target is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_rest_writes: Option<f64>,
    /// `git rev-parse --short HEAD`; absent outside a git checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the line was written, UTC (RFC 3339).
    pub timestamp: String,
}

impl ScenarioLine {
    /// The line for `scenario` from its runs' figures.
    pub fn new(scenario: Scenario, runs: &[Figures]) -> Self {
        let max_over_agents = |f: &Figures, pick: fn(&AgentFigures) -> u64| {
            f.agents.iter().map(|a| mib(pick(a))).fold(0.0, f64::max)
        };
        let (convergence_median_s, convergence_min_s, convergence_max_s) =
            stats(runs.iter().map(|f| secs(f.converged)).collect());
        let agents_cpu = runs
            .iter()
            .flat_map(|f| f.agents.iter().map(|a| secs(a.cpu_load)))
            .collect();
        let quiet = runs.last().and_then(|f| f.quiet.as_ref());
        let commit = command("git", &["rev-parse", "--short", "HEAD"]);
        Self {
            bench: "agent",
            scenario: scenario.name,
            devices: scenario.devices,
            nodes: scenario.nodes,
            shared: scenario.shared,
            device_objects: scenario.objects(),
            runs: runs.len(),
            convergence_median_s,
            convergence_min_s,
            convergence_max_s,
            floor_s: median_of(runs, |f| secs(f.floor.took)),
            ratio: median_of(runs, |f| secs(f.converged) / secs(f.floor.took).max(1e-9)),
            writes_per_device_node: median_of(runs, |f| {
                per_device(scenario, f.load.sum(agent_write))
            }),
            agent_cpu_s: stats(agents_cpu).0,
            agent_rss_idle_mib: median_of(runs, |f| max_over_agents(f, |a| a.idle.rss)),
            agent_rss_settled_mib: median_of(runs, |f| max_over_agents(f, |a| a.loaded.rss)),
            agent_hwm_mib: median_of(runs, |f| max_over_agents(f, |a| a.loaded.hwm)),
            quiet_s: quiet.map(|q| secs(q.window)),
            at_rest_cpu_pct: quiet.map(|q| {
                let window = secs(q.window);
                stats(q.cpu.iter().map(|c| secs(*c) / window * 100.0).collect()).0
            }),
            at_rest_writes: quiet.map(|q| q.delta.sum(agent_write) + 0.0),
            commit: (!commit.is_empty()).then_some(commit),
            timestamp: k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        }
    }
}

/// The median over the runs of one figure.
fn median_of(runs: &[Figures], figure: impl Fn(&Figures) -> f64) -> f64 {
    median(&mut runs.iter().map(figure).collect::<Vec<_>>())
}

/// Appends `line` to `path` as one line of JSON.
pub fn append(path: &Path, line: &ScenarioLine) -> anyhow::Result<()> {
    ambit_tests::bench::append_json_line(path, line)
}
