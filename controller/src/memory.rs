//! The little the controller remembers between reconciles, one entry per
//! Device or DeviceSet (by uid): the conditions or status it last wrote, its brokers' failures per node, its
//! reconcile failures in a row, and what it created that the caches do not
//! show yet. Plain data behind one lock; no I/O.
//!
//! ```text
//!  reconcilers ─ wrote / broker_failed / expect / ... ─► entry (kind, uid)
//!  caches ─ Device/DeviceSet deleted, or missing from a relisting ─► entry removed
//!         ─ Node deleted, or missing from a relisting ─► its failures removed from every entry
//! ```
//! An entry lives as long as its object: it goes when the cache sees the
//! object deleted, when a relisting no longer has it (deletions missed
//! while a watch was down), and when a reconcile that has just written to
//! it finds the object gone from the cache (a deletion that raced it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cache::{Forget, Gone, Kind};
use crate::timing::CACHE_LAG;

/// What the controller remembers about one Device or DeviceSet.
#[derive(Debug, Default)]
struct Entry {
    /// Device: the conditions last written, and when (a cache that lags
    /// its own writes must not cause them again).
    written: Option<(String, Instant)>,
    /// DeviceSet: a fingerprint of what its shared devices' ResourceSlices
    /// were last applied from (each Device's spec and nodes), and when.
    slices_written: Option<(u64, Instant)>,
    /// DeviceSet: the generation last written to each pool of its shared
    /// devices (the slice cache may lag it).
    pool_generations: HashMap<String, i64>,
    /// DeviceSet: when its status was last written, to pace writes.
    status_written: Option<Instant>,
    /// Device: per node, broker failures in a row and when a replacement
    /// may start.
    failures: BTreeMap<String, (u32, Instant)>,
    /// Device: whether it was reported over capacity.
    over_capacity: bool,
    /// Reconcile failures in a row.
    attempts: u32,
    /// DeviceSet: what the fold last wrote to each of its shared Devices
    /// (by name: a fingerprint of the write), and when.
    folded: HashMap<String, (u64, Instant)>,
    /// Device: what it created that the cache has not shown yet (a pod's
    /// or claim template's key → when), so a reconcile that runs before
    /// the cache catches up does not create it again (the "expectations"
    /// of Kubernetes' own controllers).
    expected: HashMap<String, Instant>,
}

/// Per-object memory of the reconcilers.
#[derive(Debug, Default)]
pub struct Memory {
    entries: Mutex<HashMap<(Kind, String), Entry>>,
}

impl Memory {
    /// Runs `f` on the entry of `(kind, uid)`, made if there is none.
    fn with<T>(&self, kind: Kind, uid: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(entries.entry((kind, uid.to_owned())).or_default())
    }

    /// Runs `f` on the entry of `(kind, uid)` if there is one.
    fn peek<T>(&self, kind: Kind, uid: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get_mut(&(kind, uid.to_owned())).map(f)
    }

    fn retain(&self, keep: impl FnMut(&(Kind, String), &mut Entry) -> bool) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(keep);
    }

    /// Whether to write `summary` (a Device's conditions) for the Device
    /// `uid`: not when the same was written less than [`CACHE_LAG`] ago
    /// (the cache may not show it yet).
    pub fn should_write(&self, uid: &str, summary: &str) -> bool {
        let recent = self.peek(Kind::Device, uid, |entry| {
            matches!(&entry.written, Some((last, at)) if last == summary && at.elapsed() < CACHE_LAG)
        });
        !recent.unwrap_or(false)
    }

    /// Whether to apply the ResourceSlices of the shared devices of the
    /// DeviceSet `uid` made from inputs of fingerprint `print`: not when
    /// slices from the same inputs were applied less than [`CACHE_LAG`]
    /// ago (the slice cache may not show them yet).
    pub fn slices_due(&self, uid: &str, print: u64) -> bool {
        let recent = self.peek(Kind::DeviceSet, uid, |entry| {
            matches!(entry.slices_written, Some((last, at)) if last == print && at.elapsed() < CACHE_LAG)
        });
        !recent.unwrap_or(false)
    }

    /// The generation last written to `pool` of the DeviceSet `uid` (0:
    /// none).
    pub fn pool_generation(&self, uid: &str, pool: &str) -> i64 {
        self.peek(Kind::DeviceSet, uid, |entry| {
            entry.pool_generations.get(pool).copied()
        })
        .flatten()
        .unwrap_or(0)
    }

    /// Records that the slices of the DeviceSet `uid` were applied from
    /// inputs of fingerprint `print`, writing `generations` (pool → its new
    /// generation); `gone` are the pools it deleted.
    pub fn slices_wrote(
        &self,
        uid: &str,
        print: u64,
        generations: BTreeMap<String, i64>,
        gone: &BTreeSet<String>,
    ) {
        self.with(Kind::DeviceSet, uid, |entry| {
            entry.slices_written = Some((print, Instant::now()));
            entry
                .pool_generations
                .retain(|pool, _| !gone.contains(pool));
            entry.pool_generations.extend(generations);
        });
    }

    /// Records that `summary` was written for the Device `uid`.
    pub fn wrote(&self, uid: &str, summary: String) {
        self.with(Kind::Device, uid, |entry| {
            entry.written = Some((summary, Instant::now()));
        });
    }

    /// Whether the fold should make a write of fingerprint `print` to the
    /// shared Device `name` of the DeviceSet `uid`: not when it made the
    /// same less than [`CACHE_LAG`] ago (the cache may not show it yet).
    pub fn fold_due(&self, uid: &str, name: &str, print: u64) -> bool {
        let recent = self.peek(Kind::DeviceSet, uid, |entry| {
            matches!(entry.folded.get(name), Some((p, at)) if *p == print && at.elapsed() < CACHE_LAG)
        });
        !recent.unwrap_or(false)
    }

    /// Records the fold's writes (Device name, fingerprint) for the
    /// DeviceSet `uid`, forgetting those older than [`CACHE_LAG`].
    pub fn folded(&self, uid: &str, writes: impl IntoIterator<Item = (String, u64)>) {
        self.with(Kind::DeviceSet, uid, |entry| {
            entry.folded.retain(|_, (_, at)| at.elapsed() < CACHE_LAG);
            let now = Instant::now();
            entry
                .folded
                .extend(writes.into_iter().map(|(name, print)| (name, (print, now))));
        });
    }

    /// Whether the status of the DeviceSet `uid` may be written now (at
    /// most once per `every`); if not, how long to wait.
    pub fn pace_status(&self, uid: &str, every: Duration) -> Option<Duration> {
        self.with(Kind::DeviceSet, uid, |entry| match entry.status_written {
            Some(at) if at.elapsed() < every => Some(every - at.elapsed()),
            _ => {
                entry.status_written = Some(Instant::now());
                None
            }
        })
    }

    /// Records that a broker of the Device `uid` on `node` failed; returns
    /// the backoff (10 s, doubling, up to 5 minutes).
    pub fn broker_failed(&self, uid: &str, node: &str) -> Duration {
        self.with(Kind::Device, uid, |entry| {
            let failure = entry
                .failures
                .entry(node.to_owned())
                .or_insert((0, Instant::now()));
            failure.0 += 1;
            let wait = Duration::from_secs(10)
                .saturating_mul(1 << (failure.0 - 1).min(5))
                .min(Duration::from_secs(300));
            failure.1 = Instant::now() + wait;
            wait
        })
    }

    /// Forgets the failures of a broker that runs.
    pub fn broker_ok(&self, uid: &str, node: &str) {
        self.peek(Kind::Device, uid, |entry| entry.failures.remove(node));
    }

    /// How long replacements of the Device `uid`'s brokers must still
    /// wait, per node.
    pub fn backoff_of(&self, uid: &str) -> BTreeMap<String, Duration> {
        let now = Instant::now();
        self.peek(Kind::Device, uid, |entry| {
            entry
                .failures
                .iter()
                .filter(|(_, (_, until))| *until > now)
                .map(|(node, (_, until))| (node.clone(), *until - now))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Whether the Device `uid` is newly over capacity (so an Event is
    /// due), or no longer.
    pub fn over_capacity(&self, uid: &str, over: bool) -> bool {
        if !over {
            self.peek(Kind::Device, uid, |entry| entry.over_capacity = false);
            return false;
        }
        self.with(Kind::Device, uid, |entry| {
            !std::mem::replace(&mut entry.over_capacity, true)
        })
    }

    /// Records that the Device `uid`'s reconcile just created `key`.
    /// Expectations older than [`CACHE_LAG`] are dropped here too, so
    /// those the cache never confirmed (the object was deleted again at
    /// once) do not pile up while the Device lives.
    pub fn expect(&self, uid: &str, key: String) {
        self.with(Kind::Device, uid, |entry| {
            entry.expected.retain(|_, at| at.elapsed() < CACHE_LAG);
            entry.expected.insert(key, Instant::now());
        });
    }

    /// Whether the Device `uid` created `key` recently but the cache has
    /// not shown it yet. `seen` says whether the cache has it now; seen or
    /// older than [`CACHE_LAG`], the expectation is dropped.
    pub fn awaited(&self, uid: &str, key: &str, seen: bool) -> bool {
        self.peek(Kind::Device, uid, |entry| match entry.expected.get(key) {
            Some(at) if !seen && at.elapsed() < CACHE_LAG => true,
            Some(_) => {
                entry.expected.remove(key);
                false
            }
            None => false,
        })
        .unwrap_or(false)
    }

    /// Counts a failed reconcile of `uid`; returns how many in a row.
    pub fn failed_attempt(&self, kind: Kind, uid: &str) -> u32 {
        self.with(kind, uid, |entry| {
            entry.attempts += 1;
            entry.attempts
        })
    }

    /// Forgets the failed reconciles of `uid`.
    pub fn succeeded(&self, kind: Kind, uid: &str) {
        self.peek(kind, uid, |entry| entry.attempts = 0);
    }

    /// Forgets everything about the object `uid` (it is gone).
    pub fn forget(&self, kind: Kind, uid: &str) {
        self.retain(|(k, u), _| !(*k == kind && u == uid));
    }

    /// Forgets the broker failures on `node` (it is gone).
    pub fn forget_node(&self, node: &str) {
        self.retain(|_, entry| {
            entry.failures.remove(node);
            true
        });
    }

    /// Keeps only what is about objects of `kind` whose key is in `live`
    /// (a Node's: its name).
    pub fn keep_only(&self, kind: Kind, live: &HashSet<String>) {
        match kind {
            Kind::Node => self.retain(|_, entry| {
                entry.failures.retain(|node, _| live.contains(node));
                true
            }),
            kind => self.retain(|(k, uid), _| *k != kind || live.contains(uid)),
        }
    }

    /// How many objects have an entry.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Forget for Memory {
    fn gone(&self, gone: Gone<'_>) {
        match gone.kind {
            Kind::Node => self.forget_node(gone.key),
            kind => self.forget(kind, gone.key),
        }
    }

    fn listed(&self, kind: Kind, live: &HashSet<String>) {
        self.keep_only(kind, live);
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
