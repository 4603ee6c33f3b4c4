//! Helm, built from its Go module once per version and cached, for the
//! chart's tests (there is no Helm package in Debian).
//!
//! ```text
//! $AMBIT_CACHE_DIR (default ~/.cache/ambit)/helm/v4.3.1/helm
//! ```
//!
//! `scripts/setup.sh` builds it ahead of the tests (through the `ambit-helm`
//! binary, which then runs Helm with its arguments), so a cold CI run pays
//! for the build once, in setup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;
use crate::binaries::cache_root;

/// The Helm release the chart is tested with.
pub const HELM_VERSION: &str = "v4.3.1";

/// The Helm binary, built and cached.
#[derive(Debug, Clone)]
pub struct Helm {
    /// The binary.
    pub path: PathBuf,
    /// How long this call spent building (zero when the cache had it).
    pub build_time: Duration,
}

impl Helm {
    /// Returns the cached binary, building it first if the cache lacks it.
    pub fn ensure() -> Result<Self, Error> {
        let dir = cache_root().join("helm").join(HELM_VERSION);
        let path = dir.join("helm");
        if path.is_file() {
            return Ok(Self {
                path,
                build_time: Duration::ZERO,
            });
        }
        let parent = dir.parent().unwrap_or(&dir).to_owned();
        std::fs::create_dir_all(&parent)
            .map_err(|source| Error::io(format!("create {}", parent.display()), source))?;
        let lock = std::fs::File::create(parent.join(".build.lock"))
            .map_err(|source| Error::io("create the Helm build lock", source))?;
        lock.lock()
            .map_err(|source| Error::io("take the Helm build lock", source))?;
        if path.is_file() {
            return Ok(Self {
                path,
                build_time: Duration::ZERO,
            });
        }
        let started = Instant::now();
        let staging = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(&parent)
            .map_err(|source| Error::io("create a build directory", source))?;
        build(staging.path())?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(staging.path(), &dir)
            .map_err(|source| Error::io(format!("move Helm to {}", dir.display()), source))?;
        Ok(Self {
            path,
            build_time: started.elapsed(),
        })
    }

    /// Runs Helm with `args`, returning its standard output; a failure
    /// carries its standard error.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.path)
            .args(args)
            // Keep Helm's caches and config out of the user's home.
            .env(
                "HELM_CACHE_HOME",
                std::env::temp_dir().join("ambit-helm-cache"),
            )
            .env(
                "HELM_CONFIG_HOME",
                std::env::temp_dir().join("ambit-helm-config"),
            )
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }
}

/// The chart's directory in the repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("helm")
        .join("ambit")
}

fn build(out: &Path) -> Result<(), Error> {
    let mut go = Command::new("go");
    go.current_dir(out)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOBIN", out)
        .args(["install", "-trimpath", "-ldflags=-s -w"])
        .arg(format!("helm.sh/helm/v4/cmd/helm@{HELM_VERSION}"));
    let output = go
        .output()
        .map_err(|source| Error::io("build Helm: run go", source))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    Err(Error::Build {
        what: "build Helm",
        status: output.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}
