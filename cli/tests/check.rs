//! `ambit check` as `helm test` runs it: the real binary, against the chart
//! rendered by real Helm and applied for real to a real API server, its
//! pods run by KWOK on a fake node, with only the rights the chart gives
//! the check's ServiceAccount.
//!
//! ```text
//!  helm template ──apply──► kube-apiserver ◄── kube-controller-manager (DaemonSet, Deployment status)
//!                                  ▲          ◄── kube-scheduler, KWOK (pods Running, Ready)
//!  ambit check (as <release>-check) ┘     the Lease: written here, as the leading controller would
//! ```

use std::process::{Command, Output};

use ambit_tests::TestEnv;
use ambit_tests::helm::{Helm, chart_dir};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// `ambit check <args>` with `kubeconfig`.
fn check(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<(Output, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_ambit"))
        .arg("check")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok((output, stdout))
}

/// The line of the report about `what`.
fn line<'a>(report: &'a str, what: &str) -> &'a str {
    report.lines().find(|l| l.contains(what)).unwrap_or("")
}

/// Applies `object` for real with server-side apply.
async fn apply(client: &Client, namespace: &str, object: &Value) -> anyhow::Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply("ambit-check-test").force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{kind} {name} rejected: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn a_fresh_install_passes_and_a_stale_lease_fails() -> anyhow::Result<()> {
    let env = TestEnv::new("cli-check").await?;
    let ns = env.namespace.clone();
    let release = "check";
    ambit_tests::crds::install(&env.client).await?;
    env.wait_for_default_service_account().await?;
    let admin = env.control_plane.kubeconfig.clone();

    // Nothing installed yet but the CRDs: the report says what is missing.
    let (output, report) = check(&admin, &["-n", &ns, "--release", release])?;
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        line(&report, "CRD devicesets.ambit.dev").starts_with("ok "),
        "{report}"
    );
    assert!(
        line(&report, "agent DaemonSet").starts_with("FAIL  agent DaemonSet: none labelled"),
        "{report}"
    );

    // The chart, applied for real (its test hook aside: `helm test` makes it).
    let helm = tokio::task::spawn_blocking(Helm::ensure).await??;
    let chart = chart_dir().display().to_string();
    let text = helm.run(&["template", release, &chart, "--namespace", &ns])?;
    let mut objects = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: Value = k8s_openapi::serde::Deserialize::deserialize(doc)?;
        if object.is_object() && object["metadata"]["annotations"]["helm.sh/hook"].is_null() {
            objects.push(object);
        }
    }
    for object in &objects {
        apply(&env.client, &ns, object).await?;
    }
    ambit_tests::nodes::create(&env.client, &ns, 1, &[("kubernetes.io/os", "linux")]).await?;

    // The Lease, as the leading controller keeps it.
    let leases: Api<Lease> = env.api();
    let lease = |renewed: Timestamp| {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "ambit-controller" },
            "spec": {
                "holderIdentity": format!("{release}-controller-0"),
                "leaseDurationSeconds": 30,
                "renewTime": MicroTime(renewed),
            },
        })
    };
    let params = PatchParams::apply("ambit-check-test").force();
    leases
        .patch(
            "ambit-controller",
            &params,
            &Patch::Apply(lease(Timestamp::now())),
        )
        .await?;

    // As the check's own ServiceAccount, with the chart's RBAC only.
    let user = format!("system:serviceaccount:{ns}:{release}-check");
    let groups = [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{ns}"),
    ];
    let as_check = env.control_plane.kubeconfig_for(&user, &groups)?;
    let (output, report) = check(
        &as_check,
        &["-n", &ns, "--release", release, "--wait", "60s"],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}{stderr}");
    eprintln!("{report}");
    let agent = format!("agent DaemonSet {ns}/{release}-agent");
    let controller = format!("controller Deployment {ns}/{release}-controller");
    let lease_line = format!("controller Lease {ns}/ambit-controller");
    let device_sets = format!("DeviceSets in {ns}");
    for (what, verdict, why) in [
        (
            "CRD devicesets.ambit.dev",
            "ok",
            "Established, serves v1alpha1",
        ),
        (
            "CRD devices.ambit.dev",
            "ok",
            "Established, serves v1alpha1",
        ),
        (&device_sets, "ok", "the API answers"),
        (&agent, "ok", "1/1 pods ready"),
        ("handler DaemonSet", "skip", "none installed"),
        (&controller, "ok", "2/2 replicas ready"),
        (&lease_line, "ok", "held by check-controller-0"),
        ("DeviceClass ambit.dev", "ok", "exists"),
    ] {
        let found = line(&report, what);
        assert!(
            found.starts_with(&format!("{verdict} ")) && found.contains(why),
            "{what} is not {verdict} ({why}):\n{report}"
        );
    }

    // A leader that stopped renewing ten minutes ago fails the check.
    let stale = Timestamp::now() - std::time::Duration::from_secs(600);
    leases
        .patch("ambit-controller", &params, &Patch::Apply(lease(stale)))
        .await?;
    let (output, report) = check(&as_check, &["-n", &ns, "--release", release])?;
    assert_eq!(output.status.code(), Some(1), "{report}");
    let failed = line(&report, "controller Lease");
    assert!(
        failed.starts_with("FAIL") && failed.contains("the leader stopped renewing"),
        "{report}"
    );
    assert_eq!(report.lines().filter(|l| l.starts_with("FAIL")).count(), 1);
    Ok(())
}
