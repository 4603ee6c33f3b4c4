//! What one discovery knows about the cameras around it, fed by
//! WS-Discovery messages and probe cycles; pure, so it is tested without
//! a network.
//!
//! ```text
//!   ProbeMatch / Hello ──► upsert (seen this cycle) ──► endpoint changed? re-interrogate
//!   Bye ─────────────────► remove at once
//!   end of a probe cycle ► not seen: missed += 1; missed == missedProbes ──► remove
//!   devices() ───────────► interrogated cameras that pass the filters, sorted by id
//! ```
//!
//! Repeats are dropped twice over: a MessageID already seen (SOAP-over-UDP
//! retransmissions, a device answering once per interface) is ignored, and
//! a message whose AppSequence is older than the last one from that device
//! (a Hello overtaken by a Bye) is ignored.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::IpAddr;

use ambit_discovery::Device;

use crate::details::Config;
use crate::device::{self, Facts};
use crate::interrogate::Info;
use crate::wsd::{AppSequence, Body, Endpoint, Message};

/// How many MessageIDs are remembered for de-duplication.
const REMEMBERED_IDS: usize = 4096;
/// How many cameras one discovery tracks at most (a flood of forged
/// Hellos cannot grow memory without bound).
pub(crate) const MAX_CAMERAS: usize = 4096;

#[derive(Debug)]
struct Camera {
    endpoint: Endpoint,
    source: IpAddr,
    sequence: Option<AppSequence>,
    last_cycle: u64,
    missed: u32,
    /// The endpoint (XAddrs, metadata version) the info was asked for.
    asked_for: Option<(Vec<String>, u64)>,
    /// The cycle of the last interrogation.
    asked_cycle: u64,
    /// The last interrogation failed: ask again next cycle.
    failed: bool,
    info: Option<Info>,
    in_flight: bool,
}

/// A camera to interrogate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub address: String,
    pub xaddrs: Vec<String>,
    pub metadata_version: u64,
}

/// The state of one discovery.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    cameras: BTreeMap<String, Camera>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Last AppSequence of devices that said Bye.
    gone: BTreeMap<String, AppSequence>,
    /// MessageIDs of our own recent Probes.
    probes: VecDeque<String>,
    cycle: u64,
}

impl Tracker {
    /// Starts a probe cycle whose Probe has this MessageID.
    pub(crate) fn start_cycle(&mut self, probe_id: String) {
        self.cycle += 1;
        self.probes.push_back(probe_id);
        if self.probes.len() > 4 {
            self.probes.pop_front();
        }
    }

    /// Ends the current cycle: cameras not heard in it miss once; those
    /// that missed `limit` cycles in a row go. Whether anything went.
    pub(crate) fn end_cycle(&mut self, limit: u32) -> bool {
        let cycle = self.cycle;
        let before = self.cameras.len();
        self.cameras.retain(|_, camera| {
            if camera.last_cycle >= cycle {
                camera.missed = 0;
                return true;
            }
            camera.missed += 1;
            camera.missed < limit
        });
        before != self.cameras.len()
    }

    /// Takes in a message from `from`. Whether the known set changed.
    pub(crate) fn observe(&mut self, message: Message, from: IpAddr) -> bool {
        if let Some(id) = &message.message_id
            && !self.remember(id)
        {
            return false;
        }
        match message.body {
            Body::ProbeMatches(endpoints) => {
                let ours = message
                    .relates_to
                    .as_ref()
                    .is_some_and(|r| self.probes.contains(r));
                if !ours {
                    return false;
                }
                let mut changed = false;
                for endpoint in endpoints {
                    changed |= self.upsert(endpoint, from, message.app_sequence);
                }
                changed
            }
            Body::Hello(endpoint) => self.upsert(endpoint, from, message.app_sequence),
            Body::Bye(endpoint) => {
                let address = endpoint.address;
                if let Some(camera) = self.cameras.get(&address)
                    && is_stale(camera.sequence, message.app_sequence)
                {
                    return false;
                }
                if let Some(sequence) = message.app_sequence {
                    if self.gone.len() >= MAX_CAMERAS {
                        self.gone.pop_first();
                    }
                    self.gone.insert(address.clone(), sequence);
                }
                self.cameras.remove(&address).is_some()
            }
            Body::Other => false,
        }
    }

    /// Whether `id` is new (and remembers it).
    fn remember(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.seen_order.len() >= REMEMBERED_IDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(id.to_owned());
        self.seen_order.push_back(id.to_owned());
        true
    }

    fn upsert(&mut self, endpoint: Endpoint, from: IpAddr, sequence: Option<AppSequence>) -> bool {
        let cycle = self.cycle;
        if let Some(camera) = self.cameras.get_mut(&endpoint.address) {
            if is_stale(camera.sequence, sequence) {
                return false;
            }
            camera.last_cycle = cycle;
            camera.missed = 0;
            camera.sequence = sequence.or(camera.sequence);
            camera.source = from;
            // Some devices answer a Probe with an empty XAddrs; keep what we know.
            if endpoint.xaddrs.is_empty() {
                return false;
            }
            let changed = camera.endpoint != endpoint;
            camera.endpoint = endpoint;
            return changed;
        }
        if let Some(last) = self.gone.get(&endpoint.address)
            && before_bye(*last, sequence)
        {
            return false;
        }
        if self.cameras.len() >= MAX_CAMERAS {
            return false;
        }
        self.gone.remove(&endpoint.address);
        self.cameras.insert(
            endpoint.address.clone(),
            Camera {
                endpoint,
                source: from,
                sequence,
                last_cycle: cycle,
                missed: 0,
                asked_for: None,
                asked_cycle: 0,
                failed: false,
                info: None,
                in_flight: false,
            },
        );
        true
    }

    /// Cameras that pass the discovery filters and need (re-)interrogating:
    /// new, endpoint changed, or the last attempt failed (retried once per
    /// cycle). At most `limit`; marks them in flight.
    pub(crate) fn jobs(&mut self, config: &Config, limit: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (address, camera) in &mut self.cameras {
            if jobs.len() >= limit {
                break;
            }
            if camera.in_flight || !passes_discovery(config, address, camera) {
                continue;
            }
            let current = (
                camera.endpoint.xaddrs.clone(),
                camera.endpoint.metadata_version,
            );
            let retry_due = camera.failed && camera.asked_cycle < self.cycle;
            if camera.asked_for.as_ref() == Some(&current) && !retry_due {
                continue;
            }
            camera.in_flight = true;
            camera.asked_cycle = self.cycle;
            jobs.push(Job {
                address: address.clone(),
                xaddrs: current.0,
                metadata_version: current.1,
            });
        }
        jobs
    }

    /// Takes in an interrogation's result. Whether the set changed.
    pub(crate) fn interrogated(&mut self, job: Job, info: Info) -> bool {
        let Some(camera) = self.cameras.get_mut(&job.address) else {
            return false;
        };
        camera.in_flight = false;
        camera.asked_for = Some((job.xaddrs, job.metadata_version));
        camera.failed = info.error.is_some();
        // A failure after a success keeps what the camera told before.
        let described = |i: &Info| i.error.is_none() && i.device.is_some();
        if info.device.is_none() && camera.info.as_ref().is_some_and(described) {
            return false;
        }
        let changed = camera.info.as_ref() != Some(&info);
        camera.info = Some(info);
        changed
    }

    /// Whether an interrogation is running.
    pub(crate) fn busy(&self) -> bool {
        self.cameras.values().any(|c| c.in_flight)
    }

    /// The complete device set: interrogated cameras passing every filter.
    pub(crate) fn devices(&self, config: &Config) -> Vec<Device> {
        self.cameras
            .iter()
            .filter(|(address, camera)| passes_discovery(config, address, camera))
            .filter_map(|(address, camera)| {
                let info = camera.info.as_ref()?;
                if !config.filters.passes_mac(info.mac.as_deref()) {
                    return None;
                }
                Some(device::device(&Facts {
                    address,
                    ip: Some(camera_ip(camera, info)),
                    types: &camera.endpoint.types,
                    scopes: &camera.endpoint.scopes,
                    xaddrs: &camera.endpoint.xaddrs,
                    info,
                }))
            })
            .collect()
    }
}

/// Whether `new` is older than `last` (WS-Discovery AppSequence order).
///
/// Only messages of the same run (InstanceId) are ordered: a different
/// InstanceId is a new run even when lower, since devices without
/// persistent storage (and the WSDiscovery package) pick it at random.
fn is_stale(last: Option<AppSequence>, new: Option<AppSequence>) -> bool {
    match (last, new) {
        (Some(last), Some(new)) => {
            new.instance_id == last.instance_id && new.message_number < last.message_number
        }
        _ => false,
    }
}

/// Whether `new` was sent before (or is) the Bye `bye`.
fn before_bye(bye: AppSequence, new: Option<AppSequence>) -> bool {
    new.is_some_and(|new| {
        new.instance_id == bye.instance_id && new.message_number <= bye.message_number
    })
}

fn passes_discovery(config: &Config, address: &str, camera: &Camera) -> bool {
    let ip = xaddr_ip(&camera.endpoint.xaddrs).unwrap_or(camera.source);
    config
        .filters
        .passes_discovery(&camera.endpoint.scopes, Some(ip), device::uuid(address))
}

/// The IP in the first XAddr that has one.
fn xaddr_ip(xaddrs: &[String]) -> Option<IpAddr> {
    xaddrs.iter().find_map(|x| {
        let uri: http::Uri = x.parse().ok()?;
        uri.host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    })
}

fn camera_ip(camera: &Camera, info: &Info) -> IpAddr {
    info.xaddr
        .as_ref()
        .and_then(|x| xaddr_ip(std::slice::from_ref(x)))
        .or_else(|| xaddr_ip(&camera.endpoint.xaddrs))
        .unwrap_or(camera.source)
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
