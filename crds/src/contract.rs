//! The contract between the agents and the controller: who writes which
//! field, under which field manager, and what each label and annotation
//! Ambit puts on objects means. Both sides take these names from here, so
//! they cannot drift apart.
//!
//! | object | field | written by | field manager |
//! |---|---|---|---|
//! | local Device | metadata (owner, [`SET_LABEL`], [`SCOPE_LABEL`], [`SPEC_HASH`]) and spec | its node's agent | [`agent_manager`] |
//! | local Device | its node's entry in `status.nodes` | its node's agent | [`agent_manager`] |
//! | DeviceReport | the whole object: the shared devices one node sees for one DeviceSet | that node's agent | [`agent_manager`] |
//! | shared Device | metadata and spec, from the reports (the report of the first node by name wins where they differ) | the controller | [`CONTROLLER`] |
//! | shared Device | all of `status.nodes`: one entry per node whose report lists it, unless the node is gone | the controller | [`NODES_MANAGER`] |
//! | any Device | its node's entries in `status.allocations` (never forced: a slot another node holds is a conflict) | that node's agent | [`slots_manager`] |
//! | any Device | `status.conditions` | the controller | [`CONTROLLER`] |
//! | local Device | the entry of a node that is gone: an empty list applied as that node's agent | the controller | [`agent_manager`] |
//! | DeviceSet | its node's entry in `status.nodes` | that node's agent | [`agent_manager`] |
//! | DeviceSet | the rest of `status` | the controller | [`CONTROLLER`] |
//! | broker pods, Jobs, Services, ResourceClaimTemplates | the whole object, labelled [`SET_LABEL`] and [`DEVICE_LABEL`] (broker pods also [`NODE_LABEL`]); pods, Jobs and Services annotated [`SPEC_HASH`] | the controller | [`CONTROLLER`] |
//!
//! A Device no node sees any more is deleted by the controller once its
//! grace period is over: the DeviceSet's `discovery.gracePeriodSeconds`, or
//! [`default_grace`]; the agents keep a vanished device's entry for the same
//! time (a shared device stays in the node's DeviceReport for it). The
//! ResourceSlices both sides publish follow the DRA model of the
//! `ambit-dra` crate (driver, pools, slice labels).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::v1alpha1::{Device, DeviceSet, DeviceSpec};

/// The agent's name: its field managers start with it, and it reports
/// Events and manages its ResourceSlices under it.
pub const AGENT: &str = "ambit-agent";

/// The controller's name, and its field manager for everything it writes;
/// it also reports Events and manages its ResourceSlices under it.
pub const CONTROLLER: &str = "ambit-controller";

/// The controller's field manager for shared Devices' `status.nodes`,
/// which it folds from the nodes' DeviceReports: not [`CONTROLLER`],
/// since an apply of the conditions without the entries would delete them.
pub const NODES_MANAGER: &str = "ambit-controller/nodes";

/// The field manager of `node`'s agent, `ambit-agent/<node>`: Devices'
/// metadata and spec, and the node's entries in Devices' and DeviceSets'
/// `status.nodes`. The controller applies as it to remove the entries of a
/// node that is gone.
pub fn agent_manager(node: &str) -> String {
    format!("{AGENT}/{node}")
}

/// The field manager of the slots `node`'s agent hands out,
/// `ambit-agent/<node>/slots`: its entries in Devices'
/// `status.allocations`. Not [`agent_manager`]: an apply of the slots
/// without the node entry would delete that entry.
pub fn slots_manager(node: &str) -> String {
    format!("{}/slots", agent_manager(node))
}

/// Label: the DeviceSet an object belongs to. On Devices (by the agent,
/// when the name fits a label value) and on everything the controller
/// creates; the set's Service selects by it.
pub const SET_LABEL: &str = "ambit.dev/device-set";

/// Label: the Device an object belongs to (broker pods, Jobs, Services,
/// ResourceClaimTemplates); the Device's Service selects by it.
pub const DEVICE_LABEL: &str = "ambit.dev/device";

/// Label and annotation: the node a broker pod is for (the label only when
/// the name fits a label value).
pub const NODE_LABEL: &str = "ambit.dev/node";

/// Label: whose agents watch a Device. A node-local Device carries its
/// node's name, a shared one [`SHARED_SCOPE`], and each agent watches only
/// [`scope_selector`] of its node: a node's local Devices are not sent to
/// every other node's agent (with 100 agents, each local Device write
/// would otherwise be sent 100 times). A node whose name does not fit a
/// label value (over 63 characters) labels its local Devices with nothing
/// and its agent watches every Device, as before the label.
pub const SCOPE_LABEL: &str = "ambit.dev/scope";

/// [`SCOPE_LABEL`]'s value on shared Devices. A node named `shared` is not
/// a problem: its agent watches the one value, and other agents also get
/// its local Devices, which they leave alone as they always did.
pub const SHARED_SCOPE: &str = "shared";

/// The longest label value.
const MAX_LABEL_VALUE: usize = 63;

/// [`SCOPE_LABEL`]'s value for a Device of `node` (`None`: a shared
/// Device); `None` when that node's name does not fit a label value.
pub fn scope(node: Option<&str>) -> Option<String> {
    match node {
        None => Some(SHARED_SCOPE.to_owned()),
        Some(node) if node.len() <= MAX_LABEL_VALUE => Some(node.to_owned()),
        Some(_) => None,
    }
}

/// The label selector of the Devices `node`'s agent needs: its own local
/// Devices and every shared one; `None` (watch every Device) when the
/// node's name does not fit a label value.
pub fn scope_selector(node: &str) -> Option<String> {
    let own = scope(Some(node))?;
    Some(format!("{SCOPE_LABEL} in ({SHARED_SCOPE},{own})"))
}

/// Annotation: a hash of what the object was built from. On a Device, the
/// hash of its spec, so its writer (the agent of a local Device, the
/// controller for a shared one) can tell from its watch or cache that the
/// spec is already what it would apply; on what else the controller
/// creates, a different hash means the object is out of date.
pub const SPEC_HASH: &str = "ambit.dev/spec-hash";

/// The hash of a Device's spec, as [`SPEC_HASH`] carries it.
pub fn spec_hash(spec: &DeviceSpec) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(spec).unwrap_or_default();
    Sha256::digest(json)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Device to apply, metadata and spec only: owned by its DeviceSet
/// (`set_uid`), labelled [`SET_LABEL`] (when the name fits) and
/// [`SCOPE_LABEL`], annotated [`SPEC_HASH`]. The agent applies local
/// Devices so, the controller shared ones.
pub fn device_object(name: &str, namespace: &str, set_uid: &str, spec: DeviceSpec) -> Device {
    let mut labels = BTreeMap::new();
    if spec.device_set.len() <= MAX_LABEL_VALUE {
        labels.insert(SET_LABEL.to_owned(), spec.device_set.clone());
    }
    if let Some(scope) = scope(spec.node.as_deref()) {
        labels.insert(SCOPE_LABEL.to_owned(), scope);
    }
    let annotations = BTreeMap::from([(SPEC_HASH.to_owned(), spec_hash(&spec))]);
    Device {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![set_owner(&spec.device_set, set_uid)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The owner reference to the DeviceSet `name` (`uid`) that Devices and
/// DeviceReports carry, so deleting the set deletes them.
pub fn set_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: DeviceSet::api_version(&()).into_owned(),
        kind: DeviceSet::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The well-known label naming who manages an object: [`AGENT`] or
/// [`CONTROLLER`] on the ResourceSlices they publish.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// What the kubelet extended resources of the agent's device plugins start
/// with: `ambit.dev/<device>` for one Device, `ambit.dev/<set>` for any
/// Device of a set.
pub const RESOURCE_PREFIX: &str = "ambit.dev/";

/// The kubelet extended resource named `name` (a Device or a DeviceSet), as
/// the agent's device plugin registers it and broker pods request it.
pub fn resource(name: &str) -> String {
    format!("{RESOURCE_PREFIX}{name}")
}

/// How long a vanished node-local device keeps its node entry, when its
/// DeviceSet does not say.
pub const DEFAULT_LOCAL_GRACE: Duration = Duration::from_secs(10);

/// How long a vanished shared (network) device keeps its node entry, when
/// its DeviceSet does not say.
pub const DEFAULT_SHARED_GRACE: Duration = Duration::from_secs(300);

/// The grace period of a device whose DeviceSet sets none.
pub fn default_grace(shared: bool) -> Duration {
    if shared {
        DEFAULT_SHARED_GRACE
    } else {
        DEFAULT_LOCAL_GRACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_are_the_ones_objects_already_carry() {
        assert_eq!(agent_manager("edge-1"), "ambit-agent/edge-1");
        assert_eq!(slots_manager("edge-1"), "ambit-agent/edge-1/slots");
        assert_eq!(CONTROLLER, "ambit-controller");
        assert!(NODES_MANAGER.starts_with(CONTROLLER));
    }

    #[test]
    fn resources_are_in_the_api_group() {
        assert_eq!(resource("cams-0123"), "ambit.dev/cams-0123");
        assert!(RESOURCE_PREFIX.starts_with(crate::GROUP));
        for key in [SET_LABEL, DEVICE_LABEL, NODE_LABEL, SCOPE_LABEL, SPEC_HASH] {
            assert!(key.starts_with("ambit.dev/"), "{key}");
        }
    }

    #[test]
    fn an_agent_watches_its_own_devices_and_the_shared_ones() {
        assert_eq!(scope(None).as_deref(), Some("shared"));
        assert_eq!(scope(Some("edge-1")).as_deref(), Some("edge-1"));
        assert_eq!(
            scope_selector("edge-1").as_deref(),
            Some("ambit.dev/scope in (shared,edge-1)")
        );
        let long = format!("{}.example.com", "n".repeat(60));
        assert_eq!(scope(Some(&long)), None, "too long for a label value");
        assert_eq!(
            scope_selector(&long),
            None,
            "its agent watches every Device"
        );
    }

    #[test]
    fn shared_devices_wait_longer() {
        assert_eq!(default_grace(false), Duration::from_secs(10));
        assert_eq!(default_grace(true), Duration::from_secs(300));
    }
}
