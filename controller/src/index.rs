//! Secondary indexes over the reflector caches: the names of the objects
//! that share a key (a Device's pods by owner uid, a DeviceSet's Devices and
//! pods by `namespace/set`, the Devices a node sees by node name; an object
//! may sit under several keys), so a reconcile or a trigger looks up what it
//! needs instead of scanning every cached object. Kept up to date from the same watch
//! events that fill the cache; a relist rebuilds them whole.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// Object names (`namespace/name`) by key.
#[derive(Debug, Default)]
pub struct Index {
    inner: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    live: Entries,
    /// Being rebuilt during a relist.
    pending: Option<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, BTreeSet<String>>,
    keys_of: HashMap<String, Vec<String>>,
}

/// How an index keys an object: every key it sits under (none: not
/// indexed).
pub type KeyFn<K> = fn(&K) -> Vec<String>;

impl Index {
    /// The names (`namespace/name`) of the objects under `key`.
    pub fn get(&self, key: &str) -> Vec<String> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .live
            .by_key
            .get(key)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies one watch event.
    pub fn apply<K: Resource>(&self, event: &watcher::Event<K>, key: KeyFn<K>) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            watcher::Event::Init => state.pending = Some(Default::default()),
            watcher::Event::InitApply(object) => {
                if let Some(pending) = &mut state.pending {
                    pending.insert(object, key);
                }
            }
            watcher::Event::InitDone => {
                if let Some(pending) = state.pending.take() {
                    state.live = pending;
                }
            }
            watcher::Event::Apply(object) => {
                state.live.remove(&name_of(object));
                state.live.insert(object, key);
            }
            watcher::Event::Delete(object) => state.live.remove(&name_of(object)),
        }
    }
}

fn name_of<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

impl Entries {
    fn insert<K: Resource>(&mut self, object: &K, key: KeyFn<K>) {
        let keys = key(object);
        if keys.is_empty() {
            return;
        }
        let name = name_of(object);
        for key in &keys {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
        }
        self.keys_of.insert(name, keys);
    }

    fn remove(&mut self, name: &str) {
        for key in self.keys_of.remove(name).unwrap_or_default() {
            if let Some(names) = self.by_key.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// Splits `namespace/name`.
pub fn split(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("", name))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn pod(name: &str, owner: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "ns", "labels": { "owner": owner } },
        }))
        .unwrap()
    }

    fn owner(pod: &Pod) -> Vec<String> {
        pod.labels().get("owner").cloned().into_iter().collect()
    }

    /// Keyed by every comma-separated value of its `nodes` label.
    fn nodes(pod: &Pod) -> Vec<String> {
        pod.labels()
            .get("nodes")
            .map(|n| n.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn on(name: &str, nodes: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "ns", "labels": { "nodes": nodes } },
        }))
        .unwrap()
    }

    #[test]
    fn follows_applies_deletes_key_changes_and_relists() {
        let index = Index::default();
        index.apply(&watcher::Event::Init, owner);
        index.apply(&watcher::Event::InitApply(pod("a", "x")), owner);
        assert!(
            index.get("x").is_empty(),
            "nothing shows before the listing is done"
        );
        index.apply(&watcher::Event::InitDone, owner);
        assert_eq!(index.get("x"), ["ns/a"]);

        index.apply(&watcher::Event::Apply(pod("b", "x")), owner);
        index.apply(&watcher::Event::Apply(pod("a", "y")), owner);
        assert_eq!(index.get("x"), ["ns/b"]);
        assert_eq!(index.get("y"), ["ns/a"]);
        index.apply(&watcher::Event::Delete(pod("b", "x")), owner);
        assert!(index.get("x").is_empty());

        // A relist replaces everything.
        index.apply(&watcher::Event::Init, owner);
        index.apply(&watcher::Event::InitApply(pod("c", "z")), owner);
        index.apply(&watcher::Event::InitDone, owner);
        assert!(index.get("y").is_empty());
        assert_eq!(index.get("z"), ["ns/c"]);
    }

    #[test]
    fn an_object_under_several_keys_moves_and_leaves_all_of_them() {
        let index = Index::default();
        index.apply(&watcher::Event::Apply(on("a", "n1,n2")), nodes);
        index.apply(&watcher::Event::Apply(on("b", "n2")), nodes);
        assert_eq!(index.get("n1"), ["ns/a"]);
        assert_eq!(index.get("n2"), ["ns/a", "ns/b"]);

        index.apply(&watcher::Event::Apply(on("a", "n3")), nodes);
        assert!(index.get("n1").is_empty(), "a left n1");
        assert_eq!(index.get("n2"), ["ns/b"]);
        assert_eq!(index.get("n3"), ["ns/a"]);

        index.apply(&watcher::Event::Delete(on("a", "n3")), nodes);
        assert!(index.get("n3").is_empty());
        let State { live, .. } = &*index.inner.read().unwrap();
        assert_eq!(live.by_key.len(), 1, "no empty keys are kept: {live:?}");
        assert_eq!(live.keys_of.len(), 1);
    }
}
