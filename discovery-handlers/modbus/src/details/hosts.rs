//! The hosts a TCP scan may reach, exactly as `tcp.hosts` lists them: IP
//! addresses, CIDR ranges and host names. Nothing outside them is ever
//! contacted.
//!
//! ```text
//!   ["10.0.0.5", "10.0.1.0/24", "plc-7.plant"] ──► Hosts ──iter()──► 10.0.0.5, 10.0.1.1 ... 10.0.1.254, plc-7.plant
//! ```
//!
//! An IPv4 range of /30 or wider skips its network and broadcast addresses;
//! an address listed twice (or in two overlapping ranges) is scanned once.

use std::net::IpAddr;

use ipnet::IpNet;

/// Addresses a DeviceSet may scan without `tcp.allowLargeRanges`: a /20.
pub const DEFAULT_MAX_ADDRESSES: u128 = 4096;
/// Addresses a DeviceSet may scan at all: a /8.
pub const MAX_ADDRESSES: u128 = 1 << 24;
/// Entries `tcp.hosts` may have.
pub const MAX_ENTRIES: usize = 1024;

/// One entry of `tcp.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostSpec {
    /// A range; a single address is a /32 (or /128).
    Net(IpNet),
    /// A DNS name, resolved at each scan.
    Name(String),
}

/// Where to scan: one address or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Addr(IpAddr),
    Name(String),
}

impl Host {
    /// As it appears in a device id and in `MODBUS_HOST` (IPv6 without brackets).
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Addr(addr) => addr.to_string(),
            Self::Name(name) => name.clone(),
        }
    }
}

/// The validated `tcp.hosts`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    specs: Vec<HostSpec>,
    /// Per spec: whether an earlier spec may cover some of its addresses.
    overlaps: Vec<bool>,
    addresses: u128,
}

impl Hosts {
    /// Parses `tcp.hosts`; `allow_large` lifts the limit from a /20 to a /8.
    pub(crate) fn parse(items: &[String], allow_large: bool) -> Result<Self, String> {
        if items.is_empty() {
            return Err("tcp.hosts: give at least one host, address or CIDR range".into());
        }
        if items.len() > MAX_ENTRIES {
            return Err(format!(
                "tcp.hosts: {} entries are more than the limit of {MAX_ENTRIES}",
                items.len()
            ));
        }
        let mut hosts = Self::default();
        for (index, item) in items.iter().enumerate() {
            let spec = parse_one(item).map_err(|why| format!("tcp.hosts[{index}]: {why}"))?;
            if hosts.specs.contains(&spec) {
                continue;
            }
            if let HostSpec::Net(net) = &spec {
                let size = net_size(net);
                if size > MAX_ADDRESSES {
                    return Err(format!(
                        "tcp.hosts[{index}]: {item} has {size} addresses, more than any scan may \
                         cover ({MAX_ADDRESSES}, a /8)"
                    ));
                }
                hosts.addresses += size;
            } else {
                hosts.addresses += 1;
            }
            let overlaps = hosts.specs.iter().any(|earlier| match (earlier, &spec) {
                (HostSpec::Net(a), HostSpec::Net(b)) => a.contains(b) || b.contains(a),
                _ => false,
            });
            hosts.overlaps.push(overlaps);
            hosts.specs.push(spec);
        }
        let limit = if allow_large {
            MAX_ADDRESSES
        } else {
            DEFAULT_MAX_ADDRESSES
        };
        if hosts.addresses > limit {
            let hint = if allow_large {
                String::new()
            } else {
                format!(
                    "; set tcp.allowLargeRanges: true to scan up to {MAX_ADDRESSES} (a /8), \
                     knowing a scan then takes addresses / concurrency x timeout"
                )
            };
            return Err(format!(
                "tcp.hosts: {} addresses are more than the limit of {limit}{hint}",
                hosts.addresses
            ));
        }
        Ok(hosts)
    }

    /// How many addresses (and names) the hosts cover, at most.
    pub(crate) fn len(&self) -> u128 {
        self.addresses
    }

    /// Every host to scan, each once, lazily (a /8 is not held in memory).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Host> + Send + '_ {
        self.specs
            .iter()
            .enumerate()
            .flat_map(move |(index, spec)| {
                let (net, name) = match spec {
                    HostSpec::Net(net) => (Some(*net), None),
                    HostSpec::Name(name) => (None, Some(Host::Name(name.clone()))),
                };
                let addresses = net
                    .into_iter()
                    .flat_map(scanned)
                    .filter(move |addr| !(self.overlaps[index] && self.covered_before(index, addr)))
                    .map(Host::Addr);
                name.into_iter().chain(addresses)
            })
    }

    fn covered_before(&self, index: usize, addr: &IpAddr) -> bool {
        self.specs[..index].iter().any(|spec| match spec {
            HostSpec::Net(net) => net.contains(addr) && !is_edge(net, addr),
            HostSpec::Name(_) => false,
        })
    }
}

fn parse_one(item: &str) -> Result<HostSpec, String> {
    let item = item.trim();
    if item.contains('/') {
        let net: IpNet = item
            .parse()
            .map_err(|_| format!("{item:?} is not a valid CIDR range (e.g. 10.0.0.0/24)"))?;
        if net.network() != net.addr() {
            return Err(format!(
                "{item:?} has host bits set: the range starts at {}",
                net.trunc()
            ));
        }
        return Ok(HostSpec::Net(net));
    }
    if let Ok(addr) = item
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(HostSpec::Net(IpNet::from(addr)));
    }
    if is_dns_name(item) {
        return Ok(HostSpec::Name(item.to_ascii_lowercase()));
    }
    if item.parse::<std::net::SocketAddr>().is_ok() {
        return Err(format!(
            "{item:?} has a port: give the host here and the port in tcp.ports"
        ));
    }
    Err(format!(
        "{item:?} is not an IP address, a CIDR range or a host name"
    ))
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn net_size(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// The network and broadcast address of an IPv4 range of /30 or wider.
fn is_edge(net: &IpNet, addr: &IpAddr) -> bool {
    matches!(net, IpNet::V4(v4) if v4.prefix_len() <= 30)
        && (*addr == net.network() || *addr == net.broadcast())
}

/// The addresses of one range that are scanned.
fn scanned(net: IpNet) -> impl Iterator<Item = IpAddr> + Send {
    net.hosts().filter(move |addr| !is_edge(&net, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(items: &[&str]) -> Result<Vec<String>, String> {
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        Ok(Hosts::parse(&items, false)?
            .iter()
            .map(|host| host.label())
            .collect())
    }

    #[test]
    fn lists_addresses_ranges_and_names_each_once() {
        let got = hosts(&[
            "127.0.0.2",
            "127.0.0.0/30",
            "PLC-1.plant",
            "127.0.0.1",
            "::1",
        ])
        .unwrap();
        assert_eq!(got, ["127.0.0.2", "127.0.0.1", "plc-1.plant", "::1"]);
        assert_eq!(hosts(&["10.0.0.0/24"]).unwrap().len(), 254);
        assert_eq!(hosts(&["10.0.0.0/31"]).unwrap(), ["10.0.0.0", "10.0.0.1"]);
        assert_eq!(hosts(&["10.0.0.7/32"]).unwrap(), ["10.0.0.7"]);
        // Overlapping ranges: the inner one adds nothing.
        assert_eq!(hosts(&["10.0.0.0/24", "10.0.0.0/28"]).unwrap().len(), 254);
        // A range's broadcast address is skipped unless listed itself.
        assert_eq!(
            hosts(&["10.0.0.0/30", "10.0.0.3"]).unwrap(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
    }

    #[test]
    fn large_ranges_need_an_opt_in_and_never_exceed_a_slash_8() {
        let items = ["10.0.0.0/16".to_owned()];
        let error = Hosts::parse(&items, false).unwrap_err();
        assert!(
            error.starts_with("tcp.hosts: 65536 addresses are more than the limit of 4096; set tcp.allowLargeRanges: true"),
            "{error}"
        );
        assert_eq!(Hosts::parse(&items, true).unwrap().len(), 65536);
        let slash8 = ["10.0.0.0/8".to_owned()];
        assert!(Hosts::parse(&slash8, false).is_err());
        assert_eq!(Hosts::parse(&slash8, true).unwrap().len(), 1 << 24);
        let error = Hosts::parse(&["10.0.0.0/7".to_owned()], true).unwrap_err();
        assert_eq!(
            error,
            "tcp.hosts[0]: 10.0.0.0/7 has 33554432 addresses, more than any scan may cover (16777216, a /8)"
        );
        assert!(Hosts::parse(&["::/0".to_owned()], true).is_err());
        assert!(Hosts::parse(&["0.0.0.0/0".to_owned()], true).is_err());
    }

    #[test]
    fn bad_entries_are_named() {
        let cases = [
            (
                "10.0.0.0/33",
                "tcp.hosts[0]: \"10.0.0.0/33\" is not a valid CIDR range (e.g. 10.0.0.0/24)",
            ),
            (
                "10.0.0.1/24",
                "tcp.hosts[0]: \"10.0.0.1/24\" has host bits set: the range starts at 10.0.0.0/24",
            ),
            (
                "300.1.1.1",
                "tcp.hosts[0]: \"300.1.1.1\" is not an IP address, a CIDR range or a host name",
            ),
            (
                "plc_1",
                "tcp.hosts[0]: \"plc_1\" is not an IP address, a CIDR range or a host name",
            ),
            (
                "",
                "tcp.hosts[0]: \"\" is not an IP address, a CIDR range or a host name",
            ),
            (
                "10.0.0.5:5020",
                "tcp.hosts[0]: \"10.0.0.5:5020\" has a port: give the host here and the port in tcp.ports",
            ),
        ];
        for (item, expected) in cases {
            assert_eq!(hosts(&[item]).unwrap_err(), expected);
        }
        assert_eq!(
            hosts(&[]).unwrap_err(),
            "tcp.hosts: give at least one host, address or CIDR range"
        );
    }
}
