//! Which advertising devices a DeviceSet wants: every given criterion must
//! hold (AND); a list matches when any of its entries does (OR).

use std::collections::BTreeSet;

use btleplug::api::BDAddr;
use regex::Regex;
use uuid::Uuid;

use crate::advert::Advert;

/// The filters of a DeviceSet, compiled.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `localName.glob`, as an anchored regular expression.
    pub name_glob: Option<Regex>,
    /// `localName.regex` (unanchored, as written).
    pub name_regex: Option<Regex>,
    /// `serviceUuids`: the device advertises at least one.
    pub services: BTreeSet<Uuid>,
    /// `manufacturerIds`: the device sends data for at least one.
    pub manufacturer_ids: BTreeSet<u16>,
    /// `minRssi`: weaker advertisements do not count as hearing the device.
    pub min_rssi: Option<i16>,
    /// `addresses.allow`: when not empty, only these.
    pub allow: BTreeSet<BDAddr>,
    /// `addresses.deny`: never these.
    pub deny: BTreeSet<BDAddr>,
}

impl Filter {
    /// Whether the device, as last advertised, is one the DeviceSet wants
    /// (RSSI aside: see [`Filter::loud_enough`]).
    pub fn matches(&self, advert: &Advert) -> bool {
        if self.deny.contains(&advert.address)
            || (!self.allow.is_empty() && !self.allow.contains(&advert.address))
        {
            return false;
        }
        for name_filter in [&self.name_glob, &self.name_regex].into_iter().flatten() {
            match &advert.name {
                Some(name) if name_filter.is_match(name) => {}
                _ => return false,
            }
        }
        if !self.services.is_empty() && self.services.is_disjoint(&advert.services) {
            return false;
        }
        if !self.manufacturer_ids.is_empty()
            && !advert
                .manufacturer_data
                .keys()
                .any(|id| self.manufacturer_ids.contains(id))
        {
            return false;
        }
        true
    }

    /// Whether an advertisement received at this RSSI counts as hearing the
    /// device: always without `minRssi`, never with an unknown RSSI.
    pub fn loud_enough(&self, rssi: Option<i16>) -> bool {
        match self.min_rssi {
            None => true,
            Some(min) => rssi.is_some_and(|rssi| rssi >= min),
        }
    }
}

/// A shell-style glob (`*` any run of characters, `?` one character,
/// `[abc]` / `[!abc]` / `[a-z]` a class, `\x` a literal `x`) as an anchored
/// regular expression.
pub fn glob_to_regex(glob: &str) -> String {
    let mut regex = String::with_capacity(glob.len() + 8);
    regex.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '\\' => match chars.next() {
                Some(next) => regex.push_str(&regex::escape(&next.to_string())),
                None => regex.push_str(r"\\"),
            },
            '[' => {
                // A class runs to the next ']' (a ']' first in the class is literal).
                let mut raw = String::from("[");
                let mut class = String::new();
                let mut closed = false;
                if chars.peek() == Some(&'!') {
                    chars.next();
                    raw.push('!');
                    class.push('^');
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    raw.push(']');
                    class.push_str(r"\]");
                }
                for next in chars.by_ref() {
                    raw.push(next);
                    match next {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' | '[' | '&' | '~' | '^' => {
                            class.push('\\');
                            class.push(next);
                        }
                        _ => class.push(next),
                    }
                }
                if closed {
                    regex.push('[');
                    regex.push_str(&class);
                    regex.push(']');
                } else {
                    // No closing bracket: the '[' and what followed are literal.
                    regex.push_str(&regex::escape(&raw));
                }
            }
            _ => regex.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex.push('$');
    regex
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn glob(pattern: &str) -> Regex {
        Regex::new(&glob_to_regex(pattern)).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        let thermo = glob("Thermo-*");
        assert!(thermo.is_match("Thermo-01"));
        assert!(thermo.is_match("Thermo-"));
        assert!(!thermo.is_match("My Thermo-01"));
        assert!(glob("T?-[0-9][!x]").is_match("Tx-1y"));
        assert!(!glob("T?-[0-9][!x]").is_match("Tx-1x"));
        assert!(glob("a.b").is_match("a.b"));
        assert!(!glob("a.b").is_match("axb"));
        assert!(glob(r"what\?").is_match("what?"));
        assert!(!glob(r"what\?").is_match("whats"));
        assert!(glob("[]]x").is_match("]x"));
        assert!(glob("[ab").is_match("[ab"));
    }

    fn advert(address: &str, name: Option<&str>) -> Advert {
        Advert {
            address: address.parse().unwrap(),
            name: name.map(str::to_owned),
            ..Advert::default()
        }
    }

    #[test]
    fn every_criterion_must_hold() {
        let sensor = Advert {
            services: BTreeSet::from([crate::uuids::parse_uuid("181a").unwrap()]),
            manufacturer_data: BTreeMap::from([(0xFFFF, vec![1, 2])]),
            ..advert("AA:BB:CC:DD:EE:01", Some("Thermo-01"))
        };
        assert!(Filter::default().matches(&sensor));
        let mut filter = Filter {
            name_glob: Some(glob("Thermo-*")),
            name_regex: Some(Regex::new("[0-9]$").unwrap()),
            services: BTreeSet::from([
                crate::uuids::parse_uuid("181a").unwrap(),
                crate::uuids::parse_uuid("180f").unwrap(),
            ]),
            manufacturer_ids: BTreeSet::from([0xFFFF, 0x004C]),
            ..Filter::default()
        };
        assert!(filter.matches(&sensor));
        assert!(!filter.matches(&advert("AA:BB:CC:DD:EE:01", None)));
        assert!(!filter.matches(&Advert {
            name: Some("Thermo-x".into()),
            ..sensor.clone()
        }));
        assert!(!filter.matches(&Advert {
            manufacturer_data: BTreeMap::from([(0x0001, vec![])]),
            ..sensor.clone()
        }));
        assert!(!filter.matches(&Advert {
            services: BTreeSet::new(),
            ..sensor.clone()
        }));

        filter.allow = BTreeSet::from(["AA:BB:CC:DD:EE:02".parse().unwrap()]);
        assert!(!filter.matches(&sensor));
        filter.allow.insert(sensor.address);
        assert!(filter.matches(&sensor));
        filter.deny.insert(sensor.address);
        assert!(!filter.matches(&sensor));
    }

    #[test]
    fn min_rssi_needs_a_known_rssi() {
        let filter = Filter {
            min_rssi: Some(-80),
            ..Filter::default()
        };
        assert!(filter.loud_enough(Some(-80)));
        assert!(!filter.loud_enough(Some(-81)));
        assert!(!filter.loud_enough(None));
        assert!(Filter::default().loud_enough(None));
    }
}
