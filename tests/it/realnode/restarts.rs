//! Restarts on a real node churn nothing of Ambit.

use super::*;

impl Cluster<'_> {
    fn ambit_state(
        all_pods: &[Pod],
        devices: &[Device],
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        (uids(all_pods), uids(devices))
    }

    pub(super) async fn snapshot(
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
}
