//! `ambit check`: does an install of Ambit work? One line per check, `ok`,
//! `FAIL` or `skip` with the reason; exit 1 when any check fails. The
//! chart's `helm test` Pod runs it (deploy/helm/ambit/templates/tests/).
//!
//! ```text
//!  CRDs devicesets/devices/devicereports.ambit.dev ──get──► Established, v1alpha1 served
//!  DeviceSets in --namespace ──list──► the API answers
//!  DaemonSets  component=agent   ──list──► numberReady == desired > 0
//!  DaemonSets  component=handler ──list──► likewise, or skip when none
//!  Deployments component=controller ──list──► all replicas ready
//!     └─ its env AMBIT_LEASE_NAME/NAMESPACE ──► Lease ──get──► holder, renewed in time
//!  /apis: resource.k8s.io/v1? and the agent's AMBIT_DRA ──► DeviceClass ambit.dev ──get──►
//! ```
//!
//! Objects are found by the chart's labels (`app.kubernetes.io/name=ambit`,
//! `app.kubernetes.io/component`, and `app.kubernetes.io/instance` with
//! `--release`) in `--namespace`. `--wait` repeats the round every two
//! seconds until every check passes or the time is up, then prints the last
//! round. The verdicts are pure functions in [`judge`].

mod judge;

use std::io::Write;
use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSet;
use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::resource::v1::DeviceClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::time::Instant;

use judge::{Outcome, Verdict};

/// How long to wait between rounds with `--wait`.
const INTERVAL: Duration = Duration::from_secs(2);
/// A round that takes longer than this fails: the API server is not answering.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `ambit check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The namespace Ambit is installed in (default: the kubeconfig
    /// context's, or the pod's own in a cluster).
    #[arg(short, long, env = "AMBIT_CHECK_NAMESPACE")]
    namespace: Option<String>,

    /// Only the objects of this Helm release (label
    /// app.kubernetes.io/instance); default: every Ambit install in the
    /// namespace.
    #[arg(short, long, env = "AMBIT_CHECK_RELEASE")]
    release: Option<String>,

    /// Retry until every check passes or this much time has passed (e.g.
    /// 60s, 2m); default: check once.
    #[arg(long, env = "AMBIT_CHECK_WAIT", value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
}

/// Where to look: the namespace and, optionally, one release in it.
#[derive(Debug)]
struct Target {
    namespace: String,
    release: Option<String>,
}

impl Target {
    /// The label selector of one component's objects.
    fn selector(&self, component: &str) -> String {
        let mut selector =
            format!("app.kubernetes.io/name=ambit,app.kubernetes.io/component={component}");
        if let Some(release) = &self.release {
            selector.push_str(&format!(",app.kubernetes.io/instance={release}"));
        }
        selector
    }
}

/// Checks the install, printing one line per check; fails when any check does.
pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let CheckArgs {
        namespace,
        release,
        wait,
    } = args;
    let client = Client::try_default()
        .await
        .context("no Kubernetes cluster configured (KUBECONFIG or in-cluster)")?;
    let target = Target {
        namespace: namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
        release,
    };
    let deadline = Instant::now() + wait.unwrap_or_default();
    let mut waiting_for = vec![];
    let outcomes = loop {
        let outcomes = match tokio::time::timeout(ROUND_TIMEOUT, round(&client, &target)).await {
            Ok(outcomes) => outcomes,
            Err(_) => vec![Outcome::new(
                Verdict::Fail,
                "API server",
                format!(
                    "no answer within {}",
                    humantime::format_duration(ROUND_TIMEOUT)
                ),
            )],
        };
        let failing: Vec<String> = outcomes
            .iter()
            .filter(|o| o.failed())
            .map(|o| o.what.clone())
            .collect();
        if failing.is_empty() || Instant::now() + INTERVAL > deadline {
            break outcomes;
        }
        if failing != waiting_for {
            eprintln!("waiting for: {}", failing.join(", "));
            waiting_for = failing;
        }
        tokio::time::sleep(INTERVAL).await;
    };
    let mut out = std::io::stdout().lock();
    for outcome in &outcomes {
        writeln!(out, "{outcome}").context("failed to write to stdout")?;
    }
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} checks failed{}",
        outcomes.len(),
        wait.map(|w| format!(" after {}", humantime::format_duration(w)))
            .unwrap_or_default()
    );
    Ok(())
}

/// One round of every check.
async fn round(client: &Client, target: &Target) -> Vec<Outcome> {
    let mut outcomes = crds(client).await;
    outcomes.push(device_sets(client, target).await);

    let agents = components::<DaemonSet>(client, target, "agent").await;
    outcomes.extend(judged(
        &agents,
        "agent",
        "DaemonSet",
        target,
        judge::daemon_set,
    ));
    let handlers = components::<DaemonSet>(client, target, "handler").await;
    if handlers.as_ref().is_ok_and(Vec::is_empty) {
        outcomes.push(Outcome::new(
            Verdict::Skip,
            "handler DaemonSet",
            "none installed (externalHandlers.enabled is false)",
        ));
    } else {
        outcomes.extend(judged(
            &handlers,
            "handler",
            "DaemonSet",
            target,
            judge::daemon_set,
        ));
    }

    let controllers = components::<Deployment>(client, target, "controller").await;
    outcomes.extend(judged(
        &controllers,
        "controller",
        "Deployment",
        target,
        judge::deployment,
    ));
    for controller in controllers.iter().flatten() {
        outcomes.push(lease(client, controller).await);
    }

    // Without an agent to ask, assume the agent's default: DRA on.
    let agents_use_dra = match &agents {
        Ok(found) => found.is_empty() || found.iter().any(judge::agent_uses_dra),
        Err(_) => true,
    };
    outcomes.push(device_class(client, agents_use_dra).await);
    outcomes
}

/// Both CRDs exist, are Established and serve the version this CLI speaks.
async fn crds(client: &Client) -> Vec<Outcome> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let version = DeviceSet::version(&());
    let mut outcomes = vec![];
    for name in ambit_crds::crds().iter().map(ResourceExt::name_any) {
        let what = format!("CRD {name}");
        outcomes.push(match api.get_opt(&name).await {
            Ok(found) => {
                let (verdict, why) = judge::crd(found.as_ref(), &version);
                Outcome::new(verdict, what, why)
            }
            Err(error) => Outcome::new(Verdict::Fail, what, refusal("get it", &error)),
        });
    }
    outcomes
}

/// DeviceSets can be listed in the namespace (and decode as this CLI's types).
async fn device_sets(client: &Client, target: &Target) -> Outcome {
    let api: Api<DeviceSet> = Api::namespaced(client.clone(), &target.namespace);
    let what = format!("DeviceSets in {}", target.namespace);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Outcome::new(Verdict::Ok, what, "the API answers"),
        Err(error) => Outcome::new(Verdict::Fail, what, refusal("list them", &error)),
    }
}

/// The objects of kind `K` labelled as Ambit's `component` in the
/// namespace; the error says why they could not be listed.
async fn components<K>(client: &Client, target: &Target, component: &str) -> Result<Vec<K>, String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &target.namespace);
    let selector = target.selector(component);
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => Ok(list.items),
        Err(error) => Err(refusal(&format!("list them ({selector})"), &error)),
    }
}

/// One outcome per object found (named `<component> <kind> namespace/name`),
/// or one failure saying why there is none to judge.
fn judged<K: ResourceExt>(
    found: &Result<Vec<K>, String>,
    component: &str,
    kind: &str,
    target: &Target,
    judge: fn(&K) -> (Verdict, String),
) -> Vec<Outcome> {
    let what = format!("{component} {kind}");
    match found {
        Ok(objects) if objects.is_empty() => vec![Outcome::new(
            Verdict::Fail,
            what,
            format!(
                "none labelled {} in namespace {}: is Ambit installed there? (--namespace, --release)",
                target.selector(component),
                target.namespace
            ),
        )],
        Ok(objects) => objects
            .iter()
            .map(|object| {
                let (verdict, why) = judge(object);
                let name = object.name_any();
                Outcome::new(verdict, format!("{what} {}/{name}", target.namespace), why)
            })
            .collect(),
        Err(why) => vec![Outcome::new(Verdict::Fail, what, why.clone())],
    }
}

/// The controller's Lease, where its Deployment tells it to keep it.
async fn lease(client: &Client, controller: &Deployment) -> Outcome {
    let (namespace, name) = judge::lease_location(controller);
    let what = format!("controller Lease {namespace}/{name}");
    let api: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    match api.get_opt(&name).await {
        Ok(found) => {
            let (verdict, why) = judge::lease(found.as_ref(), Timestamp::now());
            Outcome::new(verdict, what, why)
        }
        Err(error) => Outcome::new(Verdict::Fail, what, refusal("get it", &error)),
    }
}

/// The DeviceClass `ambit.dev`, where the cluster serves DRA and the agent uses it.
async fn device_class(client: &Client, agents_use_dra: bool) -> Outcome {
    let what = format!("DeviceClass {}", ambit_dra::DRIVER);
    let dra_served = match client.list_api_groups().await {
        Ok(groups) => groups.groups.iter().any(|g| {
            g.name == DeviceClass::group(&()) && g.versions.iter().any(|v| v.version == "v1")
        }),
        Err(error) => {
            return Outcome::new(Verdict::Fail, what, refusal("list the API groups", &error));
        }
    };
    let found = if dra_served && agents_use_dra {
        let api: Api<DeviceClass> = Api::all(client.clone());
        match api.get_opt(ambit_dra::DRIVER).await {
            Ok(found) => found.is_some(),
            Err(error) => return Outcome::new(Verdict::Fail, what, refusal("get it", &error)),
        }
    } else {
        false
    };
    let (verdict, why) = judge::device_class(dra_served, agents_use_dra, found);
    Outcome::new(verdict, what, why)
}

/// Why a request failed, in the API server's words when it gave any.
fn refusal(action: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("failed to {action}: {}", status.message)
        }
        other => format!("failed to {action}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_names_the_component_and_the_release_when_given() {
        let mut target = Target {
            namespace: "ambit".into(),
            release: None,
        };
        assert_eq!(
            target.selector("agent"),
            "app.kubernetes.io/name=ambit,app.kubernetes.io/component=agent"
        );
        target.release = Some("edge".into());
        assert_eq!(
            target.selector("controller"),
            "app.kubernetes.io/name=ambit,app.kubernetes.io/component=controller,app.kubernetes.io/instance=edge"
        );
    }
}
