//! One resolved DNS-SD service as a [`Device`]: the id is the service
//! instance's full name (`Office Printer._ipp._tcp.local`), the properties
//! its instance name, type, host, port, addresses and TXT entries, every
//! one bounded. Pure; the index calls it for each resolution.
//!
//! TXT keys are free text (RFC 6763 §6.4: printable ASCII, no `=`), so they
//! become environment-variable names: upper case, anything but letters and
//! digits as `_`, the first of two keys that collapse to one name kept
//! (DNS-SD keys are case-insensitive and only the first of a key counts).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambit_discovery::Device;

use crate::details::Rules;

/// Property: the instance name (`Office Printer`).
pub const INSTANCE: &str = "MDNS_INSTANCE";
/// Property: the service type (`_ipp._tcp`).
pub const SERVICE_TYPE: &str = "MDNS_SERVICE_TYPE";
/// Property: the host the SRV record names (`printer-3.local`).
pub const HOST: &str = "MDNS_HOST";
/// Property: the port the SRV record names.
pub const PORT: &str = "MDNS_PORT";
/// Property: the preferred address (IPv4 first, then routable IPv6, then
/// link-local IPv6).
pub const ADDRESS: &str = "MDNS_ADDRESS";
/// Property: every address kept, comma-separated, in the same order.
pub const ADDRESSES: &str = "MDNS_ADDRESSES";
/// Property: how many TXT entries the service has (before the limits).
pub const TXT_COUNT: &str = "MDNS_TXT_COUNT";
/// Prefix of the TXT entries' properties: `MDNS_TXT_<KEY>`.
pub const TXT_PREFIX: &str = "MDNS_TXT_";
/// Longest property value kept; longer ones are cut at a char boundary.
pub const MAX_VALUE_CHARS: usize = 256;
/// Longest device id (a DNS name is at most 255 bytes).
pub const MAX_ID_BYTES: usize = 255;
/// Longest TXT key kept in a property name.
const MAX_KEY_CHARS: usize = 64;

/// A resolved service as mdns-sd reports it, in plain types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// `Office Printer._ipp._tcp.local.`
    pub fullname: String,
    /// `_ipp._tcp.local.`
    pub service_type: String,
    /// `printer-3.local.`
    pub host: String,
    /// SRV port.
    pub port: u16,
    /// A and AAAA records of the host.
    pub addresses: Vec<IpAddr>,
    /// TXT entries in record order: key and value (`None`: a boolean key).
    pub txt: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a resolved service is not a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The instance-name or TXT filters leave it out.
    Filtered,
    /// No address of a kept family (`ipv4`, `ipv6`).
    NoAddress,
    /// A name that is empty, too long or not of its service type.
    Malformed,
    /// A new device over `maxDevices`.
    Limit,
}

/// The index key of a full name: DNS names compare case-insensitively.
pub fn key(fullname: &str) -> String {
    fullname.trim_end_matches('.').to_lowercase()
}

/// The device `service` makes under `rules`, or why it makes none.
pub fn device(service: &Service, rules: &Rules) -> Result<Device, Ignored> {
    let id = service.fullname.trim_end_matches('.');
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Ignored::Malformed);
    }
    let ty = service.service_type.trim_end_matches('.');
    let instance = id
        .len()
        .checked_sub(ty.len() + 1)
        .filter(|_| !ty.is_empty())
        .and_then(|cut| {
            let (head, tail) = (id.get(..cut)?, id.get(cut..)?);
            (tail.strip_prefix('.')?.eq_ignore_ascii_case(ty)).then_some(head)
        })
        .filter(|instance| !instance.is_empty())
        .ok_or(Ignored::Malformed)?;
    if !rules.instances.passes(instance) {
        return Err(Ignored::Filtered);
    }
    for (key, pattern) in &rules.txt {
        let value = service
            .txt
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| text(v.as_deref().unwrap_or_default()));
        if !value.is_some_and(|v| pattern.matches(&v)) {
            return Err(Ignored::Filtered);
        }
    }
    let addresses = addresses(&service.addresses, rules);
    let Some(first) = addresses.first() else {
        return Err(Ignored::NoAddress);
    };
    let mut properties = BTreeMap::new();
    properties.insert(ADDRESS.to_owned(), first.to_string());
    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    properties.insert(ADDRESSES.to_owned(), list.join(","));
    properties.insert(INSTANCE.to_owned(), bounded(instance));
    let short_type = ty.strip_suffix(".local").unwrap_or(ty);
    properties.insert(SERVICE_TYPE.to_owned(), bounded(short_type));
    properties.insert(HOST.to_owned(), bounded(service.host.trim_end_matches('.')));
    properties.insert(PORT.to_owned(), service.port.to_string());
    txt_properties(&service.txt, rules, &mut properties);
    Ok(Device {
        id: id.to_owned(),
        shared: true,
        properties,
        ..Device::default()
    })
}

/// The addresses of the kept families, deduplicated, in preference order,
/// at most `maxAddresses`.
fn addresses(all: &[IpAddr], rules: &Rules) -> Vec<IpAddr> {
    let rank = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) if v4.is_loopback() => 3,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() => 3,
        IpAddr::V6(v6) if v6.is_unicast_link_local() => 2,
        IpAddr::V6(_) => 1,
    };
    let mut kept: Vec<IpAddr> = all
        .iter()
        .filter(|ip| if ip.is_ipv4() { rules.ipv4 } else { rules.ipv6 })
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
        .copied()
        .collect();
    kept.sort_by_key(|ip| (rank(ip), *ip));
    kept.dedup();
    kept.truncate(rules.limits.max_addresses);
    kept
}

fn txt_properties(
    txt: &[(String, Option<Vec<u8>>)],
    rules: &Rules,
    out: &mut BTreeMap<String, String>,
) {
    out.insert(TXT_COUNT.to_owned(), txt.len().to_string());
    let limits = rules.limits;
    let mut entries = 0;
    let mut bytes = 0usize;
    for (key, value) in txt {
        if entries >= limits.max_txt_entries {
            break;
        }
        let name = txt_name(key);
        if name.len() == TXT_PREFIX.len() || out.contains_key(&name) {
            continue;
        }
        let value = value.as_deref().unwrap_or_default();
        let size = key.len().saturating_add(value.len());
        if bytes.saturating_add(size) > limits.max_txt_bytes {
            continue;
        }
        bytes += size;
        entries += 1;
        out.insert(name, bounded(&text(value)));
    }
}

/// `MDNS_TXT_` and the key as an environment-variable name.
pub fn txt_name(key: &str) -> String {
    let mut name = String::with_capacity(TXT_PREFIX.len() + key.len().min(MAX_KEY_CHARS));
    name.push_str(TXT_PREFIX);
    name.extend(key.chars().take(MAX_KEY_CHARS).map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

/// A TXT value as text: invalid UTF-8 replaced, control characters dropped.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// `text` cut to [`MAX_VALUE_CHARS`] characters.
pub fn bounded(text: &str) -> String {
    text.chars().take(MAX_VALUE_CHARS).collect()
}
