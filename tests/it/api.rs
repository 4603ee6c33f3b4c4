//! Ambit's API on a real kube-apiserver: the CRDs install, publish their
//! documentation, list with their printer columns, and every CEL rule rejects
//! its bad input with its own message while good input passes.

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::TestEnv;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

mod validation;

async fn env(test: &str) -> anyhow::Result<TestEnv> {
    let env = TestEnv::new(test).await?;
    ambit_tests::crds::install(&env.client).await?;
    Ok(env)
}

#[tokio::test]
async fn crds_are_established_and_publish_their_documentation() -> anyhow::Result<()> {
    let env = env("openapi").await?;
    // The API server publishes a new group's OpenAPI a moment after the CRD
    // is Established.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let openapi: Value = loop {
        let request = http::Request::get("/openapi/v3/apis/ambit.dev/v1alpha1").body(vec![])?;
        match env.client.request_text(request).await {
            Ok(text) => break serde_json::from_str(&text)?,
            Err(kube::Error::Api(status))
                if status.code == 404 && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let schemas = &openapi["components"]["schemas"];
    let set = &schemas["dev.ambit.v1alpha1.DeviceSet"];
    let device = &schemas["dev.ambit.v1alpha1.Device"];
    assert!(
        set.is_object() && device.is_object(),
        "both kinds are published: {schemas:#}"
    );

    let description = |schema: &Value, path: &[&str]| -> String {
        let mut at = schema;
        for field in path {
            at = &at["properties"][field];
            // Nested objects are published as references or inline with allOf.
            if let Some(inner) = at.get("allOf").and_then(|a| a.get(0)) {
                at = resolve(schemas, inner);
            }
            at = resolve(schemas, at);
        }
        at["description"].as_str().unwrap_or_default().to_owned()
    };
    assert!(description(set, &["spec", "capacity"]).contains("How many pods may use one device"));
    assert!(description(set, &["spec", "discovery", "handler"]).contains("discovery handler"));
    assert!(description(device, &["spec", "id"]).contains("stable identity"));
    assert!(description(device, &["status", "nodes"]).contains("one entry per node"));
    Ok(())
}

fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        Some(name) => &schemas[name],
        None => schema,
    }
}

#[tokio::test]
async fn kinds_have_short_names_a_category_and_printer_columns() -> anyhow::Result<()> {
    let env = env("columns").await?;
    let resources = env
        .client
        .list_api_group_resources("ambit.dev/v1alpha1")
        .await?;
    for (plural, short) in [("devicesets", "dset"), ("devices", "adev")] {
        let resource = resources
            .resources
            .iter()
            .find(|r| r.name == plural)
            .ok_or_else(|| anyhow::anyhow!("{plural} is not served"))?;
        assert_eq!(
            resource.categories.as_deref(),
            Some(&["ambit".to_owned()][..])
        );
        assert!(
            resource.short_names.iter().flatten().any(|s| s == short),
            "{plural}: {short}"
        );
    }

    let sets: Api<DynamicObject> = dynamic::<DeviceSet>(&env.client, &env.namespace);
    sets.create(
        &PostParams::default(),
        &object::<DeviceSet>(
            "cams",
            json!({
                "discovery": { "handler": "debug-echo" },
            }),
        )?,
    )
    .await?;
    let devices = dynamic::<Device>(&env.client, &env.namespace);
    devices
        .create(
            &PostParams::default(),
            &object::<Device>(
                "cams-0123456789abcdef",
                json!({
                    "deviceSet": "cams", "id": "cam-1", "shared": true, "capacity": 2,
                }),
            )?,
        )
        .await?;

    for (plural, expected) in [
        (
            "devicesets",
            vec!["Name", "Handler", "Devices", "Ready", "Age"],
        ),
        (
            "devices",
            vec!["Name", "Set", "Shared", "Nodes", "Capacity", "Age"],
        ),
    ] {
        let table = table(&env.client, &env.namespace, plural).await?;
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(columns, expected, "{plural}");
    }
    let devices = table(&env.client, &env.namespace, "devices").await?;
    assert_eq!(devices["rows"][0]["cells"][1], "cams");
    assert_eq!(devices["rows"][0]["cells"][2], true);
    assert_eq!(devices["rows"][0]["cells"][4], 2);
    Ok(())
}

async fn table(client: &Client, namespace: &str, plural: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(format!(
        "/apis/ambit.dev/v1alpha1/namespaces/{namespace}/{plural}"
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(vec![])?;
    Ok(serde_json::from_str(&client.request_text(request).await?)?)
}

/// An API for raw objects of `K`'s kind: tests send what a user would type,
/// including what the Rust types could never hold.
fn dynamic<K: kube::Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

fn object<K: kube::Resource<DynamicType = ()>>(
    name: &str,
    spec: Value,
) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "spec": spec,
    }))?)
}

async fn merge_patch(
    api: &Api<DynamicObject>,
    name: &str,
    patch: Value,
) -> kube::Result<DynamicObject> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Every manifest under `examples/` (DeviceSets, pods, claims) is accepted
/// by the real API server (server-side dry run, so CEL rules and schemas
/// apply): an example a user copies must not be rejected.
#[tokio::test]
async fn every_example_manifest_passes_server_side_dry_run() -> anyhow::Result<()> {
    let env = env("examples").await?;
    // Pods are admitted only once the namespace's default ServiceAccount exists.
    env.wait_for_default_service_account().await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = vec![];
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let discovery = kube::Discovery::new(env.client.clone()).run().await?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(value)?;
            let types = object.types.clone().ok_or_else(|| {
                anyhow::anyhow!("{}: a document without apiVersion/kind", file.display())
            })?;
            let gvk = kube::api::GroupVersionKind::try_from(&types)?;
            let (resource, capabilities) = discovery
                .resolve_gvk(&gvk)
                .ok_or_else(|| anyhow::anyhow!("{}: unknown kind {gvk:?}", file.display()))?;
            let api: Api<DynamicObject> =
                if capabilities.scope == kube::discovery::Scope::Namespaced {
                    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
                } else {
                    Api::all_with(env.client.clone(), &resource)
                };
            if let Err(error) = api.create(&params, &object).await {
                anyhow::bail!("{} ({}) was rejected: {error}", file.display(), types.kind);
            }
            checked += 1;
        }
    }
    assert!(
        checked >= files.len(),
        "{checked} objects in {} files",
        files.len()
    );
    Ok(())
}
