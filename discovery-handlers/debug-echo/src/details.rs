//! The `details` of a debug-echo DeviceSet, validated into the list of
//! devices to report.
//!
//! ```yaml
//! details:
//!   devices: [cam-1, {id: cam-2, properties: {ROOM: lab}}]   # or:
//!   count: 1000          # cam-0 ... cam-999
//!   prefix: cam-
//!   shared: false        # default
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ambit_discovery::{Device, DiscoverRequest, DiscoveryError};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// The property every device carries: its id.
pub const ID_PROPERTY: &str = "DEBUG_ECHO_ID";

/// The most devices one DeviceSet may generate with `count`.
pub const MAX_COUNT: usize = 100_000;

const DEFAULT_PREFIX: &str = "debug-echo-";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Details {
    devices: Option<Vec<DeviceSpec>>,
    count: Option<usize>,
    prefix: Option<String>,
    #[serde(default)]
    shared: bool,
}

/// One listed device: a plain id, or `{id, properties}`.
#[derive(Debug)]
struct DeviceSpec {
    id: String,
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceObject {
    id: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = DeviceSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device id or an object with `id` and `properties`")
            }

            fn visit_str<E: de::Error>(self, id: &str) -> Result<DeviceSpec, E> {
                Ok(DeviceSpec {
                    id: id.to_owned(),
                    properties: BTreeMap::new(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DeviceSpec, A::Error> {
                let object = DeviceObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(DeviceSpec {
                    id: object.id,
                    properties: object.properties,
                })
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

/// Reads the request's details into the complete list of configured
/// devices (before any is taken offline), or says what is wrong with them.
pub fn configured_devices(request: &DiscoverRequest) -> Result<Vec<Device>, DiscoveryError> {
    let details: Details = request.details_as()?;
    let invalid = |message: String| Err(DiscoveryError::InvalidDetails(message));
    let specs = match (details.devices, details.count) {
        (Some(_), Some(_)) => return invalid("give either `devices` or `count`, not both".into()),
        (None, None) => {
            return invalid(
                "give `devices` (a list of device ids) or `count` (how many devices to make)"
                    .into(),
            );
        }
        (Some(specs), None) => {
            if details.prefix.is_some() {
                return invalid("prefix: only used with `count`".into());
            }
            specs
        }
        (None, Some(count)) if count > MAX_COUNT => {
            return invalid(format!(
                "count: {count} is more than the limit of {MAX_COUNT}"
            ));
        }
        (None, Some(count)) => {
            let prefix = details.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
            (0..count)
                .map(|i| DeviceSpec {
                    id: format!("{prefix}{i}"),
                    properties: BTreeMap::new(),
                })
                .collect()
        }
    };

    let digest = properties_digest(&request.properties);
    let mut seen = BTreeSet::new();
    let mut devices = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        if spec.id.is_empty() {
            return invalid(format!("devices[{index}].id: must not be empty"));
        }
        if !seen.insert(spec.id.clone()) {
            return invalid(format!(
                "devices[{index}].id: {:?} is listed twice",
                spec.id
            ));
        }
        if let Some(key) = spec.properties.keys().find(|key| !is_env_name(key)) {
            return invalid(format!(
                "devices[{index}].properties: {key:?} is not an environment variable name \
                 (letters, digits and '_', not starting with a digit)"
            ));
        }
        let mut properties = spec.properties;
        properties.insert(ID_PROPERTY.to_owned(), spec.id.clone());
        if let Some(digest) = &digest {
            properties.insert(PROPERTIES_DIGEST.to_owned(), digest.clone());
        }
        devices.push(Device {
            id: spec.id,
            shared: details.shared,
            properties,
            ..Device::default()
        });
    }
    Ok(devices)
}

/// The device property that tells which discovery properties the handler
/// was given: a digest, so a change shows without the (possibly secret)
/// values ever reaching a Device.
pub const PROPERTIES_DIGEST: &str = "DEBUG_ECHO_PROPERTIES_DIGEST";

/// The first 64 bits of SHA-256 over the properties (names and values,
/// length-prefixed), in hex; `None` without properties.
fn properties_digest(properties: &BTreeMap<String, String>) -> Option<String> {
    if properties.is_empty() {
        return None;
    }
    let mut hasher = Sha256::new();
    for (name, value) in properties {
        for part in [name, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    Some(
        hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_digest_of_the_properties_tells_changes_without_values() {
        let mut request = DiscoverRequest::new(json!({"devices": ["a"]}));
        assert!(
            !configured_devices(&request).unwrap()[0]
                .properties
                .contains_key(PROPERTIES_DIGEST)
        );
        request.properties.insert("TOKEN".into(), "secret-1".into());
        let first = configured_devices(&request).unwrap()[0].properties[PROPERTIES_DIGEST].clone();
        assert!(!first.contains("secret"));
        request.properties.insert("TOKEN".into(), "secret-2".into());
        let second = configured_devices(&request).unwrap()[0].properties[PROPERTIES_DIGEST].clone();
        assert_ne!(first, second);
        assert_eq!(second.len(), 16);
    }

    fn devices(details: Value) -> Result<Vec<Device>, DiscoveryError> {
        configured_devices(&DiscoverRequest::new(details))
    }

    fn error(details: Value) -> String {
        match devices(details) {
            Err(DiscoveryError::InvalidDetails(message)) => message,
            other => panic!("expected invalid details, got {other:?}"),
        }
    }

    #[test]
    fn lists_ids_and_objects_with_properties() {
        let got = devices(
            json!({"devices": ["a", {"id": "b", "properties": {"ROOM": "lab"}}], "shared": true}),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "a");
        assert_eq!(
            got[0].properties,
            BTreeMap::from([(ID_PROPERTY.into(), "a".into())])
        );
        assert_eq!(
            got[1].properties.get("ROOM").map(String::as_str),
            Some("lab")
        );
        assert_eq!(
            got[1].properties.get(ID_PROPERTY).map(String::as_str),
            Some("b")
        );
        assert!(got.iter().all(|d| d.shared));
    }

    #[test]
    fn generates_count_devices() {
        let got = devices(json!({"count": 1000, "prefix": "cam-"})).unwrap();
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999].id, "cam-999");
        assert!(!got[0].shared);
        assert_eq!(devices(json!({"count": 2})).unwrap()[1].id, "debug-echo-1");
        assert!(devices(json!({"count": 0})).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (
                json!({}),
                "give `devices` (a list of device ids) or `count` (how many devices to make)",
            ),
            (
                json!({"devices": [], "count": 1}),
                "give either `devices` or `count`, not both",
            ),
            (
                json!({"devices": ["a"], "prefix": "x"}),
                "prefix: only used with `count`",
            ),
            (
                json!({"devices": ["a", 3]}),
                "devices[1]: invalid type: integer `3`, expected a device id or an object with `id` and `properties`",
            ),
            (
                json!({"devices": [{"id": "a", "props": {}}]}),
                "devices[0].props: unknown field `props`, expected `id` or `properties`",
            ),
            (
                json!({"devices": [{"id": "a", "properties": {"K": 1}}]}),
                "devices[0].properties.K: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"devices": [{"properties": {}}]}),
                "devices[0]: missing field `id`",
            ),
            (
                json!({"devices": ["a", "a"]}),
                "devices[1].id: \"a\" is listed twice",
            ),
            (json!({"devices": [""]}), "devices[0].id: must not be empty"),
            (
                json!({"devices": [{"id": "a", "properties": {"a-b": "1"}}]}),
                "devices[0].properties: \"a-b\" is not an environment variable name (letters, digits and '_', not starting with a digit)",
            ),
            (
                json!({"count": -1}),
                "count: invalid value: integer `-1`, expected usize",
            ),
            (
                json!({"count": 100_001}),
                "count: 100001 is more than the limit of 100000",
            ),
            (
                json!({"shared": "yes", "count": 1}),
                "shared: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"count": 1, "colour": "red"}),
                "colour: unknown field `colour`, expected one of `devices`, `count`, `prefix`, `shared`",
            ),
        ];
        for (details, expected) in cases {
            assert_eq!(error(details.clone()), expected, "{details}");
        }
    }
}
