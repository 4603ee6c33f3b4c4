//! Resolving a DeviceSet's `discovery.properties` from Secrets and ConfigMaps
//! in its namespace, and noticing when they change.
//!
//! Values may be credentials: they go to the handler and nowhere else — not
//! into logs, Events, Device objects or error messages.

use std::collections::BTreeMap;
use std::pin::Pin;

use ambit_crds::v1alpha1::{DiscoveryProperty, PropertySource};
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher;
use kube::{Api, Client};

/// Why properties could not be resolved. Messages name objects and keys,
/// never values.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    /// A referenced Secret or ConfigMap key does not exist.
    #[error("property {property}: {kind} {namespace}/{name} has no key {key:?}")]
    MissingKey {
        /// The property.
        property: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// A referenced Secret or ConfigMap does not exist.
    #[error("property {property}: {kind} {namespace}/{name} not found")]
    NotFound {
        /// The property.
        property: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Reading it failed.
    #[error("property {property}: failed to read {kind} {namespace}/{name}: {source}")]
    Read {
        /// The property.
        property: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Resolves every property; optional references that are missing are left out.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    properties: &[DiscoveryProperty],
) -> Result<BTreeMap<String, String>, PropertyError> {
    let mut resolved = BTreeMap::new();
    for property in properties {
        let name = property.name.clone();
        if let Some(value) = &property.value {
            resolved.insert(name, value.clone());
            continue;
        }
        let Some(reference) = property.value_from.as_ref().and_then(Reference::of) else {
            continue;
        };
        let read = |source| PropertyError::Read {
            property: name.clone(),
            kind: reference.kind,
            namespace: namespace.to_owned(),
            name: reference.name.to_owned(),
            source,
        };
        // (whether the object exists, the key's value)
        let (exists, value) = match reference.kind {
            "Secret" => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let secret = api.get_opt(reference.name).await.map_err(read)?;
                let value = secret.as_ref().and_then(|s| {
                    let data = s.data.as_ref().and_then(|d| d.get(reference.key));
                    data.map(|v| String::from_utf8_lossy(&v.0).into_owned())
                        .or_else(|| s.string_data.as_ref()?.get(reference.key).cloned())
                });
                (secret.is_some(), value)
            }
            _ => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let map = api.get_opt(reference.name).await.map_err(read)?;
                let value = map
                    .as_ref()
                    .and_then(|m| m.data.as_ref()?.get(reference.key).cloned());
                (map.is_some(), value)
            }
        };
        match (value, exists, reference.optional) {
            (Some(value), _, _) => {
                resolved.insert(name, value);
            }
            (None, _, true) => {}
            (None, true, false) => {
                return Err(PropertyError::MissingKey {
                    property: name,
                    kind: reference.kind,
                    namespace: namespace.to_owned(),
                    name: reference.name.to_owned(),
                    key: reference.key.to_owned(),
                });
            }
            (None, false, false) => {
                return Err(PropertyError::NotFound {
                    property: name,
                    kind: reference.kind,
                    namespace: namespace.to_owned(),
                    name: reference.name.to_owned(),
                });
            }
        }
    }
    Ok(resolved)
}

/// A key of a Secret or ConfigMap that a property reads.
struct Reference<'a> {
    kind: &'static str,
    name: &'a str,
    key: &'a str,
    optional: bool,
}

impl<'a> Reference<'a> {
    fn of(source: &'a PropertySource) -> Option<Self> {
        if let Some(s) = &source.secret_key_ref {
            return Some(Self {
                kind: "Secret",
                name: &s.name,
                key: &s.key,
                optional: s.optional.unwrap_or(false),
            });
        }
        let c = source.config_map_key_ref.as_ref()?;
        Some(Self {
            kind: "ConfigMap",
            name: &c.name,
            key: &c.key,
            optional: c.optional.unwrap_or(false),
        })
    }
}

/// A stream that yields whenever a Secret or ConfigMap that `properties`
/// reference changes (or is created or deleted). It never ends; without
/// references it never yields.
pub fn changes(
    client: &Client,
    namespace: &str,
    properties: &[DiscoveryProperty],
) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
    let mut watches: Vec<Pin<Box<dyn Stream<Item = ()> + Send>>> = vec![];
    for source in properties.iter().filter_map(|p| p.value_from.as_ref()) {
        if let Some(secret) = &source.secret_key_ref {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            watches.push(watch_named(api, &secret.name));
        }
        if let Some(map) = &source.config_map_key_ref {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            watches.push(watch_named(api, &map.name));
        }
    }
    if watches.is_empty() {
        return Box::pin(stream::pending());
    }
    Box::pin(stream::select_all(watches))
}

fn watch_named<K>(api: Api<K>, name: &str) -> Pin<Box<dyn Stream<Item = ()> + Send>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    Box::pin(watcher(api, config).filter_map(|event| async move {
        match event {
            // The initial listing is what `resolve` just read.
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(()),
            // After a reconnect, check again: a change may have been missed.
            Ok(watcher::Event::InitDone) => Some(()),
            _ => None,
        }
    }))
}
