//! The shared-Device reconciler: per DeviceSet, folds the nodes'
//! DeviceReports into its shared Devices ([`fold::plan`]) and makes the
//! writes, a few at once.
//!
//! ```text
//!  DeviceSet ─┬─ read: its reports, its Devices, nodes' health (caches)
//!             └─ fold::plan ─► apply Device metadata+spec (`ambit-controller`)
//!                           ─► apply status.nodes + Available (`ambit-controller/nodes`)
//!                           ─► pools::plan ─► the set's ResourceSlices (a pool per set of nodes)
//! ```
//! Triggered by its set, its reports, the deletion of one of its shared
//! Devices, and the health of nodes that report for it; everything else a
//! shared Device needs (its other conditions, deletion, brokers) is the
//! Device reconciler's, as for any Device. The Available condition is
//! written here with the entries that make it, so a new shared Device costs
//! one status write; the Device reconciler computes the same condition and
//! writes it only where the two differ (it saw newer entries first).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_dra as dra;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::resource::v1::ResourceSlice;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, instrument, warn};

use crate::cache::{self, Kind};
use crate::context::Context;
use crate::error::{self, Error};
use crate::fold::{self, Folded, SetView, Write};
use crate::pools;
use crate::timing::SAFETY_NET;

/// How many Devices are written at once.
const CONCURRENT_WRITES: usize = 32;

/// Reconciles the shared Devices of one DeviceSet.
#[instrument(skip_all, fields(set = %set.name_any(), namespace = set.namespace().unwrap_or_default()))]
pub async fn reconcile(set: Arc<DeviceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never decide from caches that have not listed yet (an empty node
    // cache would make every node look deleted).
    ctx.wait_synced().await;
    let started = Instant::now();
    let result = reconcile_inner(&set, &ctx).await;
    ctx.metrics
        .reconciled("shared_devices", started.elapsed().as_secs_f64());
    result
}

/// Retries a failed fold with capped exponential backoff.
pub fn error_policy(set: Arc<DeviceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("shared_devices", error.category());
    let attempt = ctx
        .memory
        .failed_attempt(Kind::DeviceSet, &set.uid().unwrap_or_default());
    let delay = error::backoff(attempt);
    warn!(%error, set = %set.name_any(), attempt, retry_in = ?delay, "folding the reports failed");
    Action::requeue(delay)
}

async fn reconcile_inner(set: &DeviceSet, ctx: &Context) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let reports = cache::lookup(&ctx.stores.reports, &ctx.indexes.reports_by_set.get(&key));
    let devices = cache::lookup(&ctx.stores.devices, &ctx.indexes.devices_by_set.get(&key));
    let view = SetView {
        namespace: &namespace,
        name: &name,
        uid: &uid,
        capacity: set.spec.capacity,
    };
    let existing: Vec<&Device> = devices.iter().map(AsRef::as_ref).collect();
    let plan = fold::plan(
        &view,
        reports.iter().map(AsRef::as_ref),
        &existing,
        |node| ctx.node_health(node),
        ctx.settings.not_ready_toleration,
        Timestamp::now(),
    );
    // The cache may not show writes made a moment ago: not again.
    let due: Vec<(Write, u64)> = plan
        .writes
        .into_iter()
        .map(|w| {
            let print = fingerprint(&w);
            (w, print)
        })
        .filter(|(w, print)| ctx.memory.fold_due(&uid, &w.name, *print))
        .collect();
    if !due.is_empty() {
        info!(set = %name, devices = due.len(), "folding the nodes' reports into shared Devices");
    }
    let namespace = &namespace;
    let written: Vec<(String, u64)> = futures::stream::iter(due)
        .map(|(write, print)| async move {
            let mut available = write.available.clone();
            if let Some(object) = &write.object {
                let applied = ctx.writer.apply_device(object).await?;
                if let Some(condition) = available.as_mut() {
                    condition.observed_generation = applied.metadata.generation;
                }
            }
            if let Some(nodes) = &write.nodes {
                ctx.writer
                    .device_nodes(namespace, &write.name, nodes, available.as_ref())
                    .await?;
            }
            Ok::<_, Error>((write.name, print))
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect()
        .await?;
    ctx.memory.folded(&uid, written);
    let set_ref = pools::SetRef {
        namespace,
        name: &name,
        uid: &uid,
    };
    publish_slices(ctx, set_ref, &plan.devices).await?;
    ctx.memory.succeeded(Kind::DeviceSet, &uid);
    Ok(Action::requeue(plan.recheck.unwrap_or(SAFETY_NET)))
}

/// Makes the set's ResourceSlices hold its shared devices, in one pool per
/// set of nodes that see them (see [`pools`]).
async fn publish_slices(
    ctx: &Context,
    set: pools::SetRef<'_>,
    devices: &[Folded],
) -> Result<(), Error> {
    // The selector matches the nodes' hostname label (usually their name).
    let hostname = |node: &String| {
        ctx.stores
            .nodes
            .get(&ObjectRef::new(node))
            .and_then(|n| n.labels().get(dra::HOSTNAME_LABEL).cloned())
            .unwrap_or_else(|| node.clone())
    };
    let members: Vec<pools::Member<'_>> = devices
        .iter()
        .map(|d| {
            let mut hostnames: Vec<String> = d.nodes.iter().map(hostname).collect();
            hostnames.sort();
            hostnames.dedup();
            pools::Member {
                name: &d.name,
                spec: &d.spec,
                hostnames,
            }
        })
        .collect();
    // The slice cache may not show slices applied a moment ago: not again.
    let print = inputs_print(&members);
    if !ctx.memory.slices_due(set.uid, print) {
        return Ok(());
    }
    let cached = ctx.stores.slices.state();
    let existing: Vec<&ResourceSlice> = cached
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| s.labels().get(dra::SET_UID_LABEL).map(String::as_str) == Some(set.uid))
        .collect();
    let Some(plan) = pools::plan(set, &members, &existing, |pool| {
        ctx.memory.pool_generation(set.uid, pool)
    }) else {
        ctx.memory
            .slices_wrote(set.uid, print, BTreeMap::new(), &BTreeSet::new());
        return Ok(());
    };
    let gone: BTreeSet<String> = existing
        .iter()
        .filter(|s| plan.retire.contains(&s.name_any()))
        .map(|s| s.spec.pool.name.clone())
        .collect();
    for name in &plan.retire {
        ctx.writer.delete_slice(name).await?;
    }
    for slice in &plan.apply {
        ctx.writer.apply_slice(slice).await?;
    }
    for name in &plan.delete {
        ctx.writer.delete_slice(name).await?;
    }
    let generations = plan.generations();
    info!(
        set = %set.name,
        pools = generations.len(),
        applied = plan.apply.len(),
        deleted = plan.retire.len() + plan.delete.len(),
        "published the shared devices' ResourceSlices"
    );
    ctx.memory.slices_wrote(set.uid, print, generations, &gone);
    Ok(())
}

/// A fingerprint of what a set's slices are made from.
fn inputs_print(members: &[pools::Member<'_>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for member in members {
        member.name.hash(&mut hasher);
        serde_json::to_string(member.spec)
            .unwrap_or_default()
            .hash(&mut hasher);
        member.hostnames.hash(&mut hasher);
    }
    hasher.finish()
}

/// Remembers each DeviceSet's generation, to tell the set events the fold
/// must follow (the set appeared, went, or its spec changed) from its
/// status writes. Agents and the set reconciler write a set's status while
/// its Devices are being written, each write within the debounce of the
/// last, and a fold triggered by them would wait until they stop.
#[derive(Debug, Default)]
pub struct SetChanges {
    seen: std::collections::HashMap<String, Option<i64>>,
}

impl SetChanges {
    /// Whether this event of `set` is one the fold follows (`present`: the
    /// cache still holds it). A set that went is forgotten.
    pub fn changed(&mut self, set: &DeviceSet, present: bool) -> bool {
        let uid = set.uid().unwrap_or_default();
        if !present {
            self.seen.remove(&uid);
            return true;
        }
        self.seen.insert(uid, set.metadata.generation) != Some(set.metadata.generation)
    }
}

/// A fingerprint of what a write makes a Device say.
fn fingerprint(write: &Write) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let object = write
        .object
        .as_ref()
        .map(|d| serde_json::to_string(d).unwrap_or_default());
    let nodes = write
        .nodes
        .as_ref()
        .map(|n| serde_json::to_string(n).unwrap_or_default());
    (object, nodes).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(uid: &str, generation: i64) -> DeviceSet {
        let mut set: DeviceSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": "plcs", "namespace": "plant" },
            "spec": { "discovery": { "handler": "modbus" } },
        }))
        .unwrap_or_else(|e| panic!("a DeviceSet: {e}"));
        set.metadata.uid = Some(uid.into());
        set.metadata.generation = Some(generation);
        set
    }

    #[test]
    fn a_sets_status_writes_do_not_trigger_the_fold_and_its_spec_changes_do() {
        let mut changes = SetChanges::default();
        assert!(changes.changed(&set("u1", 1), true), "a new set");
        assert!(!changes.changed(&set("u1", 1), true), "a status write");
        assert!(changes.changed(&set("u1", 2), true), "a spec change");
        assert!(changes.changed(&set("u1", 2), false), "it went");
        assert!(
            changes.changed(&set("u1", 2), true),
            "forgotten when it went"
        );
        assert!(changes.changed(&set("u2", 2), true), "another set, by uid");
    }
}
