//! Kubernetes Events for the agent's decisions, on the DeviceSet they concern.
//!
//! Events are API writes too, so they are few: one per change of a set's
//! handler state on this node, one per complete set that brings new devices,
//! one per grace expiry — never one per device.

use ambit_crds::v1alpha1::{DeviceSet, HandlerState};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::debug;

use crate::metrics::Metrics;
use crate::recording::tracker::SetKey;

/// How many ids an Event names before it says "and N more".
const IDS_SHOWN: usize = 5;

/// Publishes Events in the background; publishing never blocks the agent.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    node: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events reported as the agent (`ambit-agent`) on `node`.
    pub fn new(client: kube::Client, node: &str, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: ambit_crds::contract::AGENT.into(),
            instance: Some(node.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            node: node.to_owned(),
            metrics,
        }
    }

    /// New devices appeared in a complete set.
    pub fn devices_appeared(&self, set: &SetKey, ids: &[String]) {
        let note = format!(
            "node {} sees {} new device(s): {}",
            self.node,
            ids.len(),
            list(ids)
        );
        self.publish(set, EventType::Normal, "DevicesFound", "Discover", note);
    }

    /// Devices went after their grace period.
    pub fn devices_expired(&self, set: &SetKey, ids: &[String]) {
        let note = format!(
            "node {} no longer sees {} device(s) after their grace period: {}",
            self.node,
            ids.len(),
            list(ids)
        );
        self.publish(set, EventType::Normal, "DevicesLost", "Discover", note);
    }

    /// The handler's state on this node changed.
    pub fn handler_state(&self, set: &SetKey, state: HandlerState, error: &str) {
        let (kind, reason, note) = match state {
            HandlerState::Available => (
                EventType::Normal,
                "DiscoveryRunning",
                format!("discovery runs on node {}", self.node),
            ),
            HandlerState::Failing => (
                EventType::Warning,
                "DiscoveryFailed",
                format!("discovery fails on node {}: {error}", self.node),
            ),
            HandlerState::Unavailable => (
                EventType::Warning,
                "HandlerUnavailable",
                format!("node {}: {error}", self.node),
            ),
        };
        self.publish(set, kind, reason, "Discover", note);
    }

    fn publish(&self, set: &SetKey, type_: EventType, reason: &str, action: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some(DeviceSet::api_version(&()).into_owned()),
            kind: Some(DeviceSet::kind(&()).into_owned()),
            name: Some(set.name.clone()),
            namespace: Some(set.namespace.clone()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            metrics.api_write("create", "events");
            if let Err(error) = recorder.publish(&event, &reference).await {
                metrics.api_error("publish_event");
                debug!(%error, "failed to publish an Event");
            }
        });
    }
}

fn list(ids: &[String]) -> String {
    let mut shown = ids
        .iter()
        .take(IDS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > IDS_SHOWN {
        shown.push_str(&format!(" and {} more", ids.len() - IDS_SHOWN));
    }
    shown
}
