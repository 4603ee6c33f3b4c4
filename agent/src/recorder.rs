//! The recorder: the one task that turns what discovery reports into API
//! writes. It owns the [`Tracker`], knows what it wants the API to say
//! (`desired`) and what it has written (`applied`), and writes only the
//! difference, so steady state writes nothing.
//!
//! ```text
//!  discovery tasks ──Discovered/Failed──►┐
//!  DeviceSet watch ──SetUpserted/Removed─►├─► Recorder ──(≤ 32 at once)──► Writer ──► API
//!  Device watch ────DeviceDeleted────────►┘    ▲   grace timers, retries with backoff
//! ```
//!
//! Writes are level-triggered: a key is "dirty" while desired and applied
//! differ, and stays dirty (retried with capped backoff) while the API
//! server is unreachable, so everything reconciles when it is back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceSpec, HandlerState};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::desired::{self, NodeView, SetInfo};
use crate::events::Events;
use crate::tracker::{Presence, SetKey, Tracker};
use crate::writes::{DeviceWrite, EntryOutcome, WriteError, Writer};

/// How many writes may be under way at once.
const MAX_IN_FLIGHT: usize = 32;

mod input;
mod launch;

pub use input::Input;

type DeviceRef = (String, String);

#[derive(Debug, Clone, PartialEq)]
struct Desired {
    set: SetKey,
    spec: DeviceSpec,
    since: Timestamp,
}

#[derive(Debug, Clone, Default)]
struct Applied {
    spec: Option<DeviceSpec>,
    since: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Device(DeviceRef),
    SetEntry(SetKey),
}

enum Done {
    Device {
        key: DeviceRef,
        write: Box<DeviceWrite>,
        result: Result<EntryOutcome, WriteError>,
    },
    SetEntry {
        key: SetKey,
        view: NodeView,
        at: Timestamp,
        result: Result<(), WriteError>,
    },
}

/// The recorder's state; see the module docs.
#[derive(Debug)]
pub struct Recorder {
    writer: Writer,
    events: Events,
    tracker: Tracker,
    sets: BTreeMap<SetKey, SetInfo>,
    desired: BTreeMap<DeviceRef, Desired>,
    applied: BTreeMap<DeviceRef, (SetKey, Applied)>,
    views: BTreeMap<SetKey, NodeView>,
    applied_views: BTreeMap<SetKey, (NodeView, Timestamp)>,
    dirty: BTreeSet<Key>,
    in_flight: BTreeSet<Key>,
    /// The spec hash each Device has in the API, as the watch last showed.
    live_specs: BTreeMap<DeviceRef, String>,
    retries: BTreeMap<Key, (u32, Instant)>,
}

impl Recorder {
    /// A recorder that takes over the node entries a previous run of the
    /// agent wrote (`existing`: every Device whose `status.nodes` names this
    /// node). They stay, untouched, unless discovery does not confirm them
    /// within their grace period.
    pub fn new(writer: Writer, events: Events, existing: &[Device]) -> Self {
        let mut this = Self {
            writer,
            events,
            tracker: Tracker::default(),
            sets: BTreeMap::new(),
            desired: BTreeMap::new(),
            applied: BTreeMap::new(),
            views: BTreeMap::new(),
            applied_views: BTreeMap::new(),
            dirty: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            live_specs: BTreeMap::new(),
            retries: BTreeMap::new(),
        };
        let now = Instant::now().into_std();
        for device in existing {
            let (Some(namespace), Some(name)) = (&device.metadata.namespace, &device.metadata.name)
            else {
                continue;
            };
            let entry = device
                .status
                .iter()
                .flat_map(|s| &s.nodes)
                .find(|n| n.node == this.writer.node);
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
        info!(
            adopted = this.applied.len(),
            "took over this node's existing Device entries"
        );
        this
    }

    /// Runs until `inputs` closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        loop {
            self.launch(&mut tasks);
            let wake = self.next_wake();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok(done) => self.complete(done),
                    Err(error) => warn!(%error, "a write task failed"),
                },
                () = sleep_until(wake), if wake.is_some() => self.expire(),
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now().into_std();
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
                    let at = entry
                        .last_transition_time
                        .map_or_else(Timestamp::now, |t| t.0);
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
                self.tracker.observe(&key, devices, now, Timestamp::now());
                let is_present = present(&self.tracker);
                let vanished = was_present.difference(&is_present).count();
                let returned = is_present
                    .iter()
                    .filter(|id| before.contains(*id) && !was_present.contains(*id))
                    .count();
                self.writer.metrics.presence_changes(
                    &key,
                    u64::try_from(vanished).unwrap_or(u64::MAX),
                    u64::try_from(returned).unwrap_or(u64::MAX),
                );
                let new: Vec<String> = self
                    .tracker
                    .devices(&key)
                    .map(|s| s.device.id.clone())
                    .filter(|id| !before.contains(id))
                    .collect();
                if !new.is_empty() {
                    self.events.devices_appeared(&key, &new);
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
            self.events.handler_state(key, handler, &last_error);
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
        let node = &self.writer.node;
        let wanted: BTreeMap<DeviceRef, Desired> = self
            .tracker
            .devices(set)
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
        let present = i32::try_from(self.tracker.present(set)).unwrap_or(i32::MAX);
        if let Some(view) = self.views.get_mut(set) {
            view.devices = present;
            self.dirty.insert(Key::SetEntry(set.clone()));
        }
        self.writer.metrics.set_devices(set, i64::from(present));
    }

    fn forget(&mut self, set: &SetKey) {
        self.tracker.remove_set(set);
        self.sets.remove(set);
        self.views.remove(set);
        self.applied_views.remove(set);
        self.desired.retain(|_, d| &d.set != set);
        self.applied.retain(|_, (s, _)| s != set);
        self.dirty.retain(|k| match k {
            Key::Device(_) => true,
            Key::SetEntry(s) => s != set,
        });
        self.writer.metrics.remove_set(set);
    }

    fn expire(&mut self) {
        let now = Instant::now().into_std();
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
                self.events.devices_expired(&set, &gone);
            }
            self.refresh(&set);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let expiry = self.tracker.next_expiry().map(Instant::from_std);
        let retry = self.retries.values().map(|(_, at)| *at).min();
        match (expiry, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn complete(&mut self, done: Done) {
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
                    Err(error) => self.failed(dirty.clone(), &error),
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
                    Err(error) => self.failed(dirty.clone(), &error),
                }
                self.dirty.insert(dirty);
            }
        }
    }

    fn failed(&mut self, key: Key, error: &WriteError) {
        self.writer.metrics.api_error(error.category());
        let attempts = self.retries.get(&key).map_or(0, |(n, _)| *n) + 1;
        let delay = backoff(attempts);
        warn!(%error, attempts, retry_in = ?delay, "write failed; will retry");
        self.retries.insert(key, (attempts, Instant::now() + delay));
    }
}

/// Capped exponential backoff with jitter: 200 ms, 400 ms, … up to 30 s.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempts.min(8));
    let capped = base.min(Duration::from_secs(30));
    capped.mul_f64(0.75 + fastrand::f64() / 2.0)
}

async fn sleep_until(wake: Option<Instant>) {
    if let Some(wake) = wake {
        tokio::time::sleep_until(wake).await;
    }
}
