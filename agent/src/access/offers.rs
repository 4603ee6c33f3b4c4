//! What this node offers to pods: every Device whose `status.nodes` names
//! this node, as the API server has it, with the other nodes that see it.
//!
//! ```text
//!  Device watch ──► Offers (this node's devices) ──watch channel──┬─► device plugins (kubelet)
//!                                                                 ├─► CDI spec files
//!                                                                 └─► DRA: ResourceSlices, kubelet DRA plugin
//! ```
//!
//! The API object is the source of truth: a device is offered from the
//! moment the recorder's write of this node's entry is visible, and stops
//! being offered when the entry is gone (after the device's grace period).
//! While the API server is unreachable the last offers stay, so pods keep
//! getting local devices.

use std::collections::BTreeMap;
use std::sync::Arc;

use ambit_crds::v1alpha1::{Allocation, Device, DeviceSpec};
use kube::ResourceExt;

/// A Device, by namespace and name.
pub type DeviceKey = (String, String);

/// One Device this node offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The Device's namespace.
    pub namespace: String,
    /// The Device's name.
    pub name: String,
    /// The Device's uid.
    pub uid: String,
    /// The Device's spec (set, properties, device nodes, mounts, capacity).
    pub spec: DeviceSpec,
    /// Every node that sees the device, this one included, sorted.
    pub nodes: Vec<String>,
    /// The slots in use, on any node.
    pub allocations: Vec<Allocation>,
}

impl Offer {
    /// The Device's slots: `capacity`, at least one.
    pub fn slots(&self) -> u32 {
        u32::try_from(self.spec.capacity.max(1)).unwrap_or(1)
    }

    fn of(device: &Device, node: &str) -> Option<Self> {
        let status = device.status.as_ref()?;
        if !status.nodes.iter().any(|n| n.node == node) {
            return None;
        }
        let mut nodes: Vec<String> = status.nodes.iter().map(|n| n.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        Some(Self {
            namespace: device.namespace()?,
            name: device.name_any(),
            uid: device.uid()?,
            spec: device.spec.clone(),
            nodes,
            allocations: status.allocations.clone(),
        })
    }
}

/// Every Device this node offers, by key. Each offer is shared, so a copy
/// of the map for a consumer copies pointers, not Devices.
pub type Offers = Arc<BTreeMap<DeviceKey, Arc<Offer>>>;

/// This node's offers, as the Device watch's events build them (the one
/// Device watch, in [`crate::recording::devices`], feeds it and publishes it).
#[derive(Debug)]
pub struct Follower {
    node: String,
    current: BTreeMap<DeviceKey, Arc<Offer>>,
}

impl Follower {
    /// No offers yet, for `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            current: BTreeMap::new(),
        }
    }

    /// A Device is there as shown; whether the offers changed.
    pub fn apply(&mut self, device: &Device) -> bool {
        let key = key(device);
        match Offer::of(device, &self.node) {
            Some(offer) => {
                if self.current.get(&key).is_some_and(|o| **o == offer) {
                    false
                } else {
                    self.current.insert(key, Arc::new(offer));
                    true
                }
            }
            None => self.current.remove(&key).is_some(),
        }
    }

    /// A Device is gone; whether the offers changed.
    pub fn delete(&mut self, key: &DeviceKey) -> bool {
        self.current.remove(key).is_some()
    }

    /// The offers now, to publish (a copy of pointers).
    pub fn offers(&self) -> Offers {
        Arc::new(self.current.clone())
    }
}

/// Offers made of `list`, keyed as the watch keys them (for tests).
#[cfg(test)]
pub fn offers_of(list: &[Offer]) -> Offers {
    Arc::new(
        list.iter()
            .map(|o| ((o.namespace.clone(), o.name.clone()), Arc::new(o.clone())))
            .collect(),
    )
}

/// A Device's key.
pub fn key(device: &Device) -> DeviceKey {
    (device.namespace().unwrap_or_default(), device.name_any())
}

#[cfg(test)]
mod tests {
    use ambit_crds::v1alpha1::{DeviceNodeStatus, DeviceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn device(nodes: &[&str]) -> Device {
        let mut device = Device::new(
            "cam-1",
            DeviceSpec {
                device_set: "cams".into(),
                id: "1".into(),
                shared: true,
                node: None,
                capacity: 0,
                properties: BTreeMap::new(),
                device_nodes: vec![],
                mounts: vec![],
            },
        );
        device.metadata.namespace = Some("ns".into());
        device.metadata.uid = Some("u".into());
        device.status = Some(DeviceStatus {
            nodes: nodes
                .iter()
                .map(|n| DeviceNodeStatus {
                    node: (*n).into(),
                    since: Time(Timestamp::UNIX_EPOCH),
                })
                .collect(),
            ..Default::default()
        });
        device
    }

    #[test]
    fn a_device_is_offered_only_where_it_is_seen() {
        assert!(Offer::of(&device(&["b"]), "a").is_none());
        let offer = Offer::of(&device(&["b", "a"]), "a");
        let offer = offer.as_ref();
        assert_eq!(
            offer.map(|o| o.nodes.clone()),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            offer.map(Offer::slots),
            Some(1),
            "capacity 0 still has a slot"
        );
    }

    #[test]
    fn the_follower_changes_only_when_this_nodes_offer_does() {
        let mut follower = Follower::new("a");
        assert!(!follower.apply(&device(&["b"])), "not seen here: no offer");
        assert!(follower.apply(&device(&["a", "b"])));
        assert!(
            !follower.apply(&device(&["b", "a"])),
            "the same offer again"
        );
        assert_eq!(follower.offers().len(), 1);
        assert!(follower.apply(&device(&["b"])), "this node's entry went");
        assert!(follower.offers().is_empty());
        assert!(follower.apply(&device(&["a"])));
        assert!(follower.delete(&("ns".into(), "cam-1".into())));
        assert!(!follower.delete(&("ns".into(), "cam-1".into())));
    }
}
