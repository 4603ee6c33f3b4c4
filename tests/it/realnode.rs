//! Ambit on real nodes: two real kubelets with containerd (the harness's
//! `realnode`), the images `make images` builds, the chart installed with
//! `helm install`, and devices reaching real containers.
//!
//! ```text
//!  make images PROFILE=debug ──► OCI archives ──ctr import──► real-0, real-1
//!  helm install ──► agent + external handler DaemonSets, controller (2, leader-elected)
//!  DeviceSets: debug-echo (shared) → brokers in real containers, properties in their env
//!              udev loop7 (local)  → device-plugin pods get /dev/loop7 (+ CDI)
//!              udev loop6 (local), debug-echo (shared) → DRA claims, prepared by the agent
//!  restarts (kubelet, agent pod, containerd) → nothing of Ambit churns
//!  helm upgrade, helm test, helm uninstall ──► what is left; the host as it was
//! ```
//!
//! Needs root (CI runs as root): without it, or without a package real nodes
//! need, the test fails and says why.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ambit_tests::TestEnv;
use ambit_tests::realnode::host::HostState;
use ambit_tests::realnode::{PAUSE_IMAGE, RealNodes, images};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

#[path = "realnode/mod.rs"]
mod steps;

use steps::Cluster;

/// Real nodes change machine-wide things (sysctls, cgroups): one test at a
/// time, so each one's "before" is the machine's own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The whole path a user takes, on two real nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_on_two_real_nodes() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("real-nodes").await?;
    let cp = env.control_plane;
    let started = Instant::now();
    let archives = tokio::task::spawn_blocking({
        let out = cp.dir.join("images");
        move || images::project_images(&out)
    })
    .await??;
    eprintln!(
        "images built in {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        archives.iter().map(|a| &a.reference).collect::<Vec<_>>()
    );
    let started = Instant::now();
    let nodes = RealNodes::start(cp, "real", 2, &archives).await?;
    eprintln!(
        "2 real nodes Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let cluster = Cluster::new(&env, &nodes).await?;
    let outcome = async {
        cluster.pods_reach_each_other_across_nodes().await?;
        cluster.install().await?;
        cluster.brokers_get_their_devices_properties().await?;
        Box::pin(cluster.device_plugin_pods_get_the_device()).await?;
        Box::pin(cluster.dra_claims_are_prepared_by_the_agent()).await?;
        cluster.restarts_churn_nothing().await?;
        cluster.upgrade_test_and_uninstall().await
    }
    .await;
    if outcome.is_err() {
        eprintln!("{}", cluster.diagnostics().await);
    }
    outcome?;

    let left = tokio::task::spawn_blocking(move || nodes.stop()).await??;
    anyhow::ensure!(
        left.is_empty(),
        "real nodes left the host changed:\n{}",
        left.join("\n")
    );
    Ok(())
}

/// A process running real nodes with a container on one is killed with
/// SIGKILL: its janitor stops every process (the runc shims and containers
/// too) and undoes every change on the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leaves_the_host_as_it_was() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let before = HostState::read();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ambit-controlplane"))
        .args(["--real-nodes", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    // Read its output to the end (a closed pipe would end it early).
    let (found, kubeconfig) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(path) = line.strip_prefix("export KUBECONFIG=")
                && let Some(found) = found.take()
            {
                let _ = found.send(path.to_owned());
            }
        }
    });
    let kubeconfig = kubeconfig
        .await
        .map_err(|_| anyhow::anyhow!("ambit-controlplane --real-nodes 2 did not start"))?;
    let client = ambit_tests::controlplane::client_for(kubeconfig.as_ref()).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "doomed" },
        "spec": {
            "nodeSelector": { "kubernetes.io/hostname": "real-0" },
            "containers": [{ "name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "Never" }],
        },
    }))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // The default ServiceAccount comes a few seconds after the control plane.
    while let Err(error) = pods.create(&PostParams::default(), &pod).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not create the pod: {error}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ambit_tests::wait::until(
        &pods,
        "doomed",
        Duration::from_secs(60),
        "Running",
        |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running")
        },
    )
    .await?;
    let during = HostState::read();
    anyhow::ensure!(
        !during.differences(&before).is_empty(),
        "real nodes changed nothing on the host: the check would prove nothing"
    );

    child.kill()?;
    child.wait()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let left = HostState::read().differences(&before);
        let shims = Command::new("pgrep")
            .args(["-f", "containerd-shim-runc-v2"])
            .output()?;
        if left.is_empty() && shims.stdout.is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "60 s after kill -9 the host still differs:\n{}\nshims: {}",
            left.join("\n"),
            String::from_utf8_lossy(&shims.stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "kill -9 → host as it was in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
