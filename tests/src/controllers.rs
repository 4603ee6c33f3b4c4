//! Controller processes against the test control plane: each serves one
//! namespace (tests run side by side) and elects its leader through a Lease
//! in that namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ControlPlane;
use crate::process::Restartable;

/// A controller process.
#[derive(Debug)]
pub struct Controller {
    /// Its identity in the Lease.
    pub identity: String,
    /// Its metrics port on 127.0.0.1.
    pub metrics_port: u16,
    child: Restartable,
}

impl Controller {
    /// Starts `binary` (the `ambit-controller` executable) as `identity`,
    /// serving `namespace`, with a short Lease (6 s) and node toleration
    /// (20 s) for tests.
    pub fn start(
        control_plane: &ControlPlane,
        binary: &Path,
        namespace: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(control_plane, binary, namespace, identity, &[])
    }

    /// Like [`Controller::start`], with more environment variables, which
    /// win over the test defaults (a benchmark runs the default Lease).
    pub fn start_with_env(
        control_plane: &ControlPlane,
        binary: &Path,
        namespace: &str,
        identity: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let metrics_port = crate::free_port()?;
        let mut child = Restartable::new(
            &format!("controller-{identity}"),
            binary,
            [
                ("KUBECONFIG", control_plane.kubeconfig.clone().into()),
                ("AMBIT_NAMESPACE", namespace.into()),
                ("AMBIT_LEASE_NAMESPACE", namespace.into()),
                ("AMBIT_POD_NAME", identity.into()),
                ("AMBIT_LEASE_DURATION", "6s".into()),
                ("AMBIT_NODE_NOT_READY_TOLERATION", "20s".into()),
                (
                    "AMBIT_METRICS_ADDR",
                    format!("127.0.0.1:{metrics_port}").into(),
                ),
            ],
        );
        child.add_env(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        child.spawn(control_plane)?;
        Ok(Self {
            identity: identity.to_owned(),
            metrics_port,
            child,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Kills the controller like `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the controller again.
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.child.restart(control_plane)
    }

    /// GETs `path` from the controller's HTTP endpoint.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        crate::http_get(self.metrics_port, path).await
    }

    /// The sum of the samples of `metric` (a line prefix), 0 when absent.
    pub async fn metric(&self, metric: &str) -> anyhow::Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until this controller says it leads.
    pub async fn wait_leading(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self
                .metric("ambit_controller_leader")
                .await
                .is_ok_and(|v| v == 1.0)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{} did not lead within {timeout:?}", self.identity);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The path of a binary of the workspace built next to `beside` (tests
    /// of one package find another package's binary in the same target dir).
    pub fn sibling_binary(beside: &str, name: &str) -> anyhow::Result<PathBuf> {
        let path = PathBuf::from(beside).with_file_name(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`; make test does)",
            path.display()
        );
        Ok(path)
    }
}
