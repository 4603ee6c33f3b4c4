//! The supervisor: watches DeviceSets and the available handlers, and keeps
//! exactly one discovery task running for each set whose handler is here.
//!
//! ```text
//!  DeviceSet watch ──┐                        ┌─► discovery task per set (restarted when
//!                    ├─► Supervisor (index) ──┤    its inputs change)
//!  handlers (watch) ─┘                        ├─► recorder: SetUpserted / SetRemoved / HandlerUnavailable
//!                                             └─► device plugins: the sets that want per-device resources
//! ```
//!
//! A task's inputs are its set's `spec.discovery` and the handler's
//! generation: a DeviceSet edit or a handler that registers again restarts
//! it; anything else (capacity, brokerProperties) only changes what the
//! recorder writes.
//!
//! A task that crashes (a panic in a handler or in the agent) is reported
//! as a discovery failure of its set (log, metric, the DeviceSet's
//! `lastError`) and started again after a delay that doubles while it
//! keeps crashing (see [`crate::discovery::restarts`]); the other sets'
//! discovery goes on. A task that returns means the recorder is gone: the
//! supervisor stops.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ambit_crds::v1alpha1::{DeviceSet, Discovery};
use ambit_discovery::DiscoveryError;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::discovery::handlers::HandlerMap;
use crate::discovery::restarts::Restarts;
use crate::discovery::task::Task;
use crate::metrics::Metrics;
use crate::recording::desired::SetInfo;
use crate::recording::devices::Relist;
use crate::recording::recorder::Input;
use crate::recording::tracker::SetKey;

struct Running {
    discovery: Discovery,
    generation: u64,
    handler: String,
    /// `None`: it crashed, and waits for its restart.
    task: Option<AbortHandle>,
    started: Instant,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Keeps discovery running for every DeviceSet this node can serve.
pub struct Supervisor {
    client: Client,
    namespace: Option<String>,
    node: String,
    recorder: mpsc::Sender<Input>,
    metrics: Metrics,
    sets: BTreeMap<SetKey, DeviceSet>,
    sent: BTreeMap<SetKey, (SetInfo, Option<Duration>)>,
    unavailable: BTreeSet<SetKey>,
    running: BTreeMap<SetKey, Running>,
    /// Every discovery task (which set each runs for: [`Running::task`]).
    tasks: JoinSet<()>,
    restarts: Restarts,
    /// The watch's relist bookkeeping: sets deleted while it was away.
    relist: Relist<SetKey>,
    /// The sets (namespace, name) whose Devices are device-plugin resources
    /// of their own, for the device plugins.
    per_device: watch::Sender<BTreeSet<(String, String)>>,
}

/// Why the supervisor stopped: a task it feeds or is fed by is gone.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// The recorder's channel closed.
    #[error("the recorder is gone")]
    RecorderGone,
    /// The handler map's sender is gone.
    #[error("the handler registrations are gone")]
    HandlersGone,
    /// The DeviceSet watch stream ended.
    #[error("the DeviceSet watch stream ended")]
    WatchEnded,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("node", &self.node)
            .field("sets", &self.sets.len())
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor for `node`.
    pub fn new(
        client: Client,
        namespace: Option<String>,
        node: String,
        recorder: mpsc::Sender<Input>,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            namespace,
            node,
            recorder,
            metrics,
            sets: BTreeMap::new(),
            sent: BTreeMap::new(),
            unavailable: BTreeSet::new(),
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            restarts: Restarts::default(),
            relist: Relist::default(),
            per_device: watch::Sender::new(BTreeSet::new()),
        }
    }

    /// The sets (namespace, name) whose Devices are device-plugin resources
    /// of their own ([`ambit_crds::v1alpha1::DeviceSetSpec::per_device_resources`]),
    /// kept current as DeviceSets change.
    pub fn per_device(&self) -> watch::Receiver<BTreeSet<(String, String)>> {
        self.per_device.subscribe()
    }

    /// Tells the device plugins when a set's choice of per-device resources
    /// changed (a set with it on came or went, or was edited).
    fn publish_per_device(&self, key: &SetKey) {
        let wants = self
            .sets
            .get(key)
            .is_some_and(|set| set.spec.per_device_resources());
        let entry = (key.namespace.clone(), key.name.clone());
        self.per_device.send_if_modified(|sets| {
            if wants {
                sets.insert(entry)
            } else {
                sets.remove(&entry)
            }
        });
    }

    /// Watches DeviceSets in all namespaces and follows handler changes;
    /// `ready` is set once the first listing is done.
    pub async fn run(
        mut self,
        mut handlers: watch::Receiver<HandlerMap>,
        ready: watch::Sender<bool>,
    ) -> Result<(), Stopped> {
        let api: Api<DeviceSet> =
            crate::recording::devices::scoped(self.client.clone(), self.namespace.as_deref());
        let mut sets = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        loop {
            let restart = self.restarts.next_due();
            tokio::select! {
                Some(ended) = self.tasks.join_next_with_id() => self.on_task_end(ended).await?,
                () = sleep_until(restart), if restart.is_some() => {
                    let available = handlers.borrow().clone();
                    for key in self.restarts.take_due(Instant::now()) {
                        self.reconcile(&key, &available).await?;
                    }
                }
                event = sets.next() => match event {
                    Some(Ok(event)) => {
                        let listed = matches!(event, watcher::Event::InitDone);
                        let available = handlers.borrow().clone();
                        self.on_event(event, &available).await?;
                        if listed {
                            ready.send_replace(true);
                        }
                    }
                    Some(Err(error)) => warn!(%error, "DeviceSet watch failed; retrying"),
                    None => return Err(Stopped::WatchEnded),
                },
                changed = handlers.changed() => {
                    if changed.is_err() {
                        return Err(Stopped::HandlersGone);
                    }
                    let available = handlers.borrow_and_update().clone();
                    let keys: Vec<SetKey> = self.sets.keys().cloned().collect();
                    for key in keys {
                        self.reconcile(&key, &available).await?;
                    }
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        event: watcher::Event<DeviceSet>,
        handlers: &HandlerMap,
    ) -> Result<(), Stopped> {
        match event {
            watcher::Event::Init => self.relist.start(),
            watcher::Event::InitApply(set) | watcher::Event::Apply(set) => {
                let key = key_of(&set);
                // Outside a listing, `listed` is `seen`.
                self.relist.listed(key.clone());
                self.sets.insert(key.clone(), set);
                self.publish_per_device(&key);
                self.reconcile(&key, handlers).await?;
            }
            watcher::Event::Delete(set) => {
                let key = key_of(&set);
                self.relist.forget(&key);
                self.remove(&key).await?;
            }
            watcher::Event::InitDone => {
                for key in self.relist.done() {
                    self.remove(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// A discovery task ended: aborted (replaced or removed), crashed, or
    /// returned because the recorder is gone.
    async fn on_task_end(
        &mut self,
        ended: Result<(tokio::task::Id, ()), JoinError>,
    ) -> Result<(), Stopped> {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(error) => error.id(),
        };
        let panic = match ended {
            Ok(_) => return Err(Stopped::RecorderGone),
            Err(error) if error.is_panic() => ambit_telemetry::tasks::panic_message(error),
            // Aborted: its set went or its task was replaced.
            Err(_) => return Ok(()),
        };
        // A crash is rare: the set is found by a look over the running ones.
        let crashed = self
            .running
            .iter_mut()
            .find(|(_, r)| r.task.as_ref().map(AbortHandle::id) == Some(id));
        let Some((key, running)) = crashed else {
            return Ok(());
        };
        let key = key.clone();
        running.task = None;
        let delay = self.restarts.crashed(&key, running.started, Instant::now());
        error!(set = %key, handler = %running.handler, %panic, ?delay, "discovery crashed; restarting it");
        let error = DiscoveryError::Failed(format!(
            "discovery crashed ({panic}); restarting it in {}s",
            delay.as_secs()
        ));
        self.metrics
            .discovery_error(&running.handler, error.category());
        self.tell(Input::Failed { key, error }).await
    }

    async fn remove(&mut self, key: &SetKey) -> Result<(), Stopped> {
        self.sets.remove(key);
        self.publish_per_device(key);
        self.running.remove(key);
        self.restarts.forget(key);
        self.unavailable.remove(key);
        if self.sent.remove(key).is_some() {
            self.tell(Input::SetRemoved { key: key.clone() }).await?;
        }
        Ok(())
    }

    async fn tell(&self, input: Input) -> Result<(), Stopped> {
        self.recorder
            .send(input)
            .await
            .map_err(|_| Stopped::RecorderGone)
    }

    async fn reconcile(&mut self, key: &SetKey, handlers: &HandlerMap) -> Result<(), Stopped> {
        let Some(set) = self.sets.get(key) else {
            return Ok(());
        };
        let Some(info) = SetInfo::of(set) else {
            return Ok(());
        };
        let grace = set
            .spec
            .discovery
            .grace_period_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        let discovery = set.spec.discovery.clone();

        if self.sent.get(key) != Some(&(info.clone(), grace)) {
            self.sent.insert(key.clone(), (info.clone(), grace));
            let entry = set
                .status
                .iter()
                .flat_map(|s| &s.nodes)
                .find(|n| n.node == self.node)
                .cloned();
            let input = Input::SetUpserted {
                key: key.clone(),
                info: info.clone(),
                grace,
                entry,
            };
            self.tell(input).await?;
        }

        let Some(available) = handlers.get(&info.handler) else {
            self.restarts.forget(key);
            if self.running.remove(key).is_some() || self.unavailable.insert(key.clone()) {
                info!(set = %key, handler = %info.handler, "no such handler on this node");
                self.tell(Input::HandlerUnavailable { key: key.clone() })
                    .await?;
            }
            return Ok(());
        };
        self.unavailable.remove(key);
        if let Some(running) = self.running.get(key) {
            let same = running.discovery == discovery
                && running.generation == available.generation
                && running.handler == info.handler;
            if same && (running.task.is_some() || self.restarts.waiting(key, Instant::now())) {
                return Ok(());
            }
            if !same {
                self.restarts.forget(key);
            }
        }
        info!(set = %key, handler = %info.handler, kind = available.kind, "starting discovery");
        let task = Task {
            client: self.client.clone(),
            node: self.node.clone(),
            key: key.clone(),
            discovery: discovery.clone(),
            handler: available.handler.clone(),
            recorder: self.recorder.clone(),
            metrics: self.metrics.clone(),
        };
        let span = tracing::info_span!("discovery", set = %key);
        let handle = self
            .tasks
            .spawn(tracing::Instrument::instrument(task.run(), span));
        self.running.insert(
            key.clone(),
            Running {
                discovery,
                generation: available.generation,
                handler: info.handler,
                task: Some(handle),
                started: Instant::now(),
            },
        );
        Ok(())
    }
}

/// Sleeps until `at` (forever if `None`; the caller guards that branch).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn key_of(set: &DeviceSet) -> SetKey {
    SetKey {
        namespace: set.namespace().unwrap_or_default(),
        name: set.name_any(),
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
