//! Images for real nodes: Ambit's own (built by `make images` from the
//! Containerfiles under `deploy/images/`) and the pause image every pod
//! sandbox starts with, built from Kubernetes' own `pause.c`.
//!
//! Nothing is pulled: the archives are imported into each node's containerd.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries::{KUBERNETES_VERSION, cache_root};

/// An OCI image archive and the reference it is imported as.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The archive (an OCI layout in a tar).
    pub path: PathBuf,
    /// `registry/repository:tag`.
    pub reference: String,
}

impl Archive {
    /// The reference without its tag (what `ctr images import --base-name`
    /// takes; the tag comes from the archive's `ref.name` annotation).
    pub fn repository(&self) -> &str {
        match self.reference.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => &self.reference,
        }
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The images of the repository's Containerfiles, built by
/// `make images PROFILE=debug` from the binaries the workspace build made
/// (`cargo build --workspace --bins`; `make test` does) into `out`.
pub fn project_images(out: &Path) -> anyhow::Result<Vec<Archive>> {
    let mut make = Command::new("make");
    make.current_dir(repo())
        .args(["--no-print-directory", "images", "PROFILE=debug"])
        .arg(format!("IMAGES_OUT={}", out.display()));
    let output = make.output()?;
    anyhow::ensure!(
        output.status.success(),
        "make images failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    archives_in(out)
}

/// The archives in `dir`, with the reference each carries.
pub fn archives_in(dir: &Path) -> anyhow::Result<Vec<Archive>> {
    let mut archives = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".oci.tar") {
            archives.push(Archive {
                reference: format!("ghcr.io/ambit-dev/{name}:{}", env!("CARGO_PKG_VERSION")),
                path: path.clone(),
            });
        }
    }
    archives.sort_by(|a, b| a.path.cmp(&b.path));
    anyhow::ensure!(
        !archives.is_empty(),
        "no image archives in {}",
        dir.display()
    );
    Ok(archives)
}

/// The pause image, built once per Kubernetes version into the cache:
/// Kubernetes' `build/pause/linux/pause.c` from the Go module cache,
/// linked statically, packed by `deploy/images/build.py` from
/// `tests/images/pause.Containerfile`.
pub fn pause() -> anyhow::Result<Archive> {
    let dir = cache_root()
        .join("realnode")
        .join(format!("pause-{KUBERNETES_VERSION}"));
    let archive = Archive {
        path: dir.join("ambit-pause.oci.tar"),
        reference: super::PAUSE_IMAGE.to_owned(),
    };
    if archive.path.is_file() {
        return Ok(archive);
    }
    let binary = repo().join("target/realnode/pause");
    std::fs::create_dir_all(binary.parent().unwrap_or(&dir))?;
    let source = module_cache()?
        .join(format!("k8s.io/kubernetes@{KUBERNETES_VERSION}"))
        .join("build/pause/linux/pause.c");
    let mut gcc = Command::new("gcc");
    gcc.args(["-Os", "-static", "-Wall", "-Werror", "-s"])
        .arg(format!("-DVERSION={KUBERNETES_VERSION}-ambit"))
        .arg("-o")
        .arg(&binary)
        .arg(&source);
    super::network::run(gcc)?;
    let mut build = Command::new("python3");
    build
        .arg(repo().join("deploy/images/build.py"))
        .args(["--profile", "debug", "--out"])
        .arg(&dir)
        .arg(repo().join("tests/images/pause.Containerfile"));
    super::network::run(build)?;
    anyhow::ensure!(
        archive.path.is_file(),
        "build.py did not write {}",
        archive.path.display()
    );
    Ok(archive)
}

fn module_cache() -> anyhow::Result<PathBuf> {
    let output = Command::new("go").args(["env", "GOMODCACHE"]).output()?;
    anyhow::ensure!(output.status.success(), "go env GOMODCACHE failed");
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}
