//! `DeviceSet`: what to look for, and what to do with each device found.
//!
//! Written by users; read by every agent (which runs discovery for the sets
//! whose handler it has) and by the controller (which runs brokers and
//! services). The status is shared: each agent owns its own entry of
//! `status.nodes` (server-side apply, one field manager per node), and the
//! controller owns the rest (counts, conditions, observedGeneration).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{ConfigMapKeySelector, PodSpec, SecretKeySelector, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{self, Details};

/// What to look for and what to do with each device found.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ambit.dev",
    version = "v1alpha1",
    kind = "DeviceSet",
    namespaced,
    status = "DeviceSetStatus",
    shortname = "dset",
    shortname = "devset",
    category = "ambit",
    printcolumn = r#"{"name":"Handler","type":"string","jsonPath":".spec.discovery.handler"}"#,
    printcolumn = r#"{"name":"Devices","type":"integer","jsonPath":".status.devices"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!(has(self.devicePlugin) && has(self.devicePlugin.perDevice) && !self.devicePlugin.perDevice && has(self.broker) && has(self.broker.access) && self.broker.access == 'DevicePlugin')"
).message(
    "broker.access DevicePlugin asks for each device's own resource: remove devicePlugin.perDevice: false, or use access DRA"
))]
pub struct DeviceSetSpec {
    /// How devices are found: which discovery handler runs, and with what input.
    pub discovery: Discovery,

    /// How many pods may use one device at the same time (its slots).
    #[serde(default = "default_capacity")]
    #[x_kube(validation = Rule::new("self >= 1").message("capacity must be at least 1"))]
    #[x_kube(validation = Rule::new("self <= 1024").message("capacity must be at most 1024"))]
    pub capacity: i32,

    /// Properties added to every Device of this set (and so to the environment
    /// of its brokers), beside the ones the handler reports. Names must be
    /// valid environment variable names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new(schema::ENV_KEYS_RULE).message(
        "brokerProperties names must be environment variable names: a letter or '_', then letters, digits or '_'"
    ))]
    pub broker_properties: BTreeMap<String, String>,

    /// The workload to run for each device: a pod per node that sees the
    /// device (`pod`), or one Job per device (`job`). Without it, devices are
    /// recorded but nothing runs for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<Broker>,

    /// A Service created for each Device, selecting that device's broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<Option<ServiceSpec>>")]
    pub device_service: Option<ServiceSpec>,

    /// A Service created once for the whole set, selecting every broker pod of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<Option<ServiceSpec>>")]
    pub set_service: Option<ServiceSpec>,

    /// Which kubelet device-plugin resources the agents serve for this set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_plugin: Option<DevicePluginResources>,
}

impl DeviceSetSpec {
    /// Whether each Device of this set is also its own device-plugin
    /// resource, `ambit.dev/<device>`: `devicePlugin.perDevice`, or, unset,
    /// whether the brokers ask for it (`broker.access: DevicePlugin`).
    pub fn per_device_resources(&self) -> bool {
        self.device_plugin
            .as_ref()
            .and_then(|d| d.per_device)
            .unwrap_or_else(|| {
                self.broker.as_ref().and_then(|b| b.access) == Some(Access::DevicePlugin)
            })
    }
}

/// Which kubelet device-plugin resources the agents serve for a set. The
/// set's own, `ambit.dev/<set>` (any device of the set on the node), is
/// always served.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DevicePluginResources {
    /// Also serve each Device as a resource of its own, `ambit.dev/<device>`,
    /// for pods that must get one precise device. Each is one more socket,
    /// gRPC server and kubelet registration on every node that sees the
    /// device, and one more extended resource in that Node's status, so it
    /// is off unless asked for: unset, it is on only when `broker.access`
    /// is `DevicePlugin` (each broker asks for its device's resource). DRA
    /// selects precise devices without either cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_device: Option<bool>,
}

fn default_capacity() -> i32 {
    1
}

/// Which discovery handler runs, with what input.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// The name of a discovery handler registered with the agents (for
    /// example `udev`, `opcua`, `onvif`, `modbus`, `bluetooth`, `debug-echo`).
    /// Cannot be changed after creation: create a new DeviceSet instead.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(schema::DNS_LABEL_RULE).message(
        "discovery.handler must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "discovery.handler cannot be changed after creation; create a new DeviceSet instead"
    ))]
    pub handler: String,

    /// Handler-specific settings, checked by the handler itself (see the
    /// handler's documentation). A handler that rejects them reports why in
    /// this DeviceSet's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub details: Option<Details>,

    /// Extra inputs for the handler, such as credentials, given directly or
    /// read from a Secret or ConfigMap in this namespace. They are handed to
    /// the handler only and never copied into Device objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub properties: Vec<DiscoveryProperty>,

    /// How long a device that is no longer seen on a node keeps that node's
    /// entry, so that a device that flaps does not churn its brokers.
    /// Defaults to 10 seconds for local devices and 300 seconds for network
    /// (shared) devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message(
        "discovery.gracePeriodSeconds must be between 0 and 86400 (one day)"
    ))]
    pub grace_period_seconds: Option<i32>,
}

/// One named input for the discovery handler.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message(
    "a discovery property must set exactly one of value or valueFrom"
))]
pub struct DiscoveryProperty {
    /// The property's name, as the handler expects it. Must be a valid
    /// environment variable name.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(schema::ENV_NAME_RULE).message(
        "property names must be environment variable names: a letter or '_', then letters, digits or '_'"
    ))]
    pub name: String,

    /// The value, given inline. Use valueFrom for anything secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,

    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<PropertySource>,
}

/// A Secret or ConfigMap key in the DeviceSet's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)").message(
    "valueFrom must set exactly one of secretKeyRef or configMapKeyRef"
))]
pub struct PropertySource {
    /// A key of a Secret in the DeviceSet's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,

    /// A key of a ConfigMap in the DeviceSet's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
}

/// The workload run for each device: exactly one of `pod` or `job`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pod) != has(self.job)").message(
    "broker must set exactly one of pod or job"
))]
pub struct Broker {
    /// A pod run on each node that sees the device (up to `capacity` pods per
    /// device), pinned to that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<Option<PodSpec>>")]
    pub pod: Option<PodSpec>,

    /// A Job run once for each device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<Option<JobSpec>>")]
    pub job: Option<JobSpec>,

    /// How each broker pod gets its device. Unset: the device's properties
    /// in its environment only (enough for network devices). `DevicePlugin`:
    /// its first container also requests one slot of the kubelet resource
    /// `ambit.dev/<device>` (device nodes, mounts, CDI). `DRA`: the pod gets
    /// a ResourceClaim for exactly its device, allocated by the scheduler
    /// from Ambit's ResourceSlices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// How a broker pod gets its device.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The kubelet device plugin resource `ambit.dev/<device>`.
    DevicePlugin,
    /// Dynamic Resource Allocation: a ResourceClaim for the device.
    #[serde(rename = "DRA")]
    Dra,
}

/// The observed state of a DeviceSet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSetStatus {
    /// The generation of the spec that the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The set's conditions (`Ready`, ...), kept by the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// How many Devices this set has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<i32>,

    /// How many broker pods of this set are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_brokers: Option<i32>,

    /// Each node's view of the set, one entry per node, each written by the
    /// agent of that node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["node".into()]))]
    pub nodes: Vec<DeviceSetNodeStatus>,
}

/// One node's view of a DeviceSet, written by that node's agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSetNodeStatus {
    /// The node's name.
    pub node: String,

    /// Whether the node's agent can run this set's handler.
    pub handler: HandlerState,

    /// How many devices the handler currently sees from this node.
    #[serde(default)]
    pub devices: i32,

    /// The last discovery error on this node, in the handler's words; empty
    /// when discovery works.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,

    /// When the handler's state or the error last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Whether a node's agent can run a DeviceSet's handler.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerState {
    /// The handler runs and reports devices.
    Available,
    /// No handler of that name is registered with the node's agent.
    Unavailable,
    /// The handler runs but discovery fails; see `lastError`.
    Failing,
}
