//! Devices reaching real containers: brokers, device plugins, DRA.

use super::*;

impl Cluster<'_> {
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
    /// gets it unless it is handed over), capacity 1, each device its own
    /// device-plugin resource too.
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
                "devicePlugin": { "perDevice": true },
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
            allocatable(&resource, "1"),
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
            allocatable("ambit.dev/loops", "0"),
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
}

/// A node whose allocatable amount of `resource` is `amount`.
fn allocatable<'r>(resource: &'r str, amount: &'r str) -> impl Fn(Option<&Node>) -> bool + 'r {
    move |n: Option<&Node>| {
        n.and_then(|n| n.status.as_ref())
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(resource))
            .is_some_and(|q| q.0 == amount)
    }
}
