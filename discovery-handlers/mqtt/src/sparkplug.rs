//! Sparkplug B state of one broker: which edge nodes and devices are born,
//! from their birth and death certificates (`spBv1.0/<group>/<type>/<node>[/<device>]`).
//!
//! ```text
//!   NBIRTH ─► node born (bdSeq, metrics); its old devices dropped (they rebirth)
//!   DBIRTH ─► device born (metrics); before its node's NBIRTH: born, node's bdSeq unknown
//!   DDEATH ─► device gone
//!   NDEATH ─► node and its devices gone — only when its bdSeq matches the NBIRTH's
//!             (a stale death of an earlier session never removes a reborn node)
//! ```

use std::collections::BTreeMap;

use prost::Message;

use crate::details::{Limits, Sparkplug};
use crate::metrics::{Metrics, describe};
use crate::proto::Payload;

/// The Sparkplug B topic namespace.
pub const NAMESPACE: &str = "spBv1.0";

/// Property: the group id.
pub const GROUP: &str = "SPARKPLUG_GROUP";
/// Property: the edge node id.
pub const EDGE_NODE: &str = "SPARKPLUG_EDGE_NODE";
/// Property: the device id (absent for an edge node).
pub const DEVICE: &str = "SPARKPLUG_DEVICE";
/// Property: `node` or `device`.
pub const KIND: &str = "SPARKPLUG_KIND";

#[derive(Debug, Default)]
struct Node {
    /// The NBIRTH's bdSeq; `None` until an NBIRTH with one was seen.
    bd_seq: Option<u64>,
    /// The NBIRTH's metrics; `None` while only DBIRTHs were seen.
    metrics: Option<Metrics>,
    devices: BTreeMap<String, Metrics>,
}

/// Why a message was not applied (counted, logged by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a Sparkplug birth/death topic.
    Topic,
    /// Larger than `maxPayloadBytes`.
    Oversize,
    /// Not a Sparkplug B payload.
    Payload,
    /// Filtered out by groups/edgeNodes/devices.
    Filtered,
    /// A new device while `maxDevices` are reported.
    Limit,
    /// An NDEATH whose bdSeq is not the current NBIRTH's.
    StaleDeath,
}

/// What applying one message did.
pub type Outcome = Result<bool, Ignored>;

/// The Sparkplug state of one broker.
#[derive(Debug)]
pub struct State {
    filter: Sparkplug,
    limits: Limits,
    nodes: BTreeMap<(String, String), Node>,
}

impl State {
    /// An empty state.
    pub fn new(filter: Sparkplug, limits: Limits) -> Self {
        Self {
            filter,
            limits,
            nodes: BTreeMap::new(),
        }
    }

    /// The subscriptions: births and deaths of the groups asked for (one
    /// filter per literal group, `+` when any group is a glob).
    pub fn subscriptions(&self) -> Vec<String> {
        let literal = self
            .filter
            .groups
            .iter()
            .all(|g| !g.as_str().contains(['*', '?', '[']));
        let groups: Vec<&str> = if literal {
            self.filter.groups.iter().map(|g| g.as_str()).collect()
        } else {
            vec!["+"]
        };
        let mut topics = Vec::new();
        for group in groups {
            for kind in ["NBIRTH", "NDEATH", "DBIRTH", "DDEATH"] {
                topics.push(format!("{NAMESPACE}/{group}/{kind}/#"));
            }
        }
        topics
    }

    /// Applies one message; `Ok(true)` when the set of devices changed.
    pub fn apply(&mut self, topic: &str, payload: &[u8]) -> Outcome {
        let mut parts = topic.split('/');
        let (Some(NAMESPACE), Some(group), Some(kind), Some(node)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Ignored::Topic);
        };
        let device = parts.next();
        if parts.next().is_some() || [group, node].iter().any(|s| s.is_empty()) {
            return Err(Ignored::Topic);
        }
        if device.is_some_and(str::is_empty) {
            return Err(Ignored::Topic);
        }
        let matches = |globs: &[glob::Pattern], id: &str| globs.iter().any(|g| g.matches(id));
        if !matches(&self.filter.groups, group) || !matches(&self.filter.edge_nodes, node) {
            return Err(Ignored::Filtered);
        }
        if payload.len() > self.limits.max_payload_bytes {
            return Err(Ignored::Oversize);
        }
        let key = (group.to_owned(), node.to_owned());
        match (kind, device) {
            ("NBIRTH", None) => {
                let payload = Payload::decode(payload).map_err(|_| Ignored::Payload)?;
                let bd_seq = bd_seq(&payload);
                let metrics = describe(&payload, self.limits.max_metrics);
                let before = self
                    .nodes
                    .get(&key)
                    .map(|n| (n.metrics.clone(), n.devices.len()));
                let node = self.nodes.entry(key).or_default();
                node.bd_seq = bd_seq;
                node.metrics = Some(metrics);
                node.devices.clear();
                let visible = self.filter.include_edge_nodes;
                Ok(match before {
                    None => visible,
                    Some((old, devices)) => devices > 0 || (visible && old != node.metrics),
                })
            }
            ("NDEATH", None) => {
                let payload = Payload::decode(payload).map_err(|_| Ignored::Payload)?;
                let Some(current) = self.nodes.get(&key) else {
                    return Ok(false);
                };
                if current.bd_seq.is_some() && bd_seq(&payload) != current.bd_seq {
                    return Err(Ignored::StaleDeath);
                }
                let node = self.nodes.remove(&key).unwrap_or_default();
                Ok(!node.devices.is_empty()
                    || (self.filter.include_edge_nodes && node.metrics.is_some()))
            }
            ("DBIRTH", Some(device)) => {
                if !matches(&self.filter.devices, device) {
                    return Err(Ignored::Filtered);
                }
                let payload = Payload::decode(payload).map_err(|_| Ignored::Payload)?;
                let metrics = describe(&payload, self.limits.max_metrics);
                let known = self
                    .nodes
                    .get(&key)
                    .is_some_and(|n| n.devices.contains_key(device));
                if !known && self.count() >= self.limits.max_devices {
                    return Err(Ignored::Limit);
                }
                let node = self.nodes.entry(key).or_default();
                let old = node.devices.insert(device.to_owned(), metrics);
                Ok(old.as_ref() != node.devices.get(device))
            }
            ("DDEATH", Some(device)) => {
                if !matches(&self.filter.devices, device) {
                    return Err(Ignored::Filtered);
                }
                Payload::decode(payload).map_err(|_| Ignored::Payload)?;
                let Some(node) = self.nodes.get_mut(&key) else {
                    return Ok(false);
                };
                let removed = node.devices.remove(device).is_some();
                if node.devices.is_empty() && node.metrics.is_none() {
                    self.nodes.remove(&key);
                }
                Ok(removed)
            }
            _ => Err(Ignored::Topic),
        }
    }

    /// Forgets everything (the connection to the broker was lost);
    /// whether anything was reported.
    pub fn reset(&mut self) -> bool {
        let had = self.count() > 0;
        self.nodes.clear();
        had
    }

    fn count(&self) -> usize {
        self.nodes
            .values()
            .map(|n| {
                n.devices.len() + usize::from(self.filter.include_edge_nodes && n.metrics.is_some())
            })
            .sum()
    }

    /// The devices born now, by id (at most `maxDevices`).
    pub fn devices(&self) -> Vec<ambit_discovery::Device> {
        let mut out = Vec::new();
        for ((group, node_id), node) in &self.nodes {
            if let (true, Some(metrics)) = (self.filter.include_edge_nodes, &node.metrics) {
                let mut device = ambit_discovery::Device::new(format!("spb://{group}/{node_id}"));
                device.shared = true;
                device.properties.insert(GROUP.into(), group.clone());
                device.properties.insert(EDGE_NODE.into(), node_id.clone());
                device.properties.insert(KIND.into(), "node".into());
                crate::metrics::properties(metrics, &mut device.properties);
                out.push(device);
            }
            for (name, metrics) in &node.devices {
                let mut device =
                    ambit_discovery::Device::new(format!("spb://{group}/{node_id}/{name}"));
                device.shared = true;
                device.properties.insert(GROUP.into(), group.clone());
                device.properties.insert(EDGE_NODE.into(), node_id.clone());
                device.properties.insert(DEVICE.into(), name.clone());
                device.properties.insert(KIND.into(), "device".into());
                crate::metrics::properties(metrics, &mut device.properties);
                out.push(device);
            }
        }
        out.truncate(self.limits.max_devices);
        out
    }
}

/// The `bdSeq` metric of a birth or death certificate.
fn bd_seq(payload: &Payload) -> Option<u64> {
    use crate::proto::payload::metric::Value;
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(Value::LongValue(v)) => Some(v),
            Some(Value::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}
