//! The steps of the real-node test, in the order a user meets them. Each
//! step asserts what it promises and prints the figures it measured.

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

    /// `helm install` with the locally built images; every Ambit pod Ready.
    pub async fn install(&self) -> anyhow::Result<()> {
        let values = self.values("info");
        let file = self.env.control_plane.dir.join("real-node-values.yaml");
        std::fs::write(&file, values)?;
        let chart = chart_dir().display().to_string();
        let file = file.display().to_string();
        let started = Instant::now();
        self.helm(&[
            "install",
            RELEASE,
            &chart,
            "--create-namespace",
            "-f",
            &file,
        ])?;
        self.wait_ambit_ready().await?;
        eprintln!(
            "helm install → every Ambit pod Ready: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn values(&self, log_level: &str) -> String {
        format!(
            r#"image: {{ registry: ghcr.io/ambit-dev, tag: "{VERSION}", pullPolicy: Never }}
handlers:
  debugEcho: {{ enabled: false }}
  udev: {{ enabled: true }}
externalHandlers:
  enabled: true
  handlers: [debug-echo]
agent:
  logLevel: {log_level}
  resources: {{ requests: {{ cpu: 1m, memory: 16Mi }}, limits: {{ memory: 512Mi }} }}
controller:
  resources: {{ requests: {{ cpu: 1m, memory: 16Mi }}, limits: {{ memory: 512Mi }} }}
"#
        )
    }

    /// Every DaemonSet and Deployment of the release has all its pods
    /// Ready and updated.
    async fn wait_ambit_ready(&self) -> anyhow::Result<()> {
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.system);
        wait::list_until(&daemonsets, TIMEOUT, "Ambit's DaemonSets Ready", |all| {
            all.len() >= 2
                && all.iter().all(|ds| {
                    let generation = ds.metadata.generation;
                    ds.status.as_ref().is_some_and(|s| {
                        s.desired_number_scheduled == 2
                            && s.number_ready == 2
                            && s.updated_number_scheduled == Some(2)
                            && s.observed_generation == generation
                    })
                })
        })
        .await?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.system);
        wait::list_until(&deployments, TIMEOUT, "the controller Ready", |all| {
            !all.is_empty()
                && all.iter().all(|d| {
                    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    d.status.as_ref().is_some_and(|s| {
                        s.ready_replicas == Some(want)
                            && s.updated_replicas == Some(want)
                            && s.observed_generation == d.metadata.generation
                    })
                })
        })
        .await?;
        Ok(())
    }

    async fn apply_set(&self, set: Value) -> anyhow::Result<()> {
        let set: DeviceSet = serde_json::from_value(set)?;
        let api: Api<DeviceSet> = Api::namespaced(self.client.clone(), &self.apps);
        api.patch(
            &set.name_any(),
            &PatchParams::apply("real-node-test").force(),
            &Patch::Apply(&set),
        )
        .await?;
        Ok(())
    }

    /// A udev DeviceSet `name` for the node's block device `kernel` (a
    /// loop device: every node of this machine has one, and no container
    /// gets it unless it is handed over), capacity 1.
    async fn apply_loop_set(
        &self,
        name: &str,
        kernel: &str,
        properties: Value,
    ) -> anyhow::Result<()> {
        self.apply_set(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": name, "namespace": self.apps },
            "spec": {
                "discovery": { "handler": "udev", "details": {
                    "rules": [format!("SUBSYSTEM==\"block\", KERNEL==\"{kernel}\"")],
                    "permissions": "r",
                }},
                "capacity": 1,
                "brokerProperties": properties,
            },
        }))
        .await
    }

    /// Devices of `set`, once `condition` holds for them.
    async fn devices(
        &self,
        set: &str,
        what: &str,
        condition: impl Fn(&[&Device]) -> bool,
    ) -> anyhow::Result<Vec<Device>> {
        let api: Api<Device> = Api::namespaced(self.client.clone(), &self.apps);
        let all = wait::list_until(&api, TIMEOUT, what, |all| {
            let mine: Vec<&Device> = all.iter().filter(|d| d.spec.device_set == set).collect();
            condition(&mine)
        })
        .await?;
        Ok(all
            .into_iter()
            .filter(|d| d.spec.device_set == set)
            .collect())
    }

    /// A shared debug-echo device (served by the external handler) gets a
    /// broker on each node, in a real container whose environment holds the
    /// Device's properties.
    pub async fn brokers_get_their_devices_properties(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.apply_set(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": "echo", "namespace": self.apps },
            "spec": {
                "discovery": { "handler": "debug-echo", "details": {
                    "shared": true,
                    "devices": [{ "id": "sensor-1", "properties": { "LOCATION": "hall-a" } }],
                }},
                "capacity": 2,
                "brokerProperties": { "SAMPLE_RATE": "10" },
                "broker": { "pod": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [container("broker", "env | sort")],
                }},
            },
        }))
        .await?;
        let devices = self
            .devices("echo", "the echo Device seen by both nodes", |d| {
                d.len() == 1 && d[0].status.as_ref().is_some_and(|s| s.nodes.len() == 2)
            })
            .await?;
        let device = devices[0].name_any();
        let brokers = wait::list_until(&self.pods(), TIMEOUT, "two Running brokers", |pods| {
            pods.iter()
                .filter(|p| p.labels().get("ambit.dev/device") == Some(&device))
                .filter(|p| running(Some(p)))
                .count()
                == 2
        })
        .await?;
        eprintln!(
            "DeviceSet applied → Device on 2 nodes and 2 brokers Running: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut nodes_seen = vec![];
        for broker in brokers
            .iter()
            .filter(|p| p.labels().get("ambit.dev/device") == Some(&device))
        {
            let log = self.wait_output(&broker.name_any(), "broker").await?;
            for line in [
                "LOCATION=hall-a".to_owned(),
                "SAMPLE_RATE=10".to_owned(),
                "DEBUG_ECHO_ID=sensor-1".to_owned(),
                format!("AMBIT_DEVICE={device}"),
            ] {
                anyhow::ensure!(
                    log.lines().any(|l| l == line),
                    "broker {} lacks {line} in its environment:\n{log}",
                    broker.name_any()
                );
            }
            nodes_seen.push(broker.spec.as_ref().and_then(|s| s.node_name.clone()));
        }
        nodes_seen.sort();
        nodes_seen.dedup();
        anyhow::ensure!(
            nodes_seen.len() == 2,
            "both brokers on one node: {nodes_seen:?}"
        );
        Ok(())
    }

    /// A udev DeviceSet finds /dev/loop7 on each node; a pod asking for the
    /// Device's resource gets the device node (usable), its properties and
    /// the CDI device; a second one is refused for capacity; a pod asking
    /// for the set's resource gets the other node's device.
    pub async fn device_plugin_pods_get_the_device(&self) -> anyhow::Result<()> {
        self.apply_loop_set("loops", "loop7", json!({ "PURPOSE": "real-node-test" }))
            .await?;
        let devices = self
            .devices("loops", "a loop7 Device per node", |d| {
                d.len() == 2
                    && d.iter()
                        .all(|d| d.status.as_ref().is_some_and(|s| s.nodes.len() == 1))
            })
            .await?;
        let node0 = self.nodes.nodes[0].name();
        let mine = devices
            .iter()
            .find(|d| {
                d.status
                    .as_ref()
                    .is_some_and(|s| s.nodes.iter().any(|n| n.node == node0))
            })
            .ok_or_else(|| anyhow::anyhow!("no loop7 Device on {node0}"))?;
        let resource = format!("ambit.dev/{}", mine.name_any());
        let nodes: Api<Node> = Api::all(self.client.clone());
        wait::until(
            &nodes,
            node0,
            TIMEOUT,
            "the resource allocatable",
            |n: Option<&Node>| {
                n.and_then(|n| n.status.as_ref())
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get(&resource))
                    .is_some_and(|q| q.0 == "1")
            },
        )
        .await?;

        let script = "env | sort\nls -l /dev/loop7\ntest -b /dev/loop7 && dd if=/dev/loop7 of=/dev/null bs=512 count=1 && echo DEVICE-USABLE";
        let mut app = container("app", script);
        app["resources"] = json!({ "limits": { resource.clone(): "1" } });
        let pod = pod_on("dp-device", None, json!([app.clone()]), json!({}))?;
        self.pods().create(&PostParams::default(), &pod).await?;
        let log = self.wait_output("dp-device", "app").await?;
        for line in ["DEVICE-USABLE", "PURPOSE=real-node-test"] {
            anyhow::ensure!(
                log.lines().any(|l| l == line),
                "dp-device lacks {line}:\n{log}"
            );
        }
        anyhow::ensure!(
            log.contains(&format!("AMBIT_DEVICE={}", mine.name_any())),
            "dp-device lacks its device's name:\n{log}"
        );
        let cdi = self.cdi_devices_of("dp-device", "app").await?;
        anyhow::ensure!(
            cdi.iter().any(|n| n.starts_with("ambit.dev/device=")),
            "containerd got no Ambit CDI device for dp-device: {cdi:?}"
        );

        // Beyond capacity: the scheduler says why.
        let second = pod_on("dp-beyond", None, json!([app]), json!({}))?;
        self.pods().create(&PostParams::default(), &second).await?;
        let refused = wait::until(
            &self.pods(),
            "dp-beyond",
            TIMEOUT,
            "Unschedulable",
            |p: Option<&Pod>| {
                p.and_then(|p| p.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.reason.as_deref() == Some("Unschedulable")
                        })
                    })
            },
        )
        .await?;
        let message = refused
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| (c.type_ == "PodScheduled").then_some(c.message))
            .flatten()
            .unwrap_or_default();
        anyhow::ensure!(
            message.contains(&format!("Insufficient {resource}")),
            "the pod beyond capacity was refused without naming the resource: {message}"
        );
        self.pods()
            .delete("dp-beyond", &DeleteParams::default())
            .await?;

        // The set's resource: any loop7 of the set, so the other node's. The
        // slot dp-device holds is reported Unhealthy in the set's resource
        // too, but the scheduler only learns it from the node's status: a pod
        // created before that (up to nodeStatusUpdateFrequency later) can be
        // bound to node0 and refused by the kubelet (UnexpectedAdmissionError,
        // seen here). Wait until node0's allocatable says so, as a scheduler
        // needs it to (docs/pod-access.md).
        wait::until(
            &nodes,
            node0,
            TIMEOUT,
            "the set's slot on it taken",
            |n: Option<&Node>| {
                n.and_then(|n| n.status.as_ref())
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get("ambit.dev/loops"))
                    .is_some_and(|q| q.0 == "0")
            },
        )
        .await?;
        let mut any = container("app", script);
        any["resources"] = json!({ "limits": { "ambit.dev/loops": "1" } });
        let pod = pod_on("dp-set", None, json!([any]), json!({}))?;
        self.pods().create(&PostParams::default(), &pod).await?;
        let log = self.wait_output("dp-set", "app").await?;
        anyhow::ensure!(
            log.contains("DEVICE-USABLE"),
            "dp-set lacks the device:\n{log}"
        );
        let placed = self.pods().get("dp-set").await?;
        let on = placed.spec.and_then(|s| s.node_name).unwrap_or_default();
        anyhow::ensure!(
            on != node0,
            "dp-set landed on {node0}, whose only loop7 is taken"
        );
        eprintln!(
            "device plugin: {resource} and ambit.dev/loops reach containers; capacity refused: {message}"
        );
        Ok(())
    }

    /// The CDI device names containerd applied to a container.
    async fn cdi_devices_of(&self, pod: &str, container: &str) -> anyhow::Result<Vec<String>> {
        let found = self.pods().get(pod).await?;
        let node = self.node(&found.spec.and_then(|s| s.node_name).unwrap_or_default())?;
        let id = found
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == container)
            .and_then(|c| c.container_id)
            .unwrap_or_default();
        Ok(node.cdi_devices(id.trim_start_matches("containerd://")))
    }

    /// DRA: a claim for a local device (loop6) and one for the shared
    /// debug-echo device are allocated by the scheduler, prepared by the
    /// agent through the real kubelet, and the containers see the CDI edits.
    pub async fn dra_claims_are_prepared_by_the_agent(&self) -> anyhow::Result<()> {
        self.apply_loop_set("dra-loops", "loop6", json!({})).await?;
        self.devices("dra-loops", "a loop6 Device per node", |d| d.len() == 2)
            .await?;
        for (name, set, script) in [
            (
                "dra-local",
                "dra-loops",
                "env | sort\ntest -b /dev/loop6 && dd if=/dev/loop6 of=/dev/null bs=512 count=1 && echo DEVICE-USABLE",
            ),
            ("dra-shared", "echo", "env | sort\necho DEVICE-USABLE"),
        ] {
            let claim = json!({
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": { "name": name, "namespace": self.apps },
                "spec": { "devices": { "requests": [{ "name": "dev", "exactly": {
                    "deviceClassName": "ambit.dev",
                    "selectors": [{ "cel": { "expression": format!(
                        "device.attributes[\"ambit.dev\"].deviceSet == \"{set}\" && device.attributes[\"ambit.dev\"].namespace == \"{}\"",
                        self.apps
                    )}}],
                }}]}},
            });
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
                self.client.clone(),
                &self.apps,
                &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
                    "resource.k8s.io",
                    "v1",
                    "ResourceClaim",
                )),
            );
            api.create(&PostParams::default(), &serde_json::from_value(claim)?)
                .await?;
            let mut app = container("app", script);
            app["resources"] = json!({ "claims": [{ "name": "dev" }] });
            let pod = pod_on(
                name,
                None,
                json!([app]),
                json!({ "resourceClaims": [{ "name": "dev", "resourceClaimName": name }] }),
            )?;
            self.pods().create(&PostParams::default(), &pod).await?;
            let log = self.wait_output(name, "app").await?;
            anyhow::ensure!(
                log.lines().any(|l| l == "DEVICE-USABLE"),
                "{name}'s container did not get its device:\n{log}"
            );
            anyhow::ensure!(
                log.contains("AMBIT_DEVICE_SET=") && log.contains(set),
                "{name}'s container lacks the CDI environment of a {set} device:\n{log}"
            );
            if set == "echo" {
                anyhow::ensure!(
                    log.contains("LOCATION=hall-a"),
                    "{name} lacks the properties:\n{log}"
                );
            }
            let cdi = self.cdi_devices_of(name, "app").await?;
            anyhow::ensure!(
                cdi.iter().any(|n| n.starts_with("ambit.dev/device=")),
                "containerd got no Ambit CDI device for {name}: {cdi:?}"
            );
        }
        eprintln!(
            "DRA: a local and a shared device prepared by the agent through the real kubelet"
        );
        Ok(())
    }

    fn ambit_state(
        all_pods: &[Pod],
        devices: &[Device],
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        (uids(all_pods), uids(devices))
    }

    async fn snapshot(
        &self,
    ) -> anyhow::Result<(
        BTreeMap<String, String>,
        BTreeMap<String, String>,
        Vec<String>,
    )> {
        let pods = self.pods().list(&ListParams::default()).await?.items;
        let devices: Api<Device> = Api::namespaced(self.client.clone(), &self.apps);
        let devices = devices.list(&ListParams::default()).await?.items;
        let allocations: Vec<String> = devices
            .iter()
            .flat_map(|d| {
                let name = d.name_any();
                d.status
                    .iter()
                    .flat_map(|s| s.allocations.iter())
                    .map(move |a| format!("{name}/{}@{}", a.slot, a.node))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (pods, devices) = Self::ambit_state(&pods, &devices);
        Ok((pods, devices, allocations))
    }

    async fn restarts_total(&self) -> anyhow::Result<i32> {
        let pods = self.pods().list(&ListParams::default()).await?.items;
        Ok(pods
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum())
    }

    /// Kubelet restart, agent pod deleted, containerd restart: the same pods
    /// (UIDs), Devices and slot allocations afterwards, no container
    /// restarted, and the plugins registered again.
    pub async fn restarts_churn_nothing(&self) -> anyhow::Result<()> {
        let before = self.snapshot().await?;
        let restarts = self.restarts_total().await?;
        let node = &self.nodes.nodes[0];
        let resources = node.device_plugins_registered_since(0);

        let started = Instant::now();
        let offset = node.kubelet_log_len();
        node.restart_kubelet()?;
        self.wait_registered(node, offset, &resources).await?;
        eprintln!(
            "kubelet restart → every device plugin registered again: {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let agents: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        let agent = agents
            .list(&ListParams::default().labels("app.kubernetes.io/component=agent"))
            .await?
            .items
            .into_iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name()))
            .ok_or_else(|| anyhow::anyhow!("no agent pod on {}", node.name()))?;
        let started = Instant::now();
        let offset = node.kubelet_log_len();
        agents
            .delete(&agent.name_any(), &DeleteParams::default())
            .await?;
        wait::deleted(&agents, &agent.name_any(), TIMEOUT).await?;
        self.wait_ambit_ready().await?;
        self.wait_registered(node, offset, &resources).await?;
        eprintln!(
            "agent pod deleted → its replacement Ready and registered: {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        node.restart_containerd().await?;
        let nodes: Api<Node> = Api::all(self.client.clone());
        wait::until(&nodes, node.name(), TIMEOUT, "Ready", |n: Option<&Node>| {
            n.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .await?;
        eprintln!(
            "containerd restart → node Ready: {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // Give the controller and agents time to do anything they would do.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = self.snapshot().await?;
        anyhow::ensure!(
            before.0 == after.0,
            "pods changed across the restarts:\nbefore {:?}\nafter  {:?}",
            before.0,
            after.0
        );
        anyhow::ensure!(
            before.1 == after.1,
            "Devices changed across the restarts:\nbefore {:?}\nafter  {:?}",
            before.1,
            after.1
        );
        anyhow::ensure!(
            before.2 == after.2,
            "slots changed across the restarts:\nbefore {:?}\nafter  {:?}",
            before.2,
            after.2
        );
        let now = self.restarts_total().await?;
        anyhow::ensure!(now == restarts, "containers restarted: {restarts} → {now}");
        eprintln!(
            "restarts: 0 pods, 0 Devices, 0 slots changed ({} pods, {} Devices)",
            after.0.len(),
            after.1.len()
        );
        Ok(())
    }

    /// Waits until the kubelet of `node` accepted, since its log was
    /// `offset` long, a registration of every resource in `resources`.
    async fn wait_registered(
        &self,
        node: &RealNode,
        offset: usize,
        resources: &std::collections::BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let registered = node.device_plugins_registered_since(offset);
            if registered.is_superset(resources) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not register again: {:?} of {resources:?}",
                node.name(),
                registered
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `helm upgrade` rolls a changed value out without touching brokers;
    /// `helm test` passes; `helm uninstall` leaves only what Helm keeps.
    pub async fn upgrade_test_and_uninstall(&self) -> anyhow::Result<()> {
        let before = self.snapshot().await?;
        let file = self.env.control_plane.dir.join("real-node-values-2.yaml");
        std::fs::write(&file, self.values("debug"))?;
        let chart = chart_dir().display().to_string();
        let file = file.display().to_string();
        let started = Instant::now();
        self.helm(&["upgrade", RELEASE, &chart, "-f", &file])?;
        self.wait_ambit_ready().await?;
        let agents: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.system);
        let agent = agents
            .list(&ListParams::default().labels("app.kubernetes.io/component=agent"))
            .await?
            .items
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no agent DaemonSet"))?;
        let env = serde_json::to_value(&agent.spec)?;
        anyhow::ensure!(
            env.to_string().contains("\"RUST_LOG\",\"value\":\"debug\"")
                || env.to_string().contains("\"value\":\"debug\""),
            "the upgrade did not reach the agent DaemonSet"
        );
        eprintln!(
            "helm upgrade (agent.logLevel) rolled out: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let after = self.snapshot().await?;
        anyhow::ensure!(
            before.0 == after.0,
            "the upgrade recreated pods:\nbefore {:?}\nafter  {:?}",
            before.0,
            after.0
        );

        let started = Instant::now();
        let out = self.helm(&["test", RELEASE, "--timeout", "120s"])?;
        anyhow::ensure!(
            out.contains("Succeeded"),
            "helm test did not succeed:\n{out}"
        );
        eprintln!("helm test passed: {:.1} s", started.elapsed().as_secs_f64());

        // What a user deletes before uninstalling: their DeviceSets (Devices
        // and brokers go with them) and pods.
        let sets: Api<DeviceSet> = Api::namespaced(self.client.clone(), &self.apps);
        sets.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        self.pods()
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        self.helm(&["uninstall", RELEASE, "--wait", "--timeout", "120s"])?;
        let left: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        wait::list_until(&left, TIMEOUT, "no Ambit pods", |pods| {
            pods.iter().all(|p| {
                p.labels().get("app.kubernetes.io/name").map(String::as_str) != Some("ambit")
            })
        })
        .await?;
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(self.client.clone());
        for crd in ["devicesets.ambit.dev", "devices.ambit.dev"] {
            anyhow::ensure!(
                crds.get_opt(crd).await?.is_some(),
                "Helm removed {crd}: it keeps CRDs by convention"
            );
        }
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(self.client.clone());
        let left_roles: Vec<String> = roles
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        anyhow::ensure!(
            left_roles.is_empty(),
            "ClusterRoles left after uninstall: {left_roles:?}"
        );
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .delete(&self.system, &DeleteParams::default())
            .await?;
        eprintln!("helm uninstall: only the CRDs are left (Helm never deletes CRDs)");
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
