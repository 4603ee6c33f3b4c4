//! The `details` of an mdns DeviceSet, validated into a [`Plan`]: which
//! DNS-SD service types to browse, which instances to keep, on which
//! interfaces and address families, how often to re-query, and the limits.
//!
//! ```yaml
//! details:
//!   serviceTypes: ["_ipp._tcp", "_http._tcp", "_opcua-tcp._tcp"]
//!   instances: { include: ["Office*"], exclude: ["*test*"] }   # globs over the instance name
//!   txt: { ty: "*LaserJet*", rp: "*" }   # each key present, its value matching the glob
//!   ipv4: true
//!   ipv6: true
//!   interfaces: ["eth0"]            # default: every multicast interface
//!   requery: 5m                     # fresh browse; cache replayed, unconfirmed devices dropped
//!   maxDevices: 1000
//!   maxAddresses: 8
//!   maxTxtEntries: 32
//!   maxTxtBytes: 2048
//! ```
//!
//! Every error names its field; `docs/handlers/mdns.md` lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_discovery::fields::{duration, globs};
use ambit_discovery::{DiscoverRequest, DiscoveryError};
use glob::Pattern;
use serde::Deserialize;

/// The default number of devices one DeviceSet reports at most.
pub const DEFAULT_MAX_DEVICES: usize = 1000;
/// The default number of addresses kept per device.
pub const DEFAULT_MAX_ADDRESSES: usize = 8;
/// The default number of TXT entries turned into properties per device.
pub const DEFAULT_MAX_TXT_ENTRIES: usize = 32;
/// The default number of TXT bytes (keys and values) kept per device.
pub const DEFAULT_MAX_TXT_BYTES: usize = 2048;
/// The default interval between fresh browses.
pub const DEFAULT_REQUERY: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    service_types: Vec<String>,
    #[serde(default)]
    instances: FilterSpec,
    #[serde(default)]
    txt: BTreeMap<String, String>,
    ipv4: Option<bool>,
    ipv6: Option<bool>,
    #[serde(default)]
    interfaces: Vec<String>,
    requery: Option<String>,
    max_devices: Option<usize>,
    max_addresses: Option<usize>,
    max_txt_entries: Option<usize>,
    max_txt_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterSpec {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// Include and exclude lists of shell globs, matched against the whole
/// instance name.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Filter {
    /// Whether `value` passes: it matches some `include` pattern (or there
    /// is none) and no `exclude` pattern.
    pub fn passes(&self, value: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(value)))
            && !self.exclude.iter().any(|p| p.matches(value))
    }
}

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Devices reported at most.
    pub max_devices: usize,
    /// Addresses kept per device.
    pub max_addresses: usize,
    /// TXT entries kept per device.
    pub max_txt_entries: usize,
    /// TXT bytes (keys and values) kept per device.
    pub max_txt_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_devices: DEFAULT_MAX_DEVICES,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            max_txt_entries: DEFAULT_MAX_TXT_ENTRIES,
            max_txt_bytes: DEFAULT_MAX_TXT_BYTES,
        }
    }
}

/// What makes a resolved service a device: the filters and limits the
/// index applies.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Instance-name globs.
    pub instances: Filter,
    /// TXT keys (lower case) that must be present, each value matching.
    pub txt: Vec<(String, Pattern)>,
    /// Keep IPv4 addresses.
    pub ipv4: bool,
    /// Keep IPv6 addresses.
    pub ipv6: bool,
    /// The limits.
    pub limits: Limits,
}

/// Validated details: everything discovery needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Service types to browse, as mdns-sd names them (`_ipp._tcp.local.`).
    pub service_types: Vec<String>,
    /// Interfaces to use; empty means all.
    pub interfaces: Vec<String>,
    /// Interval between fresh browses.
    pub requery: Duration,
    /// Filters and limits.
    pub rules: Rules,
}

/// Validates the request's details.
pub fn plan(request: &DiscoverRequest) -> Result<Plan, DiscoveryError> {
    let details: Details = request.details_as()?;
    validate(details).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details) -> Result<Plan, String> {
    if details.service_types.is_empty() {
        return Err("serviceTypes: name at least one service type, e.g. _ipp._tcp".into());
    }
    if details.service_types.len() > 64 {
        return Err("serviceTypes: 64 service types at most".into());
    }
    let mut service_types: Vec<String> = Vec::new();
    for (i, text) in details.service_types.iter().enumerate() {
        let ty = service_type(text).map_err(|e| format!("serviceTypes[{i}]: {text:?} {e}"))?;
        if service_types.contains(&ty) {
            return Err(format!("serviceTypes[{i}]: {text:?} is listed twice"));
        }
        service_types.push(ty);
    }
    let instances = Filter {
        include: globs("instances", "include", &details.instances.include)?,
        exclude: globs("instances", "exclude", &details.instances.exclude)?,
    };
    let mut txt = Vec::new();
    for (key, glob) in &details.txt {
        if key.is_empty() || key.len() > 64 || key.contains('=') || !key.is_ascii() {
            return Err(format!(
                "txt.{key}: a TXT key is 1 to 64 printable ASCII characters without ="
            ));
        }
        let pattern = Pattern::new(glob)
            .map_err(|e| format!("txt.{key}: {glob:?} is not a valid glob: {e}"))?;
        txt.push((key.to_ascii_lowercase(), pattern));
    }
    let ipv4 = details.ipv4.unwrap_or(true);
    let ipv6 = details.ipv6.unwrap_or(true);
    if !ipv4 && !ipv6 {
        return Err("ipv6: ipv4 and ipv6 cannot both be false".into());
    }
    for (i, name) in details.interfaces.iter().enumerate() {
        if name.is_empty()
            || name.len() > 15
            || name.contains(['/', ' ', '\0'])
            || name == "."
            || name == ".."
        {
            return Err(format!(
                "interfaces[{i}]: {name:?} is not an interface name (1 to 15 characters, no / or space)"
            ));
        }
    }
    let requery = duration(
        "requery",
        details.requery.as_deref(),
        DEFAULT_REQUERY,
        Duration::from_secs(10)..=Duration::from_secs(86_400),
    )?;
    let limits = Limits {
        max_devices: limit(
            "maxDevices",
            details.max_devices,
            DEFAULT_MAX_DEVICES,
            100_000,
        )?,
        max_addresses: limit(
            "maxAddresses",
            details.max_addresses,
            DEFAULT_MAX_ADDRESSES,
            64,
        )?,
        max_txt_entries: limit(
            "maxTxtEntries",
            details.max_txt_entries,
            DEFAULT_MAX_TXT_ENTRIES,
            256,
        )?,
        max_txt_bytes: limit(
            "maxTxtBytes",
            details.max_txt_bytes,
            DEFAULT_MAX_TXT_BYTES,
            65_536,
        )?,
    };
    Ok(Plan {
        service_types,
        interfaces: details.interfaces,
        requery,
        rules: Rules {
            instances,
            txt,
            ipv4,
            ipv6,
            limits,
        },
    })
}

/// `_name._tcp` (or `_udp`), optionally with a `_sub._name._sub.` subtype
/// and a `.local` suffix, as mdns-sd wants it: `_name._tcp.local.`.
fn service_type(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('.');
    let trimmed = trimmed.strip_suffix(".local").unwrap_or(trimmed);
    let labels: Vec<&str> = trimmed.split('.').collect();
    let shape = "is not a DNS-SD service type such as _ipp._tcp (or _printer._sub._http._tcp)";
    let (proto, name, sub) = match labels.as_slice() {
        [name, proto] => (*proto, *name, None),
        [sub, "_sub", name, proto] => (*proto, *name, Some(*sub)),
        _ => return Err(shape.into()),
    };
    if proto != "_tcp" && proto != "_udp" {
        return Err(format!("{shape}: the protocol must be _tcp or _udp"));
    }
    let service_name = |label: &str| {
        label.len() >= 2
            && label.len() <= 64
            && label.starts_with('_')
            && label[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label[1..].starts_with('-')
            && !label.ends_with('-')
    };
    if !service_name(name) {
        return Err(format!(
            "{shape}: the service name must be _ and 1 to 63 letters, digits or -"
        ));
    }
    if let Some(sub) = sub
        && (sub.is_empty() || sub.len() > 63 || sub.chars().any(|c| c.is_control()))
    {
        return Err(format!("{shape}: the subtype must be 1 to 63 characters"));
    }
    Ok(format!("{trimmed}.local."))
}

fn limit(field: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(format!("{field}: {v} is out of range (1 to {max})")),
    }
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
