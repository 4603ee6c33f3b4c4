//! Kubelet device plugins (`deviceplugin/v1beta1`): every DeviceSet with
//! devices here is the resource `ambit.dev/<set>` (any of them, `capacity`
//! slots each), and every Device of a set that wants per-device resources
//! (`devicePlugin.perDevice`, or brokers with `access: DevicePlugin`) is
//! also `ambit.dev/<device>`.
//!
//! ```text
//!  offers, per-device sets ──► manager ──► one DevicePlugin server per resource, <dir>/ambit-<name>.sock
//!               │  ▲          │ registered with <dir>/kubelet.sock (again when the kubelet restarts)
//!               │  │          ▼
//!               │  └── Slots (held slots, health) ◄── Allocate ──► claims: status.allocations (SSA)
//!               │             ▲
//!               └─ metrics    └── reclaimer: pod-resources List ──► release slots no pod holds
//! ```
//!
//! The manager never calls the API server, so a slow API never delays a
//! re-registration. It polls once a second: whether `kubelet.sock` is a new
//! file (the kubelet restarted: register again) and whether each of its
//! sockets is still there (the kubelet deletes every socket of the
//! directory when it starts: serve anew) — the sockets only when the
//! directory's modification time moved, or every 30 polls, so a poll is
//! three `stat`s however many resources there are. Polling was chosen over
//! inotify: it needs no extra dependency and still works when the directory
//! itself is replaced (a host path volume remounted), where an inotify
//! watch goes quiet.
//!
//! Work follows change, never the clock: the lists are recomputed only when
//! the offers, the CDI specs or the slots changed, so a node at rest with
//! a thousand devices costs the poll and nothing else.

mod claims;
mod kubelet;
mod plugin;
mod slots;
mod sockets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSet;
use ambit_telemetry::tasks::Tasks;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tracing::{debug, info, warn};

use self::kubelet::FileId;
use self::plugin::Plugin;
use self::slots::{Collision, Owner, Slots};
use self::sockets::{DirStamp, remove_stale_sockets, socket_name};
use crate::access::cdi;
use crate::access::kubelet::proto::deviceplugin as pb;
use crate::access::offers::Offers;
use crate::metrics::Metrics;

/// How often the kubelet's sockets are checked.
const POLL: Duration = Duration::from_secs(1);
/// Every how many polls each socket is looked at even though the directory
/// looks unchanged (a safety net for file systems with coarse timestamps).
const FULL_CHECK_EVERY: u32 = 30;

/// Where and how the device plugins run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node.
    pub node: String,
    /// The kubelet's device-plugin directory.
    pub dir: PathBuf,
    /// The kubelet's pod-resources socket; `None`: slots are never reclaimed.
    pub pod_resources: Option<PathBuf>,
    /// How long a slot nobody is listed for stays held after it was taken.
    pub reclaim_grace: Duration,
}

/// What the plugins of all resources share.
pub struct Shared {
    node: String,
    client: kube::Client,
    manager: String,
    state: Mutex<Slots>,
    /// Held while slot entries are written, so writes of one Device never
    /// overlap.
    writes: tokio::sync::Mutex<()>,
    /// Slots changed: the lists must be sent again.
    changed: Notify,
    /// Entries to write.
    dirty: Notify,
    cdi: watch::Receiver<cdi::Written>,
    metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave Slots half-changed in
        // a way that matters more than stopping would.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts the device plugins as supervised tasks: the manager, the slot
/// writer and, with a pod-resources socket, the reclaimer. Each runs until
/// the process ends (the manager until the offers close).
pub fn spawn(
    tasks: &mut Tasks,
    client: kube::Client,
    settings: Settings,
    offers: watch::Receiver<Offers>,
    per_device: watch::Receiver<PerDevice>,
    cdi: watch::Receiver<cdi::Written>,
    metrics: Metrics,
) {
    let shared = Arc::new(Shared {
        node: settings.node.clone(),
        client: client.clone(),
        manager: ambit_crds::contract::slots_manager(&settings.node),
        state: Mutex::new(Slots::new(&settings.node)),
        writes: tokio::sync::Mutex::new(()),
        changed: Notify::new(),
        dirty: Notify::new(),
        cdi,
        metrics,
    });
    tasks.spawn("slot writer", claims::writer(shared.clone()));
    if let Some(socket) = settings.pod_resources.clone() {
        tasks.spawn(
            "slot reclaimer",
            reclaimer(shared.clone(), socket, settings.reclaim_grace),
        );
    }
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: ambit_crds::contract::AGENT.into(),
            instance: Some(settings.node.clone()),
        },
    );
    let manager = Manager::new(shared, settings.dir, recorder);
    tasks.spawn("device plugins", manager.run(offers, per_device));
}

/// The DeviceSets (namespace, name) whose Devices are device-plugin
/// resources of their own, as the DeviceSet watch has them.
pub type PerDevice = BTreeSet<(String, String)>;

/// A resource's running server.
struct Served {
    list: watch::Sender<Vec<pb::Device>>,
    stop: CancellationToken,
    socket: PathBuf,
    identity: Option<FileId>,
    registered: bool,
}

struct Manager {
    shared: Arc<Shared>,
    dir: PathBuf,
    servers: BTreeMap<String, Served>,
    kubelet: Option<(u64, u64)>,
    recorder: Recorder,
    sets_in_metrics: BTreeSet<(String, String)>,
    /// The directory as the last full check of its sockets saw it.
    dir_seen: Option<DirStamp>,
    polls_since_full_check: u32,
}

impl Drop for Manager {
    fn drop(&mut self) {
        for (resource, served) in std::mem::take(&mut self.servers) {
            debug!(%resource, "stopping the device plugin");
            served.stop.cancel();
        }
    }
}

impl Manager {
    fn new(shared: Arc<Shared>, dir: PathBuf, recorder: Recorder) -> Self {
        Self {
            shared,
            dir,
            servers: BTreeMap::new(),
            kubelet: None,
            recorder,
            sets_in_metrics: BTreeSet::new(),
            dir_seen: None,
            polls_since_full_check: 0,
        }
    }

    /// Serves what the offers ask for until they close; the servers stop
    /// when the manager is dropped (the process stopping).
    async fn run(
        mut self,
        mut offers: watch::Receiver<Offers>,
        mut per_device: watch::Receiver<PerDevice>,
    ) {
        let dir = self.dir.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || remove_stale_sockets(&dir)).await {
            warn!(%error, "failed to remove stale sockets");
        }
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cdi = self.shared.cdi.clone();
        let mut cdi_open = true;
        // What the next turn must redo: the offers taken in, the lists sent.
        // The poll alone redoes neither, so at rest a turn is a few `stat`s.
        let (mut new_offers, mut new_sets, mut resend) = (true, true, true);
        let mut sets_open = true;
        loop {
            if new_sets {
                let sets = per_device.borrow_and_update().clone();
                let collisions = self.shared.state().set_per_device(sets);
                for collision in collisions {
                    self.report(&collision);
                }
            }
            if new_offers {
                let current = offers.borrow_and_update().clone();
                let collisions = self.shared.state().set_offers(current);
                for collision in collisions {
                    self.report(&collision);
                }
            }
            if new_offers || new_sets || resend {
                self.reconcile().await;
            }
            (new_offers, new_sets, resend) = (false, false, false);
            tokio::select! {
                changed = offers.changed() => {
                    if changed.is_err() { break }
                    new_offers = true;
                }
                changed = per_device.changed(), if sets_open => {
                    sets_open = changed.is_ok();
                    new_sets = sets_open;
                }
                changed = cdi.changed(), if cdi_open => {
                    cdi_open = changed.is_ok();
                    resend = true;
                }
                () = self.shared.changed.notified() => resend = true,
                _ = poll.tick() => self.check_kubelet().await,
            }
        }
    }

    /// Serves the resources the slots want, stops the others, and sends
    /// every list that changed.
    async fn reconcile(&mut self) {
        let (wanted, lists, usage) = {
            let state = self.shared.state();
            let wanted: BTreeSet<String> = state.resources().keys().cloned().collect();
            let lists: BTreeMap<String, Vec<pb::Device>> = wanted
                .iter()
                .map(|r| (r.clone(), plugin::devices(&state.list(r))))
                .collect();
            (wanted, lists, state.usage())
        };
        let gone: Vec<String> = self
            .servers
            .keys()
            .filter(|r| !wanted.contains(*r))
            .cloned()
            .collect();
        for resource in gone {
            if let Some(served) = self.servers.remove(&resource) {
                info!(%resource, "device plugin stops: no device of it is offered any more");
                // An empty list first, so the kubelet drops the devices at
                // once rather than after its endpoint grace period.
                served.list.send_replace(vec![]);
                let stop = served.stop;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    stop.cancel();
                });
            }
        }
        for (resource, list) in lists {
            if let Some(served) = self.servers.get(&resource) {
                served.list.send_if_modified(|old| {
                    let changed = *old != list;
                    *old = list;
                    changed
                });
            } else {
                self.serve(&resource, list);
            }
        }
        self.register_pending().await;
        self.record_usage(usage);
    }

    fn serve(&mut self, resource: &str, list: Vec<pb::Device>) {
        let socket = self.dir.join(socket_name(&self.dir, resource));
        let (sender, receiver) = watch::channel(list);
        let stop = CancellationToken::new();
        let service = Plugin {
            resource: resource.to_owned(),
            shared: self.shared.clone(),
            list: receiver,
            stop: stop.clone(),
        };
        let routes = Routes::new(pb::device_plugin_server::DevicePluginServer::new(service));
        let server = match ambit_discovery::UnixServer::bind(&socket, routes, stop.clone()) {
            Ok(server) => server,
            Err(error) => {
                warn!(%error, %resource, "cannot serve the device plugin; retrying");
                return;
            }
        };
        let identity = kubelet::identity(&socket);
        let task_resource = resource.to_owned();
        tokio::spawn(async move {
            if let Err(error) = server.run(std::future::pending()).await {
                warn!(%error, resource = %task_resource, "device plugin server failed");
            }
        });
        debug!(%resource, socket = %socket.display(), "serving device plugin");
        self.servers.insert(
            resource.to_owned(),
            Served {
                list: sender,
                stop,
                socket,
                identity,
                registered: false,
            },
        );
    }

    /// Registers every resource not registered with the current kubelet.
    async fn register_pending(&mut self) {
        if self.servers.values().all(|served| served.registered)
            || kubelet::identity(&self.dir.join(kubelet::KUBELET_SOCKET)).is_none()
        {
            return;
        }
        for (resource, served) in &mut self.servers {
            if served.registered {
                continue;
            }
            let endpoint = socket_name(&self.dir, resource);
            match kubelet::register(&self.dir, resource, &endpoint).await {
                Ok(()) => {
                    served.registered = true;
                    self.shared.metrics.device_plugin_registration("ok");
                    info!(%resource, %endpoint, "registered with the kubelet");
                }
                Err(error) => {
                    self.shared.metrics.device_plugin_registration("failed");
                    warn!(%error, %resource, "registration with the kubelet failed; retrying");
                }
            }
        }
    }

    /// A new `kubelet.sock` means a new kubelet: every resource registers
    /// again. A socket of ours that is gone (the kubelet deletes them when
    /// it starts) is served anew. Each socket is looked at only when the
    /// directory changed (or every [`FULL_CHECK_EVERY`] polls), so a poll at
    /// rest is two `stat`s however many resources there are.
    async fn check_kubelet(&mut self) {
        let now = kubelet::identity(&self.dir.join(kubelet::KUBELET_SOCKET));
        if now != self.kubelet {
            if self.kubelet.is_some() || now.is_some() {
                info!(
                    present = now.is_some(),
                    "the kubelet's socket changed; registering again"
                );
            }
            self.kubelet = now;
            for served in self.servers.values_mut() {
                served.registered = false;
            }
        }
        let stamp = DirStamp::of(&self.dir);
        self.polls_since_full_check += 1;
        if stamp.is_some()
            && stamp == self.dir_seen
            && self.polls_since_full_check < FULL_CHECK_EVERY
        {
            self.register_pending().await;
            return;
        }
        // Taken before the sockets are looked at: a change during the look
        // shows as a new stamp at the next poll.
        self.dir_seen = stamp;
        self.polls_since_full_check = 0;
        // One stat per socket: off the async workers.
        let sockets: Vec<(String, PathBuf, Option<FileId>)> = self
            .servers
            .iter()
            .map(|(r, s)| (r.clone(), s.socket.clone(), s.identity))
            .collect();
        let lost = tokio::task::spawn_blocking(move || {
            let changed = sockets
                .into_iter()
                .filter(|(_, socket, identity)| kubelet::identity(socket) != *identity);
            changed.map(|(r, _, _)| r).collect::<Vec<String>>()
        })
        .await
        .unwrap_or_else(|error| {
            warn!(%error, "failed to look at the device plugins' sockets");
            vec![]
        });
        for resource in lost {
            if let Some(served) = self.servers.remove(&resource) {
                info!(%resource, "the device plugin's socket was removed; serving it again");
                served.stop.cancel();
                let list = served.list.borrow().clone();
                self.serve(&resource, list);
            }
        }
        self.register_pending().await;
    }

    fn record_usage(&mut self, usage: BTreeMap<(String, String), (u64, u64)>) {
        let metrics = &self.shared.metrics;
        for set in self
            .sets_in_metrics
            .difference(&usage.keys().cloned().collect())
        {
            metrics.remove_slots(&set.0, &set.1);
        }
        for ((namespace, set), (used, free)) in &usage {
            metrics.set_slots(namespace, set, *used, *free);
        }
        self.sets_in_metrics = usage.into_keys().collect();
    }

    /// Logs a resource name two owners want, and tells the loser's
    /// DeviceSet with a Warning Event.
    fn report(&self, collision: &Collision) {
        warn!(resource = %collision.resource, served_for = %collision.winner, not_served_for = %collision.loser,
            "two owners want one resource name: the first keeps it");
        let (namespace, set) = match &collision.loser {
            Owner::Set { namespace, set } => (namespace.clone(), set.clone()),
            Owner::Device(key) => {
                let state = self.shared.state();
                let Some(offer) = state.offers().get(key) else {
                    return;
                };
                (key.0.clone(), offer.spec.device_set.clone())
            }
        };
        let reference = ObjectReference {
            api_version: Some(DeviceSet::api_version(&()).into_owned()),
            kind: Some(DeviceSet::kind(&()).into_owned()),
            name: Some(set),
            namespace: Some(namespace),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "ResourceNameTaken".into(),
            note: Some(format!(
                "node {}: the device plugin resource {} is already served for {}; {} gets none (rename one of them)",
                self.shared.node, collision.resource, collision.winner, collision.loser
            )),
            action: "ServeDevicePlugin".into(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        let metrics = self.shared.metrics.clone();
        tokio::spawn(async move {
            metrics.api_write("create", "events");
            if let Err(error) = recorder.publish(&event, &reference).await {
                metrics.api_error("publish_event");
                debug!(%error, "failed to publish an Event");
            }
        });
    }
}

/// Asks the kubelet which pods hold which device IDs, fills the pods into
/// the entries and releases slots no pod holds after `grace`.
async fn reclaimer(shared: Arc<Shared>, socket: PathBuf, grace: Duration) {
    let every = (grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut reported = false;
    loop {
        tokio::time::sleep(every).await;
        let pods = match kubelet::pods_by_device(&socket).await {
            Ok(pods) => {
                reported = false;
                pods
            }
            Err(error) => {
                if !reported {
                    warn!(%error, socket = %socket.display(),
                        "cannot list the kubelet's pod resources; no slot is reclaimed until it answers");
                    reported = true;
                }
                continue;
            }
        };
        let _writes = shared.writes.lock().await;
        let observed =
            shared
                .state()
                .observe_pods(&pods, grace, k8s_openapi::jiff::Timestamp::now());
        // At rest nothing changed: no list is recomputed, no entry written.
        if !observed.changed {
            continue;
        }
        for ((namespace, device), slot) in &observed.released {
            info!(%namespace, %device, slot, "slot released: no pod holds it any more");
            let set = shared
                .state()
                .offers()
                .get(&(namespace.clone(), device.clone()))
                .map(|o| o.spec.device_set.clone())
                .unwrap_or_default();
            shared.metrics.slot_reclaimed(namespace, &set);
        }
        shared.dirty.notify_one();
        shared.changed.notify_one();
    }
}
