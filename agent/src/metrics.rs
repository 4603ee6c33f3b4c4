//! The agent's Prometheus metrics, registered on a registry the caller owns.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ambit_agent_devices` | gauge | namespace, device_set, node |
//! | `ambit_agent_discovery_latency_seconds` | histogram | handler |
//! | `ambit_agent_discovery_errors` (`_total`) | counter | handler, category |
//! | `ambit_agent_api_writes` (`_total`) | counter | verb, resource |
//! | `ambit_agent_api_errors` (`_total`) | counter | category |
//! | `ambit_agent_handler_connected` | gauge | handler, kind |
//! | `ambit_agent_device_presence_changes` (`_total`) | counter | namespace, device_set, node, change |
//! | `ambit_agent_slots` | gauge | namespace, device_set, node, state (`free`, `used`) |
//! | `ambit_agent_slot_allocation_errors` (`_total`) | counter | reason |
//! | `ambit_agent_slots_reclaimed` (`_total`) | counter | namespace, device_set, node |
//! | `ambit_agent_device_plugin_registrations` (`_total`) | counter | result (`ok`, `failed`) |

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::recording::tracker::SetKey;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabels {
    namespace: String,
    device_set: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PresenceLabels {
    namespace: String,
    device_set: String,
    node: String,
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    namespace: String,
    device_set: String,
    node: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    handler: String,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    verb: &'static str,
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    handler: String,
    kind: &'static str,
}

/// Handles to every metric of the agent. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    devices: Family<SetLabels, Gauge>,
    discovery_latency: Family<HandlerLabels, Histogram>,
    discovery_errors: Family<ErrorLabels, Counter>,
    api_writes: Family<WriteLabels, Counter>,
    api_errors: Family<CategoryLabels, Counter>,
    handler_connected: Family<ConnectionLabels, Gauge>,
    presence_changes: Family<PresenceLabels, Counter>,
    slots: Family<SlotLabels, Gauge>,
    slot_allocation_errors: Family<ReasonLabels, Counter>,
    slots_reclaimed: Family<SetLabels, Counter>,
    device_plugin_registrations: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Registers the agent's metrics (prefix `ambit_agent`) on `registry`.
    pub fn register(registry: &mut Registry, node: &str) -> Self {
        let registry = registry.sub_registry_with_prefix("ambit_agent");
        let inner = Inner {
            node: node.to_owned(),
            devices: Family::default(),
            discovery_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            discovery_errors: Family::default(),
            api_writes: Family::default(),
            api_errors: Family::default(),
            handler_connected: Family::default(),
            presence_changes: Family::default(),
            slots: Family::default(),
            slot_allocation_errors: Family::default(),
            slots_reclaimed: Family::default(),
            device_plugin_registrations: Family::default(),
        };
        registry.register(
            "devices",
            "Devices this node sees, per DeviceSet",
            inner.devices.clone(),
        );
        registry.register(
            "discovery_latency_seconds",
            "Time from starting discovery to the handler's first complete device set",
            inner.discovery_latency.clone(),
        );
        registry.register(
            "discovery_errors",
            "Discovery failures, by handler and category",
            inner.discovery_errors.clone(),
        );
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API, by verb and resource",
            inner.api_writes.clone(),
        );
        registry.register(
            "api_errors",
            "Failed Kubernetes API writes, by category",
            inner.api_errors.clone(),
        );
        registry.register(
            "handler_connected",
            "Whether a discovery handler is available (1) or not (0), by handler and kind",
            inner.handler_connected.clone(),
        );
        registry.register(
            "device_presence_changes",
            "Known devices that left the handler's reports (vanished) or came back to them (returned), per DeviceSet: the raw flapping that grace periods hide",
            inner.presence_changes.clone(),
        );
        registry.register(
            "slots",
            "Slots of the devices this node offers, per DeviceSet: used (by a pod on any node) or free",
            inner.slots.clone(),
        );
        registry.register(
            "slot_allocation_errors",
            "Device plugin Allocate calls refused, by reason",
            inner.slot_allocation_errors.clone(),
        );
        registry.register(
            "slots_reclaimed",
            "Slots this node released because no pod holds them any more, per DeviceSet",
            inner.slots_reclaimed.clone(),
        );
        registry.register(
            "device_plugin_registrations",
            "Device plugin registrations with the kubelet, by result",
            inner.device_plugin_registrations.clone(),
        );
        Self {
            inner: Arc::new(inner),
        }
    }

    fn set_labels(&self, set: &SetKey) -> SetLabels {
        SetLabels {
            namespace: set.namespace.clone(),
            device_set: set.name.clone(),
            node: self.inner.node.clone(),
        }
    }

    /// Sets how many devices of `set` this node sees.
    pub fn set_devices(&self, set: &SetKey, devices: i64) {
        self.inner
            .devices
            .get_or_create(&self.set_labels(set))
            .set(devices);
    }

    /// Drops the series of a set that is gone.
    pub fn remove_set(&self, set: &SetKey) {
        self.inner.devices.remove(&self.set_labels(set));
    }

    /// Records how long `handler` took to report its first complete set.
    pub fn discovery_latency(&self, handler: &str, seconds: f64) {
        self.inner
            .discovery_latency
            .get_or_create(&HandlerLabels {
                handler: handler.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts devices of `set` that vanished from the handler's report and
    /// that came back to it (within their grace period).
    pub fn presence_changes(&self, set: &SetKey, vanished: u64, returned: u64) {
        for (change, n) in [("vanished", vanished), ("returned", returned)] {
            let labels = PresenceLabels {
                namespace: set.namespace.clone(),
                device_set: set.name.clone(),
                node: self.inner.node.clone(),
                change,
            };
            // Create both series at once, so a rate over them starts at 0.
            self.inner.presence_changes.get_or_create(&labels).inc_by(n);
        }
    }

    /// Sets a DeviceSet's used and free slots, as this node sees them.
    pub fn set_slots(&self, namespace: &str, set: &str, used: u64, free: u64) {
        for (state, n) in [("used", used), ("free", free)] {
            let labels = self.slot_labels(namespace, set, state);
            self.inner
                .slots
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drops the slot series of a DeviceSet this node offers nothing of.
    pub fn remove_slots(&self, namespace: &str, set: &str) {
        for state in ["used", "free"] {
            self.inner
                .slots
                .remove(&self.slot_labels(namespace, set, state));
        }
    }

    fn slot_labels(&self, namespace: &str, set: &str, state: &'static str) -> SlotLabels {
        SlotLabels {
            namespace: namespace.to_owned(),
            device_set: set.to_owned(),
            node: self.inner.node.clone(),
            state,
        }
    }

    /// Counts an Allocate the device plugins refused.
    pub fn slot_allocation_error(&self, reason: &'static str) {
        self.inner
            .slot_allocation_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a slot released because no pod holds it.
    pub fn slot_reclaimed(&self, namespace: &str, set: &str) {
        self.inner
            .slots_reclaimed
            .get_or_create(&SetLabels {
                namespace: namespace.to_owned(),
                device_set: set.to_owned(),
                node: self.inner.node.clone(),
            })
            .inc();
    }

    /// Counts a registration with the kubelet (`ok` or `failed`).
    pub fn device_plugin_registration(&self, result: &'static str) {
        self.inner
            .device_plugin_registrations
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a discovery failure.
    pub fn discovery_error(&self, handler: &str, category: &'static str) {
        self.inner
            .discovery_errors
            .get_or_create(&ErrorLabels {
                handler: handler.to_owned(),
                category,
            })
            .inc();
    }

    /// Counts an API write.
    pub fn api_write(&self, verb: &'static str, resource: &'static str) {
        self.inner
            .api_writes
            .get_or_create(&WriteLabels { verb, resource })
            .inc();
    }

    /// Counts a failed API write.
    pub fn api_error(&self, category: &'static str) {
        self.inner
            .api_errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    /// Records whether `handler` (`embedded` or `external`) is available.
    pub fn handler_connected(&self, handler: &str, kind: &'static str, connected: bool) {
        self.inner
            .handler_connected
            .get_or_create(&ConnectionLabels {
                handler: handler.to_owned(),
                kind,
            })
            .set(i64::from(connected));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn every_metric_is_registered_and_encoded() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, "edge-1");
        let set = SetKey {
            namespace: "ns".into(),
            name: "cams".into(),
        };
        metrics.set_devices(&set, 3);
        metrics.discovery_latency("debug-echo", 0.01);
        metrics.discovery_error("debug-echo", "failed");
        metrics.api_write("apply", "devices");
        metrics.api_error("apply_device");
        metrics.handler_connected("debug-echo", "embedded", true);
        metrics.presence_changes(&set, 2, 1);
        metrics.set_slots("ns", "cams", 1, 3);
        metrics.slot_allocation_error("held_by_other_node");
        metrics.slot_reclaimed("ns", "cams");
        metrics.device_plugin_registration("ok");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"ambit_agent_devices{namespace="ns",device_set="cams",node="edge-1"} 3"#,
            r#"ambit_agent_discovery_latency_seconds_count{handler="debug-echo"} 1"#,
            r#"ambit_agent_discovery_errors_total{handler="debug-echo",category="failed"} 1"#,
            r#"ambit_agent_api_writes_total{verb="apply",resource="devices"} 1"#,
            r#"ambit_agent_api_errors_total{category="apply_device"} 1"#,
            r#"ambit_agent_handler_connected{handler="debug-echo",kind="embedded"} 1"#,
            r#"ambit_agent_device_presence_changes_total{namespace="ns",device_set="cams",node="edge-1",change="vanished"} 2"#,
            r#"ambit_agent_device_presence_changes_total{namespace="ns",device_set="cams",node="edge-1",change="returned"} 1"#,
            r#"ambit_agent_slots{namespace="ns",device_set="cams",node="edge-1",state="used"} 1"#,
            r#"ambit_agent_slots{namespace="ns",device_set="cams",node="edge-1",state="free"} 3"#,
            r#"ambit_agent_slot_allocation_errors_total{reason="held_by_other_node"} 1"#,
            r#"ambit_agent_slots_reclaimed_total{namespace="ns",device_set="cams",node="edge-1"} 1"#,
            r#"ambit_agent_device_plugin_registrations_total{result="ok"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
