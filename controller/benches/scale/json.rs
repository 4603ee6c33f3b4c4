//! Machine-readable figures: with `AMBIT_BENCH_JSON=<path>`, the run's
//! figures are appended to that file as one JSON object on one line (JSON
//! Lines), for `scripts/plot-benchmarks.py`. The figures are the ones the
//! bench prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// The run's line. Times in seconds, memory in MiB.
#[derive(Debug, Serialize)]
pub struct RunLine {
    /// Which benchmark wrote the line: always `controller`.
    pub bench: &'static str,
    /// KWOK nodes.
    pub nodes: usize,
    /// Local Devices per node.
    pub devices_per_node: usize,
    /// Devices in all, one broker pod each.
    pub devices: usize,
    /// Controller start → every broker pod Running (the convergence time).
    pub convergence_s: f64,
    /// Controller start → every broker pod created (the controller's part).
    pub created_s: f64,
    /// Controller start → every broker pod bound (kube-scheduler's part).
    pub bound_s: f64,
    /// The same writes from one plain client.
    pub floor_s: f64,
    /// Convergence ÷ floor.
    pub ratio: f64,
    /// Every pod created ÷ floor.
    pub created_ratio: f64,
    /// Controller CPU time over the convergence.
    pub controller_cpu_s: f64,
    /// That CPU time as the bench prints it: % of one core over the time
    /// from the controller's start to after the 5 s settle and the scrape,
    /// not over the convergence alone.
    pub controller_cpu_pct: f64,
    /// Controller VmRSS at convergence.
    pub controller_rss_mib: f64,
    /// Controller VmHWM (peak) at convergence.
    pub controller_hwm_mib: f64,
    /// POST pods (the brokers) per Device during convergence.
    pub pod_posts_per_device: f64,
    /// Writes of devices/status per Device during convergence.
    pub device_status_writes_per_device: f64,
    /// Every write during convergence per Device, all clients, by
    /// `VERB resource.group`.
    pub writes_per_device: BTreeMap<String, f64>,
    /// The quiet window's length.
    pub quiet_s: f64,
    /// Writes to Ambit's objects, pods, Services, Jobs and Events over the
    /// quiet window (the target is 0).
    pub at_rest_writes: f64,
    /// Controller CPU over the quiet window, % of one core.
    pub at_rest_cpu_pct: f64,
    /// Controller VmRSS at the end of the quiet window.
    pub at_rest_rss_mib: f64,
    /// `git rev-parse --short HEAD`; absent outside a git checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the line was written, UTC (RFC 3339).
    pub timestamp: String,
}

/// The checkout's commit, if there is one.
pub fn commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

/// Now, UTC, to the second.
pub fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Appends `line` to `path` as one line of JSON.
pub fn append(path: &Path, line: &RunLine) -> anyhow::Result<()> {
    ambit_tests::bench::append_json_line(path, line)
}
