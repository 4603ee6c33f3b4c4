//! Resolving a DeviceSet's `discovery.properties` from Secrets and ConfigMaps
//! in its namespace, and noticing when they change.
//!
//! Values may be credentials: they go to the handler and nowhere else — not
//! into logs, Events, Device objects or error messages.

use std::collections::BTreeMap;
use std::pin::Pin;

use ambit_crds::v1alpha1::DiscoveryProperty;
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
        let Some(source) = &property.value_from else {
            continue;
        };
        if let Some(secret) = &source.secret_key_ref {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let object = get(&api, &secret.name, &name, "Secret", namespace).await?;
            let value = object
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(&secret.key))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .or_else(|| {
                    object
                        .as_ref()
                        .and_then(|s| s.string_data.as_ref())
                        .and_then(|d| d.get(&secret.key))
                        .cloned()
                });
            let optional = secret.optional.unwrap_or(false);
            match (value, object.is_some(), optional) {
                (Some(value), _, _) => {
                    resolved.insert(name, value);
                }
                (None, _, true) => {}
                (None, true, false) => {
                    return Err(missing_key(
                        name,
                        "Secret",
                        namespace,
                        &secret.name,
                        &secret.key,
                    ));
                }
                (None, false, false) => {
                    return Err(not_found(name, "Secret", namespace, &secret.name));
                }
            }
        } else if let Some(map) = &source.config_map_key_ref {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let object = get(&api, &map.name, &name, "ConfigMap", namespace).await?;
            let value = object
                .as_ref()
                .and_then(|m| m.data.as_ref())
                .and_then(|d| d.get(&map.key))
                .cloned();
            let optional = map.optional.unwrap_or(false);
            match (value, object.is_some(), optional) {
                (Some(value), _, _) => {
                    resolved.insert(name, value);
                }
                (None, _, true) => {}
                (None, true, false) => {
                    return Err(missing_key(
                        name,
                        "ConfigMap",
                        namespace,
                        &map.name,
                        &map.key,
                    ));
                }
                (None, false, false) => {
                    return Err(not_found(name, "ConfigMap", namespace, &map.name));
                }
            }
        }
    }
    Ok(resolved)
}

async fn get<K>(
    api: &Api<K>,
    object: &str,
    property: &str,
    kind: &'static str,
    namespace: &str,
) -> Result<Option<K>, PropertyError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(object)
        .await
        .map_err(|source| PropertyError::Read {
            property: property.to_owned(),
            kind,
            namespace: namespace.to_owned(),
            name: object.to_owned(),
            source,
        })
}

fn missing_key(
    property: String,
    kind: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
) -> PropertyError {
    PropertyError::MissingKey {
        property,
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
    }
}

fn not_found(property: String, kind: &'static str, namespace: &str, name: &str) -> PropertyError {
    PropertyError::NotFound {
        property,
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
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
