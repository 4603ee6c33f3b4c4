//! The pure half of `ambit check`: given what the API server returned, each
//! check's verdict (ok, FAIL, skip) and the reason, in words an operator
//! acts on. Nothing here talks to the cluster.

use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// The Lease the controller elects its leader through, unless its
/// Deployment says otherwise (`AMBIT_LEASE_NAME`, the chart's
/// `controller.leaseName`): the controller's own default.
pub(crate) const DEFAULT_LEASE_NAME: &str = "ambit-controller";

/// The namespace of the Lease when the Deployment sets no
/// `AMBIT_LEASE_NAMESPACE`: the controller's own default.
const DEFAULT_LEASE_NAMESPACE: &str = "default";

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It works.
    Ok,
    /// It does not; the reason says why.
    Fail,
    /// Not applicable to this install (e.g. no external handlers); not a failure.
    Skip,
}

/// One line of `ambit check`'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) verdict: Verdict,
    /// What was checked, e.g. `agent DaemonSet ambit-system/ambit-agent`.
    pub(crate) what: String,
    /// Why it passed, failed or was skipped.
    pub(crate) why: String,
}

impl Outcome {
    pub(crate) fn new(verdict: Verdict, what: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            verdict,
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.verdict == Verdict::Fail
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        write!(f, "{verdict:<4}  {}: {}", self.what, self.why)
    }
}

/// A verdict and its reason, before it is given the name of what was checked.
type Judgement = (Verdict, String);

fn fail(why: impl Into<String>) -> Judgement {
    (Verdict::Fail, why.into())
}

fn ok(why: impl Into<String>) -> Judgement {
    (Verdict::Ok, why.into())
}

/// A CRD must exist, be Established and serve `version`.
pub(crate) fn crd(found: Option<&CustomResourceDefinition>, version: &str) -> Judgement {
    let Some(crd) = found else {
        return fail(
            "not found: install the chart (Helm applies its crds/) or `ambit crds | kubectl apply -f -`",
        );
    };
    let conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let established = conditions.iter().find(|c| c.type_ == "Established");
    if established.is_none_or(|c| c.status != "True") {
        let detail = established
            .and_then(|c| c.message.as_deref().or(c.reason.as_deref()))
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return fail(format!("not Established{detail}"));
    }
    let served: Vec<&str> = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.as_str())
        .collect();
    if !served.contains(&version) {
        return fail(format!(
            "does not serve {version} (serves: {})",
            if served.is_empty() {
                "none".to_owned()
            } else {
                served.join(", ")
            }
        ));
    }
    ok(format!("Established, serves {version}"))
}

/// A DaemonSet works when every pod it should run is ready, on at least
/// one node, and its status is of the current spec.
pub(crate) fn daemon_set(ds: &DaemonSet) -> Judgement {
    let Some(status) = &ds.status else {
        return fail("no status yet: the DaemonSet controller has not seen it");
    };
    if let Some(why) = stale(ds.metadata.generation, status.observed_generation) {
        return fail(why);
    }
    let desired = status.desired_number_scheduled;
    if desired <= 0 {
        return fail(
            "no node to run on (desiredNumberScheduled 0): check its nodeSelector and tolerations against the nodes' labels and taints",
        );
    }
    let updated = status.updated_number_scheduled.unwrap_or(desired);
    rolled_out(status.number_ready, updated, desired, "pods")
}

/// A Deployment works when all its replicas (at least one) are ready and
/// run the current spec.
pub(crate) fn deployment(deployment: &Deployment) -> Judgement {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if wanted <= 0 {
        return fail("scaled to 0 replicas: nothing runs the controller");
    }
    let Some(status) = &deployment.status else {
        return fail("no status yet: the Deployment controller has not seen it");
    };
    if let Some(why) = stale(deployment.metadata.generation, status.observed_generation) {
        return fail(why);
    }
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(wanted);
    rolled_out(ready, updated, wanted, "replicas")
}

/// All `wanted` pods (or replicas) ready and running the current spec.
fn rolled_out(ready: i32, updated: i32, wanted: i32, unit: &str) -> Judgement {
    if ready < wanted {
        return fail(format!("{ready} of {wanted} {unit} ready"));
    }
    if updated < wanted {
        return fail(format!(
            "rolling out: {updated} of {wanted} {unit} run the current spec"
        ));
    }
    ok(format!("{ready}/{wanted} {unit} ready"))
}

/// Why a status is not (yet) of its object's current generation.
fn stale(generation: Option<i64>, observed: Option<i64>) -> Option<String> {
    let generation = generation?;
    let observed = observed.unwrap_or(0);
    (observed < generation).then(|| {
        format!(
            "its status is of generation {observed}, its spec of {generation}: not yet acted on"
        )
    })
}

/// A leader-election Lease works when it has a holder whose last renewal
/// is within the Lease's duration (as the controller's lease manager reads
/// it: without a renewal time or a duration, a Lease counts as expired).
pub(crate) fn lease(found: Option<&Lease>, now: Timestamp) -> Judgement {
    let Some(lease) = found else {
        return fail("not found: no controller replica has started leader election");
    };
    let spec = lease.spec.as_ref();
    let Some(holder) = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
    else {
        return fail("no holder: no controller replica leads");
    };
    let Some(renewed) = spec.and_then(|s| s.renew_time.as_ref()) else {
        return fail(format!("held by {holder}, never renewed"));
    };
    let Some(seconds) = spec.and_then(|s| s.lease_duration_seconds) else {
        return fail(format!(
            "held by {holder} without a leaseDurationSeconds: counts as expired"
        ));
    };
    let since = now.duration_since(renewed.0);
    // A renewal "in the future" is clock skew between here and the leader.
    let age = if since.is_negative() {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(since.unsigned_abs().as_secs())
    };
    let duration = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let ago = humantime::format_duration(age);
    let lasts = humantime::format_duration(duration);
    if age > duration {
        return fail(format!(
            "held by {holder}, last renewed {ago} ago, past its {lasts} duration: the leader stopped renewing"
        ));
    }
    ok(format!(
        "held by {holder}, renewed {ago} ago (lasts {lasts})"
    ))
}

/// Where the controller of `deployment` keeps its Lease: `(namespace,
/// name)`, read from its pod template's environment as the chart sets it,
/// else the controller's defaults.
pub(crate) fn lease_location(deployment: &Deployment) -> (String, String) {
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let own = deployment.namespace().unwrap_or_default();
    let namespace = match env_var(template, "AMBIT_LEASE_NAMESPACE") {
        None => DEFAULT_LEASE_NAMESPACE.to_owned(),
        Some(EnvVar {
            value: Some(value), ..
        }) if !value.is_empty() => value.clone(),
        // The chart's downward-API fieldRef (metadata.namespace), or a
        // source we cannot read from here: the Deployment's namespace.
        Some(_) => own,
    };
    let name = env_value(template, "AMBIT_LEASE_NAME").unwrap_or(DEFAULT_LEASE_NAME);
    (namespace, name.to_owned())
}

/// Whether an agent DaemonSet publishes to DRA (`AMBIT_DRA`, true unless
/// set to false).
pub(crate) fn agent_uses_dra(ds: &DaemonSet) -> bool {
    let template = ds.spec.as_ref().map(|s| &s.template);
    env_value(template, "AMBIT_DRA").is_none_or(|v| !v.eq_ignore_ascii_case("false"))
}

/// The DeviceClass check: needed when the cluster serves DRA and an agent
/// uses it; skipped (with the reason) otherwise.
pub(crate) fn device_class(dra_served: bool, agents_use_dra: bool, found: bool) -> Judgement {
    if !dra_served {
        return (
            Verdict::Skip,
            "the cluster does not serve resource.k8s.io/v1: no DRA, pods use device plugins".into(),
        );
    }
    if !agents_use_dra {
        return (
            Verdict::Skip,
            "the agent does not use DRA (AMBIT_DRA=false, podAccess.dra.enabled=false)".into(),
        );
    }
    if !found {
        return fail(
            "not found: claims for Ambit's devices name it (the chart ships it unless podAccess.dra.deviceClass=false)",
        );
    }
    ok("exists")
}

fn env_var<'a>(template: Option<&'a PodTemplateSpec>, name: &str) -> Option<&'a EnvVar> {
    template?
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == name)
}

/// The literal value of environment variable `name` in any container of
/// `template`.
fn env_value<'a>(template: Option<&'a PodTemplateSpec>, name: &str) -> Option<&'a str> {
    env_var(template, name)?.value.as_deref()
}

#[cfg(test)]
mod tests;
