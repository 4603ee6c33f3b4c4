//! The controller's supervision, as a real process against the real control
//! plane: what ends it, what `/healthz` says on its way out, its exit status,
//! and the Lease it leaves behind.
//!
//! A test binary of its own: stopping the API server would break any test
//! that shares its control plane. Its tests take turns (`SERIAL`).
//!
//! ```text
//!  leading ─► kill kube-apiserver ─► the Lease cannot be renewed ─► it expires
//!  ─► /healthz 503 "unhealthy: the leader election task stopped: …" ─► exit 1
//!  leading ─► SIGTERM ─► the Lease released (no holder) ─► exit 0
//! ```

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ambit_tests::TestEnv;
use k8s_openapi::api::coordination::v1::Lease;
use tokio::process::{Child, Command};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_ambit-controller");
/// Generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(60);
const LEASE: &str = "ambit-controller";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A controller process whose exit status the test reads.
struct Controller {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Controller {
    fn start(env: &TestEnv, identity: &str, lease_duration: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = env
            .control_plane
            .log_dir()
            .join(format!("supervision-{}-{identity}.log", env.namespace));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(CONTROLLER)
            .env("KUBECONFIG", &env.control_plane.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into()),
            )
            .env("AMBIT_NAMESPACE", &env.namespace)
            .env("AMBIT_LEASE_NAMESPACE", &env.namespace)
            .env("AMBIT_POD_NAME", identity)
            .env("AMBIT_LEASE_DURATION", lease_duration)
            .env("AMBIT_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child, port, log })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        ambit_tests::http_get(self.port, path).await
    }

    async fn wait_leading(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok((_, text)) = self.get("/metrics").await
                && text.lines().any(|l| l == "ambit_controller_leader 1")
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the controller exited ({status}):\n{}", self.log_tail());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the controller did not lead within {TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the exit, and collects every `/healthz` answer that was
    /// not `200 ok` meanwhile.
    async fn wait_exit(&mut self) -> anyhow::Result<(ExitStatus, Vec<(u16, String)>)> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut unhealthy = vec![];
        loop {
            tokio::select! {
                status = self.child.wait() => return Ok((status?, unhealthy)),
                () = tokio::time::sleep_until(deadline) => {
                    anyhow::bail!("the controller did not exit within {TIMEOUT:?}:\n{}", self.log_tail())
                }
                answer = async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ambit_tests::http_get(self.port, "/healthz").await
                } => if let Ok(answer) = answer && answer != (200, "ok".to_owned()) {
                    unhealthy.push(answer);
                },
            }
        }
    }

    fn log_tail(&self) -> String {
        ambit_tests::process::tail(&self.log, 40)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn holder(env: &TestEnv) -> anyhow::Result<Option<String>> {
    let lease = env.api::<Lease>().get(LEASE).await?;
    Ok(lease.spec.and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn a_leader_that_cannot_renew_its_lease_reports_unhealthy_and_exits_non_zero()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("lease-lost").await?;
    ambit_tests::crds::install(&env.client).await?;
    let mut controller = Controller::start(&env, "s1", "4s")?;
    controller.wait_leading().await?;
    assert_eq!(controller.get("/healthz").await?, (200, "ok".into()));
    assert_eq!(holder(&env).await?.as_deref(), Some("s1"));

    // The dependency goes: kube-apiserver dies (etcd stays), so the
    // Lease cannot be renewed.
    let outage = Instant::now();
    env.control_plane.kill_component("kube-apiserver");
    let exited = controller.wait_exit().await;
    let took = outage.elapsed();
    env.control_plane.start_component("kube-apiserver").await?;
    let (status, unhealthy) = exited?;
    let log = controller.log_tail();

    assert_eq!(status.code(), Some(1), "exit status {status}:\n{log}");
    let (code, body) = unhealthy
        .first()
        .ok_or_else(|| anyhow::anyhow!("/healthz never said unhealthy:\n{log}"))?;
    assert_eq!(*code, 503, "{body}");
    assert!(
        body.starts_with(
            "unhealthy: the leader election task stopped: Lease ambit-controller was not renewed"
        ),
        "/healthz says why: {body:?}"
    );
    assert!(
        controller
            .log()
            .lines()
            .any(|l| l.contains("a long-lived task ended; stopping")
                && l.contains("leader election")),
        "the log says which task ended:\n{log}"
    );
    // Renewed every ~2.7 s; expires 4 s after the last renewal, at most.
    assert!(took < Duration::from_secs(30), "took {took:?} to exit");
    eprintln!("exited {took:?} after the API server died; /healthz: {body:?}");
    Ok(())
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_zero() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new("sigterm").await?;
    ambit_tests::crds::install(&env.client).await?;
    let mut controller = Controller::start(&env, "t1", "10s")?;
    controller.wait_leading().await?;
    assert_eq!(holder(&env).await?.as_deref(), Some("t1"));

    let pid = controller
        .child
        .id()
        .ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let killed = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()?;
    assert!(killed.success());
    let (status, unhealthy) = controller.wait_exit().await?;
    let log = controller.log_tail();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");
    assert!(unhealthy.is_empty(), "healthy to the end: {unhealthy:?}");
    // Released before the exit, not left to expire: a standby takes over at once.
    assert_eq!(holder(&env).await?, None, "{log}");
    Ok(())
}
