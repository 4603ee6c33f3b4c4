//! `make demo`: a local cluster with simulated devices, Ambit's agents and
//! controller, and a live table of devices and brokers. `--until-converged`
//! exits once everything runs (used by a test). `--prepare` only installs
//! what the simulated devices need into the cache (`make setup` runs it).

use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--prepare") {
        return ambit_tests::demo::prepare(&mut std::io::stdout());
    }
    let until_converged = args.iter().any(|a| a == "--until-converged");
    let nodes = match args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
    {
        Some(n) => n
            .parse()
            .map_err(|_| anyhow::anyhow!("--nodes takes a number, got {n:?}"))?,
        None => 3,
    };
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
    let examples_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    ambit_tests::demo::run(
        bin_dir,
        nodes,
        &examples_dir,
        until_converged,
        Duration::from_secs(120),
    )
    .await
}
