//! The controller's Prometheus metrics, registered on a registry the caller owns.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ambit_controller_brokers` | gauge | namespace, device_set, phase |
//! | `ambit_controller_reconcile_duration_seconds` | histogram | controller |
//! | `ambit_controller_reconcile_errors` (`_total`) | counter | controller, category |
//! | `ambit_controller_leader` | gauge | (none): 1 while this replica leads |

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

    /// Drops the series of a set that is gone.
    pub fn remove_set(&self, namespace: &str, device_set: &str) {
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
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"ambit_controller_brokers{namespace="ns",device_set="cams",phase="Running"} 2"#,
            r#"ambit_controller_reconcile_duration_seconds_count{controller="device"} 1"#,
            r#"ambit_controller_reconcile_errors_total{controller="device",category="create_pod"} 1"#,
            "ambit_controller_leader 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
