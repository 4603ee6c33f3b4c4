//! Real nodes: a real kubelet and containerd per node, registered with the
//! harness's API server, running real containers from locally built images.
//!
//! ```text
//!   RealNodes::start(cp, "real", 2, &[images])
//!     ├─ hub namespace (bridge)                       network.rs
//!     ├─ per node: a holder process in new network and mount namespaces,
//!     │    tmpfs on /run, /var/lib and /var/log (the node's own)
//!     │  ├─ socat: the API server at 10.96.0.1:443   network.rs
//!     │  ├─ containerd (config.rs), images imported  images.rs
//!     │  └─ kubelet as system:node:<name>            config.rs
//!     └─ a clean-up script the janitor runs however the test binary ends:
//!        every process of the nodes, their cgroups, the kubelet's sysctls,
//!        the mount points made for them                host.rs
//! ```
//!
//! Real nodes need root and a few Debian packages (runc, CNI plugins,
//! socat, gcc for the pause image): where one is missing, [`RealNodes::start`]
//! fails and says which. It never falls back to a simulation.
//!
//! A process that must see a node's files (a test reading a container's
//! log, a socket the agent made) reads them through `/proc/<pid>/root` of
//! the node's holder process: [`RealNode::path`].

pub mod config;
pub mod host;
pub mod images;
pub mod network;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::wait::Condition;

use crate::ControlPlane;
use crate::process::Process;
use config::NodePlan;

/// The sandbox image every pod starts with, built from Kubernetes' own
/// `pause.c` and imported into every node (never pulled).
pub const PAUSE_IMAGE: &str = concat!("ghcr.io/ambit-dev/ambit-pause:", env!("CARGO_PKG_VERSION"));

/// How long a node may take from start to Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The programs real nodes need besides the harness's own binaries.
const REQUIRED: [(&str, &str); 6] = [
    ("/usr/sbin/runc", "Debian package runc"),
    (
        "/usr/lib/cni/bridge",
        "Debian package containernetworking-plugins",
    ),
    ("/usr/bin/socat", "Debian package socat"),
    ("/usr/bin/unshare", "Debian package util-linux"),
    ("/usr/bin/nsenter", "Debian package util-linux"),
    ("/usr/sbin/ip", "Debian package iproute2"),
];

/// A group of real nodes sharing one network.
#[derive(Debug)]
pub struct RealNodes {
    /// The nodes, in order.
    pub nodes: Vec<RealNode>,
    /// The machine's state before the nodes started.
    pub host_before: host::HostState,
    cleanup: PathBuf,
    processes: Vec<Process>,
}

/// One real node.
#[derive(Debug)]
pub struct RealNode {
    /// Its name and addresses.
    pub plan: NodePlan,
    holder: Process,
    containerd: Mutex<Option<Process>>,
    kubelet: Mutex<Option<Process>>,
    launches: Launches,
    ctr: PathBuf,
    log_dir: PathBuf,
    janitor_spawn: Spawner,
}

#[derive(Debug, Clone)]
struct Launches {
    containerd: (String, Vec<String>),
    kubelet: (String, Vec<String>),
}

/// Starts processes the control plane's janitor watches.
#[derive(Debug, Clone, Copy)]
struct Spawner(&'static ControlPlane);

impl Spawner {
    fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<Process> {
        Ok(self.0.spawn_process(name, cmd)?)
    }
}

impl RealNodes {
    /// Starts `count` real nodes named `<prefix>-<i>`, imports the OCI
    /// archives `images` (besides the pause image) into each, and returns
    /// once every node is Ready.
    pub async fn start(
        cp: &'static ControlPlane,
        prefix: &str,
        count: u8,
        images: &[images::Archive],
    ) -> anyhow::Result<Self> {
        preflight()?;
        let host_before = host::HostState::read();
        let dir = cp.dir.join("nodes");
        std::fs::create_dir_all(&dir)?;
        let id = std::process::id();

        // What is undone at the end, written before anything is changed.
        let made: Vec<String> = host::NODE_MOUNTS
            .iter()
            .filter(|point| !Path::new(point).exists())
            .map(|point| (*point).to_owned())
            .collect();
        for point in &made {
            std::fs::create_dir_all(point)?;
        }
        let cleanup = dir.join("cleanup.sh");
        std::fs::write(&cleanup, host::host_cleanup(&host_before.sysctls, &made))?;
        cp.on_exit(&cleanup)?;

        let pause = tokio::task::spawn_blocking(images::pause).await??;
        let spawner = Spawner(cp);
        let mut processes = Vec::new();

        let mut hub_cmd = Command::new("unshare");
        hub_cmd.args(["--net", "--", "sleep", "infinity"]);
        let mut hub = spawner.spawn(&format!("{prefix}-hub"), hub_cmd)?;
        wait_for_exec(&mut hub, "sleep").await?;
        network::setup_hub(hub.pid())?;
        processes.push(hub);

        let api_socket = dir.join("api.sock");
        let forwarder = spawner.spawn(
            &format!("{prefix}-api-forwarder"),
            network::api_forwarder(&api_socket, cp.api_port()),
        )?;
        processes.push(forwarder);

        let binaries = &cp.binaries;
        let mut nodes = Vec::new();
        for index in 0..count {
            let name = format!("{prefix}-{index}");
            let node_dir = dir.join(&name);
            std::fs::create_dir_all(node_dir.join("cni"))?;
            let plan = NodePlan {
                name: name.clone(),
                index,
                dir: node_dir.clone(),
                cgroup_root: format!("ambit-{id}-{name}"),
                ca_cert: cp.ca_cert().to_owned(),
                shim: binaries.path("containerd-shim-runc-v2"),
            };
            for hierarchy in host::cgroup_hierarchies() {
                std::fs::create_dir_all(hierarchy.join(&plan.cgroup_root))?;
            }

            let mut holder_cmd = Command::new("unshare");
            holder_cmd
                .args(["--net", "--mount", "--propagation", "private", "--"])
                .args(["sh", "-c", HOLDER]);
            let mut holder = spawner.spawn(&format!("{name}-namespaces"), holder_cmd)?;
            wait_for_exec(&mut holder, "sleep").await?;
            let mount_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.pid()))?;
            let node_cleanup = node_dir.join("cleanup.sh");
            std::fs::write(
                &node_cleanup,
                host::node_cleanup(&mount_ns.to_string_lossy(), &plan.cgroup_root),
            )?;
            cp.on_exit(&node_cleanup)?;
            network::setup_node(processes[0].pid(), holder.pid(), index, count)?;
            processes.push(spawner.spawn(
                &format!("{name}-api-listener"),
                network::api_listener(holder.pid(), &api_socket),
            )?);

            std::fs::write(node_dir.join("containerd.toml"), plan.containerd_toml())?;
            std::fs::write(node_dir.join("kubelet.yaml"), plan.kubelet_yaml())?;
            std::fs::write(node_dir.join("cni/10-ambit.conflist"), plan.cni_conflist())?;
            let kubeconfig = cp.kubeconfig_at(
                &format!("kubelet-{name}"),
                &format!("https://{}:443", config::API_SERVICE_IP),
                &format!("system:node:{name}"),
                &["system:nodes"],
            )?;
            let launches = Launches {
                containerd: (
                    binaries.path("containerd").display().to_string(),
                    vec![
                        "--config".into(),
                        node_dir.join("containerd.toml").display().to_string(),
                        // Debug: the CDI devices of each container are logged
                        // only at this level (tests read them there).
                        "--log-level".into(),
                        "debug".into(),
                    ],
                ),
                kubelet: (
                    binaries.path("kubelet").display().to_string(),
                    vec![
                        format!("--config={}", node_dir.join("kubelet.yaml").display()),
                        format!("--kubeconfig={}", kubeconfig.display()),
                        format!("--hostname-override={name}"),
                        format!("--node-ip={}", plan.node_ip()),
                        "--v=1".into(),
                    ],
                ),
            };
            let node = RealNode {
                plan,
                holder,
                containerd: Mutex::new(None),
                kubelet: Mutex::new(None),
                launches,
                ctr: binaries.path("ctr"),
                log_dir: cp.log_dir(),
                janitor_spawn: spawner,
            };
            node.start_containerd().await?;
            for archive in std::iter::once(&pause).chain(images) {
                node.import(archive)?;
            }
            node.start_kubelet()?;
            nodes.push(node);
        }

        let this = Self {
            nodes,
            host_before,
            cleanup,
            processes,
        };
        let client = cp.client().await?;
        for node in &this.nodes {
            node.wait_ready(&client).await?;
        }
        Ok(this)
    }

    /// The node names.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.plan.name.clone()).collect()
    }

    /// Stops every node and undoes what they changed on the machine, now
    /// rather than when the test binary exits; returns what is still
    /// different from before the nodes started (empty when all is undone).
    pub fn stop(mut self) -> anyhow::Result<Vec<String>> {
        for node in &self.nodes {
            node.stop_kubelet();
            node.stop_containerd();
        }
        let node_scripts: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|n| n.plan.dir.join("cleanup.sh"))
            .collect();
        for mut node in self.nodes.drain(..) {
            node.holder.kill();
        }
        for process in &mut self.processes {
            process.kill();
        }
        for script in node_scripts.iter().chain(std::iter::once(&self.cleanup)) {
            network::run({
                let mut cmd = Command::new("sh");
                cmd.arg(script);
                cmd
            })?;
        }
        Ok(host::HostState::read().differences(&self.host_before))
    }
}

/// The holder of a node's namespaces: the tmpfs mounts every node's
/// kubelet, containerd and CNI need, then nothing but being there.
const HOLDER: &str = r#"set -e
for d in /run /var/lib /var/log; do
  mount -t tmpfs -o mode=0755 ambit-node "$d"
done
mkdir -p /run/netns /run/containerd /run/udev /run/cdi /run/lock /var/lib/kubelet /var/log/pods
mount -t tmpfs -o mode=0755 ambit-node /run/netns
exec sleep infinity
"#;

impl RealNode {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// `path` as the node sees it (its mount namespace), readable from the
    /// test: `/proc/<holder>/root/<path>`.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.holder.pid(),
            path.trim_start_matches('/')
        ))
    }

    /// What the container `container` of pod `namespace/pod` printed, from
    /// the kubelet's log files (the CRI prefix of each line removed).
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let prefix = format!("{namespace}_{pod}_");
        let pods = self.path("/var/log/pods");
        let Some(dir) = std::fs::read_dir(&pods)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        else {
            return String::new();
        };
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.path().join(container))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        logs.sort();
        logs.iter()
            .filter_map(|log| std::fs::read_to_string(log).ok())
            .flat_map(|text| {
                text.lines()
                    .map(|line| line.splitn(4, ' ').nth(3).unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How long the kubelet's log is now (an offset for
    /// [`RealNode::device_plugins_registered_since`]).
    pub fn kubelet_log_len(&self) -> usize {
        let log = self.log_dir.join(format!("{}-kubelet.log", self.plan.name));
        std::fs::metadata(log).map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
    }

    /// The device-plugin resources the kubelet accepted a registration for
    /// since its log was `offset` bytes long.
    pub fn device_plugins_registered_since(
        &self,
        offset: usize,
    ) -> std::collections::BTreeSet<String> {
        let log = self.log_dir.join(format!("{}-kubelet.log", self.plan.name));
        let text = std::fs::read(log).unwrap_or_default();
        let marker = "Got registration request from device plugin with resource\" resourceName=\"";
        String::from_utf8_lossy(text.get(offset..).unwrap_or_default())
            .lines()
            .filter_map(|line| {
                let start = line.find(marker)? + marker.len();
                let rest = &line[start..];
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }

    /// containerd's log so far.
    pub fn containerd_log(&self) -> String {
        let log = self
            .log_dir
            .join(format!("{}-containerd.log", self.plan.name));
        std::fs::read_to_string(log).unwrap_or_default()
    }

    /// The CDI devices containerd applied to container `id` (from its
    /// debug log: `CDI devices from CRI Config.CDIDevices: [...]`).
    pub fn cdi_devices(&self, id: &str) -> Vec<String> {
        let marker = format!("Container {id}: CDI devices from CRI Config.CDIDevices: [");
        self.containerd_log()
            .lines()
            .filter_map(|line| {
                let start = line.find(&marker)? + marker.len();
                let rest = &line[start..];
                Some(rest[..rest.find(']')?].to_owned())
            })
            .flat_map(|list| list.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// Kills the kubelet (like `kill -9`) and starts it again with the same
    /// flags; running containers are not touched.
    pub fn restart_kubelet(&self) -> anyhow::Result<()> {
        self.stop_kubelet();
        self.start_kubelet()
    }

    /// Kills containerd (like `kill -9`) and starts it again; the shims and
    /// containers keep running, as on a real node.
    pub async fn restart_containerd(&self) -> anyhow::Result<()> {
        if let Some(mut old) = lock(&self.containerd).take() {
            old.kill();
        }
        self.start_containerd().await
    }

    fn in_node(&self, program: &str, args: &[String]) -> Command {
        let pid = self.holder.pid();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg("--")
            .arg(program)
            .args(args);
        cmd
    }

    async fn start_containerd(&self) -> anyhow::Result<()> {
        let (program, args) = &self.launches.containerd;
        let name = format!("{}-containerd", self.plan.name);
        let process = self
            .janitor_spawn
            .spawn(&name, self.in_node(program, args))?;
        *lock(&self.containerd) = Some(process);
        let socket = self.plan.containerd_socket();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if let Some(process) = lock(&self.containerd).as_mut() {
                process.check_running()?;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "containerd of {} did not open {} in 30 s:\n{}",
                self.plan.name,
                socket.display(),
                crate::process::tail(&self.log_dir.join(format!("{name}.log")), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn start_kubelet(&self) -> anyhow::Result<()> {
        let (program, args) = &self.launches.kubelet;
        let name = format!("{}-kubelet", self.plan.name);
        let process = self
            .janitor_spawn
            .spawn(&name, self.in_node(program, args))?;
        *lock(&self.kubelet) = Some(process);
        Ok(())
    }

    fn stop_kubelet(&self) {
        if let Some(mut old) = lock(&self.kubelet).take() {
            old.kill();
        }
    }

    fn stop_containerd(&self) {
        if let Some(mut old) = lock(&self.containerd).take() {
            old.terminate(Duration::from_secs(5));
        }
    }

    /// Imports an OCI archive into the node's containerd (namespace k8s.io).
    pub fn import(&self, archive: &images::Archive) -> anyhow::Result<()> {
        let repository = archive.repository().to_owned();
        let path = archive.path.display().to_string();
        self.ctr(&["images", "import", "--base-name", &repository, &path])
            .map(drop)
    }

    /// Runs `ctr` against the node's containerd (namespace k8s.io) and
    /// returns what it printed.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.ctr)
            .arg("--address")
            .arg(self.plan.containerd_socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "ctr {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    async fn wait_ready(&self, client: &kube::Client) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(client.clone());
        let kubelet_log = self.log_dir.join(format!("{}-kubelet.log", self.plan.name));
        let ready = crate::wait::until(&api, &self.plan.name, READY_TIMEOUT, "Ready", node_ready());
        match ready.await {
            Ok(_) => Ok(()),
            Err(error) => {
                anyhow::bail!(
                    "real node {} is not Ready: {error}\n--- kubelet ---\n{}",
                    self.plan.name,
                    crate::process::tail(&kubelet_log, 40)
                )
            }
        }
    }
}

fn node_ready() -> impl Condition<Node> {
    |node: Option<&Node>| {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails, saying what is missing, when real nodes cannot start here.
fn preflight() -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "real nodes need root (a kubelet, containerd, namespaces and cgroups): run the tests as root"
    );
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(path, from)| format!("{path} ({from})"))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "real nodes need {}: scripts/setup.sh installs them",
        missing.join(", ")
    );
    Ok(())
}

/// Waits until `process` runs `program` (it has made its namespaces and
/// exec'd); fails with its log if it ends first.
async fn wait_for_exec(process: &mut Process, program: &str) -> anyhow::Result<()> {
    let pid = process.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == program {
            return Ok(());
        }
        process.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "process {pid} did not reach {program} (it runs {comm:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
