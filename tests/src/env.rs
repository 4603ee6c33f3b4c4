//! One control plane per test binary, one namespace per test.
//!
//! The control plane starts on first use, on a thread of its own (so it does
//! not belong to any one test's runtime), and lives until the test binary
//! exits. Each [`TestEnv`] gets a fresh namespace that is deleted when the
//! test ends; when the test fails, the end of every component's log is
//! printed with the failure.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, Resource};

use crate::ControlPlane;

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// The control plane of this test binary, started on first call.
pub fn shared_control_plane() -> anyhow::Result<&'static ControlPlane> {
    let started = CONTROL_PLANE.get_or_init(|| {
        let start = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("failed to build a runtime: {e}"))?;
            runtime
                .block_on(ControlPlane::start())
                .map_err(|e| e.to_string())
        });
        start
            .join()
            .unwrap_or_else(|_| Err("starting the control plane panicked".to_owned()))
    });
    started
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the test control plane did not start: {e}"))
}

/// A test's view of the shared control plane: an admin client and a
/// namespace of its own.
pub struct TestEnv {
    /// A cluster-admin client bound to the test's runtime.
    pub client: Client,
    /// The test's own namespace.
    pub namespace: String,
    /// The control plane (for its kubeconfig, logs and processes).
    pub control_plane: &'static ControlPlane,
}

impl TestEnv {
    /// Starts (or reuses) the control plane and creates a namespace named
    /// after the test.
    pub async fn new(test: &str) -> anyhow::Result<Self> {
        let control_plane = tokio::task::spawn_blocking(shared_control_plane)
            .await
            .map_err(anyhow::Error::from)??;
        let client = control_plane.client().await?;
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("{}-{n}", sanitize(test));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": namespace, "labels": { "ambit.dev/test": "true" } },
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            client,
            namespace,
            control_plane,
        })
    }

    /// An API for namespaced resources of kind `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Waits until the namespace's `default` ServiceAccount exists (the
    /// controller-manager makes it), which pods need before they can be created.
    pub async fn wait_for_default_service_account(&self) -> anyhow::Result<()> {
        default_service_account(&self.client, &self.namespace, Duration::from_secs(30)).await
    }
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== control plane logs (last 30 lines each; set AMBIT_KEEP_CONTROL_PLANE=1 to keep {}) =====\n{}",
                self.control_plane.dir.display(),
                self.control_plane.log_tails(30)
            );
        }
        // Delete the namespace from a thread of its own: Drop cannot await,
        // and the test's runtime may be shutting down.
        let namespace = self.namespace.clone();
        let kubeconfig = self.control_plane.kubeconfig.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = crate::controlplane::client_for(&kubeconfig).await.ok()?;
                Api::<Namespace>::all(client)
                    .delete(&namespace, &DeleteParams::background())
                    .await
                    .ok()
            })
        });
        let _ = cleanup.join();
    }
}

fn sanitize(test: &str) -> String {
    let mut name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(50);
    name.trim_matches('-').to_owned()
}

/// Waits until `namespace`'s `default` ServiceAccount exists (the
/// controller-manager makes it), which pods need before they can be
/// created; for at most `timeout`.
pub async fn default_service_account(
    client: &Client,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    crate::wait::until(
        &api,
        "default",
        timeout,
        "the default ServiceAccount",
        |sa: Option<&ServiceAccount>| sa.is_some(),
    )
    .await
    .map(drop)
}
