//! Prints how long the control plane takes to build (cold or warm cache)
//! and to start, over several starts:
//! `cargo run --release -p ambit-tests --bin controlplane-bench -- [starts]`.
//!
//! Cold build: point `AMBIT_CACHE_DIR` at an empty directory (and clear
//! `go env GOCACHE` for a truly cold compile).

use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let starts: usize = std::env::args().nth(1).map_or(Ok(5), |n| n.parse())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "control plane: Kubernetes {}, KWOK {}, {} cores",
        ambit_tests::binaries::KUBERNETES_VERSION,
        ambit_tests::binaries::KWOK_VERSION,
        std::thread::available_parallelism().map_or(0, usize::from)
    )?;

    let before = Instant::now();
    let binaries = tokio::task::spawn_blocking(ambit_tests::binaries::Binaries::ensure).await??;
    let kind = if binaries.build_time.is_zero() {
        "cached (warm)"
    } else {
        "built (cold)"
    };
    writeln!(
        out,
        "binaries {kind}: {:.1?} in {}",
        before.elapsed(),
        binaries.dir.display()
    )?;

    let mut times: Vec<Duration> = Vec::with_capacity(starts);
    for i in 0..starts {
        let cp = ambit_tests::ControlPlane::start().await?;
        let client = cp.client().await?;
        let started = Instant::now();
        ambit_tests::nodes::create(&client, &format!("bench-{i}"), 1, &[]).await?;
        let node_ready = started.elapsed();
        writeln!(
            out,
            "start {}: ready in {:.2?}, first KWOK node Ready {:.2?} later",
            i + 1,
            cp.start_time,
            node_ready
        )?;
        times.push(cp.start_time);
        cp.shutdown();
    }
    times.sort();
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        writeln!(
            out,
            "start time over {starts} runs: median {:.2?}, min {min:.2?}, max {max:.2?}",
            times[times.len() / 2]
        )?;
    }
    Ok(())
}
