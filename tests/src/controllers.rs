//! Controller processes against the test control plane: each serves one
//! namespace (tests run side by side) and elects its leader through a Lease
//! in that namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ControlPlane;
use crate::process::Process;

/// A controller process.
#[derive(Debug)]
pub struct Controller {
    /// Its identity in the Lease.
    pub identity: String,
    /// Its metrics port on 127.0.0.1.
    pub metrics_port: u16,
    namespace: String,
    binary: PathBuf,
    kubeconfig: PathBuf,
    process: Option<Process>,
    starts: usize,
}

impl Controller {
    /// Starts `binary` (the `ambit-controller` executable) as `identity`,
    /// serving `namespace`, with a short node toleration for tests.
    pub fn start(
        control_plane: &ControlPlane,
        binary: &Path,
        namespace: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let mut controller = Self {
            identity: identity.to_owned(),
            metrics_port: crate::free_port()?,
            namespace: namespace.to_owned(),
            binary: binary.to_owned(),
            kubeconfig: control_plane.kubeconfig.clone(),
            process: None,
            starts: 0,
        };
        controller.spawn(control_plane)?;
        Ok(controller)
    }

    fn spawn(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into()),
            )
            .env("AMBIT_NAMESPACE", &self.namespace)
            .env("AMBIT_LEASE_NAMESPACE", &self.namespace)
            .env("AMBIT_POD_NAME", &self.identity)
            .env("AMBIT_LEASE_DURATION", "6s")
            .env("AMBIT_NODE_NOT_READY_TOLERATION", "20s")
            .env(
                "AMBIT_METRICS_ADDR",
                format!("127.0.0.1:{}", self.metrics_port),
            );
        self.starts += 1;
        let name = format!("controller-{}-{}", self.identity, self.starts);
        self.process = Some(control_plane.spawn_process(&name, cmd)?);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(crate::process::Process::pid)
    }

    /// Kills the controller like `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the controller again.
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.kill();
        self.spawn(control_plane)
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
