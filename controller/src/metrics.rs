//! The controller's Prometheus metrics, registered on a registry the caller owns.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ambit_controller_brokers` | gauge | namespace, device_set, phase |
//! | `ambit_controller_reconcile_duration_seconds` | histogram | controller |
//! | `ambit_controller_reconcile_errors` (`_total`) | counter | controller, category |
//! | `ambit_controller_leader` | gauge | (none): 1 while this replica leads |
//! | `ambit_controller_brokers_wanted` | gauge | namespace, device_set |
//! | `ambit_controller_brokers_ready` | gauge | namespace, device_set |
//! | `ambit_controller_devices_at_capacity` | gauge | namespace, device_set |

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerLabels {
    namespace: String,
    device_set: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabels {
    namespace: String,
    device_set: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    category: &'static str,
}

/// The phases a broker pod is counted in.
pub const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// Handles to every metric of the controller. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    brokers: Family<BrokerLabels, Gauge>,
    duration: Family<ControllerLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    leader: Gauge,
    wanted: Family<SetLabels, Gauge>,
    ready: Family<SetLabels, Gauge>,
    at_capacity: Family<SetLabels, Gauge>,
}

/// A DeviceSet's broker and slot counts, as [`Metrics::set_counts`] records them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetCounts {
    /// Broker pods the set's Devices want (capacity and nodes permitting).
    pub wanted: i64,
    /// Broker pods that are Ready.
    pub ready: i64,
    /// Devices whose slots are all in use while more nodes want one, or
    /// whose every slot is allocated to pods.
    pub at_capacity: i64,
}

impl Metrics {
    /// Registers the controller's metrics (prefix `ambit_controller`).
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("ambit_controller");
        let inner = Inner {
            brokers: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            errors: Family::default(),
            leader: Gauge::default(),
            wanted: Family::default(),
            ready: Family::default(),
            at_capacity: Family::default(),
        };
        registry.register(
            "brokers",
            "Broker pods, by DeviceSet and phase",
            inner.brokers.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took, by controller",
            inner.duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by controller and category",
            inner.errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            inner.leader.clone(),
        );
        registry.register(
            "brokers_wanted",
            "Broker pods a DeviceSet's Devices want (capacity and nodes permitting)",
            inner.wanted.clone(),
        );
        registry.register(
            "brokers_ready",
            "Broker pods of a DeviceSet that are Ready",
            inner.ready.clone(),
        );
        registry.register(
            "devices_at_capacity",
            "Devices of a DeviceSet whose slots are all in use (more nodes see them than capacity allows brokers for, or every slot is allocated)",
            inner.at_capacity.clone(),
        );
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sets the broker counts of a set, one per phase.
    pub fn brokers(&self, namespace: &str, device_set: &str, counts: [i64; PHASES.len()]) {
        for (phase, count) in PHASES.into_iter().zip(counts) {
            let labels = BrokerLabels {
                namespace: namespace.to_owned(),
                device_set: device_set.to_owned(),
                phase,
            };
            self.inner.brokers.get_or_create(&labels).set(count);
        }
    }

    /// Sets a DeviceSet's wanted and ready brokers and full Devices.
    pub fn set_counts(&self, namespace: &str, device_set: &str, counts: SetCounts) {
        let labels = SetLabels {
            namespace: namespace.to_owned(),
            device_set: device_set.to_owned(),
        };
        let inner = &self.inner;
        inner.wanted.get_or_create(&labels).set(counts.wanted);
        inner.ready.get_or_create(&labels).set(counts.ready);
        inner
            .at_capacity
            .get_or_create(&labels)
            .set(counts.at_capacity);
    }

    /// Drops the series of a set that is gone.
    pub fn remove_set(&self, namespace: &str, device_set: &str) {
        let labels = SetLabels {
            namespace: namespace.to_owned(),
            device_set: device_set.to_owned(),
        };
        self.inner.wanted.remove(&labels);
        self.inner.ready.remove(&labels);
        self.inner.at_capacity.remove(&labels);
        for phase in PHASES {
            let labels = BrokerLabels {
                namespace: namespace.to_owned(),
                device_set: device_set.to_owned(),
                phase,
            };
            self.inner.brokers.remove(&labels);
        }
    }

    /// Records a reconcile's duration.
    pub fn reconciled(&self, controller: &'static str, seconds: f64) {
        self.inner
            .duration
            .get_or_create(&ControllerLabels { controller })
            .observe(seconds);
    }

    /// Counts a failed reconcile.
    pub fn error(&self, controller: &'static str, category: &'static str) {
        self.inner
            .errors
            .get_or_create(&ErrorLabels {
                controller,
                category,
            })
            .inc();
    }

    /// Records whether this replica leads.
    pub fn leader(&self, leading: bool) {
        self.inner.leader.set(i64::from(leading));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn every_metric_is_registered_and_encoded() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.brokers("ns", "cams", [1, 2, 0, 0, 0]);
        metrics.reconciled("device", 0.01);
        metrics.error("device", "create_pod");
        metrics.leader(true);
        let counts = SetCounts {
            wanted: 3,
            ready: 2,
            at_capacity: 1,
        };
        metrics.set_counts("ns", "cams", counts);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"ambit_controller_brokers{namespace="ns",device_set="cams",phase="Running"} 2"#,
            r#"ambit_controller_reconcile_duration_seconds_count{controller="device"} 1"#,
            r#"ambit_controller_reconcile_errors_total{controller="device",category="create_pod"} 1"#,
            "ambit_controller_leader 1",
            r#"ambit_controller_brokers_wanted{namespace="ns",device_set="cams"} 3"#,
            r#"ambit_controller_brokers_ready{namespace="ns",device_set="cams"} 2"#,
            r#"ambit_controller_devices_at_capacity{namespace="ns",device_set="cams"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
