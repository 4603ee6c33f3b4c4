//! Installing, upgrading, testing and uninstalling the chart with Helm.

use k8s_openapi::api::coordination::v1::Lease;

use super::*;

impl Cluster<'_> {
    /// `helm install` with the locally built images; every Ambit pod Ready.
    pub async fn install(&self) -> anyhow::Result<()> {
        let values = self.values("info");
        let file = self.env.control_plane.dir.join("real-node-values.yaml");
        std::fs::write(&file, values)?;
        let chart = chart_dir().display().to_string();
        let file = file.display().to_string();
        let install = [
            "install",
            RELEASE,
            &chart,
            "--create-namespace",
            "-f",
            &file,
        ];
        // A wrong value is refused by the chart's schema, naming it.
        let refused = self.helm(&[&install[..], &["--set", "agent.logLevel=loud"]].concat());
        let message = format!("{refused:?}");
        anyhow::ensure!(
            refused.is_err() && message.contains("logLevel"),
            "helm install with agent.logLevel=loud was not refused by the schema: {message}"
        );
        let started = Instant::now();
        self.helm(&install)?;
        self.wait_ambit_ready().await?;
        eprintln!(
            "helm install → every Ambit pod Ready: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        self.one_controller_leads().await
    }

    /// The controller's Lease is held by one of its two replicas.
    async fn one_controller_leads(&self) -> anyhow::Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.system);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        let replicas: Vec<String> = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let lease = wait::until(
            &leases,
            "ambit-controller",
            TIMEOUT,
            "a leader",
            |l: Option<&Lease>| {
                l.and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.holder_identity.as_ref())
                    .is_some()
            },
        )
        .await?;
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        anyhow::ensure!(
            replicas.len() == 2 && replicas.contains(&holder),
            "the Lease is held by {holder:?}, not one of the controller pods {replicas:?}"
        );
        eprintln!("leader elected: {holder} (of {} replicas)", replicas.len());
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
    pub(super) async fn wait_ambit_ready(&self) -> anyhow::Result<()> {
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
}
