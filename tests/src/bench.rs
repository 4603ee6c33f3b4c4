//! What the latency benchmarks share: the release agent they time, and one
//! way to summarise their samples, so every figure in docs/benchmarks.md is
//! taken and printed alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::Device;
use anyhow::{Context, bail};
use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::{self, Event};

/// The agent to time: `AMBIT_AGENT_BIN` when set, else a release
/// `ambit-agent` built now with its default features (the software as
/// shipped), by the `cargo` running the bench.
pub fn release_agent() -> anyhow::Result<PathBuf> {
    release_binary("ambit-agent", "ambit-agent", "AMBIT_AGENT_BIN")
}

/// A release build of `bin` from `package`, made now with its default
/// features by the `cargo` running the bench; `$env_var` names a binary to
/// use instead.
pub fn release_binary(package: &str, bin: &str, env_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Ok(path.into());
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "--release", "-p", package, "--bin", bin])
        .status()
        .with_context(|| format!("failed to run cargo build for {bin}"))?;
    if !status.success() {
        bail!("cargo build --release -p {package} --bin {bin} failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join("release").join(bin))
}

/// Whether the bench binary was started by `cargo bench` (which passes
/// `--bench`); under `cargo test` a bench only says how to run it.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A number from the environment, or `default` when unset.
pub fn count_from_env(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// Latency samples, summarised as the docs show them.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Adds one sample.
    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile (nearest rank), `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = (sorted.len() as f64 * q).ceil() as usize;
        sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
    }

    /// `p50 … ms   p90 … ms   max … ms   min … ms`.
    pub fn summary(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        format!(
            "p50 {:.1} ms   p90 {:.1} ms   max {:.1} ms   min {:.1} ms",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.0.iter().max().copied()),
            ms(self.0.iter().min().copied()),
        )
    }
}

/// Every Device created in a namespace, with the moment a watch on the API
/// server saw it: what the latency benches time their events against.
#[derive(Debug)]
pub struct Creations {
    seen: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    first: HashMap<String, Instant>,
}

impl Creations {
    /// Starts watching `api`'s Devices (on a task of the current runtime).
    pub fn watch(api: Api<Device>) -> Self {
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                if let Ok(Event::Apply(device) | Event::InitApply(device)) = event {
                    let _ = tx.send((device.spec.id.clone(), Instant::now()));
                }
            }
        });
        Self {
            seen,
            first: HashMap::new(),
        }
    }

    /// When the Device whose `spec.id` is `id` was first seen, waiting up
    /// to `timeout` for it.
    pub async fn of(&mut self, id: &str, timeout: Duration) -> anyhow::Result<Instant> {
        loop {
            if let Some(at) = self.first.get(id) {
                return Ok(*at);
            }
            match tokio::time::timeout(timeout, self.seen.recv()).await {
                Ok(Some((seen, at))) => {
                    self.first.entry(seen).or_insert(at);
                }
                Ok(None) => bail!("the Device watch ended"),
                Err(_) => bail!("no Device for {id} within {timeout:?}"),
            }
        }
    }
}

/// `release` or `debug`: the profile the bench itself was built with.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The machine's cores, as the figures' headers name them.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// Appends `line` to `path` as one line of JSON (the scale benches'
/// `AMBIT_BENCH_JSON`, read by `scripts/plot-benchmarks.py`).
pub fn append_json_line(
    path: &std::path::Path,
    line: &impl serde::Serialize,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut text = serde_json::to_string(line).context("failed to encode the JSON line")?;
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {} to append to", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to append to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut l = Latencies::default();
        assert_eq!(l.quantile(0.5), None);
        for ms in [5, 1, 4, 2, 3, 10, 9, 8, 7, 6] {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.quantile(0.5), Some(Duration::from_millis(5)));
        assert_eq!(l.quantile(0.9), Some(Duration::from_millis(9)));
        assert_eq!(l.quantile(1.0), Some(Duration::from_millis(10)));
        assert_eq!(l.quantile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(
            l.summary(),
            "p50 5.0 ms   p90 9.0 ms   max 10.0 ms   min 1.0 ms"
        );
    }
}
