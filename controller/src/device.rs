//! The Device reconciler: node entries of nodes that are gone, the Device's
//! `Available` condition and its deletion when no node sees it any more,
//! and what runs for it (broker pods or a Job, and its Service).
//!
//! ```text
//!  Device ─┬─ read: its DeviceSet, its pods/Job/Service, nodes (caches)
//!          ├─ entries of deleted or long-NotReady nodes ─► removed (as their agent's field manager)
//!          ├─ Available condition ─► Device status;  unseen past grace ─► Device deleted
//!          └─ brokers::plan ─► create / delete pods;  Job;  device Service
//! ```
//! Everything it reads is watched, so it waits for changes; it requeues only
//! for timers (toleration, grace, broker backoff).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_crds::conditions::{self, AVAILABLE};
use ambit_crds::v1alpha1::{Access, Device, DeviceSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, instrument, warn};

use crate::brokers::{self, Removal};
use crate::cache::{self, Kind};
use crate::context::Context;
use crate::error::{self, Error};
use crate::health::{self, Fate};
use crate::timing::SAFETY_NET;
use crate::{access, labels, pools, workloads};

/// A new Device gets this long to receive its first node entry before it
/// is called unseen (the agent writes spec and entry in two steps).
const NEWBORN: Duration = Duration::from_secs(5);

/// Reconciles one Device.
#[instrument(skip_all, fields(device = %device.name_any(), namespace = device.namespace().unwrap_or_default()))]
pub async fn reconcile(device: Arc<Device>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never decide from caches that have not listed yet (an empty node
    // cache would make every node look deleted).
    ctx.wait_synced().await;
    let started = Instant::now();
    let result = reconcile_inner(&device, &ctx).await;
    ctx.metrics
        .reconciled("device", started.elapsed().as_secs_f64());
    let uid = device.uid().unwrap_or_default();
    if result.is_ok() {
        ctx.memory.succeeded(Kind::Device, &uid);
    }
    forget_if_gone(&device, &ctx);
    result
}

/// Forgets a Device whose deletion raced its reconcile: the cache may
/// have reported it gone before this reconcile wrote to its memory.
fn forget_if_gone(device: &Device, ctx: &Context) {
    if !cache::holds(&ctx.stores.devices, device) {
        ctx.memory
            .forget(Kind::Device, &device.uid().unwrap_or_default());
    }
}

/// Retries a failed reconcile with capped exponential backoff.
pub fn error_policy(device: Arc<Device>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("device", error.category());
    let attempt = ctx
        .memory
        .failed_attempt(Kind::Device, &device.uid().unwrap_or_default());
    forget_if_gone(&device, &ctx);
    let delay = error::backoff(attempt);
    warn!(%error, device = %device.name_any(), attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(device: &Device, ctx: &Context) -> Result<Action, Error> {
    if device.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = device.namespace().unwrap_or_default();
    let name = device.name_any();
    let set = ctx
        .stores
        .sets
        .get(&ObjectRef::new(&device.spec.device_set).within(&namespace));
    let now = Timestamp::now();
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));

    // 1. Entries of nodes that are gone.
    let (stale, recheck) = health::stale_entries(
        device,
        |node| ctx.node_health(node),
        ctx.settings.not_ready_toleration,
        now,
    );
    if let Some(recheck) = recheck {
        soonest(recheck);
    }
    // A shared Device's entries are the fold's (crate::shared), which
    // leaves out the same nodes.
    let removable = if device.spec.shared {
        &[][..]
    } else {
        &stale[..]
    };
    for node in removable {
        ctx.writer.remove_entry(&namespace, &name, node).await?;
        ctx.writer.event(
            device,
            EventType::Normal,
            "NodeLost",
            format!("removed node {node}'s entry: the node is gone or NotReady too long"),
        );
    }
    let seen_by = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| !stale.contains(&n.node))
        .count();

    // 2. Available, and the fate of a device no node sees.
    let current = device
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == AVAILABLE)
        .cloned();
    let age = device
        .creation_timestamp()
        .map_or(Duration::MAX, |t| now.duration_since(t.0).unsigned_abs());
    if seen_by == 0 && current.is_none() && age < NEWBORN {
        soonest(NEWBORN - age);
    } else {
        let mut conditions = device
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let available = health::available(device, seen_by);
        let summary = format!(
            "{}/{}/{}/{:?}",
            available.status, available.reason, available.message, available.observed_generation
        );
        // The cached Device may not show a write made a moment ago: do not
        // write the same condition again until the cache has had time.
        if conditions::set_condition(&mut conditions, available)
            && ctx
                .memory
                .should_write(&device.uid().unwrap_or_default(), &summary)
        {
            ctx.writer
                .device_conditions(&namespace, &name, &conditions)
                .await?;
            ctx.memory.wrote(&device.uid().unwrap_or_default(), summary);
        }
        match health::fate(
            current.as_ref(),
            seen_by,
            health::grace(device, set.as_deref()),
            now,
        ) {
            Fate::Keep => {}
            Fate::DeleteAfter(after) => soonest(after),
            Fate::Delete => {
                ctx.writer.delete_device(device).await?;
                if let Some(set) = &set {
                    ctx.writer.event(
                        set.as_ref(),
                        EventType::Normal,
                        "DeviceDeleted",
                        format!(
                            "no node has seen device {} ({}) for its grace period",
                            name, device.spec.id
                        ),
                    );
                }
                return Ok(Action::await_change());
            }
        }
    }

    // 3. What runs for it (its DRA pools are its set's: `shared.rs`).
    if let Some(set) = set {
        if let Some(after) = brokers(ctx, device, &set).await? {
            soonest(after);
        }
        device_service(ctx, device, &set).await?;
    }
    // Every input is watched; the long requeue is only a safety net.
    Ok(Action::requeue(wake.unwrap_or(SAFETY_NET)))
}

/// Deletes the shared devices' ResourceSlices whose DeviceSet is gone (and
/// those of earlier builds' pools of one Device).
pub async fn sweep_slices(ctx: &Context) -> Result<(), Error> {
    let live = ctx
        .stores
        .sets
        .state()
        .iter()
        .filter_map(|s| s.uid())
        .collect();
    let slices = ctx.stores.slices.state();
    for name in pools::orphans(slices.iter().map(AsRef::as_ref), &live) {
        info!(slice = %name, "deleting a ResourceSlice whose DeviceSet is gone");
        ctx.writer.delete_slice(&name).await?;
    }
    Ok(())
}

/// Broker pods or the Job. Returns when to look again, if a timer is due.
async fn brokers(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
) -> Result<Option<Duration>, Error> {
    let Some(broker) = &set.spec.broker else {
        return Ok(None);
    };
    let namespace = device.namespace().unwrap_or_default();
    let uid = device.uid().unwrap_or_default();
    if broker.access == Some(Access::Dra) {
        ensure_claim_template(ctx, device, set).await?;
    }
    if let Some(job) = &broker.job {
        ensure_job(ctx, device, set, job).await?;
        return Ok(None);
    }
    let Some(template) = &broker.pod else {
        return Ok(None);
    };

    let owned: Vec<Arc<Pod>> =
        cache::lookup(&ctx.stores.pods, &ctx.indexes.pods_by_owner.get(&uid));
    for pod in &owned {
        if is_ready(pod)
            && let Some(node) = brokers::node_of(pod)
        {
            ctx.memory.broker_ok(&uid, node);
        }
    }
    let pods: Vec<&Pod> = owned.iter().map(AsRef::as_ref).collect();
    let plan = brokers::plan(device, set, template, &pods, &ctx.memory.backoff_of(&uid));

    // A pod bound to a node that no longer exists has no kubelet to finish
    // its deletion: without a force delete it would hold its slot until the
    // pod garbage collector comes round (40 s or more).
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        if on_deleted_node(ctx, pod) {
            ctx.writer
                .force_delete_pod(&namespace, &pod.name_any())
                .await?;
        }
    }

    for (name, removal) in &plan.delete {
        let pod = pods.iter().find(|p| &p.name_any() == name);
        let failed = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Failed");
        if *removal == Removal::Ended
            && failed
            && let Some(node) = pod.and_then(|p| brokers::node_of(p))
        {
            let wait = ctx.memory.broker_failed(&uid, node);
            info!(pod = %name, node, backoff = ?wait, "broker failed; replacing it after a backoff");
        }
        if pod.is_some_and(|p| on_deleted_node(ctx, p)) {
            ctx.writer.force_delete_pod(&namespace, name).await?;
        } else {
            ctx.writer.delete_pod(&namespace, name).await?;
        }
        ctx.writer.event(
            device,
            EventType::Normal,
            removal.reason(),
            format!("deleted broker pod {name}"),
        );
    }
    for pod in &plan.create {
        let name = pod.name_any();
        let key = format!("{namespace}/{name}");
        if ctx.memory.awaited(&uid, &key, false) {
            continue;
        }
        let node = brokers::node_of(pod).unwrap_or_default().to_owned();
        // Not created: the cache lags behind an earlier create, the pod is there.
        if ctx.writer.create_pod(&namespace, pod).await? {
            ctx.memory.expect(&uid, key);
            ctx.writer.event(
                device,
                EventType::Normal,
                "BrokerCreated",
                format!("created broker pod {name} for node {node}"),
            );
        }
    }
    let over = !plan.over_capacity.is_empty();
    if ctx.memory.over_capacity(&uid, over) {
        ctx.writer.event(
            device,
            EventType::Normal,
            "CapacityReached",
            format!(
                "all {} slot(s) used; no broker for node(s) {}",
                device.spec.capacity,
                plan.over_capacity.join(", ")
            ),
        );
    }
    // Nothing to look again for: what this did (pods created, deleted)
    // comes back as pod events, after the pod cache has them.
    Ok(plan.retry_after)
}

/// Creates the ResourceClaimTemplate DRA broker pods claim the device
/// through, unless the cache has it (it never changes: the Device's name
/// and namespace are all it says).
async fn ensure_claim_template(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let uid = device.uid().unwrap_or_default();
    let name = access::template_name(device);
    let key = format!("template:{namespace}/{name}");
    if ctx
        .stores
        .claim_templates
        .get(&ObjectRef::new(&name).within(&namespace))
        .is_some()
        || ctx.memory.awaited(&uid, &key, false)
    {
        return Ok(());
    }
    let template = access::claim_template(device, &set.name_any());
    if ctx
        .writer
        .create_claim_template(&namespace, &template)
        .await?
    {
        ctx.memory.expect(&uid, key);
    }
    Ok(())
}

/// Whether `pod` is bound to a node whose Node object is gone.
fn on_deleted_node(ctx: &Context, pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|node| ctx.stores.nodes.get(&ObjectRef::new(node)).is_none())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ensure_job(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
    template: &k8s_openapi::api::batch::v1::JobSpec,
) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let desired = workloads::job(device, set, template);
    let name = desired.name_any();
    let existing = ctx
        .stores
        .jobs
        .get(&ObjectRef::new(&name).within(&namespace));
    match existing {
        Some(job) if workloads::is_current(job.as_ref(), &desired) => Ok(()),
        // broker.job changed: Jobs cannot be edited, so run it anew (the
        // deletion's event brings the reconcile that creates it).
        Some(_) => ctx.writer.delete_job(&namespace, &name).await,
        None => {
            if ctx.writer.create_job(&namespace, &desired).await? {
                ctx.writer.event(
                    device,
                    EventType::Normal,
                    "JobCreated",
                    format!("created broker Job {name}"),
                );
            }
            Ok(())
        }
    }
}

async fn device_service(ctx: &Context, device: &Device, set: &DeviceSet) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let name = workloads::device_service_name(device);
    let existing = ctx
        .stores
        .services
        .get(&ObjectRef::new(&name).within(&namespace));
    match &set.spec.device_service {
        Some(template) => {
            let desired = workloads::device_service(device, set, template);
            if existing.is_some_and(|e| workloads::is_current(e.as_ref(), &desired)) {
                return Ok(());
            }
            ctx.writer.apply_service(&namespace, &desired).await
        }
        None => match existing {
            Some(service) if labels::spec_hash_of(service.as_ref()).is_some() => {
                ctx.writer.delete_service(&namespace, &name).await
            }
            _ => Ok(()),
        },
    }
}
