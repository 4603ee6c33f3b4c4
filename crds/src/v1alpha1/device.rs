//! `Device`: one device found by a DeviceSet's handler.
//!
//! Owned by its DeviceSet (deleting the set garbage-collects its Devices).
//! A node-local Device is created by its node's agent, which owns its one
//! entry of `status.nodes` through server-side apply. A shared Device is
//! created by the controller from the nodes' DeviceReports, and the
//! controller writes all of its `status.nodes` (see `DeviceReport`). The
//! controller owns the conditions and removes entries of nodes that are
//! gone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// One device found by a DeviceSet's discovery handler.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ambit.dev",
    version = "v1alpha1",
    kind = "Device",
    namespaced,
    status = "DeviceStatus",
    shortname = "adev",
    category = "ambit",
    printcolumn = r#"{"name":"Set","type":"string","jsonPath":".spec.deviceSet"}"#,
    printcolumn = r#"{"name":"Shared","type":"boolean","jsonPath":".spec.shared"}"#,
    printcolumn = r#"{"name":"Nodes","type":"string","jsonPath":".status.nodes[*].node"}"#,
    printcolumn = r#"{"name":"Capacity","type":"integer","jsonPath":".spec.capacity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.shared != has(self.node)").message(
    "a local device (shared: false) must name its node, and a shared device must not"
))]
#[x_kube(validation = Rule::new(
    "has(self.node) == has(oldSelf.node) && (!has(self.node) || self.node == oldSelf.node)"
).message("spec.node cannot be changed after creation"))]
pub struct DeviceSpec {
    /// The DeviceSet (in the same namespace) whose handler found this device.
    /// Cannot be changed after creation.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.deviceSet cannot be changed after creation"
    ))]
    pub device_set: String,

    /// The handler's stable identity for the device (a device path, a URL, a
    /// UUID, ...). Cannot be changed after creation.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.id cannot be changed after creation"
    ))]
    pub id: String,

    /// Whether the device is reached over the network and may be seen from
    /// several nodes (`true`), or is attached to one node (`false`). Cannot be
    /// changed after creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.shared cannot be changed after creation"
    ))]
    pub shared: bool,

    /// The node a local device is attached to; absent for shared devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node: Option<String>,

    /// How many pods may use the device at the same time, from the DeviceSet.
    #[x_kube(validation = Rule::new("self >= 1").message("capacity must be at least 1"))]
    #[x_kube(validation = Rule::new("self <= 1024").message("capacity must be at most 1024"))]
    pub capacity: i32,

    /// What the handler reports about the device, plus the DeviceSet's
    /// brokerProperties. Pods that use the device get them as environment
    /// variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub properties: BTreeMap<String, String>,

    /// Device nodes (such as `/dev/video0`) that pods using a local device get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub device_nodes: Vec<DeviceNode>,

    /// Host paths that pods using a local device get mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub mounts: Vec<Mount>,
}

/// A device node handed to the pods that use a device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// The path on the node, such as `/dev/video0`.
    pub host_path: String,

    /// The path inside the container; the host path when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,

    /// Access for the container, any of `r`, `w` and `m` (mknod); `rw` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 3))]
    #[x_kube(validation = Rule::new("self.matches('^[rwm]{1,3}$')").message(
        "permissions must be made of the letters r, w and m"
    ))]
    pub permissions: Option<String>,
}

/// A host path mounted into the pods that use a device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The path on the node.
    pub host_path: String,

    /// The path inside the container.
    pub container_path: String,

    /// Whether the mount is read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// The observed state of a Device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// The nodes that see the device, one entry per node: written by the
    /// node's agent for a local device, by the controller (from the nodes'
    /// DeviceReports) for a shared one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["node".into()]))]
    pub nodes: Vec<DeviceNodeStatus>,

    /// Which of the device's slots are in use, by which pod on which node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["slot".into()]))]
    pub allocations: Vec<Allocation>,

    /// The device's conditions (`Available`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One node that sees a device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNodeStatus {
    /// The node's name.
    pub node: String,

    /// Since when the node sees the device without interruption.
    pub since: Time,
}

/// One slot of a device in use by a pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The slot's number, from 0 to capacity - 1.
    #[x_kube(validation = Rule::new("self >= 0").message("slot must not be negative"))]
    pub slot: i32,

    /// The node the pod runs on.
    pub node: String,

    /// The pod that holds the slot, as `namespace/name`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,

    /// When the slot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}
