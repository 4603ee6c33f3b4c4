//! Node agents (and external handlers) as real processes against the test
//! control plane: one per fake node, each with its own socket directory,
//! debug-echo state directory and metrics port, all killed with the test
//! binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ControlPlane;
use crate::process::Restartable;

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
    child: Restartable,
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
        agent
            .child
            .add_env(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        agent.child.spawn(control_plane)?;
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
        agent.child.spawn(control_plane)?;
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
        let metrics_port = crate::free_port()?;
        let child = Restartable::new(
            &format!("agent-{node}"),
            binary,
            [
                ("KUBECONFIG", control_plane.kubeconfig.clone().into()),
                ("AMBIT_NODE_NAME", node.into()),
                ("AMBIT_NAMESPACE", namespace.into()),
                ("AMBIT_SOCKET_DIR", socket_dir.clone().into()),
                ("AMBIT_DEBUG_ECHO_DIR", echo_dir.clone().into()),
                (
                    "AMBIT_DEVICE_PLUGIN_DIR",
                    kubelet_dir.join("device-plugins").into(),
                ),
                (
                    "AMBIT_POD_RESOURCES_SOCKET",
                    kubelet_dir.join("pod-resources/kubelet.sock").into(),
                ),
                (
                    "AMBIT_PLUGINS_REGISTRY_DIR",
                    kubelet_dir.join("plugins_registry").into(),
                ),
                (
                    "AMBIT_DRA_PLUGIN_DIR",
                    kubelet_dir.join("plugins/ambit.dev").into(),
                ),
                ("AMBIT_CDI_DIR", cdi_dir.clone().into()),
                (
                    "AMBIT_METRICS_ADDR",
                    format!("127.0.0.1:{metrics_port}").into(),
                ),
            ],
        );
        Ok(Self {
            node: node.to_owned(),
            socket_dir,
            echo_dir,
            metrics_port,
            kubelet_dir,
            cdi_dir,
            child,
        })
    }

    /// Kills the agent like `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// How the agent exited, or `None` while it runs (or was never started).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exit_status()
    }

    /// Sends SIGTERM and waits up to `grace` for the agent to exit; how it
    /// exited, `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.child.terminate(grace)
    }

    /// Starts the agent again (after [`Agent::kill`]).
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.child.restart(control_plane)
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
        self.child.pid()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.child.log()
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
    child: Restartable,
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
        let mut child = Restartable::new(
            &format!("handler-{}", agent.node),
            binary,
            [
                ("AMBIT_SOCKET_DIR", agent.socket_dir.clone().into()),
                ("AMBIT_DEBUG_ECHO_DIR", agent.echo_dir.clone().into()),
                ("AMBIT_DEBUG_ECHO_NAME", handler.into()),
            ],
        );
        child.spawn(control_plane)?;
        Ok(Self { child })
    }

    /// Kills the handler like `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the handler again.
    pub fn restart(&mut self, control_plane: &ControlPlane) -> anyhow::Result<()> {
        self.child.restart(control_plane)
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
