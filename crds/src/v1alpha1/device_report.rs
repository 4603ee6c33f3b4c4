//! `DeviceReport`: the shared (network) devices one node's agent sees for
//! one DeviceSet.
//!
//! A shared device is seen from many nodes. If each node's agent wrote its
//! own entry into the Device, ten nodes seeing a thousand devices would make
//! ten thousand Device writes, each sent to every watcher. Instead each
//! agent writes what it sees into its own report (one object per node and
//! DeviceSet, split into shards when large), and the controller folds the
//! reports into the shared Devices: it creates them and writes
//! `status.nodes`, one write per Device however many nodes see it.
//!
//! Written only by the agent of `spec.node` (server-side apply, its field
//! manager); read by the controller. Owned by the DeviceSet, so deleting
//! the set deletes its reports. A node-local device never appears here: its
//! agent writes its Device directly.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::device::{DeviceNode, Mount};

/// The shared devices one node sees for one DeviceSet (or one shard of them).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ambit.dev",
    version = "v1alpha1",
    kind = "DeviceReport",
    namespaced,
    shortname = "adrep",
    category = "ambit",
    selectable = ".spec.node",
    selectable = ".spec.deviceSet",
    printcolumn = r#"{"name":"Set","type":"string","jsonPath":".spec.deviceSet"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Shard","type":"integer","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReportSpec {
    /// The DeviceSet (in the same namespace) whose handler found the devices.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.deviceSet cannot be changed after creation"
    ))]
    pub device_set: String,

    /// The node whose agent sees the devices.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.node cannot be changed after creation"
    ))]
    pub node: String,

    /// Which shard of the node's report this is. A large report is split by
    /// a hash of each device's id, so a change rewrites one shard; the
    /// controller reads the devices of every shard.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0 && self < 256").message(
        "shard must be between 0 and 255"
    ))]
    pub shard: i32,

    /// The devices the node sees now, or saw within their grace period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    pub devices: Vec<ReportedDevice>,
}

/// One shared device, as one node sees it: what its Device's spec is made of.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportedDevice {
    /// The handler's stable identity for the device.
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,

    /// Since when the node sees the device without interruption.
    pub since: Time,

    /// The handler's properties merged with the DeviceSet's brokerProperties,
    /// as they go into the Device's spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub properties: BTreeMap<String, String>,

    /// Device nodes the handler hands to pods using the device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub device_nodes: Vec<DeviceNode>,

    /// Host paths the handler has mounted into pods using the device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub mounts: Vec<Mount>,
}
