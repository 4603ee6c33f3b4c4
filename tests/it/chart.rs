//! The chart's side of the deploy tests: Helm, rendering, and applying
//! what it renders to the API server.

use std::path::{Path, PathBuf};

use ambit_tests::helm::{Helm, chart_dir};
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

pub const HELM_BIN: &str = env!("CARGO_BIN_EXE_ambit-helm");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub async fn helm() -> anyhow::Result<Helm> {
    Ok(tokio::task::spawn_blocking(Helm::ensure).await??)
}

/// `helm template` of the chart with `values` (YAML), as JSON objects.
pub fn render(
    helm: &Helm,
    release: &str,
    namespace: &str,
    values: &str,
) -> anyhow::Result<Vec<Value>> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), values)?;
    let chart = chart_dir();
    let values_path = file.path().display().to_string();
    let chart_path = chart.display().to_string();
    let lint = ["lint", "--strict", &chart_path, "-f", &values_path];
    helm.run(&lint)?;
    let args = [
        "template",
        release,
        &chart_path,
        "--namespace",
        namespace,
        "--include-crds",
        "-f",
        &values_path,
    ];
    let text = helm.run(&args)?;
    let mut objects = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if value.is_object() {
            objects.push(value);
        }
    }
    Ok(objects)
}

pub fn gvk(object: &Value) -> anyhow::Result<GroupVersionKind> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    anyhow::ensure!(!kind.is_empty(), "an object without kind: {object}");
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// Server-side applies `object` (dry-run unless `for_real`), in `namespace`
/// unless it names its own or is cluster-scoped.
pub async fn apply(
    client: &Client,
    namespace: &str,
    object: &Value,
    for_real: bool,
) -> anyhow::Result<()> {
    let gvk = gvk(object)?;
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(namespace);
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let mut params = PatchParams::apply("ambit-chart-test").force();
    params.dry_run = !for_real;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| anyhow::anyhow!("{} {name} rejected: {e}", gvk.kind))?;
    Ok(())
}

pub fn is_monitoring(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .ok_or_else(|| anyhow::anyhow!("no {kind} {name} in the render"))
}

pub fn all_on(namespace: &str) -> String {
    format!(
        r#"
kubeletDir: /var/snap/microk8s/common/var/lib/kubelet
handlers:
  debugEcho: {{enabled: true}}
  modbus: {{enabled: true}}
  opcua: {{enabled: true}}
  onvif: {{enabled: true}}
  udev: {{enabled: true}}
  bluetooth: {{enabled: true}}
externalHandlers: {{enabled: true, handlers: [debug-echo, modbus, opcua, onvif, udev, bluetooth]}}
agent:
  propertySources:
    namespaces:
      - {{namespace: {namespace}, secrets: [creds], configMaps: ["*"]}}
metrics: {{serviceMonitor: {{enabled: true}}, podMonitor: {{enabled: true}}, prometheusRule: {{enabled: true}}}}
"#
    )
}
