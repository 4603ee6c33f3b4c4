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

use std::time::Instant;

use ambit_tests::TestEnv;
use ambit_tests::realnode::{RealNodes, images};

mod realnode_steps;

use realnode_steps::Cluster;

/// The whole path a user takes, on two real nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_on_two_real_nodes() -> anyhow::Result<()> {
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
        cluster.device_plugin_pods_get_the_device().await?;
        cluster.dra_claims_are_prepared_by_the_agent().await?;
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
