//! Building the control plane's binaries from their Go modules, once.
//!
//! `tests/controlplane/go.mod` pins Kubernetes (and, through it, etcd); KWOK
//! and containerd are installed by module version. The binaries go into a
//! cache directory whose name carries the versions and a hash of go.mod and
//! go.sum, so a version bump builds afresh and everything else reuses the
//! cache:
//!
//! ```text
//! $AMBIT_CACHE_DIR (default ~/.cache/ambit)/controlplane/k8s-v1.36.3_kwok-v0.8.0_containerd-v2.3.7_<hash>/
//!     etcd  kube-apiserver  kube-controller-manager  kube-scheduler  kubelet  kwok
//!     containerd  containerd-shim-runc-v2  ctr
//! ```
//!
//! The kubelet and containerd are for real nodes ([`crate::realnode`]); the
//! Kubernetes binaries are stamped with their release (`-X` on
//! `k8s.io/component-base/version`), else they report `v0.0.0-master`.
//!
//! A lock file serializes builds between processes (test binaries, the demo),
//! and the binaries are moved into place only when all of them built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::Error;

/// The Kubernetes release the tests run against (see `controlplane/go.mod`).
pub const KUBERNETES_VERSION: &str = "v1.36.3";
/// The KWOK release that plays the kubelets.
pub const KWOK_VERSION: &str = "v0.8.0";
/// The containerd release real nodes run (CDI on by default from 2.0).
pub const CONTAINERD_VERSION: &str = "v2.3.7";

const GO_MOD: &str = include_str!("../controlplane/go.mod");
const GO_SUM: &str = include_str!("../controlplane/go.sum");

/// The control plane's binaries, built and cached.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The directory holding them all.
    pub dir: PathBuf,
    /// How long this call spent building (zero when the cache had them).
    pub build_time: Duration,
}

const NAMES: [&str; 9] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kwok",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
];

impl Binaries {
    /// The path of the binary `name` (one of etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler, kubelet, kwok, containerd,
    /// containerd-shim-runc-v2, ctr).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Returns the cached binaries, building them first if the cache lacks any.
    pub fn ensure() -> Result<Self, Error> {
        let dir = cache_root().join("controlplane").join(cache_key());
        if complete(&dir) {
            return Ok(Self {
                dir,
                build_time: Duration::ZERO,
            });
        }
        let parent = dir.parent().unwrap_or(&dir).to_owned();
        std::fs::create_dir_all(&parent)
            .map_err(|source| Error::io(format!("create {}", parent.display()), source))?;
        let lock = std::fs::File::create(parent.join(".build.lock"))
            .map_err(|source| Error::io("create the build lock", source))?;
        lock.lock()
            .map_err(|source| Error::io("take the build lock", source))?;
        if complete(&dir) {
            return Ok(Self {
                dir,
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
        std::fs::rename(staging.path(), &dir).map_err(|source| {
            Error::io(format!("move the binaries to {}", dir.display()), source)
        })?;
        Ok(Self {
            dir,
            build_time: started.elapsed(),
        })
    }
}

fn complete(dir: &Path) -> bool {
    NAMES.iter().all(|name| dir.join(name).is_file())
}

/// `$AMBIT_CACHE_DIR`, else `$XDG_CACHE_HOME/ambit`, else `~/.cache/ambit`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AMBIT_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ambit");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("ambit")
}

fn cache_key() -> String {
    let mut hasher = Sha256::new();
    hasher.update(GO_MOD);
    hasher.update(GO_SUM);
    let hash: String = hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("k8s-{KUBERNETES_VERSION}_kwok-{KWOK_VERSION}_containerd-{CONTAINERD_VERSION}_{hash}")
}

fn build(out: &Path) -> Result<(), Error> {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("controlplane");
    let flags = ["-trimpath", "-ldflags=-s -w"];

    // etcd's main package is `go.etcd.io/etcd/server/v3`, which Go names `server`.
    let mut k8s = go();
    k8s.current_dir(&module)
        .arg("build")
        .arg("-trimpath")
        .arg(kubernetes_ldflags())
        .arg("-o")
        .arg(out)
        .args([
            "go.etcd.io/etcd/server/v3",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubelet",
        ]);
    run(k8s, "build etcd and Kubernetes")?;
    std::fs::rename(out.join("server"), out.join("etcd"))
        .map_err(|source| Error::io("rename etcd", source))?;

    let mut kwok = go();
    kwok.current_dir(out)
        .env("GOBIN", out)
        .arg("install")
        .args(flags)
        .arg(format!("sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"));
    run(kwok, "build KWOK")?;

    // containerd without cgo (no btrfs snapshotter, which needs its headers).
    let mut containerd = go();
    containerd
        .current_dir(out)
        .env("GOBIN", out)
        .env("CGO_ENABLED", "0")
        .arg("install")
        .args(flags)
        .args(["-tags", "no_btrfs"])
        .args(["containerd", "containerd-shim-runc-v2", "ctr"].map(|cmd| {
            format!("github.com/containerd/containerd/v2/cmd/{cmd}@{CONTAINERD_VERSION}")
        }));
    run(containerd, "build containerd")
}

/// `-ldflags` that strip the binaries and stamp them with the release, as
/// Kubernetes' own build does.
fn kubernetes_ldflags() -> String {
    let version = KUBERNETES_VERSION;
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default();
    let pkg = "k8s.io/component-base/version";
    format!(
        "-ldflags=-s -w -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} \
         -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
    )
}

fn go() -> Command {
    let mut cmd = Command::new("go");
    // Never download another Go toolchain: build with the one installed.
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false");
    cmd
}

fn run(mut cmd: Command, what: &'static str) -> Result<(), Error> {
    let output = cmd
        .output()
        .map_err(|source| Error::io(format!("{what}: run go"), source))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    Err(Error::Build {
        what,
        status: output.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}
