//! What this node's agent wants the API to say: its local Devices' specs
//! and node entries, its DeviceReports of shared devices, and its own view
//! of each DeviceSet. Pure functions, unit-tested.
//!
//! Every object is written with server-side apply under the field manager
//! `ambit-agent/<node>` ([`ambit_crds::contract::agent_manager`]), so each
//! agent owns only its own objects and entries; shared Devices are the
//! controller's, folded from the reports.

use std::collections::BTreeMap;

use ambit_crds::contract::{self, SET_LABEL};
use ambit_crds::v1alpha1::{
    Device, DeviceNode, DeviceReport, DeviceReportSpec, DeviceSet, DeviceSetNodeStatus, DeviceSpec,
    HandlerState, Mount, ReportedDevice,
};
use ambit_discovery as sdk;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::{Value, json};

use crate::recording::tracker::SetKey;

pub use contract::spec_hash;

/// What the agent needs to know about a DeviceSet to write its Devices.
#[derive(Debug, Clone, PartialEq)]
pub struct SetInfo {
    /// The set's uid, for the Devices' ownerReference.
    pub uid: String,
    /// The handler the set asks for.
    pub handler: String,
    /// Slots per device.
    pub capacity: i32,
    /// Properties added to every device.
    pub broker_properties: BTreeMap<String, String>,
}

impl SetInfo {
    /// The parts of `set` the agent writes Devices from; `None` without a uid
    /// (an object not from the API server).
    pub fn of(set: &DeviceSet) -> Option<Self> {
        Some(Self {
            uid: set.metadata.uid.clone()?,
            handler: set.spec.discovery.handler.clone(),
            capacity: set.spec.capacity,
            broker_properties: set.spec.broker_properties.clone(),
        })
    }
}

/// The name of the Device for a handler's `device` on `node`.
pub fn device_name(set: &SetKey, device: &sdk::Device, node: &str) -> String {
    ambit_crds::names::device_name(&set.name, &device.id, (!device.shared).then_some(node))
}

/// The spec of the Device for a handler's `device`. Handler properties win
/// over the set's `brokerProperties` of the same name: they are facts about
/// the device.
pub fn device_spec(set: &SetKey, info: &SetInfo, device: &sdk::Device, node: &str) -> DeviceSpec {
    let mut properties = info.broker_properties.clone();
    properties.extend(
        device
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    DeviceSpec {
        device_set: set.name.clone(),
        id: device.id.clone(),
        shared: device.shared,
        node: (!device.shared).then(|| node.to_owned()),
        capacity: info.capacity,
        properties,
        device_nodes: device
            .device_nodes
            .iter()
            .map(|d| DeviceNode {
                host_path: d.host_path.clone(),
                container_path: non_empty(&d.container_path),
                permissions: non_empty(&d.permissions),
            })
            .collect(),
        mounts: device
            .mounts
            .iter()
            .map(|m| Mount {
                host_path: m.host_path.clone(),
                container_path: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
    }
}

/// A handler device rebuilt from a Device that a previous run recorded.
pub fn device_from_spec(spec: &DeviceSpec) -> sdk::Device {
    sdk::Device {
        id: spec.id.clone(),
        shared: spec.shared,
        properties: spec.properties.clone(),
        device_nodes: spec
            .device_nodes
            .iter()
            .map(|d| sdk::DeviceNode {
                host_path: d.host_path.clone(),
                container_path: d.container_path.clone().unwrap_or_default(),
                permissions: d.permissions.clone().unwrap_or_default(),
            })
            .collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| sdk::Mount {
                host_path: m.host_path.clone(),
                container_path: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The Device object to apply: metadata (owner, labels) and spec only.
pub fn device_object(name: &str, set: &SetKey, info: &SetInfo, spec: DeviceSpec) -> Device {
    contract::device_object(name, &set.namespace, &info.uid, spec)
}

/// How many devices a DeviceReport shard is meant to hold: a report of a
/// thousand debug-echo devices is about 120 kB, far under etcd's 1.5 MB.
pub const PER_SHARD: usize = 1000;

/// The most shards a node's report of one set has.
pub const MAX_SHARDS: u32 = 256;

/// How many shards a report of `devices` devices gets, given it has
/// `current` now: more when a shard would hold over [`PER_SHARD`], fewer
/// only when a quarter of the shards would do, so a count that hovers
/// round a boundary does not reshard on every change.
pub fn shards(current: u32, devices: usize) -> u32 {
    let needed = u32::try_from(devices.div_ceil(PER_SHARD))
        .unwrap_or(MAX_SHARDS)
        .clamp(1, MAX_SHARDS);
    let current = current.clamp(1, MAX_SHARDS);
    if needed > current || needed <= current / 4 {
        needed
    } else {
        current
    }
}

/// The shard of `shards` that device `id` goes into.
pub fn shard_of(id: &str, shards: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    head % shards.max(1)
}

/// A shared device as this node reports it: the spec's device-specific
/// parts, and since when it is seen.
pub fn reported(spec: &DeviceSpec, since: Timestamp) -> ReportedDevice {
    ReportedDevice {
        id: spec.id.clone(),
        since: Time(since),
        properties: spec.properties.clone(),
        device_nodes: spec.device_nodes.clone(),
        mounts: spec.mounts.clone(),
    }
}

/// A handler device rebuilt from what a previous run reported.
pub fn device_from_report(reported: &ReportedDevice) -> sdk::Device {
    device_from_spec(&DeviceSpec {
        device_set: String::new(),
        id: reported.id.clone(),
        shared: true,
        node: None,
        capacity: 1,
        properties: reported.properties.clone(),
        device_nodes: reported.device_nodes.clone(),
        mounts: reported.mounts.clone(),
    })
}

/// Shard `shard` of this node's DeviceReport for `set`, to apply whole.
pub fn report_object(
    set: &SetKey,
    set_uid: &str,
    node: &str,
    shard: u32,
    devices: Vec<ReportedDevice>,
) -> DeviceReport {
    let mut labels = BTreeMap::new();
    for (key, value) in [
        (SET_LABEL, &set.name),
        (contract::NODE_LABEL, &node.to_owned()),
    ] {
        if value.len() <= 63 {
            labels.insert(key.to_owned(), value.clone());
        }
    }
    DeviceReport {
        metadata: ObjectMeta {
            name: Some(ambit_crds::names::report_name(&set.name, node, shard)),
            namespace: Some(set.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![contract::set_owner(&set.name, set_uid)]),
            ..ObjectMeta::default()
        },
        spec: DeviceReportSpec {
            device_set: set.name.clone(),
            node: node.to_owned(),
            shard: i32::try_from(shard).unwrap_or(i32::MAX),
            devices,
        },
    }
}

/// The status patch that claims (`Some(since)`) or gives up (`None`) this
/// node's entry of a Device.
pub fn node_entry_patch(name: &str, node: &str, since: Option<Timestamp>) -> Value {
    let nodes: Vec<Value> = since
        .map(|since| json!({ "node": node, "since": Time(since) }))
        .into_iter()
        .collect();
    json!({
        "apiVersion": Device::api_version(&()),
        "kind": Device::kind(&()),
        "metadata": { "name": name },
        "status": { "nodes": nodes },
    })
}

/// This node's view of a DeviceSet, as it goes into `status.nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Whether the handler runs here.
    pub handler: HandlerState,
    /// Devices present in the latest complete set.
    pub devices: i32,
    /// The last error, in the handler's words; empty when all is well.
    pub last_error: String,
}

/// The status patch for this node's entry of a DeviceSet.
pub fn set_entry_patch(set: &SetKey, node: &str, view: &NodeView, changed_at: Timestamp) -> Value {
    let entry = DeviceSetNodeStatus {
        node: node.to_owned(),
        handler: view.handler,
        devices: view.devices,
        last_error: view.last_error.clone(),
        last_transition_time: Some(Time(changed_at)),
    };
    json!({
        "apiVersion": DeviceSet::api_version(&()),
        "kind": DeviceSet::kind(&()),
        "metadata": { "name": set.name },
        "status": { "nodes": [entry] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> (SetKey, SetInfo) {
        let key = SetKey {
            namespace: "plant".into(),
            name: "cams".into(),
        };
        let info = SetInfo {
            uid: "u-1".into(),
            handler: "debug-echo".into(),
            capacity: 2,
            broker_properties: BTreeMap::from([
                ("RATE".to_owned(), "10".to_owned()),
                ("DEVNODE".to_owned(), "user".to_owned()),
            ]),
        };
        (key, info)
    }

    #[test]
    fn local_devices_are_per_node_and_shared_ones_are_not() {
        let (key, _) = set();
        let local = sdk::Device::new("/dev/video0");
        let mut shared = sdk::Device::new("opc.tcp://x");
        shared.shared = true;
        assert_ne!(
            device_name(&key, &local, "a"),
            device_name(&key, &local, "b")
        );
        assert_eq!(
            device_name(&key, &shared, "a"),
            device_name(&key, &shared, "b")
        );
    }

    #[test]
    fn spec_merges_properties_with_the_handlers_winning() {
        let (key, info) = set();
        let mut device = sdk::Device::new("/dev/video0");
        device
            .properties
            .insert("DEVNODE".into(), "/dev/video0".into());
        device.device_nodes.push(sdk::DeviceNode {
            host_path: "/dev/video0".into(),
            ..Default::default()
        });
        let spec = device_spec(&key, &info, &device, "edge-1");
        assert_eq!(spec.properties["DEVNODE"], "/dev/video0");
        assert_eq!(spec.properties["RATE"], "10");
        assert_eq!(spec.node.as_deref(), Some("edge-1"));
        assert_eq!(spec.capacity, 2);
        assert_eq!(spec.device_nodes[0].container_path, None);
        assert_eq!(device_from_spec(&spec).device_nodes, device.device_nodes);
    }

    #[test]
    fn the_object_is_owned_by_its_set() {
        let (key, info) = set();
        let spec = device_spec(&key, &info, &sdk::Device::new("x"), "n");
        let object = device_object("cams-1", &key, &info, spec);
        let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DeviceSet", "u-1")
        );
        let labels = object.metadata.labels.unwrap();
        assert_eq!(labels[SET_LABEL], "cams");
        assert_eq!(
            labels[contract::SCOPE_LABEL],
            "n",
            "a local Device: its node"
        );
        let mut device = sdk::Device::new("x");
        device.shared = true;
        let spec = device_spec(&key, &info, &device, "n");
        let labels = device_object("cams-2", &key, &info, spec).metadata.labels;
        assert_eq!(labels.unwrap()[contract::SCOPE_LABEL], "shared");
    }

    #[test]
    fn reports_reshard_only_when_far_off() {
        assert_eq!(shards(1, 0), 1);
        assert_eq!(shards(1, 1000), 1);
        assert_eq!(shards(1, 1001), 2);
        assert_eq!(shards(4, 2500), 4, "not resharded for a few devices less");
        assert_eq!(shards(4, 1000), 1, "a quarter of the shards will do");
        assert_eq!(shards(1, 10_000_000), MAX_SHARDS);
        for id in ["a", "b", "opc.tcp://x"] {
            assert!(shard_of(id, 3) < 3);
            assert_eq!(shard_of(id, 1), 0);
        }
    }

    #[test]
    fn a_report_is_owned_by_its_set_and_names_its_node() {
        let (key, info) = set();
        let mut device = sdk::Device::new("opc.tcp://x");
        device.shared = true;
        device.properties.insert("MODEL".into(), "S7".into());
        let spec = device_spec(&key, &info, &device, "edge-1");
        let entry = reported(&spec, Timestamp::UNIX_EPOCH);
        assert_eq!(
            entry.properties["RATE"], "10",
            "merged with brokerProperties"
        );
        let report = report_object(&key, &info.uid, "edge-1", 0, vec![entry.clone()]);
        assert_eq!(report.spec.node, "edge-1");
        let labels = report.metadata.labels.unwrap();
        assert_eq!(labels[contract::NODE_LABEL], "edge-1");
        assert_eq!(report.metadata.owner_references.unwrap()[0].uid, "u-1");
        let back = device_from_report(&entry);
        assert!(back.shared);
        assert_eq!(
            device_spec(&key, &info, &back, "edge-1"),
            spec,
            "adoption rebuilds the spec"
        );
    }

    #[test]
    fn giving_up_an_entry_applies_an_empty_list() {
        let patch = node_entry_patch("d", "edge-1", None);
        assert_eq!(patch["status"]["nodes"], json!([]));
        let patch = node_entry_patch("d", "edge-1", Some(Timestamp::UNIX_EPOCH));
        assert_eq!(patch["status"]["nodes"][0]["node"], "edge-1");
        assert_eq!(patch["status"]["nodes"][0]["since"], "1970-01-01T00:00:00Z");
    }
}
