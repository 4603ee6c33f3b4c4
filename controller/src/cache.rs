//! The caches the reconcilers read: one reflector per kind, configured
//! here once, keeping only what the reconcilers read (`crate::trim`:
//! managed fields, and most of a broker pod), and the indexes kept up to
//! date from the same events.
//!
//! ```text
//!  watch (per kind) ─► reflector store ─┬─► Stores (read by reconcilers)
//!                                       ├─► Indexes (pods by owner / by set, Devices by set / by node)
//!                                       ├─► Forget: Devices, DeviceSets, Nodes that left
//!                                       └─► Triggers: the controllers' inputs, after the store has it
//! ```
//! The controllers are triggered by the caches themselves: each cache passes
//! on what it saw only after its store holds it, so a reconcile always reads
//! caches at least as new as its trigger, and one watch per kind serves both
//! (kube-runtime's `store_shared` readers are not used: in 5.0.0 a reader
//! that misses a deleted object stops for good and, its buffer full, stops
//! the watch; `tests/upstream_store_shared.rs` reproduces it).
//!
//! Objects that leave the cache are reported to a [`Forget`], so memory
//! kept about them elsewhere can go too: each deletion as it is seen, and
//! after each (re)listing the complete set of what is still there (a watch
//! that was down does not see the deletions it missed).

use std::collections::HashSet;
use std::sync::Arc;

use ambit_crds::contract::SET_LABEL;
use ambit_crds::v1alpha1::{Device, DeviceReport, DeviceSet};
use futures::StreamExt;
use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::resource::v1::{ResourceClaimTemplate, ResourceSlice};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::index::{self, Index, KeyFn};
use crate::labels;
use crate::trim;

/// Caches of what the reconcilers read.
#[derive(Clone)]
pub struct Stores {
    /// DeviceSets.
    pub sets: Store<DeviceSet>,
    /// Devices.
    pub devices: Store<Device>,
    /// The nodes' reports of shared devices.
    pub reports: Store<DeviceReport>,
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

/// What one cache passes on to a controller: each object it saw change
/// (or go), sent once its store has the change; after each (re)listing,
/// every object it holds.
pub type Trigger<K> = UnboundedReceiver<Arc<K>>;

/// The Device controller's inputs.
pub struct DeviceTriggers {
    /// Devices (its own kind).
    pub devices: Trigger<Device>,
    /// Broker pods (owned by Devices).
    pub pods: Trigger<Pod>,
    /// Broker Jobs (owned by Devices).
    pub jobs: Trigger<Job>,
    /// Services (a Device's are owned by it).
    pub services: Trigger<Service>,
    /// DeviceSets (each triggers its Devices).
    pub sets: Trigger<DeviceSet>,
    /// Nodes (each triggers the Devices it sees).
    pub nodes: Trigger<Node>,
}

/// The DeviceSet controller's inputs.
pub struct SetTriggers {
    /// DeviceSets (its own kind).
    pub sets: Trigger<DeviceSet>,
    /// Devices (each triggers its set).
    pub devices: Trigger<Device>,
    /// Broker pods (each triggers its set, by label).
    pub pods: Trigger<Pod>,
    /// Services (a set's is owned by it).
    pub services: Trigger<Service>,
}

/// The shared-Device controller's inputs (it reconciles DeviceSets).
pub struct SharedTriggers {
    /// DeviceSets (its own kind).
    pub sets: Trigger<DeviceSet>,
    /// DeviceReports (each triggers its set).
    pub reports: Trigger<DeviceReport>,
    /// Devices (a shared one deleted triggers its set).
    pub devices: Trigger<Device>,
    /// Nodes (each triggers the sets it reports for).
    pub nodes: Trigger<Node>,
}

/// Every controller's inputs.
pub struct Triggers {
    /// The Device controller's.
    pub device: DeviceTriggers,
    /// The DeviceSet controller's.
    pub set: SetTriggers,
    /// The shared-Device controller's.
    pub shared: SharedTriggers,
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
    /// Devices by the name of every node their status lists.
    pub devices_by_node: Index,
    /// DeviceReports by `namespace/set`.
    pub reports_by_set: Index,
    /// DeviceReports by their node.
    pub reports_by_node: Index,
}

/// The kinds whose departures are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A Device (keyed by uid).
    Device,
    /// A DeviceSet (keyed by uid).
    DeviceSet,
    /// A Node (keyed by name).
    Node,
}

/// One object that left a cache.
#[derive(Debug, Clone, Copy)]
pub struct Gone<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its uid (a Node: its name).
    pub key: &'a str,
    /// Its namespace (empty for a Node).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
}

/// Told when objects leave the caches.
pub trait Forget: Send + Sync {
    /// `gone` was deleted.
    fn gone(&self, gone: Gone<'_>);
    /// A listing of `kind` is complete: `live` holds the key of every
    /// object still there; anything else is gone.
    fn listed(&self, kind: Kind, live: &HashSet<String>);
}

/// Reports departures of one kind to a [`Forget`].
struct Departures<K> {
    forget: Arc<dyn Forget>,
    kind: Kind,
    key: UidFn<K>,
}

/// The key a departure is reported under (a uid; a Node's name).
type UidFn<K> = fn(&K) -> Option<String>;

fn departures<K>(forget: &Arc<dyn Forget>, kind: Kind, key: UidFn<K>) -> Option<Departures<K>> {
    Some(Departures {
        forget: forget.clone(),
        kind,
        key,
    })
}

/// Starts every cache: the watches that fill them go into the returned
/// futures, which must be polled (the controllers' task joins them, so
/// they stop with it). The triggers are fed from the first event on: take
/// them to the controllers before long (until then they queue).
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    forget: Arc<dyn Forget>,
) -> (Stores, Arc<Indexes>, Triggers, Vec<BoxFuture<'static, ()>>) {
    let mut drivers = vec![];
    let ns = namespace;
    let owned = watcher::Config::default().labels(SET_LABEL);
    let all = watcher::Config::default;
    let indexes = Arc::new(Indexes::default());
    let by_owner: KeyFn<Pod> = |p| {
        let owner = p.owner_references().first();
        owner.map(|o| o.uid.clone()).into_iter().collect()
    };
    let pod_set: KeyFn<Pod> = |p| match (p.namespace(), p.labels().get(SET_LABEL)) {
        (Some(ns), Some(set)) => vec![format!("{ns}/{set}")],
        _ => vec![],
    };
    let device_set: KeyFn<Device> = |d| {
        let ns = d.namespace();
        ns.map(|ns| format!("{ns}/{}", d.spec.device_set))
            .into_iter()
            .collect()
    };
    let seen_by: KeyFn<Device> = |d| {
        let entries = d.status.iter().flat_map(|s| &s.nodes);
        entries.map(|n| n.node.clone()).collect()
    };
    let report_set: KeyFn<DeviceReport> = |r| {
        let ns = r.namespace();
        ns.map(|ns| format!("{ns}/{}", r.spec.device_set))
            .into_iter()
            .collect()
    };
    let report_node: KeyFn<DeviceReport> = |r| vec![r.spec.node.clone()];
    let i = &indexes;
    let d = &mut drivers;
    let (sets, [set_sets, device_sets, shared_sets]) = reflect(
        api(client, ns),
        all(),
        d,
        vec![],
        departures(&forget, Kind::DeviceSet, |s: &DeviceSet| s.uid()),
        trim::managed_fields,
    );
    let (devices, [device_devices, set_devices, shared_devices]) = reflect(
        api(client, ns),
        all(),
        d,
        vec![
            (i.clone(), |x| &x.devices_by_set, device_set),
            (i.clone(), |x| &x.devices_by_node, seen_by),
        ],
        departures(&forget, Kind::Device, |d: &Device| d.uid()),
        trim::managed_fields,
    );
    let (reports, [shared_reports]) = reflect(
        api(client, ns),
        all(),
        d,
        vec![
            (i.clone(), |x| &x.reports_by_set, report_set),
            (i.clone(), |x| &x.reports_by_node, report_node),
        ],
        None,
        trim::managed_fields,
    );
    let (pods, [device_pods, set_pods]) = reflect(
        api(client, ns),
        owned.clone(),
        d,
        vec![
            (i.clone(), |x| &x.pods_by_owner, by_owner),
            (i.clone(), |x| &x.pods_by_set, pod_set),
        ],
        None,
        trim::pod,
    );
    let (jobs, [device_jobs]) = reflect(
        api(client, ns),
        owned.clone(),
        d,
        vec![],
        None,
        trim::managed_fields,
    );
    let (services, [device_services, set_services]) = reflect(
        api(client, ns),
        owned.clone(),
        d,
        vec![],
        None,
        trim::managed_fields,
    );
    let (nodes, [device_nodes, shared_nodes]) = reflect(
        Api::all(client.clone()),
        all(),
        d,
        vec![],
        departures(&forget, Kind::Node, |n: &Node| Some(n.name_any())),
        trim::managed_fields,
    );
    let (claim_templates, []) = reflect(
        api(client, ns),
        owned,
        d,
        vec![],
        None,
        trim::managed_fields,
    );
    let (slices, []) = reflect(
        Api::all(client.clone()),
        watcher::Config::default().labels(&labels::slice_selector(ns)),
        d,
        vec![],
        None,
        trim::managed_fields,
    );
    let stores = Stores {
        sets,
        devices,
        reports,
        pods,
        jobs,
        services,
        nodes,
        claim_templates,
        slices,
    };
    let triggers = Triggers {
        device: DeviceTriggers {
            devices: device_devices,
            pods: device_pods,
            jobs: device_jobs,
            services: device_services,
            sets: device_sets,
            nodes: device_nodes,
        },
        set: SetTriggers {
            sets: set_sets,
            devices: set_devices,
            pods: set_pods,
            services: set_services,
        },
        shared: SharedTriggers {
            sets: shared_sets,
            reports: shared_reports,
            devices: shared_devices,
            nodes: shared_nodes,
        },
    };
    (stores, indexes, triggers, drivers)
}

impl Stores {
    /// Waits until every cache has listed once.
    pub async fn wait_synced(&self) {
        let _ = futures::join!(
            self.sets.wait_until_ready(),
            self.devices.wait_until_ready(),
            self.reports.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.jobs.wait_until_ready(),
            self.services.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.claim_templates.wait_until_ready(),
            self.slices.wait_until_ready(),
        );
    }
}

/// The cached objects of `store` named (`namespace/name`) by `names`.
pub fn lookup<K>(store: &Store<K>, names: &[String]) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    names
        .iter()
        .filter_map(|n| {
            let (ns, name) = index::split(n);
            store.get(&ObjectRef::new(name).within(ns))
        })
        .collect()
}

/// References to the objects named (`namespace/name`) by `names`, for a
/// trigger to enqueue: no cache read (an index and its cache follow the
/// same events).
pub fn refs<K>(names: &[String]) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
{
    names
        .iter()
        .map(|n| {
            let (ns, name) = index::split(n);
            ObjectRef::new(name).within(ns)
        })
        .collect()
}

/// Whether the cache still holds `object` itself (the same name and uid;
/// one recreated under its name is another object).
pub fn holds<K>(store: &Store<K>, object: &K) -> bool
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::from_obj(object))
        .is_some_and(|cached| cached.meta().uid == object.meta().uid)
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

/// Which index of [`Indexes`] an entry updates, and how it keys objects.
type IndexEntry<K> = (Arc<Indexes>, fn(&Indexes) -> &Index, KeyFn<K>);

/// A cache of `api`'s objects, and `N` triggers fed from it; the watch that
/// fills it goes into `drivers`.
fn reflect<K, const N: usize>(
    api: Api<K>,
    config: watcher::Config,
    drivers: &mut Vec<BoxFuture<'static, ()>>,
    indexes: Vec<IndexEntry<K>>,
    departures: Option<Departures<K>>,
    trim: fn(&mut K),
) -> (Store<K>, [Trigger<K>; N])
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
    let reader = store.clone();
    let mut senders = Vec::with_capacity(N);
    let triggers = std::array::from_fn(|_| {
        let (sender, trigger) = mpsc::unbounded();
        senders.push(sender);
        trigger
    });
    // Only what the reconcilers read is kept (crate::trim).
    let objects = watcher(api, config).modify(trim);
    let stream = reflector::reflector(writer, objects)
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event {
                for (indexes, which, key) in &indexes {
                    which(indexes).apply(&event, *key);
                }
                if let Some(departures) = &departures {
                    departures.report(&event, &reader);
                }
                pass_on(&event, &reader, &senders);
            }
            futures::future::ready(())
        });
    drivers.push(Box::pin(stream));
    (store, triggers)
}

/// Sends what `event` changed to every trigger: the store's own copy of an
/// applied object (the reflector has applied it already), a deleted object
/// as it was last seen, and after a (re)listing every object there is (as
/// kube-runtime's own watches do). A trigger whose controller has stopped
/// is skipped: its task is ending, and these watches with it.
fn pass_on<K>(event: &watcher::Event<K>, store: &Store<K>, senders: &[UnboundedSender<Arc<K>>])
where
    K: Resource<DynamicType = ()> + Clone,
{
    let send = |object: Arc<K>| {
        for sender in senders {
            let _ = sender.unbounded_send(object.clone());
        }
    };
    if senders.is_empty() {
        return;
    }
    match event {
        watcher::Event::Apply(object) => {
            if let Some(cached) = store.get(&ObjectRef::from_obj(object)) {
                send(cached);
            }
        }
        watcher::Event::Delete(object) => send(Arc::new(object.clone())),
        watcher::Event::InitDone => store.state().into_iter().for_each(send),
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

impl<K> Departures<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    /// Passes on a deletion, or the end of a listing (the store already
    /// holds what the event says: the reflector applies it first).
    fn report(&self, event: &watcher::Event<K>, store: &Store<K>) {
        match event {
            watcher::Event::Delete(object) => {
                if let Some(key) = (self.key)(object) {
                    let meta = object.meta();
                    self.forget.gone(Gone {
                        kind: self.kind,
                        key: &key,
                        namespace: meta.namespace.as_deref().unwrap_or_default(),
                        name: meta.name.as_deref().unwrap_or_default(),
                    });
                }
            }
            watcher::Event::InitDone => {
                let live = store.state().iter().filter_map(|o| (self.key)(o)).collect();
                self.forget.listed(self.kind, &live);
            }
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Apply(_) => {}
        }
    }
}
