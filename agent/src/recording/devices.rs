//! The agent's one watch on Devices, and what it feeds.
//!
//! ```text
//!                      ┌─► first listing: the Devices this node recorded before (the recorder adopts them)
//!  Device watch ──► Relist ─► recorder: DeviceSpec (a local Device's spec hash, when it changed), DeviceDeleted
//!                      └─► offers::Follower ──watch channel (a burst: ≤ every 50 ms + 0.2 ms per offer)──► device plugins, CDI, DRA
//! ```
//!
//! One watch, one decode of each event, for everything the agent learns
//! from Devices: at start the first listing gives the entries a previous
//! run wrote (nothing is written before they are adopted), then the same
//! stream tells the recorder which spec each of this node's local Devices
//! has (a spec already there need not be applied again) and which Devices
//! were deleted (written again if still seen), and builds this node's
//! offers. After a relist, Devices that vanished meanwhile get no Delete
//! event: [`Relist`] finds them by comparing with what was known.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ambit_crds::contract;
use ambit_crds::v1alpha1::Device;
use futures::{FutureExt, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::warn;

use crate::access::offers::{self, DeviceKey, Follower, Offers};
use crate::recording::recorder::Input;

/// The offers are published at most once per [`republish_after`] (events
/// are taken in all the while): a lone change is published at once, a
/// burst (a thousand Devices written while converging) in steps, so the
/// device plugins, the CDI writer and the DRA publisher redo their work a
/// few times a second at most, not once per Device.
const REPUBLISH_AFTER: Duration = Duration::from_millis(50);

/// What each offer adds to the pause between two publishes: each consumer
/// redoes work in proportion to the offers, so the pause grows with them
/// and a burst costs a bounded share of a core however many there are
/// (1,000 offers: at most four publishes a second, 10,000: one).
const PER_OFFER: Duration = Duration::from_micros(200);

/// The longest pause between two publishes of a burst.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The pause after a publish of `offers` offers.
fn republish_after(offers: usize) -> Duration {
    let per_offer = PER_OFFER.saturating_mul(u32::try_from(offers).unwrap_or(u32::MAX));
    (REPUBLISH_AFTER + per_offer).min(MAX_PAUSE)
}

/// What the Device watch gives the rest of the agent.
#[derive(Debug)]
pub struct Followed {
    /// Every Device whose `status.nodes` names this node, as first listed
    /// (sent once, when the first listing is done; closed if the watch
    /// ended before).
    pub recorded: oneshot::Receiver<Vec<Device>>,
    /// This node's offers, published as they change.
    pub offers: watch::Receiver<Offers>,
}

/// The Device watch: what it gives, and the task that runs it. The task
/// retries the API server with backoff for as long as the process runs;
/// it ends only if the recorder is gone or the watch stream itself ends.
pub fn follow(
    client: Client,
    namespace: Option<String>,
    node: String,
    recorder: mpsc::Sender<Input>,
) -> (Followed, impl Future<Output = Result<(), &'static str>>) {
    let (offers_tx, offers) = watch::channel(Offers::default());
    let (first_tx, recorded) = oneshot::channel();
    let task = run(client, namespace, node, recorder, offers_tx, first_tx);
    (Followed { recorded, offers }, task)
}

async fn run(
    client: Client,
    namespace: Option<String>,
    node: String,
    recorder: mpsc::Sender<Input>,
    offers: watch::Sender<Offers>,
    first: oneshot::Sender<Vec<Device>>,
) -> Result<(), &'static str> {
    let api: Api<Device> = scoped(client, namespace.as_deref());
    // Only this node's local Devices and the shared ones (see
    // contract::SCOPE_LABEL): other nodes' local Devices are none of its
    // business, and with many nodes they would be most of the traffic.
    let config = match contract::scope_selector(&node) {
        Some(selector) => watcher::Config::default().labels(&selector),
        None => watcher::Config::default(),
    };
    let events = watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut feed = Feed {
        follower: Follower::new(&node),
        node,
        relist: Relist::default(),
        hashes: BTreeMap::new(),
        first: Some((first, vec![])),
        outbox: vec![],
    };
    let mut pending = false;
    let start = Instant::now();
    let mut last = start.checked_sub(MAX_PAUSE).unwrap_or(start);
    let mut pause = REPUBLISH_AFTER;
    loop {
        let due = last + pause;
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return Err("the watch stream ended") };
                pending |= feed.apply(event);
                while let Some(Some(event)) = events.next().now_or_never() {
                    pending |= feed.apply(event);
                }
                for input in std::mem::take(&mut feed.outbox) {
                    if recorder.send(input).await.is_err() {
                        return Err("the recorder is gone");
                    }
                }
            }
            () = tokio::time::sleep_until(due), if pending => {}
        }
        if pending && Instant::now() >= due {
            let now = feed.follower.offers();
            pause = republish_after(now.len());
            offers.send_replace(now);
            pending = false;
            last = Instant::now();
        }
    }
}

/// The watch's state: what the recorder was told and this node's offers.
struct Feed {
    node: String,
    relist: Relist<DeviceKey>,
    /// The spec hash last told to the recorder, per Device.
    hashes: BTreeMap<DeviceKey, String>,
    follower: Follower,
    /// Until the first listing is done: where it goes, and the recorded
    /// Devices so far. Nothing is sent to the recorder before it.
    first: Option<(oneshot::Sender<Vec<Device>>, Vec<Device>)>,
    /// Inputs for the recorder, sent after each burst.
    outbox: Vec<Input>,
}

impl Feed {
    /// Takes in one event; whether the offers changed.
    fn apply(&mut self, event: Result<watcher::Event<Device>, watcher::Error>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "Device watch failed; retrying");
                return false;
            }
        };
        match event {
            watcher::Event::Init => {
                self.relist.start();
                false
            }
            watcher::Event::InitApply(device) => {
                let key = offers::key(&device);
                self.relist.listed(key.clone());
                if let Some((_, recorded)) = &mut self.first
                    && records(&device, &self.node)
                {
                    recorded.push(device.clone());
                }
                self.seen(key, &device)
            }
            watcher::Event::Apply(device) => {
                let key = offers::key(&device);
                self.relist.seen(key.clone());
                self.seen(key, &device)
            }
            watcher::Event::Delete(device) => {
                let key = offers::key(&device);
                self.relist.forget(&key);
                self.gone(key)
            }
            watcher::Event::InitDone => {
                let mut changed = false;
                for key in self.relist.done() {
                    changed |= self.gone(key);
                }
                if let Some((sender, recorded)) = self.first.take() {
                    // The recorder starts from this; a closed receiver
                    // means the agent is stopping.
                    let _ = sender.send(recorded);
                }
                changed
            }
        }
    }

    fn seen(&mut self, key: DeviceKey, device: &Device) -> bool {
        // Only this node's own Devices are its to write: a shared one is
        // the controller's (folded from the reports).
        let own = device.spec.node.as_deref() == Some(self.node.as_str());
        if own
            && let Some(hash) = device.annotations().get(ambit_crds::contract::SPEC_HASH)
            && self.hashes.get(&key) != Some(hash)
        {
            self.hashes.insert(key.clone(), hash.clone());
            self.outbox.push(Input::DeviceSpec {
                namespace: key.0,
                name: key.1,
                hash: hash.clone(),
            });
        }
        self.follower.apply(device)
    }

    fn gone(&mut self, key: DeviceKey) -> bool {
        self.hashes.remove(&key);
        let changed = self.follower.delete(&key);
        self.outbox.push(Input::DeviceDeleted {
            namespace: key.0,
            name: key.1,
        });
        changed
    }
}

/// Whether `node` has an entry in `device`'s status.
fn records(device: &Device, node: &str) -> bool {
    device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .any(|n| n.node == node)
}

/// The relist bookkeeping of a watch: which keys exist, and, when a
/// listing ends, which of those known before it were not listed (they
/// were deleted while the watch was away, and no Delete event will say so).
#[derive(Debug)]
pub struct Relist<K> {
    known: BTreeSet<K>,
    listing: Option<BTreeSet<K>>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self {
            known: BTreeSet::new(),
            listing: None,
        }
    }
}

impl<K: Ord + Clone> Relist<K> {
    /// A listing starts.
    pub fn start(&mut self) {
        self.listing = Some(BTreeSet::new());
    }

    /// `key` is in the listing.
    pub fn listed(&mut self, key: K) {
        if let Some(listing) = &mut self.listing {
            listing.insert(key.clone());
        }
        self.known.insert(key);
    }

    /// `key` was added or changed (outside a listing).
    pub fn seen(&mut self, key: K) {
        self.known.insert(key);
    }

    /// `key` was deleted.
    pub fn forget(&mut self, key: &K) {
        self.known.remove(key);
    }

    /// The listing ended: the keys known before it that it did not list,
    /// now forgotten.
    pub fn done(&mut self) -> Vec<K> {
        let Some(listed) = self.listing.take() else {
            return vec![];
        };
        let gone: Vec<K> = self.known.difference(&listed).cloned().collect();
        self.known = listed;
        gone
    }
}

/// An API over one namespace, or all of them.
pub fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relist_finds_what_was_deleted_while_the_watch_was_away() {
        let mut relist = Relist::default();
        relist.start();
        relist.listed("a");
        relist.listed("b");
        assert!(relist.done().is_empty(), "the first listing loses nothing");
        relist.seen("c");
        relist.forget(&"a");
        // The watch reconnects: b was deleted meanwhile, d created.
        relist.start();
        relist.listed("c");
        relist.listed("d");
        assert_eq!(relist.done(), ["b"]);
        assert!(relist.done().is_empty(), "a listing ends once");
        relist.start();
        relist.listed("c");
        assert_eq!(relist.done(), ["d"]);
    }

    #[test]
    fn the_pause_between_publishes_grows_with_the_offers_up_to_a_second() {
        assert_eq!(republish_after(0), Duration::from_millis(50));
        assert_eq!(republish_after(1000), Duration::from_millis(250));
        assert_eq!(republish_after(10_000), MAX_PAUSE);
        assert_eq!(republish_after(usize::MAX), MAX_PAUSE);
    }
}
