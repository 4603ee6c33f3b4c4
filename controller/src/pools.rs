//! The ResourceSlices of shared (network) devices, decided without I/O.
//! The shared devices of one DeviceSet that the same nodes see make one
//! DRA pool, `shared/<namespace>/<set>/<nodes>`, whose node selector names
//! those nodes, so the scheduler places a pod that claims one of them only
//! where it is seen. The controller writes them (one writer for a fact that
//! spans nodes); each agent publishes its own node's local devices.
//!
//! ```text
//!  the set's shared Devices, each with the hostnames of the nodes that see it
//!    + the set's cached slices + the generation last written per pool
//!    ─► group by nodes ─► one pool per group (≤ 128 DRA devices a slice)
//!    ─► plan ─► None (they say it already) | Some(pools gone, slices to apply, slices to delete)
//! ```
//! Rules:
//! - ten nodes seeing the same 1,000 devices are one pool of eight slices,
//!   not a thousand pools: a pool is rewritten when a device in it, or one
//!   joining or leaving it, changes, and only then (its generation grows);
//! - a device whose nodes change moves to another pool under the same DRA
//!   device name; the pools it leaves are written before the pools it
//!   joins, so the scheduler never sees it in two pools at once (it may
//!   briefly see it in none);
//! - slices are named `ambit-shared-<hash>-<i>` and labelled with the set's
//!   uid: they are cluster-scoped, so the sweep deletes those of a set that
//!   went ([`orphans`]), and those of earlier builds' pools of one Device.

use std::collections::{BTreeMap, BTreeSet};

use ambit_crds::contract::{self, MANAGED_BY};
use ambit_crds::v1alpha1::DeviceSpec;
use ambit_dra::{self as dra, DEVICE_UID_LABEL, Offered, Reach, SET_UID_LABEL};
use k8s_openapi::api::resource::v1::{Device as DraDevice, ResourceSlice};
use kube::ResourceExt;

use crate::labels::NAMESPACE_LABEL;

/// The DeviceSet whose shared devices the pools hold.
#[derive(Debug, Clone, Copy)]
pub struct SetRef<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid (the slices' label).
    pub uid: &'a str,
}

/// One shared Device as the pools see it.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The Device's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a DeviceSpec,
    /// The `kubernetes.io/hostname` labels of the nodes that see it now,
    /// sorted and without repeats; none: it is in no pool.
    pub hostnames: Vec<String>,
}

/// What to write so that a set's slices say what they should, in order.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Slices of pools that are gone, deleted first.
    pub retire: Vec<String>,
    /// Slices to apply (server-side), in order: pools that only lose or
    /// change devices, then pools that gain some.
    pub apply: Vec<ResourceSlice>,
    /// Slices left over past a pool's new end, deleted last.
    pub delete: Vec<String>,
}

impl SlicePlan {
    /// The pools the plan writes, with their new generation.
    pub fn generations(&self) -> BTreeMap<String, i64> {
        self.apply
            .iter()
            .map(|s| (s.spec.pool.name.clone(), s.spec.pool.generation))
            .collect()
    }
}

/// One pool as it should be.
struct Wanted<'a> {
    hostnames: &'a [String],
    devices: Vec<DraDevice>,
}

/// The slices that make the pools of `set` hold `members`, given its
/// cached slices (`existing`, those labelled with its uid) and the
/// generation last written to each pool (`written`; the cache may lag a
/// write made a moment ago): `None` when they say it already.
pub fn plan(
    set: SetRef<'_>,
    members: &[Member<'_>],
    existing: &[&ResourceSlice],
    written: impl Fn(&str) -> i64,
) -> Option<SlicePlan> {
    let mut wanted: BTreeMap<String, Wanted<'_>> = BTreeMap::new();
    let mut members: Vec<&Member<'_>> = members.iter().filter(|m| m.spec.shared).collect();
    members.sort_by_key(|m| m.name);
    for member in members {
        if member.hostnames.is_empty() {
            continue;
        }
        let key: Vec<&str> = member.hostnames.iter().map(String::as_str).collect();
        let pool = dra::shared_pool(set.namespace, set.name, &dra::hex_hash(&key, 8));
        wanted
            .entry(pool)
            .or_insert_with(|| Wanted {
                hostnames: &member.hostnames,
                devices: vec![],
            })
            .devices
            .extend(dra::devices_of(&Offered {
                namespace: set.namespace,
                name: member.name,
                spec: member.spec,
            }));
    }
    let mut have: BTreeMap<&str, Vec<&ResourceSlice>> = BTreeMap::new();
    for slice in existing {
        have.entry(slice.spec.pool.name.as_str())
            .or_default()
            .push(slice);
    }
    // Where each DRA device is now, to tell pools that gain one.
    let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
    for (pool, slices) in &have {
        for device in slices.iter().flat_map(|s| s.spec.devices.iter().flatten()) {
            placed.insert(device.name.as_str(), pool);
        }
    }

    let mut plan = SlicePlan::default();
    for (pool, slices) in &have {
        if !wanted.contains_key(*pool) {
            plan.retire.extend(slices.iter().map(|s| s.name_any()));
        }
    }
    let labels = labels(set);
    let mut gaining = vec![];
    for (pool, want) in wanted {
        let mut old: Vec<&ResourceSlice> = have.remove(pool.as_str()).unwrap_or_default();
        // prefix-0, prefix-1, ..., prefix-10: by index, not as text.
        old.sort_by_key(|s| (s.name_any().len(), s.name_any()));
        let generation = old
            .iter()
            .map(|s| s.spec.pool.generation)
            .max()
            .unwrap_or(0)
            .max(written(&pool));
        let gains = want
            .devices
            .iter()
            .any(|d| placed.get(d.name.as_str()) != Some(&pool.as_str()));
        let make = |generation| {
            dra::slices(
                &prefix(set, want.hostnames),
                &pool,
                &Reach::Nodes(want.hostnames),
                want.devices.clone(),
                generation,
                None,
                &labels,
            )
        };
        let now = make(generation);
        let same = now.len() == old.len()
            && now.iter().zip(&old).all(|(want, have)| {
                want.metadata.name == have.metadata.name
                    && have.spec.pool.generation == generation
                    && have.labels().get(SET_UID_LABEL).map(String::as_str) == Some(set.uid)
                    && dra::same_content(&want.spec, &have.spec)
            });
        if same {
            continue;
        }
        let new = make(generation + 1);
        let keep: BTreeSet<String> = new.iter().map(ResourceExt::name_any).collect();
        plan.delete.extend(
            old.iter()
                .map(|s| s.name_any())
                .filter(|n| !keep.contains(n)),
        );
        if gains {
            gaining.extend(new);
        } else {
            plan.apply.extend(new);
        }
    }
    plan.apply.extend(gaining);
    (plan != SlicePlan::default()).then_some(plan)
}

/// The labels of a set's slices.
fn labels(set: SetRef<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SET_UID_LABEL.to_owned(), set.uid.to_owned()),
        (NAMESPACE_LABEL.to_owned(), set.namespace.to_owned()),
        (MANAGED_BY.to_owned(), contract::CONTROLLER.to_owned()),
    ])
}

/// The name every slice of a pool starts with (then `-0`, `-1`, ...).
fn prefix(set: SetRef<'_>, hostnames: &[String]) -> String {
    let mut parts = vec![set.namespace, set.name];
    parts.extend(hostnames.iter().map(String::as_str));
    format!("ambit-shared-{}", dra::hex_hash(&parts, 8))
}

/// The slices among `slices` to delete: those of a DeviceSet not in `live`
/// (by uid), and those of a pool of one Device (earlier builds', replaced
/// by the set's pools). Slices are cluster-scoped, so garbage collection
/// cannot follow a namespaced owner.
pub fn orphans<'a>(
    slices: impl IntoIterator<Item = &'a ResourceSlice>,
    live: &BTreeSet<String>,
) -> Vec<String> {
    slices
        .into_iter()
        .filter(|s| {
            let labels = s.labels();
            labels.contains_key(DEVICE_UID_LABEL)
                || labels
                    .get(SET_UID_LABEL)
                    .is_some_and(|uid| !live.contains(uid))
        })
        .map(ResourceExt::name_any)
        .collect()
}

#[cfg(test)]
#[path = "pools_tests.rs"]
mod tests;
