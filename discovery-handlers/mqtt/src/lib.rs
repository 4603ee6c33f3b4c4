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

    /// Feeds `(topic, payload)` messages through the index of `details`
    /// and returns how many devices it holds at the end (`None` when the
    /// details are invalid). Must never panic.
    pub fn messages(details: serde_json::Value, messages: &[(String, Vec<u8>)]) -> Option<usize> {
        let plan = plan(&DiscoverRequest::new(details)).ok()?;
        let mut index = Index::new(&plan.watch, plan.limits, "tcp://127.0.0.1:1883");
        let start = Instant::now();
        for (i, (topic, payload)) in messages.iter().enumerate() {
            let now = start + Duration::from_millis(i as u64 * 100);
            let _ = index.apply(topic, payload, now);
            let _ = index.expire(now);
            assert!(index.devices().len() <= plan.limits.max_devices);
        }
        Some(index.devices().len())
    }

    /// The fuzz target's input: the first byte picks the handler's mode and
    /// limits, the rest is messages framed as `[topic length: u8][topic]
    /// [payload length: u16 BE][payload]`, cut short where the bytes end.
    /// Topics are taken lossily as UTF-8, as rumqttc hands them over only
    /// when valid. Returns the devices held at the end. Must never panic.
    pub fn bytes(data: &[u8]) -> usize {
        let Some((&mode, mut rest)) = data.split_first() else {
            return 0;
        };
        let broker = "tcp://127.0.0.1:1883";
        let details = match mode % 3 {
            0 => {
                serde_json::json!({"brokers": [broker], "includeEdgeNodes": true, "maxDevices": 8, "maxMetrics": 4})
            }
            1 => serde_json::json!({"brokers": [broker], "groups": ["g*"], "maxPayloadBytes": 512}),
            _ => serde_json::json!({
                "brokers": [broker], "mode": "topics", "topic": "d/+/s/+", "idLevel": 1,
                "onlineValue": "on", "timeout": "1s", "maxDevices": 8,
            }),
        };
        let mut messages = Vec::new();
        while let Some((&topic_len, tail)) = rest.split_first() {
            let (topic, tail) = tail.split_at(usize::from(topic_len).min(tail.len()));
            let (len, tail) = tail.split_at(tail.len().min(2));
            let payload_len = match len {
                [hi, lo] => usize::from(u16::from_be_bytes([*hi, *lo])),
                _ => 0,
            };
            let (payload, tail) = tail.split_at(payload_len.min(tail.len()));
            messages.push((
                String::from_utf8_lossy(topic).into_owned(),
                payload.to_vec(),
            ));
            rest = tail;
        }
        self::messages(details, &messages).unwrap_or_default()
    }
}
