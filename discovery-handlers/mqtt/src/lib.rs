//! # ambit-mqtt: the `mqtt` discovery handler
//!
//! Watches MQTT brokers and turns what is announced there into devices,
//! event-driven (no polling):
//! - `mode: sparkplug` — Sparkplug B edge nodes and devices, from their
//!   birth and death certificates (`spb://<group>/<node>/<device>`), with
//!   their metrics as properties; bdSeq honoured, so a stale death never
//!   removes a reborn node;
//! - `mode: topics` — one device per value of one `+` level of a topic
//!   pattern, present from a retained status or until a timeout.
//!
//! ```text
//!   details ──details::plan──► Plan ──driver──► per broker: rumqttc ─► Index::apply ─┐
//!                                                              merge (union) ◄───────┘─► stream of complete sets
//! ```
//!
//! A broker connection lost makes its devices absent (the agent's grace
//! period then decides); the driver reconnects with capped backoff and
//! jitter. `docs/handlers/mqtt.md` describes the details and properties.

mod details;
mod driver;
mod index;
mod metrics;
mod sparkplug;
mod tls;
mod topics;

/// Generated from `proto/sparkplug_b.proto` (Eclipse Tahu, EPL-2.0).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/org.eclipse.tahu.protobuf.rs"));
}

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{
    CA_CERT, CLIENT_CERT, CLIENT_KEY, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_DEVICES, DEFAULT_MAX_METRICS,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TIMEOUT, PASSWORD, USERNAME,
};
pub use index::BROKER;
pub use metrics::METRIC_COUNT;
pub use sparkplug::{DEVICE, EDGE_NODE, GROUP, KIND};
pub use topics::{ID, TOPIC};

/// The handler's name.
pub const NAME: &str = "mqtt";

/// The mqtt handler. It keeps no state between DeviceSets: each discovery
/// holds its own broker connections.
#[derive(Debug, Default)]
pub struct Mqtt;

impl Mqtt {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for Mqtt {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let plan = details::plan(&request)?;
            driver::device_sets(plan, &request.node_name)
        })
    }
}

/// Entry point for the malformed-input tests; not part of the handler's API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    use ambit_discovery::DiscoverRequest;

    use crate::details::plan;
    use crate::index::Index;

    /// Feeds `(topic, payload)` messages through the index of `details`.
    /// Must never panic.
    pub fn messages(details: serde_json::Value, messages: &[(String, Vec<u8>)]) {
        let Ok(plan) = plan(&DiscoverRequest::new(details)) else {
            return;
        };
        let mut index = Index::new(&plan.watch, plan.limits, "tcp://127.0.0.1:1883");
        let start = Instant::now();
        for (i, (topic, payload)) in messages.iter().enumerate() {
            let now = start + Duration::from_millis(i as u64 * 100);
            let _ = index.apply(topic, payload, now);
            let _ = index.expire(now);
            assert!(index.devices().len() <= plan.limits.max_devices);
        }
    }
}
