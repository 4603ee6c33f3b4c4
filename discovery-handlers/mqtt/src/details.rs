//! The `details` of an mqtt DeviceSet, validated into a [`Plan`]: which
//! brokers to watch, what to look for there (Sparkplug B births, or devices
//! announced on plain topics), and the limits.
//!
//! ```yaml
//! details:
//!   brokers: ["tcp://10.0.0.5:1883", "tls://broker.plant:8883"]
//!   mode: sparkplug                 # sparkplug | topics
//!   groups: ["plant-*"]             # sparkplug: globs over group, edge node, device ids
//!   edgeNodes: ["*"]
//!   devices: ["*"]
//!   includeEdgeNodes: false
//!   topic: "devices/+/status"       # topics: the pattern, one `+` level is the id
//!   idLevel: 1
//!   onlineValue: "online"           # topics: presence from a retained status
//!   timeout: 60s                    # topics: or from the time since the last message
//!   clientId: ambit                 # prefix; the node and a random suffix follow
//!   keepAlive: 30s
//!   maxDevices: 1000
//!   maxMetrics: 64
//!   maxPayloadBytes: 262144
//! ```
//!
//! Credentials and TLS material come from `discovery.properties`
//! (`MQTT_USERNAME`, `MQTT_PASSWORD`, `MQTT_CA_CERT`, `MQTT_CLIENT_CERT`,
//! `MQTT_CLIENT_KEY`); they are never logged nor copied into devices.
//! Every error names its field; `docs/handlers/mqtt.md` lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_discovery::fields::{duration, globs};
use ambit_discovery::{DiscoverRequest, DiscoveryError};
use glob::Pattern;
use serde::Deserialize;

/// The default number of devices one DeviceSet reports at most.
pub const DEFAULT_MAX_DEVICES: usize = 1000;
/// The default number of metrics described per device.
pub const DEFAULT_MAX_METRICS: usize = 64;
/// The default largest payload decoded; larger ones are dropped.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The default MQTT keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The default silence after which a topics-mode device is absent (when no
/// `onlineValue` is given).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default client id prefix.
pub const DEFAULT_CLIENT_ID: &str = "ambit";

/// The property naming the broker user.
pub const USERNAME: &str = "MQTT_USERNAME";
/// The property holding the broker password.
pub const PASSWORD: &str = "MQTT_PASSWORD";
/// The property holding the PEM CA certificates for `tls://` brokers.
pub const CA_CERT: &str = "MQTT_CA_CERT";
/// The property holding the PEM client certificate chain.
pub const CLIENT_CERT: &str = "MQTT_CLIENT_CERT";
/// The property holding the PEM client private key.
pub const CLIENT_KEY: &str = "MQTT_CLIENT_KEY";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    brokers: Vec<String>,
    #[serde(default)]
    mode: Mode,
    groups: Option<Vec<String>>,
    edge_nodes: Option<Vec<String>>,
    devices: Option<Vec<String>>,
    #[serde(default)]
    include_edge_nodes: bool,
    topic: Option<String>,
    id_level: Option<usize>,
    online_value: Option<String>,
    timeout: Option<String>,
    client_id: Option<String>,
    keep_alive: Option<String>,
    max_devices: Option<usize>,
    max_metrics: Option<usize>,
    max_payload_bytes: Option<usize>,
}

/// What the handler looks for on the brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sparkplug B births and deaths.
    #[default]
    Sparkplug,
    /// Devices announced on a plain topic pattern.
    Topics,
}

/// One broker to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `tcp://host:port` or `tls://host:port`, as written (normalised).
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

/// User name and password; `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials(pub String, pub String);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// TLS material from the properties (PEM).
#[derive(Clone, Default)]
pub struct Tls {
    /// CA certificates.
    pub ca: Option<String>,
    /// Client certificate chain and key.
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// Sparkplug filters.
#[derive(Debug, Clone)]
pub struct Sparkplug {
    /// Group id globs.
    pub groups: Vec<Pattern>,
    /// Edge node id globs.
    pub edge_nodes: Vec<Pattern>,
    /// Device id globs.
    pub devices: Vec<Pattern>,
    /// Whether edge nodes are devices too.
    pub include_edge_nodes: bool,
}

/// Plain-topic presence.
#[derive(Debug, Clone)]
pub struct Topics {
    /// The pattern's levels (`+` matches one level).
    pub levels: Vec<String>,
    /// Which level (from 0) is the device id.
    pub id_level: usize,
    /// The payload that means online; anything else means offline.
    pub online_value: Option<String>,
    /// Silence after which a device is absent.
    pub timeout: Option<Duration>,
}

/// What to look for.
#[derive(Debug, Clone)]
pub enum Watch {
    /// Sparkplug B.
    Sparkplug(Sparkplug),
    /// Plain topics.
    Topics(Topics),
}

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Devices reported at most.
    pub max_devices: usize,
    /// Metrics described per device at most.
    pub max_metrics: usize,
    /// Largest payload decoded.
    pub max_payload_bytes: usize,
}

/// Validated details: everything discovery needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The brokers.
    pub brokers: Vec<Broker>,
    /// What to look for.
    pub watch: Watch,
    /// Client id prefix.
    pub client_id: String,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Limits.
    pub limits: Limits,
    /// User name and password.
    pub credentials: Option<Credentials>,
    /// TLS material.
    pub tls: Tls,
}

/// Validates the request's details and properties.
pub fn plan(request: &DiscoverRequest) -> Result<Plan, DiscoveryError> {
    let details: Details = request.details_as()?;
    validate(details, &request.properties).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details, properties: &BTreeMap<String, String>) -> Result<Plan, String> {
    if details.brokers.is_empty() {
        return Err("brokers: name at least one broker, e.g. tcp://10.0.0.5:1883".into());
    }
    let brokers = details
        .brokers
        .iter()
        .enumerate()
        .map(|(i, url)| broker(url).map_err(|e| format!("brokers[{i}]: {url:?} {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let all = || vec!["*".to_owned()];
    let watch = match details.mode {
        Mode::Sparkplug => {
            for (field, set) in [
                ("topic", details.topic.is_some()),
                ("idLevel", details.id_level.is_some()),
                ("onlineValue", details.online_value.is_some()),
                ("timeout", details.timeout.is_some()),
            ] {
                if set {
                    return Err(format!("{field}: only for mode: topics"));
                }
            }
            Watch::Sparkplug(Sparkplug {
                groups: sparkplug_globs("groups", details.groups.unwrap_or_else(all))?,
                edge_nodes: sparkplug_globs("edgeNodes", details.edge_nodes.unwrap_or_else(all))?,
                devices: sparkplug_globs("devices", details.devices.unwrap_or_else(all))?,
                include_edge_nodes: details.include_edge_nodes,
            })
        }
        Mode::Topics => {
            for (field, set) in [
                ("groups", details.groups.is_some()),
                ("edgeNodes", details.edge_nodes.is_some()),
                ("devices", details.devices.is_some()),
                ("includeEdgeNodes", details.include_edge_nodes),
            ] {
                if set {
                    return Err(format!("{field}: only for mode: sparkplug"));
                }
            }
            let topic = details
                .topic
                .ok_or("topic: required for mode: topics, e.g. devices/+/status")?;
            let levels = topic_levels(&topic)?;
            let id_level = details
                .id_level
                .ok_or("idLevel: required for mode: topics (which level, from 0, is the id)")?;
            if levels.get(id_level).map(String::as_str) != Some("+") {
                return Err(format!(
                    "idLevel: level {id_level} of {topic:?} is not a + level"
                ));
            }
            let timeout = match (&details.online_value, details.timeout.as_deref()) {
                (Some(_), None) => None,
                (_, text) => Some(duration(
                    "timeout",
                    text,
                    DEFAULT_TIMEOUT,
                    Duration::from_secs(1)..=Duration::from_secs(86_400),
                )?),
            };
            Watch::Topics(Topics {
                levels,
                id_level,
                online_value: details.online_value,
                timeout,
            })
        }
    };
    let client_id = details
        .client_id
        .unwrap_or_else(|| DEFAULT_CLIENT_ID.into());
    if client_id.is_empty()
        || client_id.len() > 32
        || !client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "clientId: {client_id:?} must be 1 to 32 letters, digits, - or _"
        ));
    }
    let keep_alive = duration(
        "keepAlive",
        details.keep_alive.as_deref(),
        DEFAULT_KEEP_ALIVE,
        Duration::from_secs(5)..=Duration::from_secs(65_535),
    )?;
    let limits = Limits {
        max_devices: limit(
            "maxDevices",
            details.max_devices,
            DEFAULT_MAX_DEVICES,
            100_000,
        )?,
        max_metrics: limit("maxMetrics", details.max_metrics, DEFAULT_MAX_METRICS, 1000)?,
        max_payload_bytes: limit(
            "maxPayloadBytes",
            details.max_payload_bytes,
            DEFAULT_MAX_PAYLOAD_BYTES,
            16 * 1024 * 1024,
        )?,
    };
    let credentials = match (properties.get(USERNAME), properties.get(PASSWORD)) {
        (Some(user), Some(password)) => Some(Credentials(user.clone(), password.clone())),
        (Some(user), None) => Some(Credentials(user.clone(), String::new())),
        (None, Some(_)) => {
            return Err(format!("properties.{PASSWORD}: set without {USERNAME}"));
        }
        (None, None) => None,
    };
    let tls = Tls {
        ca: properties.get(CA_CERT).cloned(),
        client: match (properties.get(CLIENT_CERT), properties.get(CLIENT_KEY)) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(format!(
                    "properties.{CLIENT_KEY}: required with {CLIENT_CERT}"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "properties.{CLIENT_CERT}: required with {CLIENT_KEY}"
                ));
            }
        },
    };
    Ok(Plan {
        brokers,
        watch,
        client_id,
        keep_alive,
        limits,
        credentials,
        tls,
    })
}

fn broker(url: &str) -> Result<Broker, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("is not a broker URL such as tcp://10.0.0.5:1883")?;
    let tls = match scheme {
        "tcp" | "mqtt" => false,
        "tls" | "mqtts" | "ssl" => true,
        _ => {
            return Err(format!(
                "has scheme {scheme:?}: use tcp://, mqtt://, tls:// or mqtts://"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') {
        return Err("must be scheme://host:port, without a path or user".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (rest, None),
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("has port {port:?}, not 1 to 65535"))?,
        None if tls => 8883,
        None => 1883,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("has no host".into());
    }
    let scheme = if tls { "tls" } else { "tcp" };
    let url = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    };
    Ok(Broker {
        url,
        host: host.to_owned(),
        port,
        tls,
    })
}

fn sparkplug_globs(field: &str, list: Vec<String>) -> Result<Vec<Pattern>, String> {
    if list.is_empty() {
        return Err(format!("{field}: name at least one glob (\"*\" for all)"));
    }
    for (i, glob) in list.iter().enumerate() {
        if glob.is_empty() || glob.contains(['/', '#', '+']) {
            return Err(format!(
                "{field}[{i}]: {glob:?} is not a Sparkplug id glob (no /, + or #)"
            ));
        }
    }
    let mut patterns = globs("sparkplug", field, &list)?;
    patterns.shrink_to_fit();
    Ok(patterns)
}

fn topic_levels(topic: &str) -> Result<Vec<String>, String> {
    let levels: Vec<String> = topic.split('/').map(str::to_owned).collect();
    if topic.is_empty() || topic.len() > 1024 || levels.len() > 32 {
        return Err(format!(
            "topic: {topic:?} must be 1 to 1024 characters, 32 levels at most"
        ));
    }
    for (i, level) in levels.iter().enumerate() {
        if level == "#" {
            return Err(format!("topic: level {i} is #: use + levels only"));
        }
        if level != "+" && level.contains(['+', '#']) {
            return Err(format!(
                "topic: level {i} ({level:?}) mixes a wildcard with text"
            ));
        }
    }
    Ok(levels)
}

fn limit(field: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(format!("{field}: {v} is out of range (1 to {max})")),
    }
}

#[cfg(test)]
#[path = "details_tests.rs"]
mod tests;
