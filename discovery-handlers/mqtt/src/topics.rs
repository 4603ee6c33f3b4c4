//! Plain-topic state of one broker: a device per value of the id level of
//! the `topic` pattern, present while its retained status says
//! `onlineValue`, or (without `onlineValue`) until `timeout` passes
//! without a message on its topic.
//!
//! ```text
//!   devices/+/status   idLevel 1
//!   devices/pump-1/status "online"   ─► mqtt://<broker>/pump-1 present
//!   devices/pump-1/status "offline"  ─► absent (as is an empty retained message)
//! ```
//!
//! The clock is passed in, so timeouts are tested without waiting.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::details::{Limits, Topics};
use crate::sparkplug::{Ignored, Outcome};

/// Property: the device's id (the id level's value).
pub const ID: &str = "MQTT_ID";
/// Property: the topic the device was last seen on.
pub const TOPIC: &str = "MQTT_TOPIC";

#[derive(Debug)]
struct Seen {
    topic: String,
    last: Instant,
}

/// The plain-topic state of one broker.
#[derive(Debug)]
pub struct State {
    rule: Topics,
    limits: Limits,
    broker: String,
    seen: BTreeMap<String, Seen>,
}

impl State {
    /// An empty state for devices seen on `broker`.
    pub fn new(rule: Topics, limits: Limits, broker: String) -> Self {
        Self {
            rule,
            limits,
            broker,
            seen: BTreeMap::new(),
        }
    }

    /// The one subscription: the pattern.
    pub fn subscriptions(&self) -> Vec<String> {
        vec![self.rule.levels.join("/")]
    }

    /// Applies one message seen at `now`; `Ok(true)` when the set changed.
    pub fn apply(&mut self, topic: &str, payload: &[u8], now: Instant) -> Outcome {
        let levels: Vec<&str> = topic.split('/').collect();
        if levels.len() != self.rule.levels.len()
            || !self
                .rule
                .levels
                .iter()
                .zip(&levels)
                .all(|(want, got)| want == "+" || want == got)
        {
            return Err(Ignored::Topic);
        }
        let id = levels[self.rule.id_level];
        if id.is_empty() || id.len() > 253 {
            return Err(Ignored::Topic);
        }
        if payload.len() > self.limits.max_payload_bytes {
            return Err(Ignored::Oversize);
        }
        let online = match &self.rule.online_value {
            Some(value) => std::str::from_utf8(payload).is_ok_and(|p| p.trim() == value),
            None => true,
        };
        if !online {
            return Ok(self.seen.remove(id).is_some());
        }
        if !self.seen.contains_key(id) && self.seen.len() >= self.limits.max_devices {
            return Err(Ignored::Limit);
        }
        let old = self.seen.insert(
            id.to_owned(),
            Seen {
                topic: topic.to_owned(),
                last: now,
            },
        );
        Ok(old.is_none_or(|old| old.topic != topic))
    }

    /// Drops the devices silent for longer than `timeout`; whether any was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let Some(timeout) = self.rule.timeout else {
            return false;
        };
        let before = self.seen.len();
        self.seen
            .retain(|_, seen| now.saturating_duration_since(seen.last) < timeout);
        self.seen.len() != before
    }

    /// When the next device would time out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.rule.timeout?;
        self.seen.values().map(|s| s.last + timeout).min()
    }

    /// Forgets everything; whether anything was reported.
    pub fn reset(&mut self) -> bool {
        let had = !self.seen.is_empty();
        self.seen.clear();
        had
    }

    /// The devices present now.
    pub fn devices(&self) -> Vec<ambit_discovery::Device> {
        let authority = self
            .broker
            .split_once("://")
            .map_or(self.broker.as_str(), |(_, rest)| rest);
        self.seen
            .iter()
            .map(|(id, seen)| {
                let mut device = ambit_discovery::Device::new(format!("mqtt://{authority}/{id}"));
                device.shared = true;
                device.properties.insert(ID.into(), id.clone());
                device
                    .properties
                    .insert(crate::index::BROKER.into(), self.broker.clone());
                device
                    .properties
                    .insert(TOPIC.into(), crate::metrics::bounded(&seen.topic));
                device
            })
            .collect()
    }
}
