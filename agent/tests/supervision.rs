//! The agent's supervision, as a real process: what ends it and with which
//! exit status, and what does not.
//!
//! ```text
//!  API server unreachable at start ─► /healthz 200, /readyz 503, keeps retrying (no restart loop)
//!  its metrics port taken          ─► "the http task stopped: failed to serve /metrics on …", exit 1
//!  running, SIGTERM                ─► exit 0, registration socket removed
//! ```
//!
//! The agent's dependencies (the API server, the kubelet, external
//! handlers) come and go by design and are waited out, not exits (see
//! outage.rs, deviceplugin.rs, agent.rs): what ends the agent is a task
//! that can no longer run. These tests start real agent processes; the
//! first two never reach the shared control plane's API server.

use std::path::Path;
use std::time::{Duration, Instant};

use ambit_discovery::REGISTRATION_SOCKET;
use ambit_tests::agents::Agent;
use ambit_tests::{TestEnv, nodes};

const AGENT: &str = env!("CARGO_BIN_EXE_ambit-agent");
/// Generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A kubeconfig whose server is a loopback port nothing listens on.
fn unreachable_kubeconfig(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = dir.join(format!("unreachable-{port}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: gone\n  context: {{cluster: gone, user: nobody}}\ncurrent-context: gone\nusers:\n- name: nobody\n  user: {{token: none}}\n"
        ),
    )?;
    Ok(path)
}

async fn wait_exit(agent: &mut Agent) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = agent.exit_status() {
            return Ok(status);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent still runs after {TIMEOUT:?}; its log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_api_server_is_waited_out_alive_and_not_ready() -> anyhow::Result<()> {
    let env = TestEnv::new("supervision-unreachable").await?;
    let kubeconfig = unreachable_kubeconfig(&env.control_plane.dir)?;
    let kubeconfig = kubeconfig.to_string_lossy();
    let mut agent = Agent::start_with_env(
        env.control_plane,
        AGENT.as_ref(),
        "unreachable-node",
        &env.namespace,
        &[("KUBECONFIG", &kubeconfig)],
    )?;
    // The probes answer from the start, while the first Device listing
    // is retried: a kubelet would not restart this agent.
    let deadline = Instant::now() + TIMEOUT;
    while agent.get("/healthz").await.map(|(code, _)| code).ok() != Some(200) {
        anyhow::ensure!(Instant::now() < deadline, "no /healthz:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        let (health, _) = agent.get("/healthz").await?;
        let (ready, body) = agent.get("/readyz").await?;
        assert_eq!(health, 200, "{}", agent.log());
        assert_eq!(ready, 503, "{body}");
        assert_eq!(agent.exit_status(), None, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        agent.terminate(TIMEOUT).map(|s| s.code()),
        Some(Some(0)),
        "SIGTERM while waiting for the API server; log:\n{}",
        agent.log()
    );
    Ok(())
}

#[tokio::test]
async fn a_task_that_cannot_run_ends_the_agent_naming_it() -> anyhow::Result<()> {
    let env = TestEnv::new("supervision-port-taken").await?;
    let kubeconfig = unreachable_kubeconfig(&env.control_plane.dir)?;
    let kubeconfig = kubeconfig.to_string_lossy();
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let mut agent = Agent::start_with_env(
        env.control_plane,
        AGENT.as_ref(),
        "port-taken-node",
        &env.namespace,
        &[("KUBECONFIG", &kubeconfig), ("AMBIT_METRICS_ADDR", &addr)],
    )?;
    let status = wait_exit(&mut agent).await?;
    let log = agent.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let why = format!("the http task stopped: failed to serve /metrics on {addr}");
    assert!(log.contains(&why), "no {why:?} in:\n{log}");
    drop(taken);
    Ok(())
}

#[tokio::test]
async fn sigterm_ends_a_running_agent_cleanly() -> anyhow::Result<()> {
    let env = TestEnv::new("supervision-sigterm").await?;
    ambit_tests::crds::install(&env.client).await?;
    let node = nodes::create(&env.client, &env.namespace, 1, &[]).await?;
    let mut agent = Agent::start(env.control_plane, AGENT.as_ref(), &node[0], &env.namespace)?;
    agent.wait_ready().await?;
    let socket = agent.socket_dir.join(REGISTRATION_SOCKET);
    assert!(socket.exists(), "no registration socket at {socket:?}");
    let status = agent.terminate(TIMEOUT);
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "log:\n{}",
        agent.log()
    );
    assert!(!socket.exists(), "the registration socket is left behind");
    Ok(())
}
