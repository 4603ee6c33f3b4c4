//! # ambit-mdns: the `mdns` discovery handler
//!
//! Finds DNS-SD services announced over multicast DNS (RFC 6762, 6763) —
//! printers (`_ipp._tcp`), web servers (`_http._tcp`), OPC UA servers
//! (`_opcua-tcp._tcp`), anything that announces itself — on the node's
//! links, IPv4 and IPv6, and turns each service instance into a device.
//! Event-driven: announcements add, goodbyes remove, records whose TTL runs
//! out without a refresh remove; a periodic re-query is the safety net.
//!
//! ```text
//!   details ──details::plan──► Plan ──driver──► mdns-sd daemon: browse per type
//!        ServiceResolved / ServiceRemoved ──► Index (device::device: filters, bounds)
//!                                             └─► stream of complete sets
//! ```
//!
//! The protocol is mdns-sd's (pure Rust, its own daemon thread); what is
//! ours is the pure part: which resolved services are devices and what
//! their properties say. `docs/handlers/mdns.md` describes the details and
//! properties.

mod details;
mod device;
mod driver;
mod index;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{
    DEFAULT_MAX_ADDRESSES, DEFAULT_MAX_DEVICES, DEFAULT_MAX_TXT_BYTES, DEFAULT_MAX_TXT_ENTRIES,
    DEFAULT_REQUERY,
};
pub use device::{
    ADDRESS, ADDRESSES, HOST, INSTANCE, MAX_VALUE_CHARS, PORT, SERVICE_TYPE, TXT_COUNT, TXT_PREFIX,
    txt_name,
};

/// The handler's name.
pub const NAME: &str = "mdns";

/// The mdns handler. It keeps no state between DeviceSets: each discovery
/// runs its own mdns-sd daemon.
#[derive(Debug, Default)]
pub struct Mdns;

impl Mdns {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for Mdns {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let plan = details::plan(&request)?;
            driver::device_sets(plan)
        })
    }
}

/// Entry point for the malformed-input tests and the fuzz target; not part
/// of the handler's API.
#[doc(hidden)]
pub mod fuzzing {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    use ambit_discovery::{DiscoverRequest, check_device_set};

    use crate::details::plan;
    use crate::device::Service;
    use crate::index::Index;

    /// Reads arbitrary bytes as a sequence of resolutions and removals
    /// (names, hosts, addresses and TXT entries all from the bytes) and
    /// feeds them through the index of `details`. Must never panic; the set
    /// stays within its bounds and its ids unique.
    pub fn services(details: serde_json::Value, data: &[u8]) {
        let Ok(plan) = plan(&DiscoverRequest::new(details)) else {
            return;
        };
        let limits = plan.rules.limits;
        let mut index = Index::new(plan.rules, Duration::from_secs(60));
        let mut bytes = Bytes(data);
        let start = Instant::now();
        let types = ["_http._tcp.local.", "_ipp._tcp.local."];
        let mut step = 0u64;
        while let Some(op) = bytes.u8() {
            step += 1;
            let now = start + Duration::from_millis(step * 500);
            let ty = types[usize::from(op & 1)];
            let instance = bytes.text();
            let fullname = if op & 2 == 0 {
                format!("{instance}.{ty}")
            } else {
                instance
            };
            if op & 4 != 0 {
                index.removed(&fullname);
                continue;
            }
            let mut service = Service {
                fullname,
                service_type: ty.to_owned(),
                host: bytes.text(),
                port: u16::from_be_bytes([bytes.u8().unwrap_or(0), bytes.u8().unwrap_or(0)]),
                ..Service::default()
            };
            for _ in 0..bytes.u8().unwrap_or(0) % 8 {
                let raw = bytes.take(16);
                service.addresses.push(if raw.len() >= 16 {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(raw);
                    IpAddr::V6(Ipv6Addr::from(octets))
                } else {
                    let mut octets = [0u8; 4];
                    for (o, b) in octets.iter_mut().zip(raw) {
                        *o = *b;
                    }
                    IpAddr::V4(Ipv4Addr::from(octets))
                });
            }
            // TXT entries as they are on the wire: length-prefixed
            // `key=value` strings, split at the first `=`.
            for _ in 0..bytes.u8().unwrap_or(0) {
                let len = usize::from(bytes.u8().unwrap_or(0));
                let entry = bytes.take(len);
                let (key, value) = match entry.iter().position(|b| *b == b'=') {
                    Some(at) => (&entry[..at], Some(entry[at + 1..].to_vec())),
                    None => (entry, None),
                };
                service
                    .txt
                    .push((String::from_utf8_lossy(key).into_owned(), value));
            }
            let _ = index.resolved(&service, now);
            if op & 8 != 0 {
                let _ = index.expire(now);
            }
            let devices = index.devices();
            assert!(devices.len() <= limits.max_devices);
            assert!(check_device_set(&devices).is_ok());
            for device in &devices {
                let txt = device
                    .properties
                    .keys()
                    .filter(|k| k.starts_with("MDNS_TXT_"));
                assert!(txt.count() <= limits.max_txt_entries + 1);
                for (key, value) in &device.properties {
                    let max = if key == crate::ADDRESSES {
                        limits.max_addresses * 40
                    } else {
                        crate::MAX_VALUE_CHARS
                    };
                    assert!(value.chars().count() <= max, "{key}");
                }
            }
        }
    }

    struct Bytes<'a>(&'a [u8]);

    impl<'a> Bytes<'a> {
        fn u8(&mut self) -> Option<u8> {
            let (first, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(*first)
        }

        fn take(&mut self, n: usize) -> &'a [u8] {
            let n = n.min(self.0.len());
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }

        fn text(&mut self) -> String {
            let len = usize::from(self.u8().unwrap_or(0));
            String::from_utf8_lossy(self.take(len)).into_owned()
        }
    }
}
