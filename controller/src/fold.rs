//! Folding the nodes' DeviceReports into shared Devices. Pure: given a
//! DeviceSet, its reports and its shared Devices as cached, these are the
//! writes that make the Devices say what the reports say.
//!
//! ```text
//!  reports of the set (every shard, every node) ─► skip nodes that are gone or NotReady past the toleration
//!      ─► per device id: spec from the first node by name that reports it, an entry per node
//!      ─► vs. the cached Device: spec hash differs ─► apply spec;  entries differ ─► apply status.nodes
//!         with the Available condition they make (one status write, not two)
//!  a cached shared Device no report lists any more ─► status.nodes emptied (the Device reconciler
//!      then counts it unseen and deletes it after its grace period)
//!  every device the reports list, with its spec and nodes ─► the set's DRA pools (`pools`)
//! ```
//! Rules:
//! - one writer: the controller owns a shared Device's metadata, spec and
//!   all of `status.nodes`, so each is one write however many nodes see it;
//! - the entries and the `Available` condition they make go in one status
//!   apply (the Device reconciler computes the same condition from the
//!   same entries, finds it written, and writes nothing);
//! - nodes that disagree about a device's properties: the report of the
//!   node first by name wins, so the outcome does not depend on timing;
//! - a node listed in two shards of its report (while it reshards) gets
//!   one entry, with the earlier `since`;
//! - entries are compared as a set keyed by node (order is not a change).

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_crds::contract::{self, SPEC_HASH};
use ambit_crds::names;
use ambit_crds::v1alpha1::{Device, DeviceNodeStatus, DeviceReport, DeviceSpec, ReportedDevice};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use ambit_crds::conditions::{self, AVAILABLE};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::health::{self, NodeHealth, Standing, standing};

/// What the fold needs of the DeviceSet.
#[derive(Debug, Clone)]
pub struct SetView<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid, for the Devices' owner reference.
    pub uid: &'a str,
    /// Slots per device.
    pub capacity: i32,
}

/// One Device's writes.
#[derive(Debug, Clone)]
pub struct Write {
    /// The Device.
    pub name: String,
    /// Its metadata and spec to apply, when they changed (or it is new).
    pub object: Option<Device>,
    /// Its complete `status.nodes` to apply, when it changed.
    pub nodes: Option<Vec<DeviceNodeStatus>>,
    /// The `Available` condition that goes with `nodes`, applied with them:
    /// the Device reconciler then finds it in place and has no write of its
    /// own to make. Its `observedGeneration` is the cached Device's; the
    /// spec apply's answer replaces it when `object` is written.
    pub available: Option<Condition>,
}

/// One shared Device as the reports make it, written or not.
#[derive(Debug, Clone)]
pub struct Folded {
    /// The Device.
    pub name: String,
    /// Its spec.
    pub spec: DeviceSpec,
    /// The nodes that see it, by name.
    pub nodes: Vec<String>,
}

/// The fold's writes, every shared Device the reports make, and when to
/// look again (a NotReady node's toleration ends).
#[derive(Debug, Default)]
pub struct Plan {
    /// The writes, one per Device that needs any.
    pub writes: Vec<Write>,
    /// Every shared Device the reports list (their DRA pools follow them).
    pub devices: Vec<Folded>,
    /// When a node's entries stop counting, if one is NotReady.
    pub recheck: Option<Duration>,
}

/// The writes that make the shared Devices of `set` what `reports` say;
/// `existing` are the set's cached Devices, `health` gives a node's health.
pub fn plan<'a>(
    set: &SetView<'_>,
    reports: impl IntoIterator<Item = &'a DeviceReport>,
    existing: &[&Device],
    health: impl Fn(&str) -> Option<NodeHealth>,
    toleration: Duration,
    now: Timestamp,
) -> Plan {
    let mut recheck: Option<Duration> = None;
    let mut counted: BTreeMap<&str, bool> = BTreeMap::new();
    // By node name, so the first node by name is met first.
    let mut by_node: BTreeMap<&str, Vec<&ReportedDevice>> = BTreeMap::new();
    for report in reports {
        let node = report.spec.node.as_str();
        let counts =
            *counted
                .entry(node)
                .or_insert_with(|| match standing(health(node), toleration, now) {
                    Standing::Counts => true,
                    Standing::CountsFor(left) => {
                        recheck = Some(recheck.map_or(left, |r| r.min(left)));
                        true
                    }
                    Standing::Stale => false,
                });
        if counts && report.spec.device_set == set.name {
            by_node
                .entry(node)
                .or_default()
                .extend(&report.spec.devices);
        }
    }
    // Per device id: the spec's source and each node's `since`.
    let mut devices: BTreeMap<&str, (&ReportedDevice, BTreeMap<&str, Timestamp>)> = BTreeMap::new();
    for (node, reported) in &by_node {
        for device in reported {
            let (_, seen) = devices
                .entry(device.id.as_str())
                .or_insert_with(|| (device, BTreeMap::new()));
            let since = seen.entry(node).or_insert(device.since.0);
            *since = (*since).min(device.since.0);
        }
    }

    let cached: BTreeMap<String, &Device> = existing
        .iter()
        .filter(|d| d.spec.shared)
        .map(|d| (d.name_any(), *d))
        .collect();
    let mut writes = vec![];
    let mut folded = vec![];
    let mut wanted = std::collections::BTreeSet::new();
    for (id, (source, seen)) in devices {
        let name = names::device_name(set.name, id, None);
        let spec = spec_of(set, source);
        let seen_by: Vec<String> = seen.keys().map(|n| (*n).to_owned()).collect();
        let entries: Vec<DeviceNodeStatus> = seen
            .into_iter()
            .map(|(node, since)| DeviceNodeStatus {
                node: node.to_owned(),
                since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since),
            })
            .collect();
        folded.push(Folded {
            name: name.clone(),
            nodes: seen_by,
            spec: spec.clone(),
        });
        let current = cached.get(&name);
        let object = current
            .is_none_or(|d| !same_spec(d, &spec))
            .then(|| contract::device_object(&name, set.namespace, set.uid, spec));
        let nodes = current
            .is_none_or(|d| !same_entries(d, &entries))
            .then_some(entries);
        wanted.insert(name.clone());
        if object.is_some() || nodes.is_some() {
            let available = nodes
                .as_ref()
                .map(|n| available_with(current.copied(), n.len()));
            writes.push(Write {
                name,
                object,
                nodes,
                available,
            });
        }
    }
    for (name, device) in cached {
        let listed = device.status.as_ref().is_some_and(|s| !s.nodes.is_empty());
        if device.metadata.deletion_timestamp.is_none() && listed && !wanted.contains(&name) {
            writes.push(Write {
                name,
                object: None,
                nodes: Some(vec![]),
                available: Some(available_with(Some(device), 0)),
            });
        }
    }
    Plan {
        writes,
        devices: folded,
        recheck,
    }
}

/// The `Available` condition of `device` (cached; `None`: new) once `nodes`
/// nodes see it, keeping its transition time when its status stays.
fn available_with(device: Option<&Device>, nodes: usize) -> Condition {
    // A new Device's generation is 1 (the API server's rule for creates).
    let generation = device.map_or(Some(1), |d| d.metadata.generation);
    let mut conditions: Vec<Condition> = device
        .and_then(|d| d.status.as_ref())
        .into_iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ == AVAILABLE)
        .cloned()
        .collect();
    let fresh = health::available_at(generation, nodes);
    conditions::set_condition(&mut conditions, fresh.clone());
    conditions.pop().unwrap_or(fresh)
}

/// The spec of the shared Device a node reports.
fn spec_of(set: &SetView<'_>, device: &ReportedDevice) -> DeviceSpec {
    DeviceSpec {
        device_set: set.name.to_owned(),
        id: device.id.clone(),
        shared: true,
        node: None,
        capacity: set.capacity,
        properties: device.properties.clone(),
        device_nodes: device.device_nodes.clone(),
        mounts: device.mounts.clone(),
    }
}

/// Whether `device` has `spec`, and the metadata that goes with it.
fn same_spec(device: &Device, spec: &DeviceSpec) -> bool {
    device.spec == *spec
        && device.annotations().get(SPEC_HASH) == Some(&contract::spec_hash(spec))
        && device
            .labels()
            .get(contract::SCOPE_LABEL)
            .map(String::as_str)
            == Some(contract::SHARED_SCOPE)
}

/// Whether `device` lists exactly `entries` (by node, any order).
fn same_entries(device: &Device, entries: &[DeviceNodeStatus]) -> bool {
    let have: BTreeMap<&str, &DeviceNodeStatus> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .map(|n| (n.node.as_str(), n))
        .collect();
    have.len() == entries.len()
        && entries
            .iter()
            .all(|e| have.get(e.node.as_str()) == Some(&e))
}

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
