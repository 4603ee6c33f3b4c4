//! Starts the test control plane and keeps it running until Ctrl-C, for
//! poking at it by hand: `cargo run -p ambit-tests --bin ambit-controlplane`.
//! Prints the kubeconfig's path; with `--nodes N` it also creates N KWOK
//! nodes, with `--real-nodes N` (as root) N real nodes (a kubelet and
//! containerd each, see `ambit_tests::realnode`), into which `--images DIR`
//! imports the OCI archives `make images` wrote there. Everything is undone
//! when the process ends, however it ends.

use std::io::Write;
use std::path::PathBuf;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn number(name: &str) -> anyhow::Result<usize> {
    match arg(name) {
        Some(n) => n
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} takes a number, got {n:?}")),
        None => Ok(0),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = number("--nodes")?;
    let real = u8::try_from(number("--real-nodes")?)?;
    let images = match arg("--images") {
        Some(dir) => ambit_tests::realnode::images::archives_in(&PathBuf::from(dir))?,
        None => vec![],
    };
    // Real nodes borrow the control plane for as long as the process lives.
    let cp: &'static ambit_tests::ControlPlane =
        Box::leak(Box::new(ambit_tests::ControlPlane::start().await?));
    let client = cp.client().await?;
    ambit_tests::crds::install(&client).await?;
    let names = ambit_tests::nodes::create(&client, "kwok-node", nodes, &[]).await?;
    let real_nodes = if real > 0 {
        Some(ambit_tests::realnode::RealNodes::start(cp, "real", real, &images).await?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "control plane ready in {:.1?} at {}",
        cp.start_time, cp.server
    )?;
    writeln!(out, "nodes: {names:?}")?;
    if let Some(real) = &real_nodes {
        writeln!(out, "real nodes: {:?}", real.names())?;
    }
    writeln!(out, "export KUBECONFIG={}", cp.kubeconfig.display())?;
    writeln!(out, "logs: {}", cp.log_dir().display())?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
