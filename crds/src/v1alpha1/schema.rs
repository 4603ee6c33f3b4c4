//! Schema pieces shared by the resources: CEL rules and hand-written schemas
//! for fields whose Rust type says too little.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A handler's free-form settings: any JSON object.
pub type Details = serde_json::Map<String, serde_json::Value>;

/// A DNS-1123 label: what Kubernetes accepts as a name of one segment.
pub(crate) const DNS_LABEL_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// A name that shells and container runtimes accept as an environment variable.
pub(crate) const ENV_NAME_RULE: &str = "self.matches('^[A-Za-z_][A-Za-z0-9_]*$')";

/// [`ENV_NAME_RULE`] for every key of a map.
pub(crate) const ENV_KEYS_RULE: &str = "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))";

/// An object whose fields the API server keeps as they are.
pub(crate) fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The schema of an embedded Kubernetes type (a PodSpec, a ServiceSpec, ...)
/// without the descriptions of its nested fields.
///
/// Embedding them whole would make the DeviceSet CRD about 700 kB, more than
/// client-side `kubectl apply` can store in its annotation; their fields are
/// documented by `kubectl explain pod.spec` and friends anyway. The field's
/// own description (the doc comment where it is used) stays.
pub(crate) fn embedded<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<T>();
    if let Some(object) = schema.as_object_mut() {
        object.remove("description");
        for value in object.values_mut() {
            strip_descriptions(value);
        }
    }
    schema
}

fn strip_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if object
                .get("description")
                .is_some_and(serde_json::Value::is_string)
            {
                object.remove("description");
            }
            object.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
