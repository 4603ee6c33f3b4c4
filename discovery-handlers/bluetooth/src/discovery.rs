//! One running discovery: BlueZ's events in, complete device sets out.
//!
//! ```text
//!   adapter events ──► advert(id) ──► Tracker.heard / update ─┐
//!   every resync interval: snapshot ──► Tracker.retain/update ┤
//!   next expiry ──► Tracker.expire ───────────────────────────┼──► devices() ──► stream
//!   GATT read tasks ──► Tracker.gatt_read ────────────────────┘   (sent when it differs
//!                                                                   from the last one sent)
//! ```
//!
//! The loop runs in its own task and ends when the stream is dropped; it
//! ends the stream with an error when BlueZ fails, so the agent retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoveryError};
use btleplug::api::{BDAddr, CentralEvent};
use btleplug::platform::PeripheralId;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::bluez::{Radio, ScanGuard, SessionSlot};
use crate::details::Config;
use crate::tracker::Tracker;

/// Starts a discovery: connects, picks the adapter, starts scanning and
/// takes in what BlueZ already knows, then leaves the rest to a task.
pub async fn start(
    slot: Arc<SessionSlot>,
    config: Arc<Config>,
    resync: Duration,
) -> Result<DeviceStream, DiscoveryError> {
    let session = slot.get().await?;
    let setup = async {
        let radio = session.adapter(&config.adapter).await?;
        // Events first, so nothing between the snapshot and them is lost.
        let events = radio.events().await?;
        let scan = radio.scan().await?;
        let snapshot = radio.snapshot().await?;
        Ok::<_, DiscoveryError>((radio, events, scan, snapshot))
    };
    let (radio, events, scan, snapshot) = match setup.await {
        Ok(parts) => parts,
        Err(error) => {
            // An adapter that is not there is no fault of the connection.
            if !error.message().starts_with("no Bluetooth") {
                slot.reset(&session).await;
            }
            return Err(error);
        }
    };

    let mut discovery = Discovery {
        tracker: Tracker::new(config.clone(), radio.name.clone()),
        ids: HashMap::new(),
        addresses: HashMap::new(),
        config,
        radio,
    };
    let now = Instant::now();
    for (id, advert) in snapshot {
        discovery.remember(&id, advert.address);
        // BlueZ has an RSSI only for devices heard in the current scan.
        if advert.rssi.is_some() {
            discovery.tracker.heard(advert, now);
        }
    }

    let (sender, receiver) = mpsc::channel(4);
    let span = info_span!("bluetooth", adapter = %discovery.radio.name);
    tokio::spawn(
        discovery
            .run(slot, events, scan, sender, resync)
            .instrument(span),
    );
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

struct Discovery {
    tracker: Tracker,
    /// Address of each device BlueZ told us about, and the other way round.
    ids: HashMap<BDAddr, PeripheralId>,
    addresses: HashMap<PeripheralId, BDAddr>,
    config: Arc<Config>,
    radio: Radio,
}

type Sender = mpsc::Sender<Result<Vec<Device>, DiscoveryError>>;

impl Discovery {
    async fn run(
        mut self,
        slot: Arc<SessionSlot>,
        mut events: BoxStream<'static, CentralEvent>,
        scan: ScanGuard,
        sender: Sender,
        resync_every: Duration,
    ) {
        let mut resync = tokio::time::interval_at(Instant::now() + resync_every, resync_every);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reads = JoinSet::new();
        let mut last_sent: Option<Vec<Device>> = None;

        let failure = loop {
            for address in self.tracker.take_gatt_reads() {
                if !self.start_gatt_read(&mut reads, address) {
                    self.tracker.gatt_read(&address, BTreeMap::new());
                }
            }
            let set = self.tracker.devices();
            if last_sent.as_ref() != Some(&set) {
                debug!(devices = set.len(), "device set changed");
                if sender.send(Ok(set.clone())).await.is_err() {
                    break None;
                }
                last_sent = Some(set);
            }
            let expiry = self.tracker.next_expiry();
            tokio::select! {
                () = sender.closed() => break None,
                event = events.next() => match event {
                    Some(event) => self.on_event(event).await,
                    None => break Some(DiscoveryError::Unavailable(
                        "BlueZ: the adapter's event stream ended".to_owned(),
                    )),
                },
                _ = resync.tick() => {
                    if let Err(error) = self.resync().await {
                        break Some(error);
                    }
                }
                () = sleep_until(expiry) => self.tracker.expire(Instant::now()),
                Some(done) = reads.join_next(), if !reads.is_empty() => match done {
                    Ok((address, values)) => self.tracker.gatt_read(&address, values),
                    Err(error) => warn!(%error, "a GATT read task failed"),
                },
            }
        };
        drop(scan);
        if let Some(error) = failure {
            warn!(%error, "bluetooth discovery failed");
            slot.reset(self.radio.session()).await;
            let _ = sender.send(Err(error)).await;
        }
    }

    fn remember(&mut self, id: &PeripheralId, address: BDAddr) {
        self.ids.insert(address, id.clone());
        self.addresses.insert(id.clone(), address);
    }

    async fn on_event(&mut self, event: CentralEvent) {
        let (id, advertisement) = match &event {
            CentralEvent::DeviceDiscovered(id)
            | CentralEvent::DeviceUpdated(id)
            | CentralEvent::RssiUpdate { id, .. }
            | CentralEvent::ManufacturerDataAdvertisement { id, .. }
            | CentralEvent::ServiceDataAdvertisement { id, .. }
            | CentralEvent::ServicesAdvertisement { id, .. } => (id, true),
            CentralEvent::DeviceConnected(id) | CentralEvent::DeviceDisconnected(id) => (id, false),
            _ => return,
        };
        match self.radio.advert(id).await {
            Ok(Some(advert)) => {
                self.remember(id, advert.address);
                if advertisement && advert.rssi.is_some() {
                    self.tracker.heard(advert, Instant::now());
                } else {
                    self.tracker.update(advert);
                }
            }
            Ok(None) => {
                if let Some(address) = self.addresses.remove(id) {
                    self.ids.remove(&address);
                    self.tracker.forget(&address);
                }
            }
            // A failing connection shows at the next resync.
            Err(error) => debug!(%error, device = %id, "failed to read a device"),
        }
    }

    /// Re-reads every device from BlueZ: catches changes BlueZ sends no
    /// event for (a new name) and devices BlueZ dropped; and makes sure
    /// BlueZ still scans.
    async fn resync(&mut self) -> Result<(), DiscoveryError> {
        self.radio.keep_scanning().await?;
        let snapshot = self.radio.snapshot().await?;
        self.ids.clear();
        self.addresses.clear();
        for (id, advert) in &snapshot {
            self.remember(id, advert.address);
        }
        let ids = &self.ids;
        self.tracker.retain(|address| ids.contains_key(address));
        for (_, advert) in snapshot {
            self.tracker.update(advert);
        }
        Ok(())
    }

    /// Starts reading a device's GATT values; `false` when it cannot be.
    fn start_gatt_read(
        &self,
        reads: &mut JoinSet<(BDAddr, BTreeMap<String, String>)>,
        address: BDAddr,
    ) -> bool {
        let (Some(gatt), Some(id)) = (&self.config.gatt, self.ids.get(&address)) else {
            return false;
        };
        let (radio, gatt, id) = (self.radio.clone(), gatt.clone(), id.clone());
        reads.spawn(async move {
            match radio.read_gatt(&id, &gatt).await {
                Ok(values) => (address, values),
                Err(error) => {
                    warn!(device = %address, %error, "failed to read GATT characteristics; reporting the device without them");
                    (address, BTreeMap::new())
                }
            }
        });
        true
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
