//! BlueZ over D-Bus, through btleplug: the handler's only device I/O.
//!
//! ```text
//!   SessionSlot ── one D-Bus connection (btleplug Manager) per handler, made on first use,
//!    │             replaced after a failure
//!    └─ Radio ──── one adapter: events, device snapshots, GATT reads
//!        └─ ScanGuard ── scanning is counted per adapter: the first discovery on an
//!                        adapter starts it, the last one to end stops it
//! ```
//!
//! The connection is shared because btleplug cannot close one: each
//! `Manager` keeps its D-Bus connection (and BlueZ keeps scanning for it)
//! for as long as the process lives.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use btleplug::api::{Central as _, CentralEvent, Manager as _, Peripheral as _, ScanFilter};
use btleplug::platform::{Adapter, Manager, PeripheralId};
use futures::stream::BoxStream;
use tracing::{debug, warn};

use ambit_discovery::DiscoveryError;

use crate::advert::Advert;
use crate::details::{AdapterChoice, Gatt, ValueFormat};
use crate::tracker::hex;

/// Where the handler's D-Bus connection lives between discoveries.
#[derive(Default)]
pub struct SessionSlot(tokio::sync::Mutex<Option<Arc<Session>>>);

impl fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSlot").finish_non_exhaustive()
    }
}

impl SessionSlot {
    /// The current connection, connecting first if there is none.
    pub async fn get(&self) -> Result<Arc<Session>, DiscoveryError> {
        let mut slot = self.0.lock().await;
        if let Some(session) = &*slot {
            return Ok(session.clone());
        }
        let manager = Manager::new().await.map_err(|error| {
            DiscoveryError::Unavailable(format!(
                "cannot reach the D-Bus system bus, where BlueZ serves: {error} \
                 (is /run/dbus/system_bus_socket there, or DBUS_SYSTEM_BUS_ADDRESS set?)"
            ))
        })?;
        let probe = dbus::blocking::Connection::new_system().map_err(|error| {
            DiscoveryError::Unavailable(format!(
                "cannot reach the D-Bus system bus, where BlueZ serves: {error}"
            ))
        })?;
        let session = Arc::new(Session {
            manager,
            probe: Arc::new(StdMutex::new(probe)),
            scans: Arc::default(),
        });
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Drops `broken`, so that the next discovery connects anew.
    pub async fn reset(&self, broken: &Arc<Session>) {
        let mut slot = self.0.lock().await;
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, broken))
        {
            *slot = None;
        }
    }
}

/// One D-Bus connection to BlueZ.
pub struct Session {
    manager: Manager,
    /// A plain D-Bus connection for what btleplug does not expose (whether
    /// an adapter is scanning).
    probe: Arc<StdMutex<dbus::blocking::Connection>>,
    /// Running discoveries per adapter name.
    scans: Arc<StdMutex<HashMap<String, usize>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn bluez_error(what: &str, error: btleplug::Error) -> DiscoveryError {
    DiscoveryError::Unavailable(format!("BlueZ: failed to {what}: {error}"))
}

impl Session {
    /// The adapter the DeviceSet chose. Adapters are ordered by number
    /// (hci0, hci1, ..., hci10), which is what an index counts in.
    pub async fn adapter(
        self: &Arc<Self>,
        choice: &AdapterChoice,
    ) -> Result<Radio, DiscoveryError> {
        let adapters = self
            .manager
            .adapters()
            .await
            .map_err(|error| bluez_error("list the Bluetooth adapters", error))?;
        let mut named = Vec::with_capacity(adapters.len());
        for adapter in adapters {
            match adapter.adapter_info().await {
                // "hci0 (usb:v1D6Bp0246d0540)"
                Ok(info) => {
                    let name = info.split(' ').next().unwrap_or_default().to_owned();
                    named.push((name, adapter));
                }
                Err(error) => warn!(%error, "skipping a Bluetooth adapter BlueZ describes badly"),
            }
        }
        named.sort_by_key(|(name, _)| adapter_order(name));
        let names: Vec<String> = named.iter().map(|(name, _)| name.clone()).collect();
        let found = match choice {
            AdapterChoice::First => named.into_iter().next(),
            AdapterChoice::Index(index) => named.into_iter().nth(*index),
            AdapterChoice::Name(wanted) => named.into_iter().find(|(name, _)| name == wanted),
        };
        let (name, adapter) = found.ok_or_else(|| {
            let have = if names.is_empty() {
                "BlueZ has no adapter".to_owned()
            } else {
                format!("BlueZ has {}", names.join(", "))
            };
            DiscoveryError::Unavailable(format!("no Bluetooth {choice} on this node ({have})"))
        })?;
        Ok(Radio {
            session: self.clone(),
            adapter,
            name,
        })
    }
}

/// `hci2` before `hci10`; other names after, by name.
fn adapter_order(name: &str) -> (u64, String) {
    let number = name
        .strip_prefix("hci")
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(u64::MAX);
    (number, name.to_owned())
}

/// One adapter of a session.
#[derive(Debug, Clone)]
pub struct Radio {
    session: Arc<Session>,
    adapter: Adapter,
    /// The adapter's name, `hci0`.
    pub name: String,
}

impl Radio {
    /// The session the adapter belongs to.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// BlueZ's events for this adapter; devices BlueZ already knows come
    /// first, as `DeviceDiscovered`.
    pub async fn events(&self) -> Result<BoxStream<'static, CentralEvent>, DiscoveryError> {
        self.adapter
            .events()
            .await
            .map_err(|error| bluez_error("subscribe to adapter events", error))
    }

    /// Starts scanning unless another discovery on this adapter already
    /// does; scanning stops when the last guard is dropped.
    pub async fn scan(&self) -> Result<ScanGuard, DiscoveryError> {
        let first = {
            let mut scans = lock(&self.session.scans);
            let count = scans.entry(self.name.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        let guard = ScanGuard {
            radio: self.clone(),
        };
        if first {
            // No BlueZ filter: each discovery filters for itself, and
            // discoveries with different filters share the scan.
            self.adapter
                .start_scan(ScanFilter::default())
                .await
                .map_err(|error| bluez_error(&format!("start scanning on {}", self.name), error))?;
            debug!(adapter = %self.name, "scanning started");
        }
        Ok(guard)
    }

    /// Starts scanning again if BlueZ is not scanning on this adapter
    /// although a discovery runs: bluetoothd restarted, and the new one
    /// knows nothing of the old one's scans.
    pub async fn keep_scanning(&self) -> Result<(), DiscoveryError> {
        let probe = self.session.probe.clone();
        let path = format!("/org/bluez/{}", self.name);
        let discovering = tokio::task::spawn_blocking(move || {
            use dbus::blocking::stdintf::org_freedesktop_dbus::Properties as _;
            lock(&probe)
                .with_proxy("org.bluez", path, std::time::Duration::from_secs(5))
                .get::<bool>("org.bluez.Adapter1", "Discovering")
        })
        .await
        .map_err(|error| DiscoveryError::Failed(format!("checking the scan failed: {error}")))?
        .map_err(|error| {
            DiscoveryError::Unavailable(format!(
                "BlueZ: failed to read whether {} scans: {error}",
                self.name
            ))
        })?;
        if !discovering {
            warn!(adapter = %self.name, "BlueZ is not scanning (bluetoothd restarted?); scanning again");
            self.adapter
                .start_scan(ScanFilter::default())
                .await
                .map_err(|error| bluez_error(&format!("start scanning on {}", self.name), error))?;
        }
        Ok(())
    }

    /// Every device BlueZ knows on this adapter, heard lately or not.
    pub async fn snapshot(&self) -> Result<Vec<(PeripheralId, Advert)>, DiscoveryError> {
        let peripherals = self
            .adapter
            .peripherals()
            .await
            .map_err(|error| bluez_error("list devices", error))?;
        let mut adverts = Vec::with_capacity(peripherals.len());
        for peripheral in peripherals {
            // A device removed between the listing and this read is skipped.
            if let Ok(Some(properties)) = peripheral.properties().await {
                adverts.push((peripheral.id(), Advert::from(properties)));
            }
        }
        Ok(adverts)
    }

    /// One device's current state; `Ok(None)` when BlueZ no longer has it.
    pub async fn advert(&self, id: &PeripheralId) -> Result<Option<Advert>, DiscoveryError> {
        let peripheral = match self.adapter.peripheral(id).await {
            Ok(peripheral) => peripheral,
            Err(btleplug::Error::DeviceNotFound) => return Ok(None),
            Err(error) => return Err(bluez_error("read a device", error)),
        };
        match peripheral.properties().await {
            Ok(properties) => Ok(properties.map(Advert::from)),
            // The device went between the two calls.
            Err(btleplug::Error::DeviceNotFound | btleplug::Error::Other(_)) => Ok(None),
            Err(error) => Err(bluez_error("read a device", error)),
        }
    }

    /// Connects to a device (unless it is connected already), reads the
    /// DeviceSet's characteristics and disconnects again. A characteristic
    /// that is missing or cannot be read is left out, with a warning.
    pub async fn read_gatt(
        &self,
        id: &PeripheralId,
        gatt: &Gatt,
    ) -> Result<BTreeMap<String, String>, String> {
        let peripheral = self
            .adapter
            .peripheral(id)
            .await
            .map_err(|error| error.to_string())?;
        let was_connected = peripheral.is_connected().await.unwrap_or(false);
        let work = async {
            if !was_connected {
                peripheral.connect().await?;
            }
            peripheral.discover_services().await?;
            let characteristics = peripheral.characteristics();
            let mut values = BTreeMap::new();
            for read in &gatt.reads {
                let found = characteristics
                    .iter()
                    .find(|c| c.uuid == read.characteristic && c.service_uuid == read.service);
                let Some(characteristic) = found else {
                    warn!(device = %id, service = %read.service, characteristic = %read.characteristic,
                        "the device has no such GATT characteristic");
                    continue;
                };
                match peripheral.read(characteristic).await {
                    Ok(value) => {
                        values.insert(read.property.clone(), format_value(&value, read.format));
                    }
                    Err(error) => warn!(device = %id, characteristic = %read.characteristic,
                        %error, "failed to read a GATT characteristic"),
                }
            }
            Ok::<_, btleplug::Error>(values)
        };
        let result = tokio::time::timeout(gatt.timeout, work).await;
        if !was_connected && let Err(error) = peripheral.disconnect().await {
            debug!(device = %id, %error, "disconnecting after the GATT reads failed");
        }
        match result {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "connecting and reading took longer than {} s",
                gatt.timeout.as_secs()
            )),
        }
    }
}

fn format_value(value: &[u8], format: ValueFormat) -> String {
    match format {
        ValueFormat::Hex => hex(value),
        ValueFormat::Utf8 => String::from_utf8_lossy(value)
            .trim_end_matches('\0')
            .to_owned(),
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The counts stay consistent even if a holder panicked: each update is
    // a single step.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps an adapter scanning while it lives.
#[derive(Debug)]
pub struct ScanGuard {
    radio: Radio,
}

impl Drop for ScanGuard {
    fn drop(&mut self) {
        let last = {
            let mut scans = lock(&self.radio.session.scans);
            let count = scans.entry(self.radio.name.clone()).or_insert(1);
            *count = count.saturating_sub(1);
            let last = *count == 0;
            if last {
                scans.remove(&self.radio.name);
            }
            last
        };
        if !last {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let radio = self.radio.clone();
        runtime.spawn(async move {
            match radio.adapter.stop_scan().await {
                Ok(()) => debug!(adapter = %radio.name, "scanning stopped"),
                Err(error) => debug!(adapter = %radio.name, %error, "failed to stop scanning"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_sort_by_number() {
        let mut names = vec!["hci10", "usb", "hci2", "hci0"];
        names.sort_by_key(|name| adapter_order(name));
        assert_eq!(names, ["hci0", "hci2", "hci10", "usb"]);
    }

    #[test]
    fn values_format_as_asked() {
        assert_eq!(format_value(b"AB\0", ValueFormat::Hex), "414200");
        assert_eq!(format_value(b"Model 7\0\0", ValueFormat::Utf8), "Model 7");
    }
}
