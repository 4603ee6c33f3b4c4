//! Pure decisions about nodes and devices that go away:
//! - which node events matter to Devices at all (a Node's status is
//!   rewritten by every heartbeat; only its health, its hostname label and
//!   its existence are read here);
//! - which node entries of a Device to remove (node deleted, or NotReady
//!   for longer than the toleration);
//! - the Device's `Available` condition, and when a Device no node sees any
//!   more is deleted (after its grace period, counted from the condition's
//!   `lastTransitionTime`, so a controller restart does not reset it).

use std::collections::HashMap;
use std::time::Duration;

use ambit_crds::conditions::{self, AVAILABLE};
use ambit_crds::contract;
use ambit_crds::v1alpha1::{Device, DeviceSet};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// A node's health as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Ready (or its state is not known yet).
    Ready,
    /// NotReady (or Unknown) since this time.
    NotReadySince(Timestamp),
}

/// The health of `node`.
pub fn health(node: &Node) -> NodeHealth {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status != "True" => NodeHealth::NotReadySince(
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        ),
        _ => NodeHealth::Ready,
    }
}

/// What the Device reconciler reads of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeView {
    health: NodeHealth,
    hostname: Option<String>,
}

/// Remembers what the Device reconciler last read of each Node, to tell the
/// node events that change it from heartbeats.
#[derive(Debug, Default)]
pub struct NodeChanges {
    seen: HashMap<String, NodeView>,
}

impl NodeChanges {
    /// Whether this event of `node` changes what Devices read of it: it
    /// appeared, went (`present`: the cache still holds it), or its health
    /// or hostname label changed. A node that went is forgotten.
    pub fn changed(&mut self, node: &Node, present: bool) -> bool {
        let name = node.name_any();
        if !present {
            self.seen.remove(&name);
            return true;
        }
        let view = NodeView {
            health: health(node),
            hostname: node.labels().get(ambit_dra::HOSTNAME_LABEL).cloned(),
        };
        self.seen.insert(name, view.clone()) != Some(view)
    }
}

/// Whether a node's entries still count, from its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The node is Ready (or not known to be otherwise).
    Counts,
    /// NotReady, but still within the toleration: it counts for this long.
    CountsFor(Duration),
    /// Deleted, or NotReady for longer than the toleration.
    Stale,
}

/// The standing of a node of health `health` (`None`: no such node).
pub fn standing(health: Option<NodeHealth>, toleration: Duration, now: Timestamp) -> Standing {
    match health {
        None => Standing::Stale,
        Some(NodeHealth::Ready) => Standing::Counts,
        Some(NodeHealth::NotReadySince(since)) => {
            let elapsed = now.duration_since(since).unsigned_abs();
            if elapsed >= toleration {
                Standing::Stale
            } else {
                Standing::CountsFor(toleration - elapsed)
            }
        }
    }
}

/// The entries of `device` to remove, and when to look again for NotReady
/// nodes whose toleration is not over yet. `node` gives the health of a
/// node by name, from the complete, synced cache of nodes (`None`: no such
/// node).
pub fn stale_entries(
    device: &Device,
    node: impl Fn(&str) -> Option<NodeHealth>,
    toleration: Duration,
    now: Timestamp,
) -> (Vec<String>, Option<Duration>) {
    let mut remove = vec![];
    let mut recheck: Option<Duration> = None;
    for entry in device.status.iter().flat_map(|s| &s.nodes) {
        match standing(node(&entry.node), toleration, now) {
            Standing::Stale => remove.push(entry.node.clone()),
            Standing::Counts => {}
            Standing::CountsFor(left) => {
                recheck = Some(recheck.map_or(left, |r| r.min(left)));
            }
        }
    }
    (remove, recheck)
}

/// The grace period of `device` (its set's, or the default by shared-ness).
pub fn grace(device: &Device, set: Option<&DeviceSet>) -> Duration {
    set.and_then(|s| s.spec.discovery.grace_period_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .unwrap_or_else(|| contract::default_grace(device.spec.shared))
}

/// The `Available` condition `device` should have, given `nodes` entries left.
pub fn available(device: &Device, nodes: usize) -> Condition {
    available_at(device.metadata.generation, nodes)
}

/// The `Available` condition of a Device at `generation` that `nodes` nodes
/// see (the fold's, written with the entries it counts).
pub fn available_at(generation: Option<i64>, nodes: usize) -> Condition {
    if nodes > 0 {
        conditions::condition(
            AVAILABLE,
            conditions::TRUE,
            "Seen",
            format!("seen by {nodes} node(s)"),
            generation,
        )
    } else {
        conditions::condition(
            AVAILABLE,
            conditions::FALSE,
            "NotSeen",
            "no node sees the device",
            generation,
        )
    }
}

/// What to do about a Device no node sees.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// Some node sees it, or it is too young to judge.
    Keep,
    /// Delete it after this long, unless a node sees it again.
    DeleteAfter(Duration),
    /// Its grace period is over: delete it.
    Delete,
}

/// The fate of `device` whose current `Available` condition is `current`.
pub fn fate(current: Option<&Condition>, nodes: usize, grace: Duration, now: Timestamp) -> Fate {
    match current {
        Some(c) if nodes == 0 && c.status == conditions::FALSE => {
            let gone_for = now.duration_since(c.last_transition_time.0).unsigned_abs();
            if gone_for >= grace {
                Fate::Delete
            } else {
                Fate::DeleteAfter(grace - gone_for)
            }
        }
        _ => Fate::Keep,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    fn device(nodes: &[&str]) -> Device {
        let entries: Vec<_> = nodes
            .iter()
            .map(|n| json!({ "node": n, "since": "2026-01-01T00:00:00Z" }))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
            "metadata": { "name": "d", "namespace": "p" },
            "spec": { "deviceSet": "s", "id": "x", "shared": true, "capacity": 1 },
            "status": { "nodes": entries },
        }))
        .unwrap()
    }

    #[test]
    fn entries_of_gone_nodes_go_and_not_ready_ones_after_the_toleration() {
        let now = Timestamp::from_second(1_000).unwrap();
        let nodes = BTreeMap::from([
            ("ready".to_owned(), NodeHealth::Ready),
            (
                "flaky".to_owned(),
                NodeHealth::NotReadySince(Timestamp::from_second(990).unwrap()),
            ),
            (
                "dead".to_owned(),
                NodeHealth::NotReadySince(Timestamp::from_second(100).unwrap()),
            ),
        ]);
        let (remove, recheck) = stale_entries(
            &device(&["ready", "flaky", "dead", "deleted"]),
            |n| nodes.get(n).copied(),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(remove, ["dead", "deleted"]);
        assert_eq!(recheck, Some(Duration::from_secs(50)));
    }

    fn node(ready: &str, since: i64, hostname: &str, heartbeat: i64) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1", "labels": { ambit_dra::HOSTNAME_LABEL: hostname } },
            "status": { "conditions": [{
                "type": "Ready", "status": ready,
                "lastTransitionTime": Time(Timestamp::from_second(since).unwrap()),
                "lastHeartbeatTime": Time(Timestamp::from_second(heartbeat).unwrap()),
            }] },
        }))
        .unwrap()
    }

    #[test]
    fn only_node_events_that_change_what_devices_read_count() {
        let mut changes = NodeChanges::default();
        assert!(changes.changed(&node("True", 10, "h1", 10), true), "new");
        assert!(
            !changes.changed(&node("True", 10, "h1", 20), true),
            "a heartbeat"
        );
        assert!(
            changes.changed(&node("False", 30, "h1", 30), true),
            "NotReady"
        );
        assert!(
            !changes.changed(&node("False", 30, "h1", 40), true),
            "still NotReady since 30"
        );
        assert!(
            changes.changed(&node("False", 30, "h2", 50), true),
            "renamed"
        );
        assert!(changes.changed(&node("False", 30, "h2", 50), false), "gone");
        assert!(changes.seen.is_empty(), "a gone node is forgotten");
        assert!(changes.changed(&node("False", 30, "h2", 60), true), "back");
    }

    #[test]
    fn an_unseen_device_is_deleted_after_its_grace() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut unseen = available(&device(&[]), 0);
        unseen.last_transition_time = Time(Timestamp::from_second(990).unwrap());
        assert_eq!(
            fate(Some(&unseen), 0, Duration::from_secs(30), now),
            Fate::DeleteAfter(Duration::from_secs(20))
        );
        assert_eq!(
            fate(Some(&unseen), 0, Duration::from_secs(10), now),
            Fate::Delete
        );
        assert_eq!(
            fate(Some(&unseen), 1, Duration::from_secs(10), now),
            Fate::Keep
        );
        assert_eq!(fate(None, 0, Duration::from_secs(10), now), Fate::Keep);
    }
}
