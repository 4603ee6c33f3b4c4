//! Which devices this node sees, per DeviceSet, with grace periods. Pure: no
//! I/O, no clock of its own (callers pass `now`), tested by calling it.
//!
//! ```text
//!  complete set from handler ──► observe ──► Present ─┐
//!                                             ▲       │ not in a later set, or
//!                                 in a set    │       ▼ discovery interrupted
//!                                 again ──────┴── Missing{since} ──(grace over)──► gone
//! ```
//!
//! A device that is missing keeps its place (and its `since`) until its
//! grace period is over, so a flapping device, a lost reply, a handler
//! restart or an agent restart does not remove it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_crds::contract;
use ambit_discovery::Device;
use k8s_openapi::jiff::Timestamp;

/// A DeviceSet, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey {
    /// The set's namespace.
    pub namespace: String,
    /// The set's name.
    pub name: String,
}

impl std::fmt::Display for SetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A device this node sees (or saw, within its grace period).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// What the handler last reported about it.
    pub device: Device,
    /// Since when this node sees it without interruption beyond grace.
    pub since: Timestamp,
    /// Whether the latest complete set contained it.
    pub presence: Presence,
}

/// Whether a device was in the latest complete set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In the latest complete set.
    Present,
    /// Not seen since this instant; removed when its grace period is over.
    Missing(Instant),
}

#[derive(Debug, Default)]
struct SetState {
    grace: Option<Duration>,
    devices: BTreeMap<String, Seen>,
}

/// The devices of every DeviceSet this node discovers.
#[derive(Debug, Default)]
pub struct Tracker {
    sets: BTreeMap<SetKey, SetState>,
}

impl Tracker {
    /// Sets the grace period of `set` (`None`: the defaults by shared-ness).
    pub fn set_grace(&mut self, set: &SetKey, grace: Option<Duration>) {
        self.sets.entry(set.clone()).or_default().grace = grace;
    }

    /// Takes over a device that a previous run of the agent recorded (its
    /// node entry exists): it counts as missing from `now`, so it stays for a
    /// grace period unless discovery confirms it.
    pub fn adopt(&mut self, set: &SetKey, device: Device, since: Timestamp, now: Instant) {
        let state = self.sets.entry(set.clone()).or_default();
        state.devices.entry(device.id.clone()).or_insert(Seen {
            device,
            since,
            presence: Presence::Missing(now),
        });
    }

    /// Records a complete set reported by the handler of `set`. Returns
    /// whether anything this node reports changed.
    pub fn observe(
        &mut self,
        set: &SetKey,
        devices: Vec<Device>,
        now: Instant,
        wall: Timestamp,
    ) -> bool {
        let state = self.sets.entry(set.clone()).or_default();
        let mut changed = false;
        let mut reported: BTreeMap<String, Device> =
            devices.into_iter().map(|d| (d.id.clone(), d)).collect();
        for (id, seen) in &mut state.devices {
            match reported.remove(id) {
                Some(device) => {
                    if seen.device != device {
                        seen.device = device;
                        changed = true;
                    }
                    seen.presence = Presence::Present;
                }
                None => {
                    if seen.presence == Presence::Present {
                        seen.presence = Presence::Missing(now);
                    }
                }
            }
        }
        for (id, device) in reported {
            state.devices.insert(
                id,
                Seen {
                    device,
                    since: wall,
                    presence: Presence::Present,
                },
            );
            changed = true;
        }
        changed
    }

    /// Discovery of `set` stopped (the handler failed or went away): every
    /// present device counts as missing from `now`.
    pub fn interrupt(&mut self, set: &SetKey, now: Instant) {
        if let Some(state) = self.sets.get_mut(set) {
            for seen in state.devices.values_mut() {
                if seen.presence == Presence::Present {
                    seen.presence = Presence::Missing(now);
                }
            }
        }
    }

    /// Removes devices whose grace period is over. Returns the sets that changed.
    pub fn expire(&mut self, now: Instant) -> Vec<SetKey> {
        let mut changed = vec![];
        for (key, state) in &mut self.sets {
            let before = state.devices.len();
            let grace = state.grace;
            state.devices.retain(|_, seen| match seen.presence {
                Presence::Present => true,
                Presence::Missing(since) => {
                    now.duration_since(since) < grace_of(grace, &seen.device)
                }
            });
            if state.devices.len() != before {
                changed.push(key.clone());
            }
        }
        changed
    }

    /// When the next missing device's grace period ends, if any is missing.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.sets
            .values()
            .flat_map(|state| {
                state
                    .devices
                    .values()
                    .filter_map(move |seen| match seen.presence {
                        Presence::Present => None,
                        Presence::Missing(since) => {
                            Some(since + grace_of(state.grace, &seen.device))
                        }
                    })
            })
            .min()
    }

    /// Forgets a DeviceSet (deleted, or no longer this node's business).
    pub fn remove_set(&mut self, set: &SetKey) {
        self.sets.remove(set);
    }

    /// The devices of `set` this node reports, by id.
    pub fn devices(&self, set: &SetKey) -> impl Iterator<Item = &Seen> {
        self.sets
            .get(set)
            .into_iter()
            .flat_map(|s| s.devices.values())
    }

    /// How many devices of `set` are present in the latest complete set.
    pub fn present(&self, set: &SetKey) -> usize {
        self.devices(set)
            .filter(|s| s.presence == Presence::Present)
            .count()
    }
}

fn grace_of(configured: Option<Duration>, device: &Device) -> Duration {
    configured.unwrap_or_else(|| contract::default_grace(device.shared))
}

#[cfg(test)]
mod tests;
