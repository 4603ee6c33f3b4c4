//! Node agents (and external handlers) as real processes against the test
//! control plane: one per fake node, each with its own socket directory,
//! debug-echo state directory and metrics port, all killed with the test
//! binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ControlPlane;
use crate::process::Process;

/// A node agent process.
#[derive(Debug)]
pub struct Agent {
    /// The node it runs as.
    pub node: String,
    /// Its socket directory (registration socket, handler sockets).
    pub socket_dir: PathBuf,
    /// Its debug-echo state directory (`offline` lists hidden devices).
    pub echo_dir: PathBuf,
    /// Its metrics port on 127.0.0.1.
    pub metrics_port: u16,
    /// Its stand-in for the kubelet's root (`/var/lib/kubelet`):
    /// `device-plugins/`, `plugins_registry/`, `plugins/ambit.dev/` and
    /// `pod-resources/kubelet.sock` live here, for tests that play the kubelet.
    pub kubelet_dir: PathBuf,
    /// Its CDI spec directory (`/var/run/cdi` on a real node).
    pub cdi_dir: PathBuf,
    namespace: String,
    binary: PathBuf,
    kubeconfig: PathBuf,
    extra_env: Vec<(String, String)>,
    process: Option<Process>,
    starts: usize,
}

impl Agent {
    /// Like [`Agent::start`], with more environment variables (for handlers
    /// that read theirs, such as `DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn start_with_env(
        control_plane: &ControlPlane,
        binary: &Path,
        node: &str,
        namespace: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut agent = Self::prepare(control_plane, binary, node, namespace)?;
        agent.extra_env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        agent.spawn(control_plane)?;
        Ok(agent)
    }

    /// Starts `binary` (the `ambit-agent` executable) as the agent of
    /// `node`, serving only DeviceSets in `namespace` (tests share one
    /// control plane, and run in parallel).
    pub fn start(
        control_plane: &ControlPlane,
        binary: &Path,
        node: &str,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let mut agent = Self::prepare(control_plane, binary, node, namespace)?;
        agent.spawn(control_plane)?;
        Ok(agent)
    }

    fn prepare(
        control_plane: &ControlPlane,
        binary: &Path,
        node: &str,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let root = control_plane.dir.join("agents").join(node);
        let socket_dir = root.join("sockets");
        let echo_dir = root.join("echo");
        let kubelet_dir = root.join("kubelet");
        let cdi_dir = root.join("cdi");
        for dir in [&socket_dir, &echo_dir, &kubelet_dir, &cdi_dir] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            node: node.to_owned(),
            socket_dir,
            echo_dir,
            metrics_port: crate::free_port()?,
            kubelet_dir,
            cdi_dir,
            namespace: namespace.to_owned(),
            binary: binary.to_owned(),
            kubeconfig: control_plane.kubeconfig.clone(),
            extra_env: vec![],
            process: None,
            starts: 0,
        })
    }

    fn spawn(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into()),
            )
            .env("AMBIT_NODE_NAME", &self.node)
            .env("AMBIT_NAMESPACE", &self.namespace)
            .env("AMBIT_SOCKET_DIR", &self.socket_dir)
            .env("AMBIT_DEBUG_ECHO_DIR", &self.echo_dir)
            .env(
                "AMBIT_DEVICE_PLUGIN_DIR",
                self.kubelet_dir.join("device-plugins"),
            )
            .env(
                "AMBIT_POD_RESOURCES_SOCKET",
                self.kubelet_dir.join("pod-resources/kubelet.sock"),
            )
            .env(
                "AMBIT_PLUGINS_REGISTRY_DIR",
                self.kubelet_dir.join("plugins_registry"),
            )
            .env(
                "AMBIT_DRA_PLUGIN_DIR",
                self.kubelet_dir.join("plugins/ambit.dev"),
            )
            .env("AMBIT_CDI_DIR", &self.cdi_dir)
            .env(
                "AMBIT_METRICS_ADDR",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
        self.starts += 1;
        let name = format!("agent-{}-{}", self.node, self.starts);
        self.process = Some(control_plane.spawn_process(&name, cmd)?);
        Ok(())
    }

    /// Kills the agent like `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// How the agent exited, or `None` while it runs (or was never started).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(Process::exit_status)
    }

    /// Sends SIGTERM and waits up to `grace` for the agent to exit; how it
    /// exited, `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(|p| p.terminate(grace))
    }

    /// Starts the agent again (after [`Agent::kill`]).
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.kill();
        self.spawn(control_plane)
    }

    /// Hides (`offline`) debug-echo devices on this node only; the rest show.
    pub fn set_offline(&self, ids: &[&str]) -> anyhow::Result<()> {
        let path = self.echo_dir.join("offline");
        let tmp = self.echo_dir.join(".offline.tmp");
        std::fs::write(
            &tmp,
            ids.iter().map(|id| format!("{id}\n")).collect::<String>(),
        )?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| crate::process::tail(p.log(), 200))
            .unwrap_or_default()
    }

    /// GETs `path` from the agent's HTTP endpoint, returning status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        crate::http_get(self.metrics_port, path).await
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "agent {} not ready after 30 s; its log:\n{}",
                    self.node,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An external handler process (`ambit-handler`) serving next to an agent.
#[derive(Debug)]
pub struct ExternalHandler {
    process: Option<Process>,
    binary: PathBuf,
    socket_dir: PathBuf,
    echo_dir: PathBuf,
    starts: usize,
    name: String,
    handler: String,
}

impl ExternalHandler {
    /// Starts `binary` serving debug-echo under the name `handler`,
    /// registering with `agent` and sharing its echo directory.
    pub fn start(
        control_plane: &ControlPlane,
        binary: &Path,
        agent: &Agent,
        handler: &str,
    ) -> anyhow::Result<Self> {
        let mut handler = Self {
            process: None,
            binary: binary.to_owned(),
            socket_dir: agent.socket_dir.clone(),
            echo_dir: agent.echo_dir.clone(),
            starts: 0,
            name: format!("handler-{}", agent.node),
            handler: handler.to_owned(),
        };
        handler.spawn(control_plane)?;
        Ok(handler)
    }

    fn spawn(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("RUST_LOG", "info,ambit=debug")
            .env("AMBIT_SOCKET_DIR", &self.socket_dir)
            .env("AMBIT_DEBUG_ECHO_DIR", &self.echo_dir)
            .env("AMBIT_DEBUG_ECHO_NAME", &self.handler);
        self.starts += 1;
        let name = format!("{}-{}", self.name, self.starts);
        self.process = Some(control_plane.spawn_process(&name, cmd)?);
        Ok(())
    }

    /// Kills the handler like `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the handler again.
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.kill();
        self.spawn(control_plane)
    }
}

/// A binary of the workspace (`ambit-agent`, `ambit-handler`, ...) built in
/// the same target directory as the running test, for tests of one package
/// that run another package's binary.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    // A test runs from target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("{} is not in a target directory", exe.display()))?;
    let path = profile.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`; make test does)",
        path.display()
    );
    Ok(path)
}
