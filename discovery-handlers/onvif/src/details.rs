//! The `details` of an onvif DeviceSet and its `properties` (credentials),
//! validated into a [`Config`].
//!
//! ```yaml
//! details:
//!   types: ["dn:NetworkVideoTransmitter"]
//!   scopes:       { include: ["onvif://www.onvif.org/location/*"], exclude: [] }
//!   ipAddresses:  { include: ["10.20.0.0/16"], exclude: ["10.20.9.9"] }
//!   macAddresses: { exclude: ["00:11:22:*"] }
//!   uuids:        { include: ["3fa1fe68-*"] }
//!   interfaces: ["eth*"]
//!   ipv6: true
//!   probeInterval: 60s
//!   matchTimeout: 3s
//!   probeRepeat: 2
//!   missedProbes: 2
//!   timeout: 5s
//!   streams: true
//! ```
//!
//! Every error names its field; `docs/handlers/onvif.md` lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_discovery::fields::duration;
use ambit_discovery::{DiscoverRequest, DiscoveryError};
use serde::Deserialize;

use crate::filter::{AddressFilter, Filters, GlobFilter, ListSpec};
use crate::security::Credentials;

/// The default time from one Probe to the next.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// The default time answers to one Probe are collected.
pub const DEFAULT_MATCH_TIMEOUT: Duration = Duration::from_secs(3);
/// The default number of repeats of each Probe (SOAP-over-UDP retransmission).
pub const DEFAULT_PROBE_REPEAT: u32 = 2;
/// The default number of Probe cycles in a row a camera may miss.
pub const DEFAULT_MISSED_PROBES: u32 = 2;
/// The default timeout of each ONVIF request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The property with the user name for every camera.
pub const USERNAME: &str = "ONVIF_USERNAME";
/// The property with the password for every camera.
pub const PASSWORD: &str = "ONVIF_PASSWORD";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    types: Option<Vec<String>>,
    #[serde(default)]
    scopes: ListSpec,
    #[serde(default)]
    ip_addresses: ListSpec,
    #[serde(default)]
    mac_addresses: ListSpec,
    #[serde(default)]
    uuids: ListSpec,
    #[serde(default)]
    interfaces: Vec<String>,
    ipv6: Option<bool>,
    probe_interval: Option<String>,
    match_timeout: Option<String>,
    probe_repeat: Option<u32>,
    missed_probes: Option<u32>,
    timeout: Option<String>,
    streams: Option<bool>,
}

/// A validated DeviceSet.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub types: Vec<String>,
    pub filters: Filters,
    pub interfaces: Vec<glob::Pattern>,
    pub ipv6: bool,
    pub probe_interval: Duration,
    pub match_timeout: Duration,
    pub probe_repeat: u32,
    pub missed_probes: u32,
    pub timeout: Duration,
    pub streams: bool,
    pub credentials: CredentialStore,
}

/// Validates the request's details and properties.
pub(crate) fn parse(request: &DiscoverRequest) -> Result<Config, DiscoveryError> {
    let details: Details = request.details_as()?;
    validate(details, &request.properties).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details, properties: &BTreeMap<String, String>) -> Result<Config, String> {
    let types = details
        .types
        .unwrap_or_else(|| vec!["dn:NetworkVideoTransmitter".to_owned()]);
    for (index, name) in types.iter().enumerate() {
        let valid = name.split_once(':').is_some_and(|(prefix, local)| {
            matches!(prefix, "dn" | "tds")
                && !local.is_empty()
                && local.chars().all(char::is_alphanumeric)
        });
        if !valid {
            return Err(format!(
                "types[{index}]: {name:?} must be dn:<Name> or tds:<Name>, e.g. dn:NetworkVideoTransmitter or tds:Device"
            ));
        }
    }
    let filters = Filters {
        scopes: GlobFilter::new("scopes", details.scopes, false)?,
        ip_addresses: AddressFilter::new("ipAddresses", details.ip_addresses)?,
        mac_addresses: GlobFilter::new("macAddresses", details.mac_addresses, true)?,
        uuids: GlobFilter::new("uuids", details.uuids, true)?,
    };
    let interfaces = details
        .interfaces
        .iter()
        .enumerate()
        .map(|(index, glob)| {
            glob::Pattern::new(glob).map_err(|error| {
                format!("interfaces[{index}]: {glob:?} is not a valid glob: {error}")
            })
        })
        .collect::<Result<_, _>>()?;
    let second = Duration::from_secs(1);
    let probe_interval = duration(
        "probeInterval",
        details.probe_interval.as_deref(),
        DEFAULT_PROBE_INTERVAL,
        second..=Duration::from_secs(24 * 3600),
    )?;
    let match_timeout = duration(
        "matchTimeout",
        details.match_timeout.as_deref(),
        DEFAULT_MATCH_TIMEOUT,
        Duration::from_millis(100)..=Duration::from_secs(60),
    )?;
    if match_timeout >= probe_interval {
        return Err(format!(
            "matchTimeout ({}) must be shorter than probeInterval ({})",
            humantime::format_duration(match_timeout),
            humantime::format_duration(probe_interval)
        ));
    }
    let probe_repeat = details.probe_repeat.unwrap_or(DEFAULT_PROBE_REPEAT);
    if probe_repeat > 8 {
        return Err(format!("probeRepeat: must be 0 to 8, not {probe_repeat}"));
    }
    let missed_probes = details.missed_probes.unwrap_or(DEFAULT_MISSED_PROBES);
    if !(1..=100).contains(&missed_probes) {
        return Err(format!(
            "missedProbes: must be 1 to 100, not {missed_probes}"
        ));
    }
    let timeout = duration(
        "timeout",
        details.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        Duration::from_millis(100)..=Duration::from_secs(120),
    )?;
    Ok(Config {
        types,
        filters,
        interfaces,
        ipv6: details.ipv6.unwrap_or(true),
        probe_interval,
        match_timeout,
        probe_repeat,
        missed_probes,
        timeout,
        streams: details.streams.unwrap_or(true),
        credentials: CredentialStore::from_properties(properties)?,
    })
}

/// Credentials from the DeviceSet's properties: `ONVIF_USERNAME` and
/// `ONVIF_PASSWORD` for every camera, `ONVIF_USERNAME_<ID>` and
/// `ONVIF_PASSWORD_<ID>` for the camera whose UUID, with every character
/// other than a letter or digit written `_`, is `<ID>` (any case).
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialStore {
    default: Option<Credentials>,
    by_device: BTreeMap<String, Credentials>,
}

impl CredentialStore {
    fn from_properties(properties: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut users = BTreeMap::new();
        let mut passwords = BTreeMap::new();
        for (name, value) in properties {
            let upper = name.to_ascii_uppercase();
            if let Some(rest) = upper.strip_prefix(USERNAME) {
                users.insert(rest.trim_start_matches('_').to_owned(), value.clone());
            } else if let Some(rest) = upper.strip_prefix(PASSWORD) {
                passwords.insert(rest.trim_start_matches('_').to_owned(), value.clone());
            }
        }
        let mut store = Self::default();
        for (key, username) in users {
            let Some(password) = passwords.remove(&key) else {
                return Err(pair_error(&key, USERNAME, PASSWORD));
            };
            let credentials = Credentials { username, password };
            if key.is_empty() {
                store.default = Some(credentials);
            } else {
                store.by_device.insert(key, credentials);
            }
        }
        if let Some(key) = passwords.into_keys().next() {
            return Err(pair_error(&key, PASSWORD, USERNAME));
        }
        Ok(store)
    }

    /// The credentials for the camera with this UUID (or endpoint address).
    pub(crate) fn for_device(&self, uuid: &str) -> Option<&Credentials> {
        self.by_device
            .get(&property_key(uuid))
            .or(self.default.as_ref())
    }
}

fn pair_error(key: &str, given: &str, missing: &str) -> String {
    let suffix = if key.is_empty() {
        String::new()
    } else {
        format!("_{key}")
    };
    format!("properties: {given}{suffix} is given but {missing}{suffix} is not; give both")
}

/// A UUID as it appears in a property name: letters and digits kept
/// (upper case), everything else `_`.
pub(crate) fn property_key(uuid: &str) -> String {
    uuid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
