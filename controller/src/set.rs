//! The DeviceSet reconciler: the set's status (device count, ready brokers,
//! `Ready` with a reason, observedGeneration) and its Service. Every input
//! is watched (the set, its Devices, its pods), so it only waits for changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::DeviceSet;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{instrument, warn};

use crate::cache::{self, Kind};
use crate::context::Context;
use crate::error::{self, Error};
use crate::metrics::{PHASES, SetCounts};
use crate::summary::{self, Counts};
use crate::timing::SAFETY_NET;
use crate::{labels, workloads};

/// Reconciles one DeviceSet.
#[instrument(skip_all, fields(set = %set.name_any(), namespace = set.namespace().unwrap_or_default()))]
pub async fn reconcile(set: Arc<DeviceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never decide from caches that have not listed yet (an empty node
    // cache would make every node look deleted).
    ctx.wait_synced().await;
    let started = Instant::now();
    let result = reconcile_inner(&set, &ctx).await;
    ctx.metrics
        .reconciled("device_set", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.memory
            .succeeded(Kind::DeviceSet, &set.uid().unwrap_or_default());
    }
    forget_if_gone(&set, &ctx);
    result
}

/// Forgets a DeviceSet whose deletion raced its reconcile: the cache may
/// have reported it gone before this reconcile wrote to its memory.
fn forget_if_gone(set: &DeviceSet, ctx: &Context) {
    if !cache::holds(&ctx.stores.sets, set) {
        ctx.memory
            .forget(Kind::DeviceSet, &set.uid().unwrap_or_default());
    }
}

/// Retries a failed reconcile with capped exponential backoff.
pub fn error_policy(set: Arc<DeviceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("device_set", error.category());
    let attempt = ctx
        .memory
        .failed_attempt(Kind::DeviceSet, &set.uid().unwrap_or_default());
    forget_if_gone(&set, &ctx);
    let delay = error::backoff(attempt);
    warn!(%error, set = %set.name_any(), attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(set: &DeviceSet, ctx: &Context) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    if set.metadata.deletion_timestamp.is_some() {
        ctx.metrics.remove_set(&namespace, &name);
        return Ok(Action::await_change());
    }

    let key = format!("{namespace}/{name}");
    let uid = set.uid().unwrap_or_default();
    let devices = cache::lookup(&ctx.stores.devices, &ctx.indexes.devices_by_set.get(&key));
    let pods: Vec<_> = cache::lookup(&ctx.stores.pods, &ctx.indexes.pods_by_set.get(&key))
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let mut phases = [0i64; PHASES.len()];
    let mut ready = 0;
    for pod in &pods {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let index = PHASES
            .iter()
            .position(|p| *p == phase)
            .unwrap_or(PHASES.len() - 1);
        phases[index] += 1;
        let is_ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        ready += i32::from(is_ready);
    }
    ctx.metrics.brokers(&namespace, &name, phases);

    let wants_pods = set.spec.broker.as_ref().is_some_and(|b| b.pod.is_some());
    let wanted: i32 = if wants_pods {
        devices
            .iter()
            .map(|d| {
                let seen = d.status.as_ref().map_or(0, |s| s.nodes.len());
                d.spec.capacity.min(i32::try_from(seen).unwrap_or(i32::MAX))
            })
            .sum()
    } else {
        0
    };
    // Full: more nodes see it than brokers may run, or every slot allocated.
    let at_capacity = devices
        .iter()
        .filter(|d| {
            let status = d.status.as_ref();
            let seen = status.map_or(0, |s| s.nodes.len());
            let allocated = status.map_or(0, |s| s.allocations.len());
            let capacity = usize::try_from(d.spec.capacity.max(1)).unwrap_or(1);
            (wants_pods && seen > capacity) || allocated >= capacity
        })
        .count();
    let set_counts = SetCounts {
        wanted: i64::from(wanted),
        ready: i64::from(ready),
        at_capacity: i64::try_from(at_capacity).unwrap_or(i64::MAX),
    };
    ctx.metrics.set_counts(&namespace, &name, set_counts);
    let counts = Counts {
        devices: i32::try_from(devices.len()).unwrap_or(i32::MAX),
        ready_brokers: ready,
        wanted_brokers: wanted,
    };
    let mut wake = None;
    let status = summary::status(set, counts);
    // Many brokers becoming ready one by one would rewrite the status as
    // often: write it at most once a second.
    let paced = status
        .as_ref()
        .and_then(|_| ctx.memory.pace_status(&uid, Duration::from_secs(1)));
    if let Some(wait) = paced {
        wake = Some(wait);
    } else if let Some(status) = status {
        ctx.writer.set_status(&namespace, &name, &status).await?;
    }

    let service_name = workloads::set_service_name(set);
    let existing = ctx
        .stores
        .services
        .get(&ObjectRef::new(&service_name).within(&namespace));
    match &set.spec.set_service {
        Some(template) => {
            let desired = workloads::set_service(set, template);
            if !existing.is_some_and(|e| workloads::is_current(e.as_ref(), &desired)) {
                ctx.writer.apply_service(&namespace, &desired).await?;
            }
        }
        None => {
            if existing.is_some_and(|e| labels::spec_hash_of(e.as_ref()).is_some()) {
                ctx.writer.delete_service(&namespace, &service_name).await?;
            }
        }
    }
    Ok(Action::requeue(wake.unwrap_or(SAFETY_NET)))
}
