//! One running discovery: a udev monitor and an enumeration in, complete
//! device sets out.
//!
//! ```text
//!   thread "udev-discovery" (owns every libudev object; current-thread runtime)
//!     monitor.listen ─► enumerate all ─► send set ─► loop {
//!         monitor readable ─► take events until quiet for SETTLE (max MAX_SETTLE):
//!             remove D            ─► forget D and everything below it
//!             add/change/bind/... ─► forget D's subtree, re-match D and its children
//!         send the set if it differs from the last one sent
//!         the stream was dropped  ─► end
//!     }
//! ```
//!
//! libudev objects are not thread-safe (their reference counts are plain
//! integers), so they never leave the thread that made them: the rest of
//! the handler only sees [`Found`] and [`Device`] values. The monitor is
//! opened before the enumeration, so a device that appears in between is
//! seen by one or the other.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoveryError};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info_span, warn};

use crate::details::Config;
use crate::found::{Found, device_set};
use crate::node::UdevNode;

type Sender = mpsc::Sender<Result<Vec<Device>, DiscoveryError>>;

/// How long the monitor must be quiet before a burst of events is taken
/// as complete.
pub const SETTLE: Duration = Duration::from_millis(20);
/// The longest a burst is waited for before a set goes out anyway.
pub const MAX_SETTLE: Duration = Duration::from_millis(250);

/// Starts a discovery: opens the monitor and enumerates on a thread of its
/// own, returning once the first set is on its way (or setup failed).
pub async fn start(config: Arc<Config>) -> Result<DeviceStream, DiscoveryError> {
    let (sender, receiver) = mpsc::channel(4);
    let (setup_tx, setup_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("udev-discovery".to_owned())
        .spawn(move || {
            let span = info_span!("udev");
            let _entered = span.enter();
            run(config, sender, setup_tx);
        })
        .map_err(|error| {
            DiscoveryError::Failed(format!(
                "failed to start the udev discovery thread: {error}"
            ))
        })?;
    match setup_rx.await {
        Ok(Ok(())) => Ok(Box::pin(ReceiverStream::new(receiver))),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(DiscoveryError::Failed(
            "the udev discovery thread ended during setup".to_owned(),
        )),
    }
}

fn run(config: Arc<Config>, sender: Sender, setup: oneshot::Sender<Result<(), DiscoveryError>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = setup.send(Err(unavailable("failed to start an event loop", &error)));
            return;
        }
    };
    runtime.block_on(async move {
        let mut discovery = Discovery {
            config,
            found: BTreeMap::new(),
        };
        let monitor = match discovery.open() {
            Ok(monitor) => monitor,
            Err(error) => {
                let _ = setup.send(Err(error));
                return;
            }
        };
        let _ = setup.send(Ok(()));
        if let Err(error) = discovery.watch(monitor, &sender).await {
            warn!(%error, "udev discovery failed");
            let _ = sender.send(Err(error)).await;
        }
    });
}

struct Discovery {
    config: Arc<Config>,
    /// The matched devices, by devpath.
    found: BTreeMap<String, Found>,
}

impl Discovery {
    /// Opens the monitor, then enumerates what is there.
    fn open(&mut self) -> Result<AsyncFd<udev::MonitorSocket>, DiscoveryError> {
        let socket = udev::MonitorBuilder::new()
            .and_then(udev::MonitorBuilder::listen)
            .map_err(|error| unavailable("failed to open a udev monitor", &error))?;
        // The replacement, `AsyncFd::register`, is `unsafe` (forbidden
        // here). Its concern is a value that closes its fd while registered:
        // a MonitorSocket closes its fd only when dropped, and AsyncFd
        // deregisters the fd before it drops the value.
        #[allow(
            deprecated,
            reason = "see above: MonitorSocket owns its fd until dropped"
        )]
        let monitor = AsyncFd::new(socket)
            .map_err(|error| unavailable("failed to watch the udev monitor", &error))?;
        let mut enumerator = udev::Enumerator::new()
            .map_err(|error| unavailable("failed to enumerate udev devices", &error))?;
        let devices = enumerator
            .scan_devices()
            .map_err(|error| unavailable("failed to enumerate udev devices", &error))?;
        for device in devices {
            self.consider(UdevNode::new(device));
        }
        debug!(matched = self.found.len(), "enumerated");
        Ok(monitor)
    }

    async fn watch(
        &mut self,
        mut monitor: AsyncFd<udev::MonitorSocket>,
        sender: &Sender,
    ) -> Result<(), DiscoveryError> {
        let mut last_sent: Option<Vec<Device>> = None;
        loop {
            let set = device_set(&self.found, &self.config.shape);
            if last_sent.as_ref() != Some(&set) {
                debug!(devices = set.len(), "device set changed");
                if sender.send(Ok(set.clone())).await.is_err() {
                    return Ok(());
                }
                last_sent = Some(set);
            }
            tokio::select! {
                () = sender.closed() => return Ok(()),
                ready = monitor.readable_mut() => {
                    // Cleared before reading: an event that comes after
                    // the read sets the readiness again.
                    ready
                        .map_err(|error| unavailable("the udev monitor failed", &error))?
                        .clear_ready();
                    self.settle(&mut monitor).await?;
                }
            }
        }
    }

    /// Takes in a burst of events: a USB plug is several (the USB device,
    /// its interfaces, their tty or video nodes) within milliseconds. Waits
    /// until the monitor has been quiet for [`SETTLE`] (at most
    /// [`MAX_SETTLE`]), so one plug makes one new set, not one per node.
    async fn settle(
        &mut self,
        monitor: &mut AsyncFd<udev::MonitorSocket>,
    ) -> Result<(), DiscoveryError> {
        let deadline = Instant::now() + MAX_SETTLE;
        loop {
            let events: Vec<udev::Event> = monitor.get_mut().iter().collect();
            for event in &events {
                self.on_event(event);
            }
            let quiet_until = (Instant::now() + SETTLE).min(deadline);
            match tokio::time::timeout_at(quiet_until, monitor.readable_mut()).await {
                Ok(ready) => {
                    let mut guard =
                        ready.map_err(|error| unavailable("the udev monitor failed", &error))?;
                    // Cleared here, read at the top: an event that comes in
                    // between sets the readiness again.
                    guard.clear_ready();
                }
                Err(_) => return Ok(()),
            }
            if Instant::now() >= deadline {
                let events: Vec<udev::Event> = monitor.get_mut().iter().collect();
                for event in &events {
                    self.on_event(event);
                }
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, event: &udev::Event) {
        let device = event.device();
        let devpath = device.devpath().to_string_lossy().into_owned();
        debug!(action = ?event.event_type(), %devpath, "udev event");
        self.forget_subtree(&devpath);
        // A renamed device ("move") leaves its old path behind.
        if let Some(old) = device.property_value("DEVPATH_OLD") {
            self.forget_subtree(&old.to_string_lossy());
        }
        if event.event_type() == udev::EventType::Remove {
            return;
        }
        // The device and everything below it, as sysfs shows them now (a
        // parent's change can change what its children match).
        let subtree = udev::Enumerator::new().and_then(|mut enumerator| {
            enumerator.match_parent(&device)?;
            enumerator.scan_devices().map(Iterator::collect::<Vec<_>>)
        });
        match subtree {
            Ok(devices) => {
                for device in devices {
                    self.consider(UdevNode::new(device));
                }
            }
            // Gone again before we looked: the remove event follows.
            Err(error) => debug!(%error, %devpath, "failed to read a device after its event"),
        }
    }

    fn consider(&mut self, node: UdevNode) {
        if self.config.rules.matches(&node) {
            let found = Found::read(&node);
            debug!(?found, "matched");
            self.found.insert(found.devpath.clone(), found);
        }
    }

    fn forget_subtree(&mut self, devpath: &str) {
        let below = format!("{devpath}/");
        self.found
            .retain(|path, _| path != devpath && !path.starts_with(&below));
    }
}

fn unavailable(what: &str, error: &io::Error) -> DiscoveryError {
    DiscoveryError::Unavailable(format!("{what}: {error}"))
}
