//! The state of one broker connection, Sparkplug or plain topics: the pure
//! core the driver feeds with every message (`apply`), the clock (`expire`)
//! and connection losses (`reset`), and asks for the complete set
//! (`devices`). No I/O here; tested by calling these directly.

use std::time::Instant;

use ambit_discovery::Device;

use crate::details::{Limits, Watch};
use crate::sparkplug::Outcome;
use crate::{sparkplug, topics};

/// Property: the broker the device was seen on.
pub const BROKER: &str = "MQTT_BROKER";

/// The state of one broker.
#[derive(Debug)]
pub enum Index {
    /// Sparkplug B births and deaths.
    Sparkplug(sparkplug::State, String),
    /// Plain topics.
    Topics(topics::State),
}

impl Index {
    /// An empty index for `broker`.
    pub fn new(watch: &Watch, limits: Limits, broker: &str) -> Self {
        match watch {
            Watch::Sparkplug(filter) => Self::Sparkplug(
                sparkplug::State::new(filter.clone(), limits),
                broker.to_owned(),
            ),
            Watch::Topics(rule) => {
                Self::Topics(topics::State::new(rule.clone(), limits, broker.to_owned()))
            }
        }
    }

    /// The topic filters to subscribe to.
    pub fn subscriptions(&self) -> Vec<String> {
        match self {
            Self::Sparkplug(state, _) => state.subscriptions(),
            Self::Topics(state) => state.subscriptions(),
        }
    }

    /// Applies one message received at `now`; `Ok(true)` when the set changed.
    pub fn apply(&mut self, topic: &str, payload: &[u8], now: Instant) -> Outcome {
        match self {
            Self::Sparkplug(state, _) => state.apply(topic, payload),
            Self::Topics(state) => state.apply(topic, payload, now),
        }
    }

    /// Drops what timed out by `now`; whether the set changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self {
            Self::Sparkplug(..) => false,
            Self::Topics(state) => state.expire(now),
        }
    }

    /// When [`Index::expire`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            Self::Sparkplug(..) => None,
            Self::Topics(state) => state.next_deadline(),
        }
    }

    /// Forgets everything (the connection was lost); whether the set changed.
    pub fn reset(&mut self) -> bool {
        match self {
            Self::Sparkplug(state, _) => state.reset(),
            Self::Topics(state) => state.reset(),
        }
    }

    /// The complete current set.
    pub fn devices(&self) -> Vec<Device> {
        let (mut devices, broker) = match self {
            Self::Sparkplug(state, broker) => (state.devices(), broker.as_str()),
            Self::Topics(state) => (state.devices(), ""),
        };
        if !broker.is_empty() {
            for device in &mut devices {
                device.properties.insert(BROKER.into(), broker.to_owned());
            }
        }
        devices
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
