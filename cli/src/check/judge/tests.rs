use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn daemon_set_with(generation: i64, status: Value) -> DaemonSet {
    object(json!({
        "metadata": { "name": "ambit-agent", "namespace": "ambit", "generation": generation },
        "spec": {
            "selector": {},
            "template": { "spec": { "containers": [{ "name": "agent", "env": [
                { "name": "AMBIT_DRA", "value": "false" },
            ] }] } },
        },
        "status": status,
    }))
}

fn ds_status(desired: i32, ready: i32, updated: i32, observed: i64) -> Value {
    json!({
        "desiredNumberScheduled": desired, "numberReady": ready,
        "updatedNumberScheduled": updated, "observedGeneration": observed,
        "currentNumberScheduled": desired, "numberMisscheduled": 0,
    })
}

#[test]
fn a_daemon_set_passes_when_every_scheduled_pod_is_ready() {
    let (verdict, why) = daemon_set(&daemon_set_with(1, ds_status(3, 3, 3, 1)));
    assert_eq!(verdict, Verdict::Ok, "{why}");
    assert_eq!(why, "3/3 pods ready");
}

#[test]
fn a_daemon_set_fails_with_the_reason() {
    for (ds, reason) in [
        (
            daemon_set_with(1, ds_status(3, 2, 3, 1)),
            "2 of 3 pods ready",
        ),
        (
            daemon_set_with(1, ds_status(0, 0, 0, 1)),
            "no node to run on",
        ),
        (
            daemon_set_with(1, ds_status(2, 2, 1, 1)),
            "rolling out: 1 of 2",
        ),
        (
            daemon_set_with(2, ds_status(2, 2, 2, 1)),
            "status is of generation 1, its spec of 2",
        ),
        (daemon_set_with(1, Value::Null), "no status yet"),
    ] {
        let (verdict, why) = daemon_set(&ds);
        assert_eq!(verdict, Verdict::Fail, "{why}");
        assert!(why.contains(reason), "{why:?} does not say {reason:?}");
    }
}

fn deployment_with(replicas: i32, status: Value, env: Value) -> Deployment {
    object(json!({
        "metadata": { "name": "ambit-controller", "namespace": "ambit", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": {},
            "template": { "spec": { "containers": [{ "name": "controller", "env": env }] } },
        },
        "status": status,
    }))
}

#[test]
fn a_deployment_needs_all_its_replicas_ready() {
    let status = |ready: i32| json!({ "observedGeneration": 1, "readyReplicas": ready, "updatedReplicas": 2 });
    let (verdict, why) = deployment(&deployment_with(2, status(2), json!([])));
    assert_eq!((verdict, why.as_str()), (Verdict::Ok, "2/2 replicas ready"));
    let (verdict, why) = deployment(&deployment_with(2, status(1), json!([])));
    assert_eq!(
        (verdict, why.as_str()),
        (Verdict::Fail, "1 of 2 replicas ready")
    );
    // A fresh Deployment's status has no readyReplicas at all.
    let (verdict, why) = deployment(&deployment_with(
        2,
        json!({ "observedGeneration": 1 }),
        json!([]),
    ));
    assert_eq!(
        (verdict, why.as_str()),
        (Verdict::Fail, "0 of 2 replicas ready")
    );
    let (verdict, why) = deployment(&deployment_with(0, status(0), json!([])));
    assert_eq!(verdict, Verdict::Fail);
    assert!(why.contains("scaled to 0"), "{why}");
}

#[test]
fn the_lease_is_found_where_the_deployment_tells_the_controller() {
    let chart = json!([
        { "name": "AMBIT_LEASE_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
        { "name": "AMBIT_LEASE_NAME", "value": "my-lease" },
    ]);
    let d = deployment_with(1, Value::Null, chart);
    assert_eq!(lease_location(&d), ("ambit".into(), "my-lease".into()));
    let literal = json!([{ "name": "AMBIT_LEASE_NAMESPACE", "value": "elsewhere" }]);
    let d = deployment_with(1, Value::Null, literal);
    assert_eq!(
        lease_location(&d),
        ("elsewhere".into(), DEFAULT_LEASE_NAME.into())
    );
    // Nothing set: the controller's own defaults.
    let d = deployment_with(1, Value::Null, json!([]));
    assert_eq!(
        lease_location(&d),
        ("default".into(), "ambit-controller".into())
    );
}

fn lease_with(spec: Value) -> Lease {
    object(json!({ "metadata": { "name": "ambit-controller" }, "spec": spec }))
}

#[test]
fn a_lease_passes_while_its_holder_renews_it() {
    let renewed = Timestamp::UNIX_EPOCH + Duration::from_secs(1_000);
    let spec = json!({
        "holderIdentity": "ambit-controller-7d9f-abcde",
        "renewTime": "1970-01-01T00:16:40.000000Z",
        "leaseDurationSeconds": 10,
    });
    let (verdict, why) = lease(
        Some(&lease_with(spec.clone())),
        renewed + Duration::from_secs(3),
    );
    assert_eq!(verdict, Verdict::Ok, "{why}");
    assert_eq!(
        why,
        "held by ambit-controller-7d9f-abcde, renewed 3s ago (lasts 10s)"
    );

    let (verdict, why) = lease(Some(&lease_with(spec)), renewed + Duration::from_secs(25));
    assert_eq!(verdict, Verdict::Fail);
    assert!(why.contains("last renewed 25s ago, past its 10s"), "{why}");

    // Clock skew: a renewal a moment "ahead" of this clock is fresh.
    let ahead = json!({ "holderIdentity": "c1", "renewTime": "1970-01-01T00:16:41.000000Z", "leaseDurationSeconds": 10 });
    assert_eq!(lease(Some(&lease_with(ahead)), renewed).0, Verdict::Ok);
}

#[test]
fn a_lease_without_holder_renewal_or_duration_fails() {
    let now = Timestamp::UNIX_EPOCH;
    for (spec, reason) in [
        (json!({}), "no holder"),
        (json!({ "holderIdentity": "" }), "no holder"),
        (json!({ "holderIdentity": "c1" }), "never renewed"),
        (
            json!({ "holderIdentity": "c1", "renewTime": "1970-01-01T00:00:00.000000Z" }),
            "counts as expired",
        ),
    ] {
        let (verdict, why) = lease(Some(&lease_with(spec)), now);
        assert_eq!(verdict, Verdict::Fail);
        assert!(why.contains(reason), "{why:?} does not say {reason:?}");
    }
    let (verdict, why) = lease(None, now);
    assert_eq!(verdict, Verdict::Fail);
    assert!(why.starts_with("not found"), "{why}");
}

fn crd_with(versions: Value, conditions: Value) -> CustomResourceDefinition {
    object(json!({
        "metadata": { "name": "devicesets.ambit.dev" },
        "spec": {
            "group": "ambit.dev", "scope": "Namespaced",
            "names": { "plural": "devicesets", "kind": "DeviceSet" },
            "versions": versions,
        },
        "status": { "conditions": conditions },
    }))
}

#[test]
fn a_crd_must_be_established_and_serve_the_version() {
    let v1alpha1 = json!([{ "name": "v1alpha1", "served": true, "storage": true }]);
    let established = json!([{ "type": "Established", "status": "True" }]);
    let (verdict, why) = crd(
        Some(&crd_with(v1alpha1.clone(), established.clone())),
        "v1alpha1",
    );
    assert_eq!(
        (verdict, why.as_str()),
        (Verdict::Ok, "Established, serves v1alpha1")
    );

    let pending = json!([{ "type": "Established", "status": "False", "reason": "Installing" }]);
    let (verdict, why) = crd(Some(&crd_with(v1alpha1, pending)), "v1alpha1");
    assert_eq!(
        (verdict, why.as_str()),
        (Verdict::Fail, "not Established: Installing")
    );

    let other = json!([
        { "name": "v1alpha1", "served": false, "storage": true },
        { "name": "v1beta1", "served": true, "storage": false },
    ]);
    let (verdict, why) = crd(Some(&crd_with(other, established)), "v1alpha1");
    assert_eq!(
        (verdict, why.as_str()),
        (Verdict::Fail, "does not serve v1alpha1 (serves: v1beta1)")
    );

    assert_eq!(crd(None, "v1alpha1").0, Verdict::Fail);
}

#[test]
fn the_device_class_is_checked_only_where_dra_is_used() {
    assert_eq!(device_class(false, true, false).0, Verdict::Skip);
    assert_eq!(device_class(true, false, false).0, Verdict::Skip);
    assert_eq!(device_class(true, true, false).0, Verdict::Fail);
    assert_eq!(device_class(true, true, true).0, Verdict::Ok);
    // The chart says AMBIT_DRA=false when podAccess.dra.enabled is off.
    assert!(!agent_uses_dra(&daemon_set_with(1, Value::Null)));
}

#[test]
fn a_line_names_the_verdict_what_and_why() {
    let line = Outcome::new(
        Verdict::Fail,
        "agent DaemonSet ambit/ambit-agent",
        "1 of 2 pods ready",
    );
    assert_eq!(
        line.to_string(),
        "FAIL  agent DaemonSet ambit/ambit-agent: 1 of 2 pods ready"
    );
    assert!(line.failed());
    assert_eq!(
        Outcome::new(Verdict::Ok, "x", "y").to_string(),
        "ok    x: y"
    );
    assert!(!Outcome::new(Verdict::Skip, "x", "y").failed());
}
