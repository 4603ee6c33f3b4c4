//! The chart's side of the deploy tests: Helm, rendering, and applying
//! what it renders to the API server; the values schema (wrong values
//! refused by name, the values tests and docs use let through) and the
//! `helm test` hook.

use std::path::{Path, PathBuf};

use ambit_tests::helm::{Helm, chart_dir};
use k8s_openapi::api::core::v1::ServiceAccount;
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
    if !for_real && gvk.kind == "Pod" {
        // Admission refuses a Pod whose ServiceAccount does not exist, and
        // the render's own ServiceAccount is only dry-run: make it for real
        // (the test's namespace, and so it, goes when the test ends).
        pod_service_account(client, namespace, object).await?;
    }
    let mut params = PatchParams::apply("ambit-chart-test").force();
    params.dry_run = !for_real;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| anyhow::anyhow!("{} {name} rejected: {e}", gvk.kind))?;
    Ok(())
}

/// Creates the ServiceAccount `pod` runs as, unless it exists.
async fn pod_service_account(client: &Client, namespace: &str, pod: &Value) -> anyhow::Result<()> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or(namespace);
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let account = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name },
    });
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("ambit-chart-test"),
        &Patch::Apply(account),
    )
    .await?;
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
  mdns: {{enabled: true}}
  modbus: {{enabled: true}}
  mqtt: {{enabled: true}}
  opcua: {{enabled: true}}
  onvif: {{enabled: true}}
  udev: {{enabled: true}}
  bluetooth: {{enabled: true}}
externalHandlers: {{enabled: true, handlers: [debug-echo, mdns, modbus, mqtt, opcua, onvif, udev, bluetooth]}}
agent:
  propertySources:
    namespaces:
      - {{namespace: {namespace}, secrets: [creds], configMaps: ["*"]}}
metrics: {{serviceMonitor: {{enabled: true}}, podMonitor: {{enabled: true}}, prometheusRule: {{enabled: true}}}}
"#
    )
}

/// `helm template` of the chart with `values`: Ok, or Helm's complaint.
fn template(helm: &Helm, values: &str) -> anyhow::Result<String> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), values)?;
    let chart = chart_dir().display().to_string();
    let values_path = file.path().display().to_string();
    helm.run(&["template", "ambit", &chart, "-f", &values_path])
}

/// Values the tests and the docs install with, beyond `render`'s callers
/// (whose renders go through the schema too: `helm lint` and `helm
/// template` both check it).
fn documented_values() -> Vec<(&'static str, String)> {
    vec![
        ("default", "{}".into()),
        ("all-on", all_on("plant-a")),
        (
            // docs/install.md and docs/security.md
            "property sources",
            "agent:\n  propertySources:\n    namespaces:\n      - { namespace: plant-a, secrets: [opcua-creds], configMaps: [\"*\"] }\n    clusterWide: false\n".into(),
        ),
        (
            // tests/it/realnode*: local images, the agent's log level as directives
            "local images",
            "image: { registry: ghcr.io/ambit-dev, tag: \"0.1.0\", pullPolicy: Never }\nexternalHandlers: { enabled: true, handlers: [debug-echo] }\nagent:\n  logLevel: info,ambit_agent=debug\n  resources: { requests: { cpu: 1m, memory: 16Mi }, limits: { memory: 512Mi } }\n".into(),
        ),
        (
            "every block changed",
            r#"
imagePullSecrets: [{ name: regcred }]
kubeletDir: /var/lib/k0s/kubelet
handlers: { modbus: { serialDevices: [/dev/ttyUSB0, /dev/ttyS1] }, bluetooth: { enabled: true, dbusSocket: /run/dbus/system_bus_socket } }
podAccess: { devicePlugins: { enabled: false }, dra: { enabled: true, deviceClass: false } }
brokers: { enabled: false }
agent:
  namespace: plant-a
  metricsPort: 9100
  logLevel: debug
  priorityClassName: ""
  tolerations: [{ key: edge, operator: Equal, value: "true", effect: NoSchedule }]
  affinity: { nodeAffinity: {} }
  podAnnotations: { team: edge }
  extraEnv: [{ name: EXTRA, value: "1" }, { name: POD, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]
  updateStrategy: { type: RollingUpdate, rollingUpdate: { maxUnavailable: 10% } }
controller:
  replicas: 3
  leaseName: ambit-controller.plant-a
  leaseDuration: 15s
  nodeNotReadyToleration: 1m 30s
  podDisruptionBudget: { enabled: true, minAvailable: 2 }
  resources: { requests: { cpu: "0.5", memory: 1Gi }, limits: { cpu: 1 } }
cli: { image: { repository: tools/ambit }, test: { enabled: false } }
serviceAccount: { annotations: { iam.example.com/role: ambit } }
metrics: { serviceMonitor: { enabled: true, interval: 1m30s, labels: { release: prom } } }
commonLabels: { site: plant-a }
global: { imageRegistry: ignored }
"#
            .into(),
        ),
    ]
}

/// The values schema lets through every value the tests and docs use.
#[test]
fn documented_values_pass_the_schema() -> anyhow::Result<()> {
    let helm = Helm::ensure()?;
    for (case, values) in documented_values() {
        template(&helm, &values).map_err(|e| anyhow::anyhow!("{case}: {e}"))?;
    }
    Ok(())
}

/// A wrong type, an unknown key, a value outside its enum or range: Helm
/// refuses to render, and its message names the value.
#[test]
fn the_schema_refuses_wrong_values_naming_them() -> anyhow::Result<()> {
    let helm = Helm::ensure()?;
    let cases = [
        // wrong types
        (
            "controller: {replicas: two}",
            "'/controller/replicas': got string, want integer",
        ),
        (
            "controller: {leaseDuration: 10}",
            "'/controller/leaseDuration': got number, want string",
        ),
        (
            "handlers: {modbus: {enabled: sure}}",
            "'/handlers/modbus/enabled': got string, want boolean",
        ),
        (
            "agent: {nodeSelector: {disk: 1}}",
            "'/agent/nodeSelector/disk': got number, want string",
        ),
        // unknown keys, top level and nested
        (
            "kubletDir: /var/lib/kubelet",
            "additional properties 'kubletDir' not allowed",
        ),
        (
            "agent: {logLevle: debug}",
            "at '/agent': additional properties 'logLevle' not allowed",
        ),
        (
            "handlers: {zigbee: {enabled: true}}",
            "at '/handlers': additional properties 'zigbee' not allowed",
        ),
        (
            "controller: {resources: {request: {cpu: 1m}}}",
            "at '/controller/resources': additional properties 'request' not allowed",
        ),
        (
            "agent: {propertySources: {namespaces: [{namespace: plant-a, secret: [creds]}]}}",
            "at '/agent/propertySources/namespaces/0': additional properties 'secret' not allowed",
        ),
        // enums
        (
            "image: {pullPolicy: Sometimes}",
            "'/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "externalHandlers: {handlers: [zigbee]}",
            "'/externalHandlers/handlers/0': value must be one of",
        ),
        ("agent: {logLevel: verbose}", "'/agent/logLevel'"),
        (
            "agent: {updateStrategy: {type: Recreate}}",
            "'/agent/updateStrategy/type': value must be one of",
        ),
        // ranges and formats
        (
            "agent: {metricsPort: 0}",
            "'/agent/metricsPort': minimum: got 0, want 1",
        ),
        (
            "controller: {metricsPort: 70000}",
            "'/controller/metricsPort': maximum: got 70,000, want 65,535",
        ),
        (
            "controller: {replicas: -1}",
            "'/controller/replicas': minimum: got -1, want 0",
        ),
        (
            "kubeletDir: var/lib/kubelet",
            "'/kubeletDir': 'var/lib/kubelet' does not match pattern",
        ),
        (
            "cli: {test: {wait: soon}}",
            "'/cli/test/wait': 'soon' does not match pattern",
        ),
        (
            "externalHandlers: {handlers: []}",
            "'/externalHandlers/handlers': minItems",
        ),
    ];
    let mut wrong = vec![];
    for (values, expected) in cases {
        match template(&helm, values) {
            Ok(_) => wrong.push(format!("{values}: rendered")),
            Err(error) => {
                let error = error.to_string();
                if !error.contains("don't meet the specifications of the schema")
                    || !error.contains(expected)
                {
                    wrong.push(format!("{values}: expected {expected:?} in:\n{error}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    Ok(())
}

/// `helm test`'s Pod: a test hook deleted once it passed, running `ambit
/// check` on this release from the CLI image, non-root with nothing to
/// escalate to, as a ServiceAccount of its own with read-only rights.
#[test]
fn the_test_hook_checks_this_release_with_read_only_rights() -> anyhow::Result<()> {
    let helm = Helm::ensure()?;
    let chart = chart_dir().display().to_string();
    let text = helm.run(&[
        "template",
        "edge",
        &chart,
        "--namespace",
        "plant",
        "--show-only",
        "templates/tests/check.yaml",
    ])?;
    let mut objects: Vec<Value> = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if value.is_object() {
            objects.push(value);
        }
    }
    let pod = find(&objects, "Pod", "edge-check")?;
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], "test");
    assert_eq!(
        annotations["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "edge-check");
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["securityContext"]["runAsUser"], 65532);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &spec["containers"][0];
    assert_eq!(container["image"], "ghcr.io/ambit-dev/ambit:0.1.0");
    assert_eq!(
        container["command"],
        serde_json::json!(["/usr/local/bin/ambit"])
    );
    assert_eq!(
        container["args"],
        serde_json::json!(["check", "--namespace=plant", "--release=edge", "--wait=2m"])
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // Read-only: no verb beyond get and list, in any rule.
    for kind in ["ClusterRole", "Role"] {
        let role = find(&objects, kind, "edge-check")?;
        for rule in role["rules"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().into_iter().flatten() {
                assert!(
                    verb == "get" || verb == "list",
                    "{kind} grants {verb}: {rule}"
                );
            }
        }
    }
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let binding = find(&objects, kind, "edge-check")?;
        assert_eq!(binding["subjects"][0]["name"], "edge-check");
        assert_eq!(binding["subjects"][0]["namespace"], "plant");
    }
    assert!(find(&objects, "ServiceAccount", "edge-check").is_ok());
    Ok(())
}
