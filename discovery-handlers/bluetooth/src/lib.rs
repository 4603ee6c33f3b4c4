//! # ambit-bluetooth: the `bluetooth` discovery handler
//!
//! Finds Bluetooth LE peripherals by their advertisements, through BlueZ on
//! the D-Bus system bus (btleplug). Event-driven: every advertisement BlueZ
//! reports adds or refreshes a device at once; a device not heard for
//! `expireAfterSeconds` goes, since BLE has no "gone" message. Only what
//! matters reaches a device's properties (the RSSI as a coarse bucket with
//! hysteresis), so a device sitting still never makes a new set.
//!
//! ```text
//!   details ──details::parse──► Config (filters, expiry, reporting, GATT)
//!                                  │
//!   BlueZ (D-Bus) ──bluez::Radio──► discovery task ──Tracker──► complete sets ──► stream
//!     events, snapshots, GATT        (one per Discover call; scanning shared per adapter)
//! ```
//!
//! The user-facing description of `details` and the properties is
//! `docs/handlers/bluetooth.md`.

mod advert;
mod bluez;
mod details;
mod discovery;
mod filter;
mod tracker;
mod uuids;

use std::sync::Arc;
use std::time::Duration;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{DEFAULT_EXPIRE_AFTER, DEFAULT_GATT_TIMEOUT, MAX_EXPIRE_AFTER_SECONDS};
pub use tracker::{
    ADAPTER, ADDRESS, ADDRESS_TYPE, MANUFACTURER_IDS, MANUFACTURER_PREFIX, NAME as NAME_PROPERTY,
    RSSI_BUCKET, SERVICES,
};

/// The handler's name.
pub const NAME: &str = "bluetooth";

/// How often a discovery re-reads BlueZ's device list by default, to catch
/// what BlueZ sends no event for (a changed name, a device it dropped).
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The Bluetooth LE handler.
#[derive(Debug)]
pub struct Bluetooth {
    session: Arc<bluez::SessionSlot>,
    resync: Duration,
}

impl Default for Bluetooth {
    fn default() -> Self {
        Self::new()
    }
}

impl Bluetooth {
    /// A handler that talks to BlueZ on the D-Bus system bus (the one
    /// `DBUS_SYSTEM_BUS_ADDRESS` names, else `/run/dbus/system_bus_socket`),
    /// connecting on first use.
    pub fn new() -> Self {
        Self {
            session: Arc::default(),
            resync: DEFAULT_RESYNC_INTERVAL,
        }
    }

    /// The same handler, re-reading BlueZ's device list every `interval`.
    pub fn with_resync_interval(mut self, interval: Duration) -> Self {
        self.resync = interval.max(Duration::from_millis(100));
        self
    }
}

impl DiscoveryHandler for Bluetooth {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let config = Arc::new(details::parse(&request)?);
            discovery::start(self.session.clone(), config, self.resync).await
        })
    }
}
