//! What every reconcile shares: the client, caches of everything it reads,
//! the Event recorder, metrics, configuration, and the little memory the
//! controller keeps (failure backoff per broker, retry counts per object).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambit_crds::contract::{self, SET_LABEL};
use ambit_crds::v1alpha1::{Device, DeviceSet};
use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::resource::v1::{ResourceClaimTemplate, ResourceSlice};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::device::RECHECK;
use crate::health::{self, NodeHealth};
use crate::index::{Index, KeyFn};
use crate::metrics::Metrics;

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// How long a NotReady node keeps its Device entries.
    pub not_ready_toleration: Duration,
    /// This replica's identity (Events name it as their reporting instance).
    pub identity: String,
}

/// Caches of what the reconcilers read.
#[derive(Clone)]
pub struct Stores {
    /// DeviceSets.
    pub sets: Store<DeviceSet>,
    /// Devices.
    pub devices: Store<Device>,
    /// Broker pods (labelled with a DeviceSet).
    pub pods: Store<Pod>,
    /// Broker Jobs.
    pub jobs: Store<Job>,
    /// Ambit's Services.
    pub services: Store<Service>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// ResourceClaimTemplates of DRA brokers.
    pub claim_templates: Store<ResourceClaimTemplate>,
    /// The ResourceSlices of shared devices (this controller's namespace's).
    pub slices: Store<ResourceSlice>,
}

/// Lookups over the caches (see [`crate::index`]).
#[derive(Debug, Default)]
pub struct Indexes {
    /// Broker pods by the uid of the Device that owns them.
    pub pods_by_owner: Index,
    /// Broker pods by `namespace/set`.
    pub pods_by_set: Index,
    /// Devices by `namespace/set`.
    pub devices_by_set: Index,
}

/// Shared by every reconcile.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// What the reconcilers read.
    pub stores: Stores,
    /// Lookups over the caches.
    pub indexes: Arc<Indexes>,
    /// Per object uid: a fingerprint of what its last reconcile read, to
    /// tell a reconcile that saw news (look again soon: the caches may lag
    /// the trigger) from one that saw nothing new (rest).
    pub seen: Mutex<HashMap<String, (u64, Option<Instant>)>>,
    /// Per Device uid: the conditions last written, and when (a cache that
    /// lags its own writes must not cause them again).
    pub written: Mutex<HashMap<String, (String, Instant)>>,
    /// Per DeviceSet: when its status was last written, to pace writes.
    pub status_written: Mutex<HashMap<String, Instant>>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// Per (Device uid, node): failures in a row and when a replacement may start.
    pub failures: Mutex<BTreeMap<(String, String), (u32, Instant)>>,
    /// Devices already told about being over capacity.
    pub over_capacity: Mutex<BTreeSet<String>>,
    /// Per object uid: reconcile failures in a row.
    pub attempts: Mutex<HashMap<String, u32>>,
    /// Pods created but not yet seen in the cache (namespace/name → when),
    /// so a reconcile that runs before the cache catches up does not create
    /// them again (the "expectations" of Kubernetes' own controllers).
    pub expected: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// [`Context::look_again`] for one object: what the previous reconcile
/// recorded (its fingerprint and when it asked to look again), this one's
/// fingerprint; returns the decision and what to record.
fn look_again(
    previous: Option<(u64, Option<Instant>)>,
    fingerprint: u64,
    acted: bool,
    now: Instant,
) -> (bool, (u64, Option<Instant>)) {
    let news = previous.is_none_or(|(f, _)| f != fingerprint);
    // The scheduler may run a requeue a little early or late.
    let asked = previous
        .and_then(|(_, due)| due)
        .is_some_and(|due| now + Duration::from_millis(200) >= due);
    let again = news || acted || !asked;
    (again, (fingerprint, again.then(|| now + RECHECK)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Context {
    /// A context, and the watches that fill its caches: they must be
    /// polled (the controllers' task joins them, so they stop with it).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
    ) -> (Self, Vec<BoxFuture<'static, ()>>) {
        let mut drivers = vec![];
        let ns = settings.namespace.as_deref();
        let owned = watcher::Config::default().labels(SET_LABEL);
        let indexes = Arc::new(Indexes::default());
        let all = watcher::Config::default;
        let by_owner: KeyFn<Pod> = |p| p.owner_references().first().map(|o| o.uid.clone());
        let pod_set: KeyFn<Pod> =
            |p| Some(format!("{}/{}", p.namespace()?, p.labels().get(SET_LABEL)?));
        let device_set: KeyFn<Device> =
            |d| Some(format!("{}/{}", d.namespace()?, d.spec.device_set));
        let i = &indexes;
        let stores = Stores {
            sets: reflect(api(&client, ns), all(), &mut drivers, vec![]),
            devices: reflect(
                api(&client, ns),
                all(),
                &mut drivers,
                vec![(i.clone(), |x| &x.devices_by_set, device_set)],
            ),
            pods: reflect(
                api(&client, ns),
                owned.clone(),
                &mut drivers,
                vec![
                    (i.clone(), |x| &x.pods_by_owner, by_owner),
                    (i.clone(), |x| &x.pods_by_set, pod_set),
                ],
            ),
            jobs: reflect(api(&client, ns), owned.clone(), &mut drivers, vec![]),
            services: reflect(api(&client, ns), owned.clone(), &mut drivers, vec![]),
            nodes: reflect(Api::all(client.clone()), all(), &mut drivers, vec![]),
            claim_templates: reflect(api(&client, ns), owned, &mut drivers, vec![]),
            slices: reflect(
                Api::all(client.clone()),
                watcher::Config::default().labels(&crate::slices::selector(ns)),
                &mut drivers,
                vec![],
            ),
        };
        let reporter = Reporter {
            controller: contract::CONTROLLER.into(),
            instance: Some(settings.identity.clone()),
        };
        let ctx = Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            indexes,
            seen: Mutex::default(),
            written: Mutex::default(),
            status_written: Mutex::default(),
            metrics,
            settings,
            failures: Mutex::default(),
            over_capacity: Mutex::default(),
            attempts: Mutex::default(),
            expected: Mutex::default(),
        };
        (ctx, drivers)
    }

    /// Waits until every cache has listed once.
    pub async fn wait_synced(&self) {
        let s = &self.stores;
        let _ = futures::join!(
            s.sets.wait_until_ready(),
            s.devices.wait_until_ready(),
            s.pods.wait_until_ready(),
            s.jobs.wait_until_ready(),
            s.services.wait_until_ready(),
            s.nodes.wait_until_ready(),
            s.claim_templates.wait_until_ready(),
            s.slices.wait_until_ready(),
        );
    }

    /// The cached objects of `store` named (`namespace/name`) by `names`.
    pub fn lookup<K>(store: &Store<K>, names: &[String]) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        names
            .iter()
            .filter_map(|n| {
                let (ns, name) = crate::index::split(n);
                store.get(&ObjectRef::new(name).within(ns))
            })
            .collect()
    }

    /// Records what a reconcile of `uid` read (its `fingerprint`) and
    /// says whether to look again in [`RECHECK`]: when it read something
    /// new or `acted` (the caches may not show the outcome yet), and when it
    /// was not the look-again asked for last time. A reconcile that was not
    /// asked for was triggered by a watch event, and the caches are separate
    /// watches that may not have that event yet: only a look a moment later
    /// is sure to see it. A look-again that finds nothing new rests.
    pub fn look_again(&self, uid: &str, fingerprint: u64, acted: bool) -> bool {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        let (again, record) = look_again(seen.get(uid).copied(), fingerprint, acted, now);
        seen.insert(uid.to_owned(), record);
        again
    }

    /// Whether to write `summary` for the object `uid`: not when the same
    /// was written less than 30 s ago (the cache may not show it yet).
    pub fn should_write(&self, uid: &str, summary: &str) -> bool {
        let written = lock(&self.written);
        !matches!(written.get(uid), Some((last, at)) if last == summary && at.elapsed() < Duration::from_secs(30))
    }

    /// Records that `summary` was written for the object `uid`.
    pub fn wrote(&self, uid: &str, summary: String) {
        lock(&self.written).insert(uid.to_owned(), (summary, Instant::now()));
    }

    /// Whether the status of `set` may be written now (at most once per
    /// `every`); if not, how long to wait.
    pub fn pace_status(&self, set: &str, every: Duration) -> Option<Duration> {
        let mut written = lock(&self.status_written);
        match written.get(set) {
            Some(at) if at.elapsed() < every => Some(every - at.elapsed()),
            _ => {
                written.insert(set.to_owned(), Instant::now());
                None
            }
        }
    }

    /// Every node's health, by name.
    pub fn node_health(&self) -> BTreeMap<String, NodeHealth> {
        self.stores
            .nodes
            .state()
            .iter()
            .map(|n| (n.name_any(), health::health(n)))
            .collect()
    }

    /// Publishes an Event about `object` in the background.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = object.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                debug!(%error, "failed to publish an Event");
            }
        });
    }

    /// Records that a broker of `device` on `node` failed; returns the backoff.
    pub fn broker_failed(&self, device: &str, node: &str) -> Duration {
        let mut failures = lock(&self.failures);
        let entry = failures
            .entry((device.to_owned(), node.to_owned()))
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        let wait = Duration::from_secs(10)
            .saturating_mul(1 << (entry.0 - 1).min(5))
            .min(Duration::from_secs(300));
        entry.1 = Instant::now() + wait;
        wait
    }

    /// Forgets the failures of a broker that runs (or of a device that is gone).
    pub fn broker_ok(&self, device: &str, node: &str) {
        lock(&self.failures).remove(&(device.to_owned(), node.to_owned()));
    }

    /// How long replacements of `device`'s brokers must still wait, per node.
    pub fn backoff_of(&self, device: &str) -> BTreeMap<String, Duration> {
        let now = Instant::now();
        lock(&self.failures)
            .iter()
            .filter(|((d, _), (_, until))| d == device && *until > now)
            .map(|((_, node), (_, until))| (node.clone(), *until - now))
            .collect()
    }

    /// Whether `device` is newly over capacity (so an Event is due), or no longer.
    pub fn over_capacity(&self, device: &str, over: bool) -> bool {
        let mut reported = lock(&self.over_capacity);
        if over {
            reported.insert(device.to_owned())
        } else {
            reported.remove(device);
            false
        }
    }

    /// Records that the pod `key` was just created.
    pub fn expect(&self, key: String) {
        lock(&self.expected).insert(key, Instant::now());
    }

    /// Whether the pod `key` was created recently but the cache has not
    /// shown it yet. `seen` says whether the cache has it now; seen or
    /// older than 30 s, the expectation is dropped.
    pub fn awaited(&self, key: &str, seen: bool) -> bool {
        let mut expected = lock(&self.expected);
        match expected.get(key) {
            Some(at) if !seen && at.elapsed() < Duration::from_secs(30) => true,
            Some(_) => {
                expected.remove(key);
                false
            }
            None => false,
        }
    }

    /// Counts a failure of the object `uid`; returns how many in a row.
    pub fn failed_attempt(&self, uid: &str) -> u32 {
        let mut attempts = lock(&self.attempts);
        let n = attempts.entry(uid.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    /// Forgets the failures of the object `uid`.
    pub fn succeeded(&self, uid: &str) {
        lock(&self.attempts).remove(uid);
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A cache of `api`'s objects; the watch that fills it goes into `drivers`.
///
/// These caches are separate from the watches the `Controller`s keep for
/// their triggers, so a reconcile may read a cache a moment older than its
/// trigger. The reconcilers therefore look again shortly while anything is
/// in flight (see `device.rs`, `set.rs`, and docs/controller.md).
/// Which index of [`Indexes`] an entry updates, and how it keys objects.
type IndexEntry<K> = (Arc<Indexes>, fn(&Indexes) -> &Index, KeyFn<K>);

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    drivers: &mut Vec<BoxFuture<'static, ()>>,
    indexes: Vec<IndexEntry<K>>,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    // Managed fields are most of an object's size and never read here.
    let objects = watcher(api, config).modify(|object| object.meta_mut().managed_fields = None);
    let stream = reflector::reflector(writer, objects)
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event {
                for (indexes, which, key) in &indexes {
                    which(indexes).apply(&event, *key);
                }
            }
            futures::future::ready(())
        });
    drivers.push(Box::pin(stream));
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_the_caches_lag_is_looked_at_again_and_a_quiet_recheck_rests() {
        let t0 = Instant::now();
        // First sight: news.
        let (again, record) = look_again(None, 1, false, t0);
        assert!(again);
        // The asked-for look finds nothing new: rest.
        let (again, record) = look_again(Some(record), 1, false, t0 + RECHECK);
        assert!(!again);
        // Much later a watch event triggers a reconcile, but the cache does
        // not show the change yet (same fingerprint): look again anyway...
        let later = t0 + Duration::from_secs(100);
        let (again, record) = look_again(Some(record), 1, false, later);
        assert!(again, "a reconcile nobody asked for was a trigger");
        // ...and the look-again sees the change.
        let (again, record) = look_again(Some(record), 2, false, later + RECHECK);
        assert!(again);
        let (again, _) = look_again(Some(record), 2, false, later + RECHECK * 2);
        assert!(!again);
    }

    #[test]
    fn acting_always_looks_again() {
        let t0 = Instant::now();
        let (_, record) = look_again(None, 1, false, t0);
        let (again, _) = look_again(Some(record), 1, true, t0 + RECHECK);
        assert!(again);
    }
}
