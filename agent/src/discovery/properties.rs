//! Resolving a DeviceSet's `discovery.properties` from Secrets and ConfigMaps
//! in its namespace, and noticing when they change.
//!
//! Values may be credentials: they go to the handler and nowhere else — not
//! into logs, Events, Device objects or error messages.
//!
//! The retry rule follows from the API's answer ([`on_read_error`]): a
//! Secret or ConfigMap that is not there, a key it lacks, or a read the API
//! refuses for good (403 and the other 4xx) is the user's to fix and is
//! reported as a [`PropertyError`]; anything else — the API server
//! unreachable, slow, overloaded (429) or failing (5xx) — is not the
//! DeviceSet's fault, so the read is retried with capped backoff (0.5 s,
//! doubling, up to 30 s) and never reported as invalid details.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use ambit_crds::v1alpha1::{DiscoveryProperty, PropertySource};
use ambit_discovery::Backoff;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::warn;

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
    /// The API refused to read it, for good (forbidden, or another 4xx
    /// that retrying cannot change). Transient failures are retried instead.
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
                let secret = get(&api, &reference, namespace).await.map_err(read)?;
                let value = secret.as_ref().and_then(|s| {
                    let data = s.data.as_ref().and_then(|d| d.get(reference.key));
                    data.map(|v| String::from_utf8_lossy(&v.0).into_owned())
                        .or_else(|| s.string_data.as_ref()?.get(reference.key).cloned())
                });
                (secret.is_some(), value)
            }
            _ => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let map = get(&api, &reference, namespace).await.map_err(read)?;
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

/// What a failed read of a Secret or ConfigMap calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReadError {
    /// The API server was unreachable, slow, overloaded or failing, or the
    /// agent's credentials were refused while they rotate: read again
    /// after a backoff; report nothing.
    Retry,
    /// The API server answered that this read cannot succeed as asked
    /// (403 forbidden, 400, …): report it to the DeviceSet's author.
    Report,
}

/// The retry rule: only an API answer in the 4xx range — other than 401
/// (credentials being refreshed), 408 (timeout) and 429 (throttled) — is
/// reported; connection errors, timeouts and 5xx are retried. (404 never
/// gets here: a missing object is [`PropertyError::NotFound`].)
pub fn on_read_error(error: &kube::Error) -> OnReadError {
    match error {
        kube::Error::Api(status) if (400..500).contains(&status.code) => match status.code {
            401 | 408 | 429 => OnReadError::Retry,
            _ => OnReadError::Report,
        },
        _ => OnReadError::Retry,
    }
}

/// Reads the object `reference` names (`None` if it does not exist),
/// retrying transient failures with capped backoff until it gets an answer.
async fn get<K>(
    api: &Api<K>,
    reference: &Reference<'_>,
    namespace: &str,
) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        match api.get_opt(reference.name).await {
            Ok(object) => return Ok(object),
            Err(error) if on_read_error(&error) == OnReadError::Retry => {
                let delay = backoff.next_delay();
                warn!(%error, kind = reference.kind, %namespace, name = reference.name, ?delay, "failed to read a property's source; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
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

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("refused", reason).with_code(code).boxed())
    }

    #[test]
    fn a_refusal_for_good_is_reported() {
        assert_eq!(on_read_error(&api(403, "Forbidden")), OnReadError::Report);
        assert_eq!(on_read_error(&api(400, "BadRequest")), OnReadError::Report);
        assert_eq!(on_read_error(&api(422, "Invalid")), OnReadError::Report);
    }

    #[test]
    fn an_unreachable_slow_or_failing_api_is_retried() {
        for code in [401, 408, 429, 500, 503, 504] {
            assert_eq!(on_read_error(&api(code, "")), OnReadError::Retry, "{code}");
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            on_read_error(&kube::Error::ReadEvents(io)),
            OnReadError::Retry
        );
        let service = kube::Error::Service("connection refused".into());
        assert_eq!(on_read_error(&service), OnReadError::Retry);
    }
}
