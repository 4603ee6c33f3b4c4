//! The DeviceSet reconciler: the set's status (device count, ready brokers,
//! `Ready` with a reason, observedGeneration) and its Service. Every input
//! is watched (the set, its Devices, its pods), so it only waits for changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::DeviceSet;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use crate::context::{Context, MANAGER};
use crate::device::{SAFETY_NET, apply_service, delete_service};
use crate::error::{self, Error};
use crate::metrics::PHASES;
use crate::summary::{self, Counts};
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
        ctx.succeeded(&set.uid().unwrap_or_default());
    }
    result
}

/// Retries a failed reconcile with capped exponential backoff.
pub fn error_policy(set: Arc<DeviceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("device_set", error.category());
    let attempt = ctx.failed_attempt(&set.uid().unwrap_or_default());
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

    let devices: Vec<_> = ctx
        .stores
        .devices
        .state()
        .into_iter()
        .filter(|d| d.namespace().as_deref() == Some(&namespace) && d.spec.device_set == name)
        .collect();
    let pods: Vec<_> = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(&namespace)
                && p.labels().get(labels::SET) == Some(&name)
        })
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
    let counts = Counts {
        devices: i32::try_from(devices.len()).unwrap_or(i32::MAX),
        ready_brokers: ready,
        wanted_brokers: wanted,
    };
    if let Some(status) = summary::status(set, counts) {
        let api: Api<DeviceSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": name },
            "status": {
                "observedGeneration": status.observed_generation,
                "conditions": status.conditions,
                "devices": status.devices,
                "readyBrokers": status.ready_brokers,
            },
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::SetStatus {
            set: name.clone(),
            source,
        })?;
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
                apply_service(ctx, &namespace, &desired).await?;
            }
        }
        None => {
            if existing.is_some_and(|e| labels::spec_hash_of(e.as_ref()).is_some()) {
                delete_service(ctx, &namespace, &service_name).await?;
            }
        }
    }
    // The pod and Device caches are separate watches from the trigger:
    // until every broker is ready, look again soon rather than trust that a
    // later event will come. Otherwise the long requeue is a safety net.
    if counts.ready_brokers < counts.wanted_brokers {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::requeue(SAFETY_NET))
}
