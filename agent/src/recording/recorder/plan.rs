//! Which writes the ledger wants made next: dirty keys picked at random,
//! up to the room left under the in-flight limit, each planned from what is
//! desired and what was applied (a key that needs no write is forgotten).

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

use super::ledger::{Applied, DeviceRef, Key, Ledger, Planned};
use crate::recording::desired::{self, NodeView};
use crate::recording::tracker::SetKey;
use crate::recording::writes::DeviceWrite;

impl Ledger {
    /// The writes to start now, at most `limit` under way at once; each is
    /// in flight until [`Ledger::complete`] takes it back.
    pub fn plan(&mut self, limit: usize, now: Instant, wall: Timestamp) -> Vec<Planned> {
        let mut planned = vec![];
        // Each pass plans or forgets every key it picks, so passes end.
        loop {
            let room = limit.saturating_sub(self.in_flight.len());
            let picked = self.pick(room, now);
            if picked.is_empty() {
                return planned;
            }
            for key in picked {
                let write = match &key {
                    Key::Device(device) => self.plan_device(device).map(|write| Planned::Device {
                        key: device.clone(),
                        write: Box::new(write),
                    }),
                    Key::Report(set) => {
                        let writes = self.plan_report(set);
                        let uid = self.sets.get(set).map(|info| info.uid.clone());
                        match uid {
                            Some(uid) if !writes.is_empty() => Some(Planned::Report {
                                key: set.clone(),
                                uid,
                                writes,
                            }),
                            _ => None,
                        }
                    }
                    Key::SetEntry(set) => {
                        self.plan_set_entry(set, wall)
                            .map(|(view, at)| Planned::SetEntry {
                                key: set.clone(),
                                view,
                                at,
                            })
                    }
                };
                match write {
                    Some(write) => {
                        self.in_flight.insert(key);
                        planned.push(write);
                    }
                    None => {
                        self.dirty.remove(&key);
                    }
                }
            }
        }
    }

    /// Up to `room` dirty keys that may be written now, picked at random:
    /// agents on many nodes that see the same devices would otherwise all
    /// write the same objects at the same moment, and conflict. Only the
    /// picked keys are copied, so a completion that frees one slot costs a
    /// walk over the dirty keys, not a copy and shuffle of all of them.
    fn pick(&mut self, room: usize, now: Instant) -> Vec<Key> {
        if room == 0 {
            return vec![];
        }
        let mut picked: Vec<&Key> = Vec::with_capacity(room);
        let eligible = self
            .dirty
            .iter()
            .filter(|k| !self.in_flight.contains(*k))
            .filter(|k| self.retries.get(*k).is_none_or(|(_, at)| *at <= now));
        // Reservoir sampling: every eligible key is equally likely.
        for (seen, key) in eligible.enumerate() {
            if picked.len() < room {
                picked.push(key);
            } else if let Some(slot) = picked.get_mut(self.rng.usize(..=seen)) {
                *slot = key;
            }
        }
        let mut picked: Vec<Key> = picked.into_iter().cloned().collect();
        self.rng.shuffle(&mut picked);
        picked
    }

    /// The write that makes `device` as desired, or `None` when it already is.
    fn plan_device(&mut self, device: &DeviceRef) -> Option<DeviceWrite> {
        let desired = self.desired.get(device);
        let applied = self
            .applied
            .get(device)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        // The API may have this very spec already (a previous run's write).
        if let Some(d) = desired
            && applied.spec.as_ref() != Some(&d.spec)
            && self.live_specs.get(device) == Some(&desired::spec_hash(&d.spec))
        {
            let set = d.set.clone();
            let spec = d.spec.clone();
            let entry = self
                .applied
                .entry(device.clone())
                .or_insert_with(|| (set, Applied::default()));
            entry.1.spec = Some(spec);
        }
        let applied = self
            .applied
            .get(device)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let desired = self.desired.get(device);
        let spec = desired
            .filter(|d| applied.spec.as_ref() != Some(&d.spec))
            .and_then(|d| {
                self.sets
                    .get(&d.set)
                    .map(|info| (info.clone(), d.spec.clone()))
            });
        let want_since = desired.map(|d| d.since);
        let entry = (want_since != applied.since).then_some(want_since);
        if spec.is_none() && entry.is_none() {
            if desired.is_none() {
                self.applied.remove(device);
            }
            return None;
        }
        let set = match desired {
            Some(d) => d.set.clone(),
            None => self.applied.get(device).map(|(s, _)| s.clone())?,
        };
        // Without a known set there is nothing to write from; never remove
        // entries of a set this run has not seen yet.
        if !self.sets.contains_key(&set) {
            return None;
        }
        Some(DeviceWrite {
            name: device.1.clone(),
            set,
            spec,
            entry,
        })
    }

    fn plan_set_entry(&self, set: &SetKey, wall: Timestamp) -> Option<(NodeView, Timestamp)> {
        let view = self.views.get(set)?;
        match self.applied_views.get(set) {
            Some((applied, _)) if applied == view => None,
            Some((applied, at))
                if applied.handler == view.handler && applied.last_error == view.last_error =>
            {
                Some((view.clone(), *at))
            }
            _ => Some((view.clone(), wall)),
        }
    }
}
