//! Which cameras a DeviceSet wants: include and exclude lists over scopes,
//! IP addresses, MAC addresses and UUIDs.
//!
//! A list passes a camera when one of the camera's values matches an
//! `include` entry (or there is no `include`) and none matches an `exclude`
//! entry. A camera that did not tell a value (no MAC) fails any `include`
//! of that list and passes any `exclude`. A camera passes when every list
//! passes it.

use std::net::IpAddr;

use ambit_discovery::fields::globs;
use glob::{MatchOptions, Pattern};
use ipnet::IpNet;
use serde::Deserialize;

/// One list as written: `{include: [...], exclude: [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListSpec {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// Shell globs (`*`, `?`, `[a-z]`) against whole values.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    options: MatchOptions,
}

impl GlobFilter {
    pub(crate) fn new(field: &str, spec: ListSpec, ignore_case: bool) -> Result<Self, String> {
        Ok(Self {
            include: globs(field, "include", &spec.include)?,
            exclude: globs(field, "exclude", &spec.exclude)?,
            options: MatchOptions {
                case_sensitive: !ignore_case,
                ..MatchOptions::default()
            },
        })
    }

    pub(crate) fn passes<'a>(&self, values: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        let matches = |patterns: &[Pattern]| {
            values
                .clone()
                .into_iter()
                .any(|v| patterns.iter().any(|p| p.matches_with(v, self.options)))
        };
        (self.include.is_empty() || matches(&self.include)) && !matches(&self.exclude)
    }
}

/// IP addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressFilter {
    include: Vec<IpNet>,
    exclude: Vec<IpNet>,
}

impl AddressFilter {
    pub(crate) fn new(field: &str, spec: ListSpec) -> Result<Self, String> {
        let parse = |list: &str, items: Vec<String>| {
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let item = item.trim();
                    item.parse::<IpNet>()
                        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            format!(
                                "{field}.{list}[{index}]: {item:?} is not an IP address or CIDR range (e.g. 10.0.0.0/24)"
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            include: parse("include", spec.include)?,
            exclude: parse("exclude", spec.exclude)?,
        })
    }

    pub(crate) fn passes(&self, address: Option<IpAddr>) -> bool {
        let matches = |nets: &[IpNet]| address.is_some_and(|a| nets.iter().any(|n| n.contains(&a)));
        (self.include.is_empty() || matches(&self.include)) && !matches(&self.exclude)
    }
}

/// Every list of a DeviceSet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pub scopes: GlobFilter,
    pub ip_addresses: AddressFilter,
    pub mac_addresses: GlobFilter,
    pub uuids: GlobFilter,
}

impl Filters {
    /// Whether the filters that need only discovery (scopes, address,
    /// UUID) pass.
    pub(crate) fn passes_discovery(
        &self,
        scopes: &[String],
        ip: Option<IpAddr>,
        uuid: &str,
    ) -> bool {
        self.scopes.passes(scopes.iter().map(String::as_str))
            && self.ip_addresses.passes(ip)
            && self.uuids.passes([uuid])
    }

    /// Whether the MAC list passes (`None`: the camera did not tell).
    pub(crate) fn passes_mac(&self, mac: Option<&str>) -> bool {
        self.mac_addresses.passes(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(include: &[&str], exclude: &[&str]) -> ListSpec {
        ListSpec {
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn globs_over_any_value() {
        let scopes = GlobFilter::new(
            "scopes",
            spec(
                &["onvif://www.onvif.org/location/plant-a/*"],
                &["*/name/test*"],
            ),
            false,
        )
        .unwrap();
        let camera = |list: &[&'static str]| scopes.passes(list.iter().copied());
        assert!(camera(&[
            "onvif://www.onvif.org/type/video",
            "onvif://www.onvif.org/location/plant-a/gate"
        ]));
        assert!(!camera(&["onvif://www.onvif.org/location/plant-b/gate"]));
        assert!(!camera(&[
            "onvif://www.onvif.org/location/plant-a/x",
            "onvif://www.onvif.org/name/test-cam"
        ]));
        assert!(!camera(&[]), "an include needs some value");

        let macs = GlobFilter::new("macAddresses", spec(&[], &["00:11:22:*"]), true).unwrap();
        assert!(!macs.passes(Some("00:11:22:AA:BB:CC")), "case-insensitive");
        assert!(macs.passes(Some("00:11:23:aa:bb:cc")));
        assert!(macs.passes(None), "an exclude passes an unknown MAC");
    }

    #[test]
    fn addresses_and_ranges() {
        let filter = AddressFilter::new(
            "ipAddresses",
            spec(&["10.0.0.0/8", "fd00::1"], &["10.9.9.9"]),
        )
        .unwrap();
        assert!(filter.passes("10.1.2.3".parse().ok()));
        assert!(filter.passes("fd00::1".parse().ok()));
        assert!(!filter.passes("10.9.9.9".parse().ok()));
        assert!(!filter.passes("192.168.1.1".parse().ok()));
        assert!(!filter.passes(None));
        assert_eq!(
            AddressFilter::new("ipAddresses", spec(&[], &["10.0.0.0/33"])).unwrap_err(),
            "ipAddresses.exclude[0]: \"10.0.0.0/33\" is not an IP address or CIDR range (e.g. 10.0.0.0/24)"
        );
        assert!(
            GlobFilter::new("uuids", spec(&["[a-"], &[]), true)
                .unwrap_err()
                .starts_with("uuids.include[0]")
        );
    }
}
