//! Which writes the recorder starts: dirty keys picked at random, up to
//! the in-flight limit, each planned from what is desired and what was
//! applied (a key that needs no write is forgotten).

use k8s_openapi::jiff::Timestamp;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Applied, DeviceRef, Done, Key, MAX_IN_FLIGHT, Recorder};
use crate::desired::{self, NodeView};
use crate::tracker::SetKey;
use crate::writes::DeviceWrite;

impl Recorder {
    /// Starts writes for dirty keys, as many as the in-flight limit allows.
    pub(super) fn launch(&mut self, tasks: &mut JoinSet<Done>) {
        // Each pass launches or forgets every key it picks, so passes end.
        loop {
            let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight.len());
            let picked = self.pick(room);
            if picked.is_empty() {
                return;
            }
            for key in picked {
                self.start(key, tasks);
            }
        }
    }

    /// Up to `room` dirty keys that may be written now, picked at random:
    /// agents on many nodes that see the same devices would otherwise all
    /// write the same objects at the same moment, and conflict. Only the
    /// picked keys are copied, so a completion that frees one slot costs a
    /// walk over the dirty keys, not a copy and shuffle of all of them.
    fn pick(&self, room: usize) -> Vec<Key> {
        if room == 0 {
            return vec![];
        }
        let now = Instant::now();
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
            } else if let Some(slot) = picked.get_mut(fastrand::usize(..=seen)) {
                *slot = key;
            }
        }
        let mut picked: Vec<Key> = picked.into_iter().cloned().collect();
        fastrand::shuffle(&mut picked);
        picked
    }

    /// Starts the write `key` needs, or forgets the key when it needs none.
    fn start(&mut self, key: Key, tasks: &mut JoinSet<Done>) {
        let writer = self.writer.clone();
        match &key {
            Key::Device(device) => {
                let Some(write) = self.plan_device(device) else {
                    self.dirty.remove(&key);
                    return;
                };
                let device = device.clone();
                tasks.spawn(async move {
                    let result = writer.device(&write).await;
                    Done::Device {
                        key: device,
                        write: Box::new(write),
                        result,
                    }
                });
            }
            Key::SetEntry(set) => {
                let Some((view, at)) = self.plan_set_entry(set) else {
                    self.dirty.remove(&key);
                    return;
                };
                let set = set.clone();
                tasks.spawn(async move {
                    let result = writer.set_entry(&set, &view, at).await;
                    Done::SetEntry {
                        key: set,
                        view,
                        at,
                        result,
                    }
                });
            }
        }
        self.in_flight.insert(key);
    }

    /// The write that makes `device` as desired, or `None` when it already is.
    fn plan_device(&mut self, device: &DeviceRef) -> Option<DeviceWrite> {
        let desired = self.desired.get(device);
        let applied = self
            .applied
            .get(device)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        // Another node may have applied this very spec already.
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

    fn plan_set_entry(&self, set: &SetKey) -> Option<(NodeView, Timestamp)> {
        let view = self.views.get(set)?;
        match self.applied_views.get(set) {
            Some((applied, _)) if applied == view => None,
            Some((applied, at))
                if applied.handler == view.handler && applied.last_error == view.last_error =>
            {
                Some((view.clone(), *at))
            }
            _ => Some((view.clone(), Timestamp::now())),
        }
    }
}
