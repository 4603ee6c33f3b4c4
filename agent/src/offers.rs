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
use futures::{FutureExt, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::warn;

use crate::devices::scoped;

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

/// The offers are published at most this often (events are taken in all
/// the while): a lone change is published at once, a burst (a thousand
/// Devices written while converging) every 50 ms, so the device plugins,
/// the CDI writer and the DRA publisher redo their work twenty times a
/// second at most, not once per Device.
const REPUBLISH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Watches Devices and publishes this node's offers on the returned
/// channel, each time they change. Runs until the process ends.
///
/// Every event already waiting is taken in before the offers are published,
/// and publishes are at least [`REPUBLISH_AFTER`] apart: a burst (a relist,
/// a thousand Devices written while converging) costs a copy of the map
/// per 50 ms, not one per Device.
pub fn follow(client: Client, namespace: Option<String>, node: String) -> watch::Receiver<Offers> {
    let (sender, receiver) = watch::channel(Offers::default());
    tokio::spawn(async move {
        let api = scoped::<Device>(client, namespace.as_deref());
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let mut events = std::pin::pin!(events);
        let mut follower = Follower {
            node,
            current: BTreeMap::new(),
            listing: None,
        };
        // Events are taken in as they come; publishing waits until
        // REPUBLISH_AFTER has passed since the last publish.
        let mut pending = false;
        let start = tokio::time::Instant::now();
        let mut last = start.checked_sub(REPUBLISH_AFTER).unwrap_or(start);
        loop {
            let due = last + REPUBLISH_AFTER;
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else { return };
                    pending |= follower.apply(event);
                    while let Some(Some(event)) = events.next().now_or_never() {
                        pending |= follower.apply(event);
                    }
                }
                () = tokio::time::sleep_until(due), if pending => {}
            }
            if pending && tokio::time::Instant::now() >= due {
                sender.send_replace(Arc::new(follower.current.clone()));
                pending = false;
                last = tokio::time::Instant::now();
            }
        }
    });
    receiver
}

/// This node's offers, as the Device watch's events build them.
struct Follower {
    node: String,
    current: BTreeMap<DeviceKey, Arc<Offer>>,
    /// A relist in progress: the Devices listed so far.
    listing: Option<BTreeMap<DeviceKey, Arc<Offer>>>,
}

impl Follower {
    /// Takes in one event; whether the offers changed.
    fn apply(&mut self, event: Result<watcher::Event<Device>, watcher::Error>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "Device watch (offers) failed; retrying");
                return false;
            }
        };
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(device) => {
                if let (Some(listing), Some(offer)) =
                    (&mut self.listing, Offer::of(&device, &self.node))
                {
                    listing.insert(key(&device), Arc::new(offer));
                }
                false
            }
            watcher::Event::InitDone => match self.listing.take() {
                Some(listed) if listed != self.current => {
                    self.current = listed;
                    true
                }
                _ => false,
            },
            watcher::Event::Apply(device) => match Offer::of(&device, &self.node) {
                Some(offer) => {
                    let key = key(&device);
                    if self.current.get(&key).is_some_and(|o| **o == offer) {
                        false
                    } else {
                        self.current.insert(key, Arc::new(offer));
                        true
                    }
                }
                None => self.current.remove(&key(&device)).is_some(),
            },
            watcher::Event::Delete(device) => self.current.remove(&key(&device)).is_some(),
        }
    }
}

fn key(device: &Device) -> DeviceKey {
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
}
