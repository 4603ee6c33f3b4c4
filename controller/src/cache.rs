//! The caches the reconcilers read: one reflector per kind, configured
//! here once, with managed fields dropped from what is kept (they are most
//! of an object's size and never read), and the indexes kept up to date
//! from the same events.
//!
//! ```text
//!  watch (per kind) ─► reflector store ─┬─► Stores (read by reconcilers)
//!                                       ├─► Indexes (pods by owner / by set, Devices by set)
//!                                       └─► Forget: Devices, DeviceSets, Nodes that left
//! ```
//! Objects that leave the cache are reported to a [`Forget`], so memory
//! kept about them elsewhere can go too: each deletion as it is seen, and
//! after each (re)listing the complete set of what is still there (a watch
//! that was down does not see the deletions it missed).

use std::collections::HashSet;
use std::sync::Arc;

use ambit_crds::contract::SET_LABEL;
use ambit_crds::v1alpha1::{Device, DeviceSet};
use futures::StreamExt;
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
    key: KeyFn<K>,
}

fn departures<K>(forget: &Arc<dyn Forget>, kind: Kind, key: KeyFn<K>) -> Option<Departures<K>> {
    Some(Departures {
        forget: forget.clone(),
        kind,
        key,
    })
}

/// Starts every cache: the watches that fill them go into the returned
/// futures, which must be polled (the controllers' task joins them, so
/// they stop with it).
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    forget: Arc<dyn Forget>,
) -> (Stores, Arc<Indexes>, Vec<BoxFuture<'static, ()>>) {
    let mut drivers = vec![];
    let ns = namespace;
    let owned = watcher::Config::default().labels(SET_LABEL);
    let all = watcher::Config::default;
    let indexes = Arc::new(Indexes::default());
    let by_owner: KeyFn<Pod> = |p| p.owner_references().first().map(|o| o.uid.clone());
    let pod_set: KeyFn<Pod> =
        |p| Some(format!("{}/{}", p.namespace()?, p.labels().get(SET_LABEL)?));
    let device_set: KeyFn<Device> = |d| Some(format!("{}/{}", d.namespace()?, d.spec.device_set));
    let i = &indexes;
    let stores = Stores {
        sets: reflect(
            api(client, ns),
            all(),
            &mut drivers,
            vec![],
            departures(&forget, Kind::DeviceSet, |s| s.uid()),
        ),
        devices: reflect(
            api(client, ns),
            all(),
            &mut drivers,
            vec![(i.clone(), |x| &x.devices_by_set, device_set)],
            departures(&forget, Kind::Device, |d| d.uid()),
        ),
        pods: reflect(
            api(client, ns),
            owned.clone(),
            &mut drivers,
            vec![
                (i.clone(), |x| &x.pods_by_owner, by_owner),
                (i.clone(), |x| &x.pods_by_set, pod_set),
            ],
            None,
        ),
        jobs: reflect(api(client, ns), owned.clone(), &mut drivers, vec![], None),
        services: reflect(api(client, ns), owned.clone(), &mut drivers, vec![], None),
        nodes: reflect(
            Api::all(client.clone()),
            all(),
            &mut drivers,
            vec![],
            departures(&forget, Kind::Node, |n| Some(n.name_any())),
        ),
        claim_templates: reflect(api(client, ns), owned, &mut drivers, vec![], None),
        slices: reflect(
            Api::all(client.clone()),
            watcher::Config::default().labels(&labels::slice_selector(ns)),
            &mut drivers,
            vec![],
            None,
        ),
    };
    (stores, indexes, drivers)
}

impl Stores {
    /// Waits until every cache has listed once.
    pub async fn wait_synced(&self) {
        let _ = futures::join!(
            self.sets.wait_until_ready(),
            self.devices.wait_until_ready(),
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

/// A cache of `api`'s objects; the watch that fills it goes into `drivers`.
///
/// These caches are separate from the watches the `Controller`s keep for
/// their triggers, so a reconcile may read a cache a moment older than its
/// trigger. The reconcilers therefore look again shortly while anything is
/// in flight (see `device.rs`, `set.rs`, and docs/controller.md).
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    drivers: &mut Vec<BoxFuture<'static, ()>>,
    indexes: Vec<IndexEntry<K>>,
    departures: Option<Departures<K>>,
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
    let reader = store.clone();
    // Managed fields are most of an object's size and never read here.
    let objects = watcher(api, config).modify(|object| object.meta_mut().managed_fields = None);
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
            }
            futures::future::ready(())
        });
    drivers.push(Box::pin(stream));
    store
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
