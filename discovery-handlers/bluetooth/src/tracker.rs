//! The devices one discovery has heard, and the device set they make.
//! Pure: it is told what BlueZ reported and when, and answers with the set.
//!
//! ```text
//!   heard(advert, now) ──┐  an advertisement loud enough for minRssi: (re)starts the clock
//!   update(advert) ──────┤  fresh properties without an advertisement: clock unchanged
//!   forget / retain ─────┤  BlueZ dropped the device
//!   expire(now) ─────────┤  not heard for expireAfterSeconds: gone
//!   gatt_read(addr, ..) ─┘  GATT values arrived
//!                        └──► devices(): heard, matching the filters, GATT read ──► Vec<Device>
//! ```
//!
//! Only what users care about reaches the properties: the RSSI as a bucket
//! with hysteresis, so jitter never makes a new set.

use std::collections::BTreeMap;
use std::sync::Arc;

use ambit_discovery::Device;
use btleplug::api::BDAddr;
use tokio::time::Instant;

use crate::advert::Advert;
use crate::details::{Buckets, Config};

/// Property: the device's address, `AA:BB:CC:DD:EE:FF`.
pub const ADDRESS: &str = "BLE_ADDRESS";
/// Property: `public` or `random`.
pub const ADDRESS_TYPE: &str = "BLE_ADDRESS_TYPE";
/// Property: the adapter that hears the device (`hci0`).
pub const ADAPTER: &str = "BLE_ADAPTER";
/// Property: the advertised local name.
pub const NAME: &str = "BLE_NAME";
/// Property: advertised service UUIDs, sorted, comma-separated.
pub const SERVICES: &str = "BLE_SERVICES";
/// Property: company ids of the manufacturer data, `004C,FFFF`.
pub const MANUFACTURER_IDS: &str = "BLE_MANUFACTURER_IDS";
/// Property prefix: `BLE_MANUFACTURER_FFFF` holds company 0xFFFF's data in hex.
pub const MANUFACTURER_PREFIX: &str = "BLE_MANUFACTURER_";
/// Property: `strong`, `medium` or `weak`.
pub const RSSI_BUCKET: &str = "BLE_RSSI_BUCKET";

/// A coarse signal strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bucket {
    /// Below `medium`.
    Weak,
    /// From `medium` to below `strong`.
    Medium,
    /// `strong` or more.
    Strong,
}

impl Bucket {
    fn of(rssi: i16, buckets: &Buckets) -> Self {
        if rssi >= buckets.strong {
            Self::Strong
        } else if rssi >= buckets.medium {
            Self::Medium
        } else {
            Self::Weak
        }
    }

    /// The bucket after hearing `rssi`, moving from `current` only when the
    /// RSSI has gone past the threshold by the hysteresis.
    fn next(current: Option<Self>, rssi: i16, buckets: &Buckets) -> Self {
        let raw = Self::of(rssi, buckets);
        let Some(current) = current else { return raw };
        let h = buckets.hysteresis;
        if raw > current {
            current.max(Self::of(rssi.saturating_sub(h), buckets))
        } else if raw < current {
            current.min(Self::of(rssi.saturating_add(h), buckets))
        } else {
            current
        }
    }

    /// The property value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weak => "weak",
            Self::Medium => "medium",
            Self::Strong => "strong",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GattState {
    Unread,
    Reading,
    Read(BTreeMap<String, String>),
}

#[derive(Debug, Clone)]
struct Tracked {
    advert: Advert,
    last_heard: Instant,
    bucket: Option<Bucket>,
    gatt: GattState,
}

/// The devices one discovery has heard.
#[derive(Debug)]
pub struct Tracker {
    config: Arc<Config>,
    adapter: String,
    devices: BTreeMap<BDAddr, Tracked>,
}

impl Tracker {
    /// An empty tracker for devices heard on `adapter`.
    pub fn new(config: Arc<Config>, adapter: impl Into<String>) -> Self {
        Self {
            config,
            adapter: adapter.into(),
            devices: BTreeMap::new(),
        }
    }

    /// BlueZ reported an advertisement (or the device as found in this
    /// scan): the device is heard now, if loud enough.
    pub fn heard(&mut self, advert: Advert, now: Instant) {
        if !self.config.filter.loud_enough(advert.rssi) {
            self.update(advert);
            return;
        }
        let buckets = self.config.buckets;
        let tracked = self
            .devices
            .entry(advert.address)
            .or_insert_with(|| Tracked {
                advert: advert.clone(),
                last_heard: now,
                bucket: None,
                gatt: GattState::Unread,
            });
        tracked.last_heard = now;
        if let (Some(buckets), Some(rssi)) = (buckets, advert.rssi) {
            tracked.bucket = Some(Bucket::next(tracked.bucket, rssi, &buckets));
        }
        tracked.advert = advert;
    }

    /// Fresh properties of a device, not an advertisement: a device already
    /// heard takes them; the clock does not restart.
    pub fn update(&mut self, advert: Advert) {
        let buckets = self.config.buckets;
        if let Some(tracked) = self.devices.get_mut(&advert.address) {
            if let (Some(buckets), Some(rssi)) = (buckets, advert.rssi) {
                tracked.bucket = Some(Bucket::next(tracked.bucket, rssi, &buckets));
            }
            tracked.advert = advert;
        }
    }

    /// BlueZ no longer knows the device.
    pub fn forget(&mut self, address: &BDAddr) {
        self.devices.remove(address);
    }

    /// Keeps only the devices BlueZ still knows.
    pub fn retain(&mut self, known: impl Fn(&BDAddr) -> bool) {
        self.devices.retain(|address, _| known(address));
    }

    /// Drops the devices not heard for `expireAfterSeconds`.
    pub fn expire(&mut self, now: Instant) {
        let expire_after = self.config.expire_after;
        self.devices
            .retain(|_, tracked| now.duration_since(tracked.last_heard) < expire_after);
    }

    /// When the next device expires, if any is heard.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.devices
            .values()
            .map(|tracked| tracked.last_heard + self.config.expire_after)
            .min()
    }

    /// The devices whose GATT values are to be read now (each once per
    /// appearance); they are marked as being read.
    pub fn take_gatt_reads(&mut self) -> Vec<BDAddr> {
        if self.config.gatt.is_none() {
            return Vec::new();
        }
        let filter = &self.config.filter;
        self.devices
            .iter_mut()
            .filter(|(_, tracked)| {
                tracked.gatt == GattState::Unread && filter.matches(&tracked.advert)
            })
            .map(|(address, tracked)| {
                tracked.gatt = GattState::Reading;
                *address
            })
            .collect()
    }

    /// The GATT values of a device (empty when reading failed).
    pub fn gatt_read(&mut self, address: &BDAddr, values: BTreeMap<String, String>) {
        if let Some(tracked) = self.devices.get_mut(address)
            && tracked.gatt == GattState::Reading
        {
            tracked.gatt = GattState::Read(values);
        }
    }

    /// The complete device set: heard, matching, and with GATT values read
    /// when the DeviceSet asks for them.
    pub fn devices(&self) -> Vec<Device> {
        let gatt = self.config.gatt.is_some();
        self.devices
            .values()
            .filter(|tracked| self.config.filter.matches(&tracked.advert))
            .filter_map(|tracked| match &tracked.gatt {
                GattState::Read(values) => Some(self.device(tracked, values)),
                _ if !gatt => Some(self.device(tracked, &BTreeMap::new())),
                _ => None,
            })
            .collect()
    }

    fn device(&self, tracked: &Tracked, gatt: &BTreeMap<String, String>) -> Device {
        let advert = &tracked.advert;
        let address = advert.address.to_string();
        let mut properties = BTreeMap::new();
        properties.insert(ADDRESS.to_owned(), address.clone());
        properties.insert(ADAPTER.to_owned(), self.adapter.clone());
        if let Some(random) = advert.random_address {
            let kind = if random { "random" } else { "public" };
            properties.insert(ADDRESS_TYPE.to_owned(), kind.to_owned());
        }
        if let Some(name) = &advert.name {
            properties.insert(NAME.to_owned(), name.clone());
        }
        if !advert.services.is_empty() {
            let services: Vec<String> = advert.services.iter().map(ToString::to_string).collect();
            properties.insert(SERVICES.to_owned(), services.join(","));
        }
        if !advert.manufacturer_data.is_empty() {
            let ids: Vec<String> = advert
                .manufacturer_data
                .keys()
                .map(|id| format!("{id:04X}"))
                .collect();
            properties.insert(MANUFACTURER_IDS.to_owned(), ids.join(","));
        }
        if self.config.manufacturer_data {
            for (id, data) in &advert.manufacturer_data {
                properties.insert(format!("{MANUFACTURER_PREFIX}{id:04X}"), hex(data));
            }
        }
        if let Some(bucket) = tracked.bucket {
            properties.insert(RSSI_BUCKET.to_owned(), bucket.as_str().to_owned());
        }
        properties.extend(gatt.iter().map(|(k, v)| (k.clone(), v.clone())));
        Device {
            id: format!("ble://{address}"),
            shared: false,
            properties,
            ..Device::default()
        }
    }
}

/// Lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
