//! Runs the Helm that Ambit's chart is tested with, building it first from
//! its Go module if the cache lacks it (once per version):
//! `cargo run -p ambit-tests --bin ambit-helm -- lint deploy/helm/ambit`.
//! `scripts/setup.sh` runs it once so that tests find Helm built.

use std::io::Write;
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let helm = ambit_tests::helm::Helm::ensure()?;
    if !helm.build_time.is_zero() {
        writeln!(
            std::io::stderr(),
            "built Helm {} in {:.0?} ({})",
            ambit_tests::helm::HELM_VERSION,
            helm.build_time,
            helm.path.display()
        )?;
    }
    let status = std::process::Command::new(&helm.path)
        .args(std::env::args_os().skip(1))
        .status()?;
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}
