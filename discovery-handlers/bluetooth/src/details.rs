//! The `details` of a bluetooth DeviceSet, validated into a [`Config`].
//!
//! ```yaml
//! details:
//!   adapter: hci0                      # or an index (0); default: the first adapter
//!   localName: { glob: "Thermo-*", regex: "^Thermo-[0-9]+$" }
//!   serviceUuids: ["181a"]             # any of; 16-, 32- or 128-bit
//!   manufacturerIds: [0xFFFF]          # any of
//!   minRssi: -90                       # weaker advertisements are not "heard"
//!   addresses: { allow: [...], deny: [...] }
//!   expireAfterSeconds: 30             # gone when not heard for this long
//!   rssiBuckets: { strong: -60, medium: -80, hysteresis: 5 }
//!   reportRssiBucket: true
//!   reportManufacturerData: true
//!   gatt:                              # absent: never connect
//!     timeoutSeconds: 10
//!     read: [{ service: "180a", characteristic: "2a24", name: MODEL, format: utf8 }]
//! ```
//!
//! Everything is checked up front; every error names the field it is about.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use ambit_discovery::{DiscoverRequest, DiscoveryError};
use btleplug::api::BDAddr;
use regex::Regex;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::filter::{Filter, glob_to_regex};
use crate::uuids::parse_uuid;

/// Default of `expireAfterSeconds`.
pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(30);
/// The longest `expireAfterSeconds` accepted: a day.
pub const MAX_EXPIRE_AFTER_SECONDS: u64 = 86_400;
/// Default of `gatt.timeoutSeconds`.
pub const DEFAULT_GATT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which adapter to scan with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The first adapter, in the order hci0, hci1, ...
    First,
    /// The adapter with this name (`hci0`).
    Name(String),
    /// The adapter at this position in the order hci0, hci1, ...
    Index(usize),
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First => f.write_str("the first adapter"),
            Self::Name(name) => write!(f, "adapter {name:?}"),
            Self::Index(index) => write!(f, "adapter number {index}"),
        }
    }
}

/// RSSI thresholds of the reported bucket, in dBm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// At or above: `strong`.
    pub strong: i16,
    /// At or above (and below `strong`): `medium`; below: `weak`.
    pub medium: i16,
    /// How far past a threshold the RSSI must go before the bucket changes.
    pub hysteresis: i16,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            strong: -60,
            medium: -80,
            hysteresis: 5,
        }
    }
}

/// How a GATT value is written into its property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// Lowercase hex, two digits a byte.
    #[default]
    Hex,
    /// The bytes as UTF-8 text (invalid sequences replaced).
    Utf8,
}

/// One characteristic to read after connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GattRead {
    /// The service holding it.
    pub service: Uuid,
    /// The characteristic.
    pub characteristic: Uuid,
    /// The device property the value goes into.
    pub property: String,
    /// How the value is written.
    pub format: ValueFormat,
}

/// Whether and what to read over GATT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gatt {
    /// The characteristics, at least one.
    pub reads: Vec<GattRead>,
    /// For connecting, resolving services and reading, all together.
    pub timeout: Duration,
}

/// What a discovery looks for and reports: the validated details.
#[derive(Debug, Clone)]
pub struct Config {
    /// The adapter to scan with.
    pub adapter: AdapterChoice,
    /// Which devices count.
    pub filter: Filter,
    /// A device not heard from for this long is gone.
    pub expire_after: Duration,
    /// RSSI buckets, or `None` to leave RSSI out of the properties.
    pub buckets: Option<Buckets>,
    /// Whether `BLE_MANUFACTURER_<ID>` properties carry the data.
    pub manufacturer_data: bool,
    /// GATT reads, or `None` never to connect.
    pub gatt: Option<Gatt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    adapter: Option<AdapterSpec>,
    local_name: Option<NameSpec>,
    #[serde(default)]
    service_uuids: Vec<String>,
    #[serde(default)]
    manufacturer_ids: Vec<ManufacturerId>,
    min_rssi: Option<i16>,
    #[serde(default)]
    addresses: AddressSpec,
    expire_after_seconds: Option<u64>,
    rssi_buckets: Option<BucketSpec>,
    #[serde(default = "yes")]
    report_rssi_bucket: bool,
    #[serde(default = "yes")]
    report_manufacturer_data: bool,
    gatt: Option<GattSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameSpec {
    glob: Option<String>,
    regex: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressSpec {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSpec {
    strong: Option<i16>,
    medium: Option<i16>,
    hysteresis: Option<i16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GattSpec {
    #[serde(default)]
    read: Vec<GattReadSpec>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GattReadSpec {
    service: String,
    characteristic: String,
    name: Option<String>,
    #[serde(default)]
    format: ValueFormat,
}

/// `adapter`: a name (`hci0`) or an index (`0`).
#[derive(Debug)]
struct AdapterSpec(AdapterChoice);

impl<'de> Deserialize<'de> for AdapterSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AdapterVisitor;
        impl Visitor<'_> for AdapterVisitor {
            type Value = AdapterSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an adapter name like \"hci0\" or an index like 0")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<AdapterSpec, E> {
                if name.is_empty() || name.contains('/') {
                    return Err(E::invalid_value(de::Unexpected::Str(name), &self));
                }
                Ok(AdapterSpec(AdapterChoice::Name(name.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, index: u64) -> Result<AdapterSpec, E> {
                let index = usize::try_from(index)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(index), &self))?;
                Ok(AdapterSpec(AdapterChoice::Index(index)))
            }
            fn visit_i64<E: de::Error>(self, index: i64) -> Result<AdapterSpec, E> {
                let index = u64::try_from(index)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(index), &self))?;
                self.visit_u64(index)
            }
        }
        deserializer.deserialize_any(AdapterVisitor)
    }
}

/// A manufacturer (company) id: a number up to 65535, or a string `"0xFFFF"`.
#[derive(Debug)]
struct ManufacturerId(u16);

impl<'de> Deserialize<'de> for ManufacturerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = ManufacturerId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a company id from 0 to 65535, or a hex string like \"0x004C\"")
            }
            fn visit_u64<E: de::Error>(self, id: u64) -> Result<ManufacturerId, E> {
                u16::try_from(id)
                    .map(ManufacturerId)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(id), &self))
            }
            fn visit_i64<E: de::Error>(self, id: i64) -> Result<ManufacturerId, E> {
                u16::try_from(id)
                    .map(ManufacturerId)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(id), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ManufacturerId, E> {
                let digits = text
                    .strip_prefix("0x")
                    .or_else(|| text.strip_prefix("0X"))
                    .unwrap_or(text);
                let parsed = if digits.len() == text.len() {
                    digits.parse::<u16>()
                } else {
                    u16::from_str_radix(digits, 16)
                };
                parsed
                    .map(ManufacturerId)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// Reads and checks the request's details.
pub fn parse(request: &DiscoverRequest) -> Result<Config, DiscoveryError> {
    let details: Details = request.details_as()?;
    let invalid = |message: String| DiscoveryError::InvalidDetails(message);

    let (name_glob, name_regex) = match details.local_name {
        None => (None, None),
        Some(NameSpec {
            glob: None,
            regex: None,
        }) => {
            return Err(invalid(
                "localName: give `glob`, `regex` or both".to_owned(),
            ));
        }
        Some(spec) => {
            let glob = spec
                .glob
                .map(|glob| {
                    Regex::new(&glob_to_regex(&glob))
                        .map_err(|error| invalid(format!("localName.glob: {error}")))
                })
                .transpose()?;
            let regex = spec
                .regex
                .map(|regex| {
                    Regex::new(&regex).map_err(|error| {
                        invalid(format!(
                            "localName.regex: not a valid regular expression: {error}"
                        ))
                    })
                })
                .transpose()?;
            (glob, regex)
        }
    };

    let mut services = BTreeSet::new();
    for (index, text) in details.service_uuids.iter().enumerate() {
        services.insert(
            parse_uuid(text).map_err(|why| invalid(format!("serviceUuids[{index}]: {why}")))?,
        );
    }

    if let Some(min) = details.min_rssi
        && !(-127..=20).contains(&min)
    {
        return Err(invalid(format!(
            "minRssi: {min} dBm is outside the range of RSSI values (-127 to 20)"
        )));
    }

    let allow = addresses(&details.addresses.allow, "addresses.allow")?;
    let deny = addresses(&details.addresses.deny, "addresses.deny")?;
    if let Some(both) = allow.intersection(&deny).next() {
        return Err(invalid(format!(
            "addresses: {both} is both allowed and denied"
        )));
    }

    let expire_after = match details.expire_after_seconds {
        None => DEFAULT_EXPIRE_AFTER,
        Some(0) => return Err(invalid("expireAfterSeconds: must be at least 1".to_owned())),
        Some(seconds) if seconds > MAX_EXPIRE_AFTER_SECONDS => {
            return Err(invalid(format!(
                "expireAfterSeconds: {seconds} is more than the limit of {MAX_EXPIRE_AFTER_SECONDS} (a day)"
            )));
        }
        Some(seconds) => Duration::from_secs(seconds),
    };

    let buckets = buckets(details.rssi_buckets)?;
    let gatt = details.gatt.map(gatt).transpose()?;

    Ok(Config {
        adapter: details
            .adapter
            .map_or(AdapterChoice::First, |AdapterSpec(choice)| choice),
        filter: Filter {
            name_glob,
            name_regex,
            services,
            manufacturer_ids: details.manufacturer_ids.iter().map(|id| id.0).collect(),
            min_rssi: details.min_rssi,
            allow,
            deny,
        },
        expire_after,
        buckets: details.report_rssi_bucket.then_some(buckets),
        manufacturer_data: details.report_manufacturer_data,
        gatt,
    })
}

fn addresses(texts: &[String], field: &str) -> Result<BTreeSet<BDAddr>, DiscoveryError> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            parse_address(text).ok_or_else(|| {
                DiscoveryError::InvalidDetails(format!(
                    "{field}[{index}]: {text:?} is not a Bluetooth address like \"AA:BB:CC:DD:EE:FF\""
                ))
            })
        })
        .collect()
}

/// A Bluetooth address written `AA:BB:CC:DD:EE:FF` (any case).
fn parse_address(text: &str) -> Option<BDAddr> {
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = parts.len() == 6
        && parts
            .iter()
            .all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        return None;
    }
    text.parse().ok()
}

fn buckets(spec: Option<BucketSpec>) -> Result<Buckets, DiscoveryError> {
    let defaults = Buckets::default();
    let Some(spec) = spec else {
        return Ok(defaults);
    };
    let buckets = Buckets {
        strong: spec.strong.unwrap_or(defaults.strong),
        medium: spec.medium.unwrap_or(defaults.medium),
        hysteresis: spec.hysteresis.unwrap_or(defaults.hysteresis),
    };
    let invalid = |message: String| Err(DiscoveryError::InvalidDetails(message));
    for (field, value) in [("strong", buckets.strong), ("medium", buckets.medium)] {
        if !(-127..=20).contains(&value) {
            return invalid(format!(
                "rssiBuckets.{field}: {value} dBm is outside the range of RSSI values (-127 to 20)"
            ));
        }
    }
    if buckets.medium >= buckets.strong {
        return invalid(format!(
            "rssiBuckets: medium ({}) must be below strong ({})",
            buckets.medium, buckets.strong
        ));
    }
    if !(0..=20).contains(&buckets.hysteresis) {
        return invalid(format!(
            "rssiBuckets.hysteresis: {} dB is outside 0 to 20",
            buckets.hysteresis
        ));
    }
    Ok(buckets)
}

fn gatt(spec: GattSpec) -> Result<Gatt, DiscoveryError> {
    let invalid = |message: String| DiscoveryError::InvalidDetails(message);
    if spec.read.is_empty() {
        return Err(invalid(
            "gatt.read: list at least one characteristic to read (leave `gatt` out not to connect)"
                .to_owned(),
        ));
    }
    let timeout = match spec.timeout_seconds {
        None => DEFAULT_GATT_TIMEOUT,
        Some(seconds @ 1..=300) => Duration::from_secs(seconds),
        Some(seconds) => {
            return Err(invalid(format!(
                "gatt.timeoutSeconds: {seconds} is outside 1 to 300"
            )));
        }
    };
    let mut properties = BTreeSet::new();
    let mut reads = Vec::with_capacity(spec.read.len());
    for (index, read) in spec.read.into_iter().enumerate() {
        let field = format!("gatt.read[{index}]");
        let service =
            parse_uuid(&read.service).map_err(|why| invalid(format!("{field}.service: {why}")))?;
        let characteristic = parse_uuid(&read.characteristic)
            .map_err(|why| invalid(format!("{field}.characteristic: {why}")))?;
        let suffix = match read.name {
            Some(name) if is_property_suffix(&name) => name,
            Some(name) => {
                return Err(invalid(format!(
                    "{field}.name: {name:?} must be upper-case letters, digits and '_' \
                     (it becomes the property BLE_GATT_<name>)"
                )));
            }
            None => crate::uuids::property_suffix(&characteristic),
        };
        let property = format!("BLE_GATT_{suffix}");
        if !properties.insert(property.clone()) {
            return Err(invalid(format!(
                "{field}: property {property} is already read by an earlier entry; give it another `name`"
            )));
        }
        reads.push(GattRead {
            service,
            characteristic,
            property,
            format: read.format,
        });
    }
    Ok(Gatt { reads, timeout })
}

fn is_property_suffix(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
