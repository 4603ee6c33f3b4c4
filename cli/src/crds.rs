//! `ambit crds`: the CRD manifests, generated from the Rust types.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct CrdsArgs {
    /// Write `<plural>.<group>.yaml` files into this directory instead of
    /// printing one multi-document YAML stream.
    #[arg(long, env = "AMBIT_CRDS_OUT")]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: CrdsArgs) -> anyhow::Result<()> {
    let CrdsArgs { out } = args;
    let manifests = ambit_crds::manifests().context("failed to render the CRDs as YAML")?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            for (file, yaml) in manifests {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (_, yaml) in manifests {
                write!(stdout, "---\n{yaml}").context("failed to write to stdout")?;
            }
        }
    }
    Ok(())
}
