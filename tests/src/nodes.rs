//! Fake nodes, played by KWOK: Ready, schedulable, with running pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// The annotation that hands a node to the harness's KWOK.
pub const KWOK_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Creates `count` nodes named `<prefix>-<i>` with `labels`, managed by KWOK,
/// and waits until every one is Ready. Returns their names.
pub async fn create(
    client: &Client,
    prefix: &str,
    count: usize,
    labels: &[(&str, &str)],
) -> anyhow::Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let mut node_labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        node_labels.insert("kubernetes.io/hostname".into(), name.clone());
        node_labels.insert("type".into(), "kwok".into());
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": node_labels,
                "annotations": { KWOK_ANNOTATION.0: KWOK_ANNOTATION.1 },
            },
        }))?;
        api.create(&PostParams::default(), &node).await?;
        names.push(name);
    }
    for name in &names {
        crate::wait::until(
            &api,
            name,
            Duration::from_secs(60),
            "the node to be Ready",
            is_ready,
        )
        .await?;
    }
    Ok(names)
}

/// Deletes the node `name`, as an administrator removing a machine would.
pub async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    api.delete(name, &DeleteParams::default()).await?;
    crate::wait::deleted(&api, name, Duration::from_secs(30)).await
}

/// Whether a node reports `Ready=True`.
pub fn is_ready(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
