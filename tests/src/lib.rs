//! Ambit's test harness: a real Kubernetes control plane, started on
//! loopback for each test binary, and the helpers tests share.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let env = ambit_tests::TestEnv::new("my-test").await?; // shared control plane, fresh namespace
//! let nodes = ambit_tests::nodes::create(&env.client, "my-test", 2, &[]).await?; // KWOK nodes, Ready
//! # Ok(()) }
//! ```
//!
//! - [`binaries`]: builds etcd, Kubernetes and KWOK from Go modules, cached by version.
//! - [`controlplane`]: starts and supervises them.
//! - [`env`]: one control plane per test binary, one namespace per test, logs on failure.
//! - [`nodes`], [`crds`], [`wait`]: fake nodes, Ambit's CRDs, waiting on conditions.
//! - [`helm`], [`prometheus`]: Helm built from its Go module; Debian's Prometheus on loopback.
//! - [`bench`]: the release agent the latency benchmarks time, and their summary.
//! - [`fuzz`]: fuzz targets' corpora and seeded mutations, as plain tests on stable.
//! - [`peers`]: real protocol peers (mosquitto, Tahu edge nodes, python-zeroconf) for tests and the demo.

pub mod agents;
pub mod bench;
pub mod binaries;
pub mod controllers;
pub mod controlplane;
pub mod crds;
pub mod demo;
pub mod env;
pub mod fuzz;
pub mod helm;
pub mod metrics;
pub mod nodes;
pub mod peers;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod realnode;
pub mod wait;

pub use controlplane::ControlPlane;
pub use env::{TestEnv, shared_control_plane};

/// A free TCP port on 127.0.0.1 for a process started a moment later (free
/// now: another process may take it). It is picked below the kernel's
/// ephemeral range, because there the local port of any outbound
/// connection can take it first: a benchmark of 100 agents, each with its
/// own connections to the API server, lost an agent that way.
pub fn free_port() -> anyhow::Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let below = 10_000..low.max(10_001);
    for _ in 0..1_000 {
        let port = fastrand::u16(below.clone());
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {below:?} on 127.0.0.1")
}

/// `GET http://127.0.0.1:<port><path>`: the status code and body.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await??;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// What can go wrong while building or running the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("failed to {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Building a binary with the Go toolchain failed.
    #[error("failed to {what} ({status}):\n{output}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// The exit status of `go`.
        status: String,
        /// The end of go's output.
        output: String,
    },
    /// A certificate could not be made.
    #[error("failed to make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A kubeconfig could not be written as YAML.
    #[error("failed to render YAML: {0}")]
    Yaml(serde_yaml_ng::Error),
    /// A kubeconfig could not be read or used.
    #[error("failed to load a kubeconfig: {0}")]
    Kubeconfig(String),
    /// A Kubernetes API call failed.
    #[error("failed to {what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// A component exited while it should be running.
    #[error("{name} exited ({status}); the end of its log:\n{log_tail}")]
    Exited {
        /// The component.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {what}\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The end of the components' logs.
        log_tail: String,
    },
    /// A blocking task could not be joined.
    #[error("a background task failed: {0}")]
    Join(String),
    /// A child process came without the pipe asked for.
    #[error("a child process has no stdin pipe")]
    NoPipe,
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source,
        }
    }
}
