//! Starts the test control plane and keeps it running until Ctrl-C, for
//! poking at it by hand: `cargo run -p ambit-tests --bin ambit-controlplane`.
//! Prints the kubeconfig's path; with `--nodes N` it also creates N KWOK nodes.

use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes: usize = match std::env::args().skip_while(|a| a != "--nodes").nth(1) {
        Some(n) => n
            .parse()
            .map_err(|_| anyhow::anyhow!("--nodes takes a number, got {n:?}"))?,
        None => 0,
    };
    let cp = ambit_tests::ControlPlane::start().await?;
    let client = cp.client().await?;
    ambit_tests::crds::install(&client).await?;
    let names = ambit_tests::nodes::create(&client, "kwok-node", nodes, &[]).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "control plane ready in {:.1?} at {}",
        cp.start_time, cp.server
    )?;
    writeln!(out, "nodes: {names:?}")?;
    writeln!(out, "export KUBECONFIG={}", cp.kubeconfig.display())?;
    writeln!(out, "logs: {}", cp.log_dir().display())?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
