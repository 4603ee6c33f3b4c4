//! The steps of the real-node test, in the order a user meets them. Each
//! step asserts what it promises and prints the figures it measured:
//! the cluster and its helpers here; `install.rs` (helm install, upgrade,
//! test, uninstall), `devices.rs` (brokers, device plugins, DRA),
//! `restarts.rs` (kubelet, agent pod, containerd).

mod devices;
mod install;
mod restarts;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::TestEnv;
use ambit_tests::helm::{Helm, chart_dir};
use ambit_tests::realnode::{RealNode, RealNodes};
use ambit_tests::wait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(120);
const RELEASE: &str = "ambit";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The test's cluster: its client, namespaces, nodes and Helm.
pub struct Cluster<'a> {
    env: &'a TestEnv,
    nodes: &'a RealNodes,
    helm: Helm,
    client: Client,
    /// Where the chart is installed.
    system: String,
    /// Where the DeviceSets and pods live.
    apps: String,
}

fn testbox() -> String {
    format!("ghcr.io/ambit-dev/ambit-testbox:{VERSION}")
}

/// A container of the testbox image running `script`, then idling until
/// SIGTERM.
fn container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": testbox(),
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c",
            format!("{script}\necho READY\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done")],
    })
}

fn pod_on(name: &str, node: Option<&str>, containers: Value, extra: Value) -> anyhow::Result<Pod> {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 2,
        "containers": containers,
    });
    if let Some(node) = node {
        spec["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    }
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))?)
}

fn running(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        == Some("Running")
}

fn uids<K: ResourceExt>(objects: &[K]) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|o| (o.name_any(), o.uid().unwrap_or_default()))
        .collect()
}

impl<'a> Cluster<'a> {
    /// Helm, and the two namespaces.
    pub async fn new(env: &'a TestEnv, nodes: &'a RealNodes) -> anyhow::Result<Self> {
        let helm = tokio::task::spawn_blocking(Helm::ensure).await??;
        let client = env.client.clone();
        let system = format!("{}-system", env.namespace);
        Ok(Self {
            env,
            nodes,
            helm,
            client,
            system,
            apps: env.namespace.clone(),
        })
    }

    fn node(&self, name: &str) -> anyhow::Result<&RealNode> {
        self.nodes
            .nodes
            .iter()
            .find(|n| n.name() == name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not a real node"))
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.apps)
    }

    fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let kubeconfig = self.env.control_plane.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig, "--namespace", &self.system];
        all.extend_from_slice(args);
        self.helm.run(&all)
    }

    /// Waits until `pod` runs and its container `container` printed READY;
    /// returns what it printed.
    async fn wait_output(&self, pod: &str, container: &str) -> anyhow::Result<String> {
        let found = wait::until(&self.pods(), pod, TIMEOUT, "Running", running).await?;
        let node = found
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let node = self.node(&node)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = node.container_log(&self.apps, pod, container);
            if log.lines().any(|l| l == "READY") {
                return Ok(log);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{pod} runs but did not print READY; its log so far:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Two pods behind the bridges of two different nodes talk to each
    /// other (the CNI network and the routes between nodes).
    pub async fn pods_reach_each_other_across_nodes(&self) -> anyhow::Result<()> {
        self.env.wait_for_default_service_account().await?;
        let [a, b] = [&self.nodes.nodes[0], &self.nodes.nodes[1]];
        let server = pod_on(
            "net-server",
            Some(b.name()),
            json!([container(
                "c",
                "(while true; do echo hello-from-the-other-node | nc -l -p 7000; done) &"
            )]),
            json!({}),
        )?;
        self.pods().create(&PostParams::default(), &server).await?;
        self.wait_output("net-server", "c").await?;
        let server = self.pods().get("net-server").await?;
        let ip = server
            .status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| anyhow::anyhow!("net-server has no IP"))?;
        let client = pod_on(
            "net-client",
            Some(a.name()),
            json!([container(
                "c",
                &format!(
                    "for i in 1 2 3 4 5; do nc -w 2 {ip} 7000 && break; sleep 1; done; ip route 2>/dev/null || true"
                )
            )]),
            json!({}),
        )?;
        self.pods().create(&PostParams::default(), &client).await?;
        let log = self.wait_output("net-client", "c").await?;
        anyhow::ensure!(
            log.contains("hello-from-the-other-node"),
            "a pod on {} did not reach {ip} on {}:\n{log}",
            a.name(),
            b.name()
        );
        for pod in ["net-server", "net-client"] {
            self.pods().delete(pod, &DeleteParams::default()).await?;
        }
        eprintln!("pods on two nodes reach each other ({ip})");
        Ok(())
    }

    /// What to look at when a step failed: pods and their events.
    pub async fn diagnostics(&self) -> String {
        let mut out = String::from("===== real-node diagnostics =====\n");
        for ns in [&self.system, &self.apps] {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    let status = p.status.as_ref();
                    out.push_str(&format!(
                        "pod {ns}/{} on {:?}: {:?} {:?}\n",
                        p.name_any(),
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        status.and_then(|s| s.phase.clone()),
                        status.and_then(|s| s.conditions.clone()).map(|c| c
                            .into_iter()
                            .filter(|c| c.status != "True")
                            .map(|c| format!("{}: {:?}", c.type_, c.message))
                            .collect::<Vec<_>>())
                    ));
                    let node = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default();
                    for c in status
                        .and_then(|s| s.container_statuses.clone())
                        .unwrap_or_default()
                    {
                        out.push_str(&format!(
                            "  container {}: {:?} {:?}\n",
                            c.name, c.state, c.last_state
                        ));
                        if let Ok(node) = self.node(&node) {
                            let log = node.container_log(ns, &p.name_any(), &c.name);
                            let tail: Vec<&str> = log.lines().rev().take(15).collect();
                            for line in tail.iter().rev() {
                                out.push_str(&format!("    | {line}\n"));
                            }
                        }
                    }
                }
            }
            let events: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(self.client.clone(), ns);
            if let Ok(list) = events.list(&ListParams::default()).await {
                for e in list
                    .items
                    .iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                {
                    out.push_str(&format!(
                        "event {}: {:?} {:?}\n",
                        e.involved_object.name.clone().unwrap_or_default(),
                        e.reason,
                        e.message
                    ));
                }
            }
        }
        for node in &self.nodes.nodes {
            for part in ["kubelet", "containerd"] {
                let log = self
                    .env
                    .control_plane
                    .log_dir()
                    .join(format!("{}-{part}.log", node.name()));
                let text = ambit_tests::process::tail(&log, 25);
                out.push_str(&format!("----- {} {part} -----\n{text}\n", node.name()));
            }
        }
        out
    }
}
