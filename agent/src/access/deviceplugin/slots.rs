//! The device plugins' state, without I/O: which resources this node
//! serves, which slots it holds, and what each resource reports to the
//! kubelet. One value, owned behind a mutex by the plugins, changed through
//! [`Slots::set_offers`], [`Slots::hold`], [`Slots::release`] and
//! [`Slots::observe_pods`], and unit-tested by calling those.
//!
//! A slot is one of a Device's `capacity` uses. It has one kubelet device ID,
//! `<device>-<slot>`, listed under its set's resource (`ambit.dev/<set>`)
//! and, when the set wants per-device resources
//! ([`ambit_crds::v1alpha1::DeviceSetSpec::per_device_resources`]), under
//! the device's own (`ambit.dev/<device>`) too. The kubelet counts each
//! resource on its own, so a slot that one resource handed out is reported
//! Unhealthy by the other, and a slot another node holds is Unhealthy in
//! both.

use std::collections::{BTreeMap, BTreeSet};

use ambit_crds::contract;
use ambit_crds::v1alpha1::Allocation;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::PerDevice;
use crate::access::offers::{DeviceKey, Offers};

/// The resource prefix: `ambit.dev/<name>`.
pub use ambit_crds::contract::RESOURCE_PREFIX as PREFIX;

/// One slot of one Device.
pub type SlotKey = (DeviceKey, u32);

/// What a resource stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// One Device: `ambit.dev/<device>`.
    Device(DeviceKey),
    /// Any device of a DeviceSet on this node: `ambit.dev/<set>`.
    Set {
        /// The set's namespace.
        namespace: String,
        /// The set's name.
        set: String,
    },
}

impl Owner {
    fn namespace(&self) -> &str {
        match self {
            Self::Device((namespace, _)) | Self::Set { namespace, .. } => namespace,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device((namespace, name)) => write!(f, "Device {namespace}/{name}"),
            Self::Set { namespace, set } => write!(f, "DeviceSet {namespace}/{set}"),
        }
    }
}

/// A slot this node holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The Device's set.
    pub set: String,
    /// The resource the kubelet allocated it through, when known (not after
    /// an agent restart, until the kubelet's pod-resources API tells).
    pub resource: Option<String>,
    /// The pod that holds it, `namespace/name`, when known.
    pub pod: Option<String>,
    /// When it was taken.
    pub since: Timestamp,
    /// Whether the API has shown the entry (so its absence later means
    /// someone removed it).
    pub recorded: bool,
}

/// A device ID the kubelet may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The ID names no slot of this resource.
    #[error("{id:?} is not a device of resource {resource}")]
    Unknown {
        /// The resource.
        resource: String,
        /// The ID.
        id: String,
    },
    /// Another node holds the slot.
    #[error("slot {slot} of Device {namespace}/{device} is held by node {node}")]
    HeldElsewhere {
        /// The Device's namespace.
        namespace: String,
        /// The Device.
        device: String,
        /// The slot.
        slot: u32,
        /// The node that holds it.
        node: String,
    },
    /// This node holds the slot through the other resource.
    #[error("slot {slot} of Device {namespace}/{device} is already allocated through {resource}")]
    HeldByOtherResource {
        /// The Device's namespace.
        namespace: String,
        /// The Device.
        device: String,
        /// The slot.
        slot: u32,
        /// The resource that holds it.
        resource: String,
    },
}

impl Refusal {
    /// A fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_device",
            Self::HeldElsewhere { .. } => "held_by_other_node",
            Self::HeldByOtherResource { .. } => "held_by_other_resource",
        }
    }
}

/// A resource name two owners want: the first keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The resource name.
    pub resource: String,
    /// Who serves it.
    pub winner: Owner,
    /// Who does not get it.
    pub loser: Owner,
}

/// The device plugins' state.
#[derive(Debug, Default)]
pub struct Slots {
    node: String,
    offers: Offers,
    resources: BTreeMap<String, Owner>,
    held: BTreeMap<SlotKey, Held>,
    dirty: BTreeSet<DeviceKey>,
    collisions: BTreeSet<(String, Owner)>,
    /// Devices whose entries in the API were adopted, once, when they were
    /// first offered. After that this agent is the only writer of its
    /// node's entries, and a watch event that still shows a slot it has
    /// just released must not bring the slot back.
    adopted: BTreeSet<DeviceKey>,
    /// The sets whose Devices are resources of their own, by namespace
    /// (looked up once per offer, so by borrowed names).
    per_device: BTreeMap<String, BTreeSet<String>>,
}

/// The device ID of `slot` of `device`.
pub fn device_id(device: &str, slot: u32) -> String {
    format!("{device}-{slot}")
}

/// Whether `name` may follow `ambit.dev/` in an extended resource name.
pub fn valid_resource_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= 63
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What one look at the kubelet's pod resources did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Slots released: no pod held them past the grace.
    pub released: Vec<SlotKey>,
    /// Whether a slot learned its resource or pod, or was released: the
    /// lists and entries must be sent again. At rest this stays false.
    pub changed: bool,
}

impl Slots {
    /// No offers yet, nothing held, for `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// The resources to serve, by name, with their owners.
    pub fn resources(&self) -> &BTreeMap<String, Owner> {
        &self.resources
    }

    /// The latest offers.
    pub fn offers(&self) -> &Offers {
        &self.offers
    }

    /// Takes in new offers: recomputes the resources (a name keeps its
    /// owner while that owner wants it; otherwise devices come before sets,
    /// in namespace order), adopts slots the API says this node holds (a
    /// previous run's), and forgets recorded slots someone else removed.
    /// Returns the collisions not reported before.
    pub fn set_offers(&mut self, offers: Offers) -> Vec<Collision> {
        let collisions = self.choose_resources(&offers);
        for (key, offer) in offers.iter() {
            let mine: BTreeMap<u32, &Allocation> = offer
                .allocations
                .iter()
                .filter(|a| a.node == self.node)
                .filter_map(|a| Some((u32::try_from(a.slot).ok()?, a)))
                .collect();
            let adopt = self.adopted.insert(key.clone());
            for (slot, allocation) in &mine {
                if !adopt && !self.held.contains_key(&(key.clone(), *slot)) {
                    continue;
                }
                let held = self
                    .held
                    .entry((key.clone(), *slot))
                    .or_insert_with(|| Held {
                        set: offer.spec.device_set.clone(),
                        resource: None,
                        pod: allocation.pod.clone(),
                        since: allocation
                            .since
                            .as_ref()
                            .map_or_else(Timestamp::now, |t| t.0),
                        recorded: true,
                    });
                held.recorded = true;
            }
            let gone: Vec<SlotKey> = self
                .held
                .range((key.clone(), 0)..=(key.clone(), u32::MAX))
                .filter(|((_, slot), held)| held.recorded && !mine.contains_key(slot))
                .map(|(slot, _)| slot.clone())
                .collect();
            for slot in gone {
                self.held.remove(&slot);
            }
        }
        self.adopted.retain(|key| offers.contains_key(key));
        self.offers = offers;
        collisions
    }

    /// Takes in which sets want a resource per Device (namespace, set):
    /// recomputes the resources as [`Slots::set_offers`] does. Returns the
    /// collisions not reported before.
    pub fn set_per_device(&mut self, sets: PerDevice) -> Vec<Collision> {
        self.per_device = BTreeMap::new();
        for (namespace, set) in sets {
            self.per_device.entry(namespace).or_default().insert(set);
        }
        let offers = self.offers.clone();
        self.choose_resources(&offers)
    }

    /// Whether the devices of `set` in `namespace` are resources of their own.
    fn per_device(&self, namespace: &str, set: &str) -> bool {
        self.per_device
            .get(namespace)
            .is_some_and(|sets| sets.contains(set))
    }

    /// The resources `offers` ask for: every set's, and every Device's whose
    /// set wants them. A name keeps its owner while that owner wants it;
    /// otherwise devices come before sets, in namespace order.
    fn choose_resources(&mut self, offers: &Offers) -> Vec<Collision> {
        let mut wanted: BTreeMap<String, Vec<Owner>> = BTreeMap::new();
        let mut sets: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (key, offer) in offers.iter() {
            let set = offer.spec.device_set.as_str();
            sets.insert((key.0.as_str(), set));
            if self.per_device(&key.0, set) {
                wanted
                    .entry(contract::resource(&key.1))
                    .or_default()
                    .push(Owner::Device(key.clone()));
            }
        }
        for (namespace, set) in sets {
            wanted
                .entry(contract::resource(set))
                .or_default()
                .push(Owner::Set {
                    namespace: namespace.to_owned(),
                    set: set.to_owned(),
                });
        }
        let mut resources = BTreeMap::new();
        let mut collisions = vec![];
        for (resource, owners) in wanted {
            if !valid_resource_name(&resource[PREFIX.len()..]) {
                continue;
            }
            let winner = self
                .resources
                .get(&resource)
                .filter(|current| owners.contains(current))
                .unwrap_or(&owners[0])
                .clone();
            for loser in owners.iter().filter(|o| **o != winner) {
                if self.collisions.insert((resource.clone(), loser.clone())) {
                    collisions.push(Collision {
                        resource: resource.clone(),
                        winner: winner.clone(),
                        loser: loser.clone(),
                    });
                }
            }
            resources.insert(resource, winner);
        }
        self.resources = resources;
        collisions
    }

    /// The device IDs of `resource` and whether each is healthy (free, or
    /// held through this very resource).
    pub fn list(&self, resource: &str) -> Vec<(String, bool)> {
        let Some(owner) = self.resources.get(resource) else {
            return vec![];
        };
        let mut list = vec![];
        for (key, offer) in self.devices_of(owner) {
            for slot in 0..offer.slots() {
                let other_node = offer
                    .allocations
                    .iter()
                    .any(|a| a.slot == slot as i32 && a.node != self.node);
                let healthy = !other_node
                    && match self.held.get(&(key.clone(), slot)) {
                        None => true,
                        Some(held) => match &held.resource {
                            Some(through) => through == resource,
                            // Adopted after a restart: through the Device's
                            // resource if there is one, else the set's.
                            None => match owner {
                                Owner::Device(_) => true,
                                Owner::Set { namespace, set } => !self.per_device(namespace, set),
                            },
                        },
                    };
                list.push((device_id(&key.1, slot), healthy));
            }
        }
        list
    }

    /// The offers a resource stands for: a Device's is one lookup (the
    /// lists of a thousand per-device resources must not scan a thousand
    /// offers each), a set's is its namespace's range of the offers.
    fn devices_of<'a>(
        &'a self,
        owner: &'a Owner,
    ) -> Box<
        dyn Iterator<
                Item = (
                    &'a DeviceKey,
                    &'a std::sync::Arc<crate::access::offers::Offer>,
                ),
            > + 'a,
    > {
        match owner {
            Owner::Device(device) => Box::new(self.offers.get_key_value(device).into_iter()),
            Owner::Set { namespace, set } => Box::new(
                self.offers
                    .range((namespace.clone(), String::new())..)
                    .take_while(move |(key, _)| key.0 == *namespace)
                    .filter(move |(_, offer)| offer.spec.device_set == *set),
            ),
        }
    }

    /// The slot `id` names in `resource`, if the kubelet may have it:
    /// `Ok(true)` when this resource already holds it (the kubelet gives an
    /// init container's devices to the next container again).
    pub fn check(&self, resource: &str, id: &str) -> Result<(SlotKey, bool), Refusal> {
        let unknown = || Refusal::Unknown {
            resource: resource.to_owned(),
            id: id.to_owned(),
        };
        let owner = self.resources.get(resource).ok_or_else(unknown)?;
        let (device, slot) = id.rsplit_once('-').ok_or_else(unknown)?;
        let slot: u32 = slot.parse().map_err(|_| unknown())?;
        let key = (owner.namespace().to_owned(), device.to_owned());
        let offer = self
            .devices_of(owner)
            .find(|(k, _)| **k == key)
            .map(|(_, offer)| offer)
            .filter(|offer| slot < offer.slots())
            .ok_or_else(unknown)?;
        if let Some(other) = offer
            .allocations
            .iter()
            .find(|a| a.slot == slot as i32 && a.node != self.node)
        {
            return Err(Refusal::HeldElsewhere {
                namespace: key.0,
                device: key.1,
                slot,
                node: other.node.clone(),
            });
        }
        match self.held.get(&(key.clone(), slot)) {
            None => Ok(((key, slot), false)),
            Some(held) => match &held.resource {
                Some(through) if through != resource => Err(Refusal::HeldByOtherResource {
                    namespace: key.0,
                    device: key.1,
                    slot,
                    resource: through.clone(),
                }),
                _ => Ok(((key, slot), true)),
            },
        }
    }

    /// Marks `slot` held through `resource` from `now`.
    pub fn hold(&mut self, slot: &SlotKey, resource: &str, now: Timestamp) {
        let set = self
            .offers
            .get(&slot.0)
            .map(|o| o.spec.device_set.clone())
            .unwrap_or_default();
        let held = self.held.entry(slot.clone()).or_insert_with(|| Held {
            set,
            resource: None,
            pod: None,
            since: now,
            recorded: false,
        });
        held.resource = Some(resource.to_owned());
        self.dirty.insert(slot.0.clone());
    }

    /// Gives `slot` up.
    pub fn release(&mut self, slot: &SlotKey) {
        if self.held.remove(slot).is_some() {
            self.dirty.insert(slot.0.clone());
        }
    }

    /// Whether this node holds `slot`.
    #[cfg(test)]
    pub fn holds(&self, slot: &SlotKey) -> bool {
        self.held.contains_key(slot)
    }

    /// This node's entries of `device`'s `status.allocations`, as they
    /// should be applied.
    pub fn entries(&self, device: &DeviceKey) -> Vec<Allocation> {
        self.held
            .range((device.clone(), 0)..=(device.clone(), u32::MAX))
            .map(|((_, slot), held)| Allocation {
                slot: i32::try_from(*slot).unwrap_or(i32::MAX),
                node: self.node.clone(),
                pod: held.pod.clone(),
                since: Some(Time(held.since)),
            })
            .collect()
    }

    /// The Devices whose entries must be written, and forgets them (put one
    /// back with [`Slots::mark_dirty`] when its write fails).
    pub fn take_dirty(&mut self) -> BTreeSet<DeviceKey> {
        std::mem::take(&mut self.dirty)
    }

    /// `device`'s entries are written as they are now.
    pub fn clean(&mut self, device: &DeviceKey) {
        self.dirty.remove(device);
    }

    /// Asks for `device`'s entries to be written again.
    pub fn mark_dirty(&mut self, device: DeviceKey) {
        self.dirty.insert(device);
    }

    /// Forgets every slot of a Device that is gone from the API.
    pub fn forget_device(&mut self, device: &DeviceKey) {
        self.held.retain(|(key, _), _| key != device);
    }

    /// Takes in what the kubelet's pod-resources API says: `(resource,
    /// device ID) → pod`. Held slots learn their resource and pod; a slot no
    /// pod holds is released once it is older than `grace` (a pod being
    /// admitted is not listed yet). Returns the released slots, and whether
    /// anything the lists show changed.
    pub fn observe_pods(
        &mut self,
        pods: &BTreeMap<(String, String), String>,
        grace: std::time::Duration,
        now: Timestamp,
    ) -> Observed {
        let mut released = vec![];
        let mut changed = false;
        for (slot, held) in &mut self.held {
            let id = device_id(&slot.0.1, slot.1);
            let candidates = [contract::resource(&slot.0.1), contract::resource(&held.set)];
            let found = candidates.iter().find_map(|resource| {
                pods.get(&(resource.clone(), id.clone()))
                    .map(|pod| (resource, pod))
            });
            match found {
                Some((resource, pod)) => {
                    if held.resource.as_ref() != Some(resource) {
                        held.resource = Some(resource.clone());
                        changed = true;
                    }
                    if held.pod.as_ref() != Some(pod) {
                        held.pod = Some(pod.clone());
                        self.dirty.insert(slot.0.clone());
                        changed = true;
                    }
                }
                None => {
                    let age = now.duration_since(held.since);
                    if age.as_secs_f64() >= grace.as_secs_f64() {
                        released.push(slot.clone());
                    }
                }
            }
        }
        for slot in &released {
            self.release(slot);
        }
        Observed {
            changed: changed || !released.is_empty(),
            released,
        }
    }

    /// Per DeviceSet (namespace, set): slots in use (on any node) and free,
    /// over the devices this node offers.
    pub fn usage(&self) -> BTreeMap<(String, String), (u64, u64)> {
        let mut usage: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for (key, offer) in self.offers.iter() {
            let entry = usage
                .entry((key.0.clone(), offer.spec.device_set.clone()))
                .or_default();
            for slot in 0..offer.slots() {
                let used = self.held.contains_key(&(key.clone(), slot))
                    || offer.allocations.iter().any(|a| a.slot == slot as i32);
                if used {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        usage
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
