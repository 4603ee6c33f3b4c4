//! A DeviceSet's status as the controller summarizes it: device count,
//! ready brokers, and the `Ready` condition with a reason. Pure.
//!
//! `Ready` is, in order of precedence:
//! - False/`DiscoveryFailing`: some node's handler fails (its message shown);
//! - False/`HandlerUnavailable`: no node has the handler;
//! - False/`BrokersNotReady`: fewer broker pods ready than the devices want;
//! - True/`Ready`: otherwise (including "no devices found yet").

use ambit_crds::conditions::{self, READY};
use ambit_crds::v1alpha1::{DeviceSet, DeviceSetStatus, HandlerState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What the controller counted for a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Devices of the set.
    pub devices: i32,
    /// Broker pods that are Ready.
    pub ready_brokers: i32,
    /// Broker pods the devices want (capacity and nodes permitting).
    pub wanted_brokers: i32,
}

/// The `Ready` condition of `set` given `counts`.
pub fn ready(set: &DeviceSet, counts: Counts) -> Condition {
    let generation = set.metadata.generation;
    let nodes = set
        .status
        .as_ref()
        .map(|s| s.nodes.as_slice())
        .unwrap_or_default();
    let condition = |status, reason: &str, message: String| {
        conditions::condition(READY, status, reason, message, generation)
    };
    if let Some(failing) = nodes.iter().find(|n| n.handler == HandlerState::Failing) {
        let others = nodes
            .iter()
            .filter(|n| n.handler == HandlerState::Failing)
            .count()
            - 1;
        let more = if others > 0 {
            format!(" (and {others} more node(s))")
        } else {
            String::new()
        };
        return condition(
            conditions::FALSE,
            "DiscoveryFailing",
            format!(
                "discovery fails on node {}{more}: {}",
                failing.node, failing.last_error
            ),
        );
    }
    if !nodes.is_empty() && nodes.iter().all(|n| n.handler == HandlerState::Unavailable) {
        return condition(
            conditions::FALSE,
            "HandlerUnavailable",
            format!(
                "no node has a discovery handler named {:?}",
                set.spec.discovery.handler
            ),
        );
    }
    if counts.ready_brokers < counts.wanted_brokers {
        return condition(
            conditions::FALSE,
            "BrokersNotReady",
            format!(
                "{} of {} broker pods ready",
                counts.ready_brokers, counts.wanted_brokers
            ),
        );
    }
    let message = if counts.devices == 0 {
        "no devices found yet".to_owned()
    } else {
        format!(
            "{} device(s), {} broker pod(s) ready",
            counts.devices, counts.ready_brokers
        )
    };
    condition(conditions::TRUE, "Ready", message)
}

/// The status fields the controller owns, or `None` when `set` already has them.
pub fn status(set: &DeviceSet, counts: Counts) -> Option<DeviceSetStatus> {
    let current = set.status.clone().unwrap_or_default();
    let mut conditions = current.conditions.clone();
    let changed = conditions::set_condition(&mut conditions, ready(set, counts));
    let desired = DeviceSetStatus {
        observed_generation: set.metadata.generation,
        conditions,
        devices: Some(counts.devices),
        ready_brokers: Some(counts.ready_brokers),
        nodes: vec![],
    };
    let same = !changed
        && current.observed_generation == desired.observed_generation
        && current.devices == desired.devices
        && current.ready_brokers == desired.ready_brokers;
    (!same).then_some(desired)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(nodes: serde_json::Value) -> DeviceSet {
        serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": "s", "namespace": "p", "generation": 3 },
            "spec": { "discovery": { "handler": "opcua" } },
            "status": { "nodes": nodes },
        }))
        .unwrap()
    }

    #[test]
    fn the_reason_says_what_is_wrong_first() {
        let counts = Counts {
            devices: 2,
            ready_brokers: 1,
            wanted_brokers: 2,
        };
        let failing = set(json!([
            { "node": "a", "handler": "Failing", "devices": 0, "lastError": "connection refused" },
            { "node": "b", "handler": "Available", "devices": 2 },
        ]));
        let c = ready(&failing, counts);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "DiscoveryFailing")
        );
        assert!(
            c.message.contains("node a") && c.message.contains("connection refused"),
            "{}",
            c.message
        );

        let missing = set(json!([{ "node": "a", "handler": "Unavailable", "devices": 0 }]));
        assert_eq!(ready(&missing, counts).reason, "HandlerUnavailable");

        let fine = set(json!([{ "node": "a", "handler": "Available", "devices": 2 }]));
        assert_eq!(ready(&fine, counts).message, "1 of 2 broker pods ready");
        let all = Counts {
            ready_brokers: 2,
            ..counts
        };
        assert_eq!(ready(&fine, all).status, "True");
        assert_eq!(ready(&fine, all).observed_generation, Some(3));
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut s = set(json!([{ "node": "a", "handler": "Available", "devices": 1 }]));
        let counts = Counts {
            devices: 1,
            ready_brokers: 1,
            wanted_brokers: 1,
        };
        let first = status(&s, counts).expect("a first status");
        s.status = Some(DeviceSetStatus {
            nodes: s.status.unwrap().nodes,
            ..first
        });
        assert_eq!(status(&s, counts), None);
        assert!(
            status(
                &s,
                Counts {
                    devices: 2,
                    ..counts
                }
            )
            .is_some()
        );
    }
}
