//! The recorder's ledger: what this node wants the API to say, what it has
//! written, and so which writes are due. Pure: inputs and completions in,
//! planned writes and notes (Events, metrics) out; the clocks are passed in
//! and the randomness is a seeded generator, so every rule is tested
//! directly (`ledger_tests.rs`).
//!
//! ```text
//!  Input ──► handle ──► Tracker (grace) ──► desired ─┐
//!                                                    ├─ differ? ─► dirty ─► plan (≤ room, random) ─► Planned writes
//!  Done  ──► complete ─────────────────────► applied ┘                                   failures ─► retry after backoff
//!  every step may leave Notes: Devices appeared/expired, handler state, metrics
//! ```
//!
//! Writes are level-triggered: a key is dirty while desired and applied
//! differ, and stays dirty (retried with capped backoff) while the API
//! server is unreachable, so everything reconciles when it is back. A key
//! that turns out to need no write is forgotten when planned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceReport, DeviceSpec, HandlerState, ReportedDevice};
use k8s_openapi::jiff::Timestamp;
use tracing::debug;

use super::Input;
use super::reports::ShardWrite;
use crate::recording::desired::{self, NodeView, SetInfo};
use crate::recording::tracker::{Presence, SetKey, Tracker};
use crate::recording::writes::{DeviceWrite, EntryOutcome};

/// A Device by namespace and name.
pub type DeviceRef = (String, String);

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Desired {
    pub(super) set: SetKey,
    pub(super) spec: DeviceSpec,
    pub(super) since: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Applied {
    pub(super) spec: Option<DeviceSpec>,
    pub(super) since: Option<Timestamp>,
}

/// What a write is for: one local Device, this node's report of a set's
/// shared devices, or this node's entry of one DeviceSet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A local Device's spec and/or this node's entry in its status.
    Device(DeviceRef),
    /// This node's DeviceReport of a set (all its shards).
    Report(SetKey),
    /// This node's entry in a DeviceSet's status.
    SetEntry(SetKey),
}

/// A write the ledger wants made.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Apply a Device's spec and/or entry.
    Device {
        /// The Device.
        key: DeviceRef,
        /// What to apply.
        write: Box<DeviceWrite>,
    },
    /// Write the changed shards of this node's report of a set, in order.
    Report {
        /// The DeviceSet.
        key: SetKey,
        /// The set's uid, for the owner reference.
        uid: String,
        /// The shards to write.
        writes: Vec<ShardWrite>,
    },
    /// Apply this node's entry of a DeviceSet.
    SetEntry {
        /// The DeviceSet.
        key: SetKey,
        /// The entry.
        view: NodeView,
        /// Its `lastTransitionTime`.
        at: Timestamp,
    },
}

/// A failed write, as the ledger needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A fixed label for metrics (`apply_device`, …).
    pub category: &'static str,
    /// The error, for the log.
    pub message: String,
}

/// A planned write, done.
#[derive(Debug)]
pub enum Done {
    /// A [`Planned::Device`] write and how it went.
    Device {
        /// The Device.
        key: DeviceRef,
        /// What was applied.
        write: Box<DeviceWrite>,
        /// How it went.
        result: Result<EntryOutcome, Failure>,
    },
    /// A [`Planned::Report`] write: the shards written (in order, up to
    /// the first failure) and how it went.
    Report {
        /// The DeviceSet.
        key: SetKey,
        /// The shards written.
        done: Vec<ShardWrite>,
        /// How it went.
        result: Result<(), Failure>,
    },
    /// A [`Planned::SetEntry`] write and how it went.
    SetEntry {
        /// The DeviceSet.
        key: SetKey,
        /// The entry written.
        view: NodeView,
        /// Its `lastTransitionTime`.
        at: Timestamp,
        /// How it went.
        result: Result<(), Failure>,
    },
}

/// What the ledger leaves for the driver to say: Events and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Devices discovered for the first time in `set`.
    Appeared(SetKey, Vec<String>),
    /// Devices gone from `set` after their grace period.
    Expired(SetKey, Vec<String>),
    /// The handler's state for `set` changed.
    HandlerState(SetKey, HandlerState, String),
    /// Devices of `set` that went missing, and that came back.
    Presence {
        /// The set.
        set: SetKey,
        /// Present before, missing now.
        vanished: u64,
        /// Missing before, present now.
        returned: u64,
    },
    /// How many devices of `set` are present.
    Devices(SetKey, i64),
    /// `set` is no longer served: its metrics go.
    SetGone(SetKey),
    /// A write failed and is retried after `retry_in`.
    WriteFailed {
        /// Why.
        failure: Failure,
        /// Failures in a row for this key.
        attempts: u32,
        /// When it is tried again.
        retry_in: Duration,
    },
}

/// The ledger; see the module docs.
#[derive(Debug)]
pub struct Ledger {
    pub(super) node: String,
    pub(super) tracker: Tracker,
    pub(super) sets: BTreeMap<SetKey, SetInfo>,
    pub(super) desired: BTreeMap<DeviceRef, Desired>,
    pub(super) applied: BTreeMap<DeviceRef, (SetKey, Applied)>,
    pub(super) views: BTreeMap<SetKey, NodeView>,
    pub(super) applied_views: BTreeMap<SetKey, (NodeView, Timestamp)>,
    /// Each set's report as wanted: its shards, each sorted by id.
    pub(super) reports: BTreeMap<SetKey, Vec<Vec<ReportedDevice>>>,
    /// Each set's report as the API holds it, by shard.
    pub(super) applied_reports: BTreeMap<SetKey, BTreeMap<u32, Vec<ReportedDevice>>>,
    pub(super) dirty: BTreeSet<Key>,
    pub(super) in_flight: BTreeSet<Key>,
    /// The spec hash each Device has in the API, as the watch last showed.
    pub(super) live_specs: BTreeMap<DeviceRef, String>,
    pub(super) retries: BTreeMap<Key, (u32, Instant)>,
    pub(super) rng: fastrand::Rng,
    notes: Vec<Note>,
}

impl Ledger {
    /// A ledger for `node` that takes over what a previous run wrote: the
    /// node entries of local Devices (`existing`: every Device whose
    /// `status.nodes` names this node) and the node's `reports`. They stay,
    /// untouched, unless discovery does not confirm them within their grace
    /// period.
    pub fn adopt(
        node: &str,
        existing: &[Device],
        reports: &[DeviceReport],
        now: Instant,
        rng: fastrand::Rng,
    ) -> Self {
        let mut this = Self {
            node: node.to_owned(),
            tracker: Tracker::default(),
            sets: BTreeMap::new(),
            desired: BTreeMap::new(),
            applied: BTreeMap::new(),
            views: BTreeMap::new(),
            applied_views: BTreeMap::new(),
            reports: BTreeMap::new(),
            applied_reports: BTreeMap::new(),
            dirty: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            live_specs: BTreeMap::new(),
            retries: BTreeMap::new(),
            rng,
            notes: vec![],
        };
        // A shared Device's entries are the controller's, folded from the
        // reports: the reports are what this node wrote.
        for device in existing.iter().filter(|d| !d.spec.shared) {
            let (Some(namespace), Some(name)) = (&device.metadata.namespace, &device.metadata.name)
            else {
                continue;
            };
            let entry = device
                .status
                .iter()
                .flat_map(|s| &s.nodes)
                .find(|n| n.node == node);
            let Some(entry) = entry else { continue };
            let set = SetKey {
                namespace: namespace.clone(),
                name: device.spec.device_set.clone(),
            };
            this.tracker.adopt(
                &set,
                desired::device_from_spec(&device.spec),
                entry.since.0,
                now,
            );
            let applied = Applied {
                spec: Some(device.spec.clone()),
                since: Some(entry.since.0),
            };
            this.applied
                .insert((namespace.clone(), name.clone()), (set, applied));
        }
        this.adopt_reports(reports, now);
        this
    }

    /// How many local Device entries and reported shared devices were
    /// taken over (or are recorded).
    pub fn recorded(&self) -> usize {
        let reported: usize = self
            .applied_reports
            .values()
            .flat_map(BTreeMap::values)
            .map(Vec::len)
            .sum();
        self.applied.len() + reported
    }

    /// The notes left since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Takes in one input; `now` for grace periods, `wall` for timestamps.
    pub fn handle(&mut self, input: Input, now: Instant, wall: Timestamp) {
        match input {
            Input::SetUpserted {
                key,
                info,
                grace,
                entry,
            } => {
                self.tracker.set_grace(&key, grace);
                self.sets.insert(key.clone(), info);
                // Take over what a previous run wrote, so an unchanged view
                // is not written (or announced) again.
                if let Some(entry) = entry
                    && !self.applied_views.contains_key(&key)
                {
                    let view = NodeView {
                        handler: entry.handler,
                        devices: entry.devices,
                        last_error: entry.last_error,
                    };
                    let at = entry.last_transition_time.map_or(wall, |t| t.0);
                    self.applied_views.insert(key.clone(), (view, at));
                }
                self.refresh(&key);
            }
            Input::SetRemoved { key } => self.forget(&key),
            Input::Discovered { key, devices } => {
                let before: BTreeSet<String> = self
                    .tracker
                    .devices(&key)
                    .map(|s| s.device.id.clone())
                    .collect();
                let present = |tracker: &Tracker| -> BTreeSet<String> {
                    tracker
                        .devices(&key)
                        .filter(|s| s.presence == Presence::Present)
                        .map(|s| s.device.id.clone())
                        .collect()
                };
                let was_present = present(&self.tracker);
                self.tracker.observe(&key, devices, now, wall);
                let is_present = present(&self.tracker);
                let vanished = was_present.difference(&is_present).count();
                let returned = is_present
                    .iter()
                    .filter(|id| before.contains(*id) && !was_present.contains(*id))
                    .count();
                self.notes.push(Note::Presence {
                    set: key.clone(),
                    vanished: u64::try_from(vanished).unwrap_or(u64::MAX),
                    returned: u64::try_from(returned).unwrap_or(u64::MAX),
                });
                let new: Vec<String> = self
                    .tracker
                    .devices(&key)
                    .map(|s| s.device.id.clone())
                    .filter(|id| !before.contains(id))
                    .collect();
                if !new.is_empty() {
                    self.notes.push(Note::Appeared(key.clone(), new));
                }
                self.set_view(&key, HandlerState::Available, String::new());
                self.refresh(&key);
            }
            Input::Failed { key, error } => {
                self.tracker.interrupt(&key, now);
                self.set_view(&key, HandlerState::Failing, error.message().to_owned());
                self.refresh(&key);
            }
            Input::HandlerUnavailable { key } => {
                self.tracker.interrupt(&key, now);
                let message = self.sets.get(&key).map_or_else(String::new, |info| {
                    format!(
                        "no discovery handler named {:?} is registered on this node",
                        info.handler
                    )
                });
                self.set_view(&key, HandlerState::Unavailable, message);
                self.refresh(&key);
            }
            Input::DeviceSpec {
                namespace,
                name,
                hash,
            } => {
                let key = (namespace, name);
                if self.live_specs.get(&key) != Some(&hash) {
                    self.live_specs.insert(key.clone(), hash);
                    if self.desired.contains_key(&key) {
                        self.dirty.insert(Key::Device(key));
                    }
                }
            }
            Input::DeviceDeleted { namespace, name } => {
                let key = (namespace, name);
                self.live_specs.remove(&key);
                if self.applied.remove(&key).is_some() {
                    debug!(device = %key.1, "a Device this node recorded was deleted");
                    self.dirty.insert(Key::Device(key));
                }
            }
        }
    }

    /// Records the handler's state for `key`; the view exists from the first
    /// result on, so nothing is written for a set before discovery spoke.
    fn set_view(&mut self, key: &SetKey, handler: HandlerState, last_error: String) {
        if !self.sets.contains_key(key) {
            return;
        }
        let previous = self
            .views
            .get(key)
            .or_else(|| self.applied_views.get(key).map(|(v, _)| v));
        if previous.is_none_or(|p| p.handler != handler || p.last_error != last_error) {
            self.notes
                .push(Note::HandlerState(key.clone(), handler, last_error.clone()));
        }
        let view = self.views.entry(key.clone()).or_insert(NodeView {
            handler,
            devices: 0,
            last_error: String::new(),
        });
        view.handler = handler;
        view.last_error = last_error;
    }

    /// Recomputes what `set`'s Devices and view should be, marking changes dirty.
    fn refresh(&mut self, set: &SetKey) {
        let Some(info) = self.sets.get(set) else {
            return;
        };
        let node = &self.node;
        let wanted: BTreeMap<DeviceRef, Desired> = self
            .tracker
            .devices(set)
            .filter(|seen| !seen.device.shared)
            .map(|seen| {
                let name = desired::device_name(set, &seen.device, node);
                let spec = desired::device_spec(set, info, &seen.device, node);
                (
                    (set.namespace.clone(), name),
                    Desired {
                        set: set.clone(),
                        spec,
                        since: seen.since,
                    },
                )
            })
            .collect();
        let stale: Vec<DeviceRef> = self
            .desired
            .iter()
            .filter(|(key, d)| &d.set == set && !wanted.contains_key(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.desired.remove(&key);
            self.dirty.insert(Key::Device(key));
        }
        for (key, want) in wanted {
            if self.desired.get(&key) != Some(&want) {
                self.desired.insert(key.clone(), want);
                self.dirty.insert(Key::Device(key));
            }
        }
        self.refresh_report(set);
        let present = i32::try_from(self.tracker.present(set)).unwrap_or(i32::MAX);
        if let Some(view) = self.views.get_mut(set) {
            view.devices = present;
            self.dirty.insert(Key::SetEntry(set.clone()));
        }
        self.notes
            .push(Note::Devices(set.clone(), i64::from(present)));
    }

    fn forget(&mut self, set: &SetKey) {
        self.tracker.remove_set(set);
        self.sets.remove(set);
        self.views.remove(set);
        self.applied_views.remove(set);
        self.reports.remove(set);
        self.applied_reports.remove(set);
        self.desired.retain(|_, d| &d.set != set);
        self.applied.retain(|_, (s, _)| s != set);
        self.dirty.retain(|k| match k {
            Key::Device(_) => true,
            Key::Report(s) | Key::SetEntry(s) => s != set,
        });
        self.notes.push(Note::SetGone(set.clone()));
    }

    /// Ends the grace periods that are over at `now`.
    pub fn expire(&mut self, now: Instant) {
        for set in self.tracker.expire(now) {
            let kept: BTreeSet<String> = self
                .tracker
                .devices(&set)
                .map(|s| s.device.id.clone())
                .collect();
            let gone: Vec<String> = self
                .desired
                .values()
                .filter(|d| d.set == set && !kept.contains(&d.spec.id))
                .map(|d| d.spec.id.clone())
                .collect();
            if !gone.is_empty() {
                self.notes.push(Note::Expired(set.clone(), gone));
            }
            self.refresh(&set);
        }
    }

    /// When the ledger next has something to do by itself: a grace period
    /// ends or a failed write may be retried.
    pub fn next_wake(&self) -> Option<Instant> {
        let expiry = self.tracker.next_expiry();
        let retry = self.retries.values().map(|(_, at)| *at).min();
        match (expiry, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes in a finished write; the key is looked at again either way
    /// (a failure after its backoff).
    pub fn complete(&mut self, done: Done, now: Instant) {
        match done {
            Done::Device { key, write, result } => {
                let dirty = Key::Device(key.clone());
                self.in_flight.remove(&dirty);
                match result {
                    Ok(outcome) => {
                        self.retries.remove(&dirty);
                        let (_, applied) = self
                            .applied
                            .entry(key.clone())
                            .or_insert_with(|| (write.set.clone(), Applied::default()));
                        if let Some((_, spec)) = write.spec {
                            applied.spec = Some(spec);
                        }
                        match outcome {
                            EntryOutcome::Applied => {
                                if let Some(since) = write.entry {
                                    applied.since = since;
                                }
                            }
                            EntryOutcome::DeviceMissing => *applied = Applied::default(),
                        }
                    }
                    Err(failure) => self.failed(dirty.clone(), failure, now),
                }
                self.dirty.insert(dirty);
            }
            Done::Report { key, done, result } => {
                let dirty = Key::Report(key.clone());
                self.in_flight.remove(&dirty);
                self.report_written(&key, done);
                match result {
                    Ok(()) => {
                        self.retries.remove(&dirty);
                    }
                    Err(failure) => self.failed(dirty.clone(), failure, now),
                }
                self.dirty.insert(dirty);
            }
            Done::SetEntry {
                key,
                view,
                at,
                result,
            } => {
                let dirty = Key::SetEntry(key.clone());
                self.in_flight.remove(&dirty);
                match result {
                    Ok(()) => {
                        self.retries.remove(&dirty);
                        if self.views.contains_key(&key) {
                            self.applied_views.insert(key, (view, at));
                        }
                    }
                    Err(failure) => self.failed(dirty.clone(), failure, now),
                }
                self.dirty.insert(dirty);
            }
        }
    }

    fn failed(&mut self, key: Key, failure: Failure, now: Instant) {
        let attempts = self.retries.get(&key).map_or(0, |(n, _)| *n) + 1;
        let retry_in = backoff(attempts, self.rng.f64());
        self.retries.insert(key, (attempts, now + retry_in));
        self.notes.push(Note::WriteFailed {
            failure,
            attempts,
            retry_in,
        });
    }
}

/// Capped exponential backoff with jitter (`jitter` in 0..1 spreads it over
/// ±25 %): 200 ms, 400 ms, … up to 30 s.
pub(super) fn backoff(attempts: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempts.min(8));
    let capped = base.min(Duration::from_secs(30));
    capped.mul_f64(0.75 + jitter / 2.0)
}
