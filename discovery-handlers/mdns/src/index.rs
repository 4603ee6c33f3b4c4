//! The device set of one DeviceSet's browse: the pure core the driver
//! feeds with every resolution (`resolved`), every removal (`removed`) and
//! the clock (`expire`), and asks for the complete set (`devices`). No I/O
//! here; tested by calling these directly.
//!
//! ```text
//!   ServiceResolved ─► device::device(rules) ─► insert / replace (seen = now)
//!                                  └─ filtered now ─► remove (a TXT update can do it)
//!   ServiceRemoved (goodbye, TTL expired in mdns-sd's cache) ─► remove
//!   expire(now): not confirmed for stale_after ─► remove
//! ```
//!
//! mdns-sd's cache removes what a goodbye or an expired TTL ends; the
//! index's own expiry is the level-triggered safety net behind it: each
//! re-query replays the cache, confirming every live service, so one that
//! missed its removal event still leaves the set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_discovery::Device;

use crate::details::Rules;
use crate::device::{self, Ignored, Service};

/// `Ok(true)` when the set changed; `Err` when a service was left out.
pub type Outcome = Result<bool, Ignored>;

#[derive(Debug)]
struct Entry {
    device: Device,
    seen: Instant,
}

/// The devices of one browse.
#[derive(Debug)]
pub struct Index {
    rules: Rules,
    stale_after: Duration,
    entries: BTreeMap<String, Entry>,
}

impl Index {
    /// An empty index; a device not confirmed for `stale_after` expires.
    pub fn new(rules: Rules, stale_after: Duration) -> Self {
        Self {
            rules,
            stale_after,
            entries: BTreeMap::new(),
        }
    }

    /// A service resolved (found, updated or replayed from the cache) at
    /// `now`.
    pub fn resolved(&mut self, service: &Service, now: Instant) -> Outcome {
        let key = device::key(&service.fullname);
        match device::device(service, &self.rules) {
            Ok(device) => {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.seen = now;
                    if entry.device == device {
                        return Ok(false);
                    }
                    entry.device = device;
                    return Ok(true);
                }
                if self.entries.len() >= self.rules.limits.max_devices {
                    return Err(Ignored::Limit);
                }
                self.entries.insert(key, Entry { device, seen: now });
                Ok(true)
            }
            // A known service that no longer passes leaves the set.
            Err(_) if self.entries.remove(&key).is_some() => Ok(true),
            Err(why) => Err(why),
        }
    }

    /// A service removed (goodbye, or its records expired); whether the
    /// set changed.
    pub fn removed(&mut self, fullname: &str) -> bool {
        self.entries.remove(&device::key(fullname)).is_some()
    }

    /// Drops what was not confirmed for `stale_after` by `now`; whether the
    /// set changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.entries.len();
        let stale_after = self.stale_after;
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.seen) < stale_after);
        self.entries.len() != before
    }

    /// When [`Index::expire`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|entry| entry.seen + self.stale_after)
            .min()
    }

    /// The complete current set, ordered by id.
    pub fn devices(&self) -> Vec<Device> {
        self.entries.values().map(|e| e.device.clone()).collect()
    }

    /// How many devices the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
