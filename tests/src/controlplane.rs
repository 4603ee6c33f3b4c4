//! A real Kubernetes control plane on loopback: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK.
//!
//! ```text
//!   etcd ◄── kube-apiserver ◄──┬── kube-controller-manager (GC, SAs, Jobs, nodes)
//!   (no fsync)   ▲  https      ├── kube-scheduler (binds pods to nodes)
//!                │             ├── kwok (plays the kubelet of fake nodes)
//!                │             └── tests, agents, controllers (admin kubeconfig)
//! ```
//!
//! Every component listens on a free loopback port, writes its log to
//! `<dir>/logs/<name>.log`, and is stopped (and the directory removed) by the
//! [`Janitor`] when the test binary exits.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::Error;
use crate::binaries::Binaries;
use crate::pki::Pki;
use crate::process::{Janitor, Process, tail};

/// How long each component may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The stages KWOK plays for fake nodes and their pods.
const KWOK_STAGES: &str = include_str!("../controlplane/kwok-stages.yaml");

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// The directory holding the PKI, etcd's data, kubeconfigs and logs.
    pub dir: PathBuf,
    /// A kubeconfig with cluster-admin rights, for tests and tools.
    pub kubeconfig: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// The binaries it runs.
    pub binaries: Binaries,
    /// How long starting took (after the binaries existed).
    pub start_time: Duration,
    pki: Pki,
    processes: Mutex<Vec<Process>>,
    launches: Mutex<Vec<Launch>>,
    janitor: Janitor,
}

/// How a component was started, so that it can be started again the same
/// way (same binary, flags, ports and data).
#[derive(Debug, Clone)]
struct Launch {
    name: &'static str,
    program: OsString,
    args: Vec<OsString>,
    health: Health,
}

/// How to tell that a component is up.
#[derive(Debug, Clone, Copy)]
enum Health {
    /// `GET http://127.0.0.1:<port><path>` answers 200.
    Http(u16, &'static str),
    /// kube-apiserver's `/readyz` says ok.
    ApiServer,
    /// `GET https://127.0.0.1:<port>/healthz` says ok.
    Healthz(u16),
}

impl ControlPlane {
    /// Builds the binaries if needed and starts every component, returning
    /// once all are healthy. Set `AMBIT_KEEP_CONTROL_PLANE=1` to keep the
    /// directory (logs, kubeconfig) after the process exits.
    pub async fn start() -> Result<Self, Error> {
        let binaries = tokio::task::spawn_blocking(Binaries::ensure)
            .await
            .map_err(|e| Error::Join(e.to_string()))??;
        let started = Instant::now();

        let dir = tempfile::Builder::new()
            .prefix("ambit-controlplane-")
            .tempdir()
            .map_err(|source| Error::io("create the control plane directory", source))?
            .keep();
        let keep = std::env::var_os("AMBIT_KEEP_CONTROL_PLANE").is_some_and(|v| v == "1");
        let janitor = Janitor::start(&dir, keep)?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|source| Error::io("create the log directory", source))?;
        let pki = Pki::create(&dir.join("pki"))?;

        let [
            etcd_port,
            etcd_peer,
            api_port,
            kcm_port,
            sched_port,
            kwok_port,
        ] = free_ports()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let admin = pki.kubeconfig("admin", &server, "ambit-admin", &["system:masters"])?;

        let mut this = Self {
            dir: dir.clone(),
            kubeconfig: admin.clone(),
            server: server.clone(),
            binaries,
            start_time: Duration::ZERO,
            pki,
            processes: Mutex::new(vec![]),
            launches: Mutex::new(vec![]),
            janitor,
        };

        // etcd
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let mut etcd = Command::new(this.binaries.path("etcd"));
        etcd.arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .args([
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ]);
        this.spawn("etcd", etcd, Health::Http(etcd_port, "/health"))?;
        this.wait_http_ok("etcd", etcd_port, "/health").await?;

        // kube-apiserver
        let pki = &this.pki;
        let mut api = Command::new(this.binaries.path("kube-apiserver"));
        api.arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--secure-port={api_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!(
                "--cert-dir={}",
                dir.join("apiserver-certs").display()
            ))
            .arg(format!("--tls-cert-file={}", pki.server_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.server_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            .args([
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                // Node: real kubelets (crate::realnode) act as `system:node:<name>`.
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ]);
        this.spawn("kube-apiserver", api, Health::ApiServer)?;
        this.wait_apiserver().await?;

        // kube-controller-manager, kube-scheduler, kwok
        let kcm_config = this.pki.kubeconfig(
            "kube-controller-manager",
            &server,
            "system:kube-controller-manager",
            &[],
        )?;
        let mut kcm = Command::new(this.binaries.path("kube-controller-manager"));
        kcm.arg(format!("--kubeconfig={}", kcm_config.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                kcm_config.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                kcm_config.display()
            ))
            .arg(format!("--secure-port={kcm_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--cert-dir={}", dir.join("kcm-certs").display()))
            .arg(format!(
                "--service-account-private-key-file={}",
                this.pki.service_account_key.display()
            ))
            .arg(format!("--root-ca-file={}", this.pki.ca_cert.display()))
            .args([
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                "--profiling=false",
                "--v=1",
            ]);
        this.spawn("kube-controller-manager", kcm, Health::Healthz(kcm_port))?;

        let sched_config =
            this.pki
                .kubeconfig("kube-scheduler", &server, "system:kube-scheduler", &[])?;
        let mut sched = Command::new(this.binaries.path("kube-scheduler"));
        sched
            .arg(format!("--kubeconfig={}", sched_config.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                sched_config.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                sched_config.display()
            ))
            .arg(format!("--secure-port={sched_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--cert-dir={}",
                dir.join("scheduler-certs").display()
            ))
            .args(["--leader-elect=false", "--profiling=false", "--v=1"])
            // Its client's default limit (50 requests/s) would make it the
            // ceiling of every pod-heavy benchmark: 2,000 bindings take
            // 40 s. KWOK's client has no limit of its own.
            .args(["--kube-api-qps=5000", "--kube-api-burst=10000"]);
        this.spawn("kube-scheduler", sched, Health::Healthz(sched_port))?;

        let stages = dir.join("kwok-stages.yaml");
        std::fs::write(&stages, KWOK_STAGES)
            .map_err(|source| Error::io("write KWOK's stages", source))?;
        let mut kwok = Command::new(this.binaries.path("kwok"));
        kwok.arg(format!("--kubeconfig={}", admin.display()))
            .arg(format!("--config={}", stages.display()))
            .arg(format!("--server-address=127.0.0.1:{kwok_port}"))
            .args([
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.200.0.1",
            ]);
        this.spawn("kwok", kwok, Health::Http(kwok_port, "/healthz"))?;

        this.wait_component_healthz("kube-controller-manager", kcm_port)
            .await?;
        this.wait_component_healthz("kube-scheduler", sched_port)
            .await?;
        this.wait_http_ok("kwok", kwok_port, "/healthz").await?;

        this.start_time = started.elapsed();
        Ok(this)
    }

    /// A new client with cluster-admin rights, bound to the current runtime.
    pub async fn client(&self) -> Result<Client, Error> {
        client_for(&self.kubeconfig).await
    }

    /// A kubeconfig for `user` in `groups` (for components that should run
    /// with their own, RBAC-limited identity).
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<PathBuf, Error> {
        let stem = user.replace([':', '/'], "_");
        self.pki.kubeconfig(&stem, &self.server, user, groups)
    }

    /// A kubeconfig for `user` in `groups` that reaches the API server at
    /// `server` (real nodes reach it through the `kubernetes` Service's
    /// address inside their own network namespace).
    pub fn kubeconfig_at(
        &self,
        file_stem: &str,
        server: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<PathBuf, Error> {
        self.pki.kubeconfig(file_stem, server, user, groups)
    }

    /// The CA that signed every certificate of the control plane.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// The API server's loopback port.
    pub fn api_port(&self) -> u16 {
        self.server
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(443)
    }

    /// Asks the janitor to run `script` when the test binary exits, after
    /// every process is stopped (see [`Janitor::on_exit`]).
    pub fn on_exit(&self, script: &Path) -> Result<(), Error> {
        self.janitor.on_exit(script)
    }

    /// Where the logs of the components (and of processes started with
    /// [`ControlPlane::spawn`]) go.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Starts a process that the janitor stops when the test binary exits;
    /// its output goes to `<log_dir>/<name>.log`.
    pub fn spawn_process(&self, name: &str, cmd: Command) -> Result<Process, Error> {
        Process::spawn(name, cmd, &self.log_dir(), &self.janitor)
    }

    /// [`ControlPlane::spawn_process`], with a pipe to the process's stdin.
    pub fn spawn_piped_process(
        &self,
        name: &str,
        cmd: Command,
    ) -> Result<(Process, std::process::ChildStdin), Error> {
        Process::spawn_piped(name, cmd, &self.log_dir(), &self.janitor)
    }

    /// The last `lines` lines of every component's log, for a failing test.
    pub fn log_tails(&self, lines: usize) -> String {
        let processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        processes
            .iter()
            .map(|p| {
                format!(
                    "----- {} ({}) -----\n{}\n",
                    p.name(),
                    p.log().display(),
                    tail(p.log(), lines)
                )
            })
            .collect()
    }

    /// Stops every component (SIGTERM, then SIGKILL). The directory is left
    /// to the janitor.
    pub fn shutdown(&self) {
        let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        for process in processes.iter_mut().rev() {
            process.terminate(Duration::from_secs(5));
        }
        processes.clear();
    }

    /// Kills one component (like `kill -9`), for tests of what happens then.
    pub fn kill_component(&self, name: &str) {
        let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = processes.iter_mut().find(|p| p.name() == name) {
            p.kill();
        }
    }

    /// The process id of a running component (for its CPU and memory).
    pub fn component_pid(&self, name: &str) -> Option<u32> {
        let processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        processes
            .iter()
            .find(|p| p.name() == name)
            .map(Process::pid)
    }

    /// Stops one component (SIGTERM, then SIGKILL after 10 s) and keeps
    /// how it was started, for [`ControlPlane::start_component`]. Stopping
    /// kube-apiserver (etcd stays) is an API outage: clients get connection
    /// errors until it is started again. Returns whether it was running.
    pub fn stop_component(&self, name: &str) -> bool {
        let stopped = {
            let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            processes
                .iter()
                .position(|p| p.name() == name)
                .map(|i| processes.remove(i))
        };
        match stopped {
            Some(mut process) => {
                process.terminate(Duration::from_secs(10));
                true
            }
            None => false,
        }
    }

    /// Starts a component stopped with [`ControlPlane::stop_component`] (or
    /// killed with [`ControlPlane::kill_component`]) again with the same
    /// command — same port, flags and data — and waits until it is healthy
    /// (kube-apiserver: `/readyz` says ok), as [`ControlPlane::start`] does.
    pub async fn start_component(&self, name: &str) -> Result<(), Error> {
        let launch = self
            .launches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| {
                let what = format!("start {name} again: it is not a component");
                Error::io(what, std::io::ErrorKind::NotFound.into())
            })?;
        {
            let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = processes.iter().position(|p| p.name() == name) {
                // Killed, not stopped: reap it before starting it again.
                let mut old = processes.remove(i);
                old.kill();
            }
            let mut cmd = Command::new(&launch.program);
            cmd.args(&launch.args);
            let process = Process::spawn(launch.name, cmd, &self.log_dir(), &self.janitor)?;
            processes.push(process);
        }
        match launch.health {
            Health::Http(port, path) => self.wait_http_ok(launch.name, port, path).await,
            Health::ApiServer => self.wait_apiserver().await,
            Health::Healthz(port) => self.wait_component_healthz(launch.name, port).await,
        }
    }

    fn spawn(&mut self, name: &'static str, cmd: Command, health: Health) -> Result<(), Error> {
        let launch = Launch {
            name,
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            health,
        };
        let process = Process::spawn(name, cmd, &self.log_dir(), &self.janitor)?;
        self.processes
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .push(process);
        self.launches
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .push(launch);
        Ok(())
    }

    fn check_running(&self, name: &str) -> Result<(), Error> {
        let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        match processes.iter_mut().find(|p| p.name() == name) {
            Some(p) => p.check_running(),
            None => Ok(()),
        }
    }

    async fn wait_http_ok(&self, name: &'static str, port: u16, path: &str) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running(name)?;
            if crate::http_get(port, path)
                .await
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: name,
                    log_tail: self.log_tails(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_apiserver(&self) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running("kube-apiserver")?;
            let request = http::Request::get("/readyz").body(vec![]);
            if let Ok(request) = request
                && client
                    .request_text(request)
                    .await
                    .is_ok_and(|body| body.trim() == "ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: "kube-apiserver",
                    log_tail: self.log_tails(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_component_healthz(&self, name: &'static str, port: u16) -> Result<(), Error> {
        let url = format!("https://127.0.0.1:{port}")
            .parse()
            .map_err(|_| Error::Timeout {
                what: name,
                log_tail: String::new(),
            })?;
        let mut config = Config::new(url);
        config.accept_invalid_certs = true;
        let client =
            Client::try_from(config).map_err(|source| Error::kube("build a client", source))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running(name)?;
            let request = http::Request::get("/healthz").body(vec![]);
            if let Ok(request) = request
                && client
                    .request_text(request)
                    .await
                    .is_ok_and(|body| body.trim() == "ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: name,
                    log_tail: self.log_tails(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A client for the cluster a kubeconfig file points at.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, Error> {
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Client::try_from(config).map_err(|source| Error::kube("build a client", source))
}

/// Free loopback ports, taken by binding port 0. They are released before use,
/// which leaves a small window for another process to take one; the start
/// then fails loudly instead of flaking silently.
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|source| Error::io("find a free port", source))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|source| Error::io("read a port", source))?
            .port();
    }
    Ok(ports)
}
