//! What every reconcile shares, as plain data: the caches it reads, the
//! writer it writes through, the memory it keeps, metrics and settings.
//! Nothing here reconciles; it is built once per term as leader and handed
//! to the reconcilers.
//!
//! ```text
//!  Context ─┬─ stores, indexes  (crate::cache: what the reconcilers read)
//!           ├─ writer           (crate::writes: every API write, Events)
//!           ├─ memory           (crate::memory: per Device / DeviceSet, pruned with them)
//!           ├─ metrics, settings
//!           └─ Tidy: the caches' departures ─► memory forgets, set metrics removed,
//!                    the slice sweep told that DeviceSets went
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;

use crate::cache::{self, Forget, Gone, Indexes, Kind, Stores, Triggers};
use crate::health::{self, NodeHealth};
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::writes::Writer;

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// How long a NotReady node keeps its Device entries.
    pub not_ready_toleration: Duration,
    /// This replica's identity (Events name it as their reporting instance).
    pub identity: String,
}

/// Shared by every reconcile.
pub struct Context {
    /// What the reconcilers read.
    pub stores: Stores,
    /// Lookups over the caches.
    pub indexes: Arc<Indexes>,
    /// Every write to the API.
    pub writer: Writer,
    /// Per Device and DeviceSet: what the reconcilers remember.
    pub memory: Arc<Memory>,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// Told when DeviceSets leave the cache (a deletion, or a relisting
    /// that lacks some): their ResourceSlices are due for the sweep.
    pub sets_gone: Arc<Notify>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What goes when the caches see an object go: the memory about it, and a
/// DeviceSet's metric series.
struct Tidy {
    memory: Arc<Memory>,
    metrics: Metrics,
    sets_gone: Arc<Notify>,
}

impl Forget for Tidy {
    fn gone(&self, gone: Gone<'_>) {
        self.memory.gone(gone);
        match gone.kind {
            Kind::DeviceSet => {
                self.metrics.remove_set(gone.namespace, gone.name);
                self.sets_gone.notify_one();
            }
            Kind::Device | Kind::Node => {}
        }
    }

    fn listed(&self, kind: Kind, live: &HashSet<String>) {
        self.memory.listed(kind, live);
        if kind == Kind::DeviceSet {
            self.sets_gone.notify_one();
        }
    }
}

impl Context {
    /// A context, the controllers' triggers (fed by its caches), and the
    /// watches that fill its caches: they must be polled (the controllers'
    /// task joins them, so they stop with it).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
    ) -> (Self, Triggers, Vec<BoxFuture<'static, ()>>) {
        let memory = Arc::new(Memory::default());
        let sets_gone = Arc::new(Notify::new());
        let tidy = Arc::new(Tidy {
            memory: memory.clone(),
            metrics: metrics.clone(),
            sets_gone: sets_gone.clone(),
        });
        let (stores, indexes, triggers, drivers) =
            cache::start(&client, settings.namespace.as_deref(), tidy);
        let ctx = Self {
            writer: Writer::new(client, &settings.identity),
            stores,
            indexes,
            memory,
            metrics,
            settings,
            sets_gone,
        };
        (ctx, triggers, drivers)
    }

    /// Waits until every cache has listed once.
    pub async fn wait_synced(&self) {
        self.stores.wait_synced().await;
    }

    /// The health of the node named `name` (`None`: no such node).
    pub fn node_health(&self, name: &str) -> Option<NodeHealth> {
        let node = self.stores.nodes.get(&ObjectRef::new(name))?;
        Some(health::health(&node))
    }
}
