//! Ambit's cluster controller: for each Device, its broker pods (or Job)
//! and Service; for each DeviceSet, its status and Service; and the tidying
//! up when nodes and devices go away. One replica is active at a time,
//! elected through a Lease.
//!
//! ```text
//!  Lease (kube-lease-manager) ─ leader? ─┬─ Device controller  (owns pods, Jobs, Services; watches sets, nodes)
//!                                        ├─ DeviceSet controller (owns its Service; watches Devices, pods)
//!                                        └─ shared-Device controller (per DeviceSet: folds the nodes' DeviceReports
//!                                           into its shared Devices; watches reports, nodes)
//!  all three read from shared caches (Context) and write with field manager `ambit-controller`
//!  (shared Devices' `status.nodes`: `ambit-controller/nodes`)
//! ```
//!
//! Inside, one way down (docs/controller.md, "Inside"): reconcilers
//! (`device`, `set`, `shared`) → `context` → `writes`, `cache`, `memory` →
//! pure builders (`brokers`, `workloads`, `pools`, `health`, `summary`,
//! `fold`) →
//! `labels`, `timing`, `error`.
//!
//! See `docs/controller.md` for the rules (capacity, placement, node loss,
//! grace, failover) and the metrics.

mod access;
mod brokers;
mod cache;
mod config;
mod context;
mod device;
mod error;
mod fold;
mod health;
mod index;
mod labels;
mod leader;
mod memory;
mod metrics;
mod pools;
mod set;
mod shared;
mod summary;
mod timing;
mod trim;
mod workloads;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use ambit_crds::contract::SET_LABEL;
use ambit_crds::v1alpha1::{Device, DeviceReport, DeviceSet};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{error, info, warn};

pub use config::Args;

use ambit_telemetry::tasks::{Ended, Tasks};
use cache::Triggers;
use context::{Context, Settings};
use health::NodeChanges;

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client could be configured.
    #[error("failed to configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// Leader election could not start.
    #[error("failed to set up leader election on Lease {lease}: {source}")]
    Lease {
        /// The Lease.
        lease: String,
        /// Why.
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The metrics endpoint could not be served.
    #[error("failed to serve /metrics on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A long-lived task ended: the process cannot do its job any more.
    #[error("the {task} task stopped: {reason}")]
    Stopped {
        /// The task (`http`, `leader election`, `controllers`).
        task: &'static str,
        /// How it ended.
        reason: String,
    },
}

/// Runs the controller until Ctrl-C or SIGTERM (then `Ok`), or until one of
/// its long-lived tasks ends (then [`Error::Stopped`], after `/healthz` has
/// said so and the Lease was released).
pub async fn run(args: Args) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let Args {
        metrics_addr,
        namespace,
        node_not_ready_toleration,
        lease_name,
        lease_namespace,
        identity,
        lease_duration,
    } = args;
    // In a cluster the pod name comes from the downward API (AMBIT_POD_NAME).
    let identity =
        identity.unwrap_or_else(|| format!("ambit-controller-{:08x}", fastrand::u32(..)));
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let (ready, ready_rx) = watch::channel(false);
    let (health, health_rx) = watch::channel(None);
    let mut tasks = Tasks::default();
    let http = ambit_telemetry::serve_with_health(
        metrics_addr,
        registry,
        ready_rx,
        "not ready: leader election not started",
        health_rx,
    );
    tasks.spawn("http", async move {
        http.await.map_err(|source| Error::Http {
            addr: metrics_addr,
            source,
        })
    });

    // Renewed when a third of it has passed (client-go's defaults: a 15 s
    // Lease, 10 s to renew it): one slow request on a busy API server must
    // not end the term.
    let duration = lease_duration.as_secs().max(3);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&lease_namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace(duration * 2 / 3)
        .build()
        .await
        .map_err(|source| Error::Lease {
            lease: lease_name.clone(),
            source,
        })?;
    let manager = Arc::new(manager);
    let duration = Duration::from_secs(duration);
    let (leading_tx, mut leading) = watch::channel(false);
    let election = leader::Election {
        manager: manager.clone(),
        leases: Api::namespaced(client.clone(), &lease_namespace),
        lease: lease_name.clone(),
        identity: identity.clone(),
        duration,
    };
    let election = tasks.spawn("leader election", leader::elect(election, leading_tx));
    ready.send_replace(true);
    info!(%identity, lease = %lease_name, "waiting to lead");

    let settings = Settings {
        namespace,
        not_ready_toleration: node_not_ready_toleration,
        identity: identity.clone(),
    };
    let mut active: Option<AbortHandle> = None;
    let stop = ambit_telemetry::shutdown_signal();
    tokio::pin!(stop);
    let ended = loop {
        let lead = *leading.borrow_and_update();
        metrics.leader(lead);
        match (lead, &active) {
            (true, None) => {
                info!(%identity, "became the leader; starting the controllers");
                let work = controllers(client.clone(), settings.clone(), metrics.clone());
                active = Some(tasks.spawn("controllers", work));
            }
            (false, Some(task)) => {
                // Stop writing at once: another replica may lead now.
                warn!(%identity, "lost the lease; stopping the controllers");
                tasks.stop(task);
                active = None;
            }
            _ => {}
        }
        tokio::select! {
            // Its sender ends with the election task, which `ended` reports.
            Ok(()) = leading.changed() => {}
            ended = tasks.ended() => break Some(ended),
            () = &mut stop => break None,
        }
    };

    // Stop writing first, then hand the Lease over: released, a standby
    // takes over at once instead of after a lease duration.
    let was_leading = active.is_some();
    if let Some(task) = active {
        tasks.stop(&task);
    }
    metrics.leader(false);
    if let Some(ended) = &ended {
        error!(task = ended.task, reason = %ended.reason, "a long-lived task ended; stopping");
        health.send_replace(Some(format!(
            "the {} task stopped: {}",
            ended.task, ended.reason
        )));
    }
    tasks.stop(&election);
    if was_leading {
        if leader::release(&manager, duration).await {
            info!(lease = %lease_name, "released the Lease");
        } else {
            warn!(lease = %lease_name, "failed to release the Lease; it expires on its own");
        }
    }
    tasks.stop_all();
    match ended {
        Some(Ended { task, reason }) => Err(Error::Stopped { task, reason }),
        None => {
            info!("stopped");
            Ok(())
        }
    }
}

/// Runs the caches, the three controllers and the slice sweeper until aborted;
/// returns (with what ended) if any of them ends.
async fn controllers(
    client: Client,
    settings: Settings,
    metrics: metrics::Metrics,
) -> Result<(), &'static str> {
    let (ctx, triggers, drivers) = Context::new(client, settings, metrics);
    let ctx = Arc::new(ctx);
    let mut drivers: FuturesUnordered<_> = drivers.into_iter().collect();
    tokio::select! {
        () = ctx.wait_synced() => info!("caches synced"),
        _ = drivers.next() => return Err("a cache's watch ended before the caches synced"),
    }
    let ctx_for_sweep = ctx.clone();

    // Triggered by the caches themselves (crate::cache): one watch per
    // kind, and every trigger arrives after its cache has it.
    let Triggers {
        device: t,
        set: st,
        shared: sh,
    } = triggers;
    let (index, node_index) = (ctx.indexes.clone(), ctx.indexes.clone());
    // A Node's status is rewritten by every heartbeat; only the events that
    // change what a Device reads of it (health, hostname label, existence)
    // reach the Devices it sees.
    let node_events = node_changes(t.nodes, &ctx.stores.nodes);
    let device_controller = Controller::for_shared_stream(t.devices, ctx.stores.devices.clone())
        .owns_shared_stream(t.pods)
        .owns_shared_stream(t.jobs)
        .owns_shared_stream(t.services)
        .watches_shared_stream(t.sets, move |set: Arc<DeviceSet>| {
            let key = format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any());
            cache::refs::<Device>(&index.devices_by_set.get(&key))
        })
        .watches_shared_stream(node_events, move |node: Arc<Node>| {
            cache::refs::<Device>(&node_index.devices_by_node.get(&node.name_any()))
        })
        .with_config(reconciles())
        .run(device::reconcile, device::error_policy, ctx.clone())
        .for_each(|_| async {});

    let set_controller = Controller::for_shared_stream(st.sets, ctx.stores.sets.clone())
        .owns_shared_stream(st.services)
        .watches_shared_stream(st.devices, |device: Arc<Device>| {
            device
                .namespace()
                .map(|ns| ObjectRef::new(&device.spec.device_set).within(&ns))
        })
        .watches_shared_stream(st.pods, |pod: Arc<Pod>| {
            let set = pod.labels().get(SET_LABEL)?.clone();
            pod.namespace().map(|ns| ObjectRef::new(&set).within(&ns))
        })
        .with_config(reconciles())
        .run(set::reconcile, set::error_policy, ctx.clone())
        .for_each(|_| async {});

    // Shared Devices folded from the nodes' reports, per DeviceSet. Only a
    // deleted shared Device triggers its set (the fold's own writes would
    // otherwise trigger it once per Device), and only node events that
    // change a node's health or existence.
    let cached_devices = ctx.stores.devices.clone();
    let deleted_shared = sh.devices.filter(move |device: &Arc<Device>| {
        let gone = !cache::holds(&cached_devices, device.as_ref());
        futures::future::ready(device.spec.shared && gone)
    });
    let shared_node_events = node_changes(sh.nodes, &ctx.stores.nodes);
    let (reports, report_index) = (ctx.stores.reports.clone(), ctx.indexes.clone());
    let set_events = set_changes(sh.sets, &ctx.stores.sets);
    let shared_controller = Controller::for_shared_stream(set_events, ctx.stores.sets.clone())
        .watches_shared_stream(sh.reports, |report: Arc<DeviceReport>| {
            let ns = report.namespace()?;
            Some(ObjectRef::new(&report.spec.device_set).within(&ns))
        })
        .watches_shared_stream(deleted_shared, |device: Arc<Device>| {
            let ns = device.namespace()?;
            Some(ObjectRef::new(&device.spec.device_set).within(&ns))
        })
        .watches_shared_stream(shared_node_events, move |node: Arc<Node>| {
            let names = report_index.reports_by_node.get(&node.name_any());
            let mut sets: Vec<ObjectRef<DeviceSet>> = cache::lookup(&reports, &names)
                .iter()
                .filter_map(|r| {
                    let ns = r.namespace()?;
                    Some(ObjectRef::new(&r.spec.device_set).within(&ns))
                })
                .collect();
            sets.sort_by_key(ToString::to_string);
            sets.dedup();
            sets
        })
        .with_config(reconciles().debounce(REPORTS_SETTLE))
        .run(shared::reconcile, shared::error_policy, ctx)
        .for_each(|_| async {});

    // Shared devices' ResourceSlices whose DeviceSet is gone (cluster-scoped
    // objects cannot be garbage-collected with a namespaced owner): swept
    // when the cache sees DeviceSets go, and again a moment later (the slice
    // cache may lag a slice applied just before its set went); at rest,
    // only the safety net's sweep, so an idle controller does no work.
    let sweeper = {
        let ctx = ctx_for_sweep;
        async move {
            let mut again = false;
            loop {
                let wait = if again {
                    timing::RECHECK
                } else {
                    timing::SAFETY_NET
                };
                again = tokio::time::timeout(wait, ctx.sets_gone.notified())
                    .await
                    .is_ok();
                if let Err(error) = device::sweep_slices(&ctx).await {
                    tracing::warn!(%error, "failed to delete stale ResourceSlices");
                    again = true;
                }
            }
        }
    };
    // Each runs until aborted: one that ends is a failure.
    tokio::select! {
        _ = drivers.next() => Err("a cache's watch ended"),
        () = device_controller => Err("the Device controller's stream ended"),
        () = set_controller => Err("the DeviceSet controller's stream ended"),
        () = shared_controller => Err("the shared-Device controller's stream ended"),
        () = sweeper => Err("the ResourceSlice sweeper ended"),
    }
}

/// The events of `nodes` (a trigger of the `cached` nodes) that change what
/// a reconciler reads of a Node ([`NodeChanges`]): not its heartbeats.
fn node_changes(
    nodes: cache::Trigger<Node>,
    cached: &kube::runtime::reflector::Store<Node>,
) -> impl futures::Stream<Item = Arc<Node>> + use<> {
    let mut changes = NodeChanges::default();
    filter_events(nodes, cached, move |node, present| {
        changes.changed(node, present)
    })
}

/// The events of `sets` (a trigger of the `cached` sets) that the fold
/// follows ([`shared::SetChanges`]): not the sets' status writes.
fn set_changes(
    sets: cache::Trigger<DeviceSet>,
    cached: &kube::runtime::reflector::Store<DeviceSet>,
) -> impl futures::Stream<Item = Arc<DeviceSet>> + use<> {
    let mut changes = shared::SetChanges::default();
    filter_events(sets, cached, move |set, present| {
        changes.changed(set, present)
    })
}

/// The events of `trigger` that `keep` keeps, told whether the `cached`
/// store still holds the object (whether the event is its deletion).
fn filter_events<K, F>(
    trigger: cache::Trigger<K>,
    cached: &kube::runtime::reflector::Store<K>,
    mut keep: F,
) -> impl futures::Stream<Item = Arc<K>> + use<K, F>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    F: FnMut(&K, bool) -> bool + Send + 'static,
{
    let cached = cached.clone();
    trigger.filter(move |object: &Arc<K>| {
        let present = cached.get(&ObjectRef::from_obj(object.as_ref())).is_some();
        futures::future::ready(keep(object, present))
    })
}

/// How long the shared-Device controller lets a set's reports settle
/// before it folds them: agents that start together report within moments
/// of each other, and one fold then writes each Device once, not once per
/// node.
const REPORTS_SETTLE: Duration = Duration::from_millis(500);

/// How each controller runs its reconciles: at most 32 at once. Unbounded
/// (kube-runtime's default), a controller that starts with 2,000 Devices
/// to place sends 2,000 reconciles' writes at once, and on a loaded API
/// server its Lease renewal waited behind them until the Lease expired
/// (the 2,000-Device benchmark, 1 run in 4). 32 reconciles of a few ms of
/// API time each still place hundreds of brokers a second.
fn reconciles() -> controller::Config {
    controller::Config::default().concurrency(32)
}
