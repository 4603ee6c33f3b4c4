//! The Device reconciler: node entries of nodes that are gone, the Device's
//! `Available` condition and its deletion when no node sees it any more,
//! and what runs for it (broker pods or a Job, and its Service).
//!
//! ```text
//!  Device ─┬─ read: its DeviceSet, its pods/Job/Service, nodes (caches)
//!          ├─ entries of deleted or long-NotReady nodes ─► removed (as their agent's field manager)
//!          ├─ Available condition ─► Device status;  unseen past grace ─► Device deleted
//!          └─ brokers::plan ─► create / delete pods;  Job;  device Service
//! ```
//! Everything it reads is watched, so it waits for changes; it requeues only
//! for timers (toleration, grace, broker backoff).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_crds::conditions::{self, AVAILABLE};
use ambit_crds::contract;
use ambit_crds::v1alpha1::{Access, Device, DeviceSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::resource::v1::ResourceClaimTemplate;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::brokers::{self, Removal};
use crate::context::Context;
use crate::error::{self, Error};
use crate::health::{self, Fate};
use crate::{labels, workloads};

/// How often a Device is looked at again when nothing is happening: a
/// safety net, since every input is watched.
pub const SAFETY_NET: Duration = Duration::from_secs(300);

/// How soon a Device (or DeviceSet) is looked at again after a reconcile
/// that saw news or acted: long enough for the caches to catch up.
pub const RECHECK: Duration = Duration::from_secs(2);

/// A new Device gets this long to receive its first node entry before it
/// is called unseen (the agent writes spec and entry in two steps).
const NEWBORN: Duration = Duration::from_secs(5);

/// Reconciles one Device.
#[instrument(skip_all, fields(device = %device.name_any(), namespace = device.namespace().unwrap_or_default()))]
pub async fn reconcile(device: Arc<Device>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never decide from caches that have not listed yet (an empty node
    // cache would make every node look deleted).
    ctx.wait_synced().await;
    let started = Instant::now();
    let result = reconcile_inner(&device, &ctx).await;
    ctx.metrics
        .reconciled("device", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&device.uid().unwrap_or_default());
    }
    result
}

/// Retries a failed reconcile with capped exponential backoff.
pub fn error_policy(device: Arc<Device>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("device", error.category());
    let attempt = ctx.failed_attempt(&device.uid().unwrap_or_default());
    let delay = error::backoff(attempt);
    warn!(%error, device = %device.name_any(), attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(device: &Device, ctx: &Context) -> Result<Action, Error> {
    if device.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = device.namespace().unwrap_or_default();
    let name = device.name_any();
    let set = ctx
        .stores
        .sets
        .get(&ObjectRef::new(&device.spec.device_set).within(&namespace));
    let now = Timestamp::now();
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));

    // 1. Entries of nodes that are gone.
    let (stale, recheck) = health::stale_entries(
        device,
        &ctx.node_health(),
        ctx.settings.not_ready_toleration,
        now,
    );
    if let Some(recheck) = recheck {
        soonest(recheck);
    }
    for node in &stale {
        remove_entry(ctx, &namespace, &name, node).await?;
        ctx.event(
            device,
            EventType::Normal,
            "NodeLost",
            format!("removed node {node}'s entry: the node is gone or NotReady too long"),
        );
    }
    let seen_by = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| !stale.contains(&n.node))
        .count();

    // 2. Available, and the fate of a device no node sees.
    let current = device
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == AVAILABLE)
        .cloned();
    let age = device
        .creation_timestamp()
        .map_or(Duration::MAX, |t| now.duration_since(t.0).unsigned_abs());
    if seen_by == 0 && current.is_none() && age < NEWBORN {
        soonest(NEWBORN - age);
    } else {
        let mut conditions = device
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let available = health::available(device, seen_by);
        let summary = format!(
            "{}/{}/{}/{:?}",
            available.status, available.reason, available.message, available.observed_generation
        );
        // The cached Device may not show a write made a moment ago: do not
        // write the same condition again until the cache has had time.
        if conditions::set_condition(&mut conditions, available)
            && ctx.should_write(&device.uid().unwrap_or_default(), &summary)
        {
            write_conditions(ctx, &namespace, &name, &conditions).await?;
            ctx.wrote(&device.uid().unwrap_or_default(), summary);
        }
        match health::fate(
            current.as_ref(),
            seen_by,
            health::grace(device, set.as_deref()),
            now,
        ) {
            Fate::Keep => {}
            Fate::DeleteAfter(after) => soonest(after),
            Fate::Delete => {
                delete_device(ctx, device).await?;
                if let Some(set) = &set {
                    ctx.event(
                        set.as_ref(),
                        EventType::Normal,
                        "DeviceDeleted",
                        format!(
                            "no node has seen device {} ({}) for its grace period",
                            name, device.spec.id
                        ),
                    );
                }
                return Ok(Action::await_change());
            }
        }
    }

    // 3. Where pods can claim it (DRA), and what runs for it.
    let nodes: Vec<String> = device
        .status
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| !stale.contains(&n.node))
        .map(|n| n.node.clone())
        .collect();
    crate::slices::sync(ctx, device, &nodes).await?;
    if let Some(set) = set {
        if let Some(after) = brokers(ctx, device, &set).await? {
            soonest(after);
        }
        device_service(ctx, device, &set).await?;
    }
    // Every input is watched; the long requeue is only a safety net.
    Ok(Action::requeue(wake.unwrap_or(SAFETY_NET)))
}

/// Removes `node`'s entry by applying an empty list as that node's agent's
/// field manager: server-side apply then drops exactly what that agent
/// owned, and nothing of any other node.
async fn remove_entry(ctx: &Context, namespace: &str, name: &str, node: &str) -> Result<(), Error> {
    let api: Api<Device> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": name },
        "status": { "nodes": [] },
    });
    let params = PatchParams::apply(&contract::agent_manager(node)).force();
    info!(
        device = name,
        node, "removing the entry of a node that is gone"
    );
    match api.patch_status(name, &params, &Patch::Apply(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::RemoveEntry {
            device: name.to_owned(),
            node: node.to_owned(),
            source,
        }),
    }
}

async fn write_conditions(
    ctx: &Context,
    namespace: &str,
    name: &str,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Result<(), Error> {
    let api: Api<Device> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
        "metadata": { "name": name },
        "status": { "conditions": conditions },
    });
    api.patch_status(
        name,
        &PatchParams::apply(contract::CONTROLLER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| Error::DeviceStatus {
        device: name.to_owned(),
        source,
    })
}

async fn delete_device(ctx: &Context, device: &Device) -> Result<(), Error> {
    let name = device.name_any();
    let api: Api<Device> =
        Api::namespaced(ctx.client.clone(), &device.namespace().unwrap_or_default());
    info!(device = %name, "no node sees the device any more; deleting it");
    // Only this very object: a Device recreated meanwhile has another uid.
    let mut params = DeleteParams::background();
    params.preconditions = Some(kube::api::Preconditions {
        uid: device.uid(),
        resource_version: None,
    });
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(Error::DeleteDevice {
            device: name,
            source,
        }),
    }
}

/// Broker pods or the Job. Returns when to look again, if a timer is due.
async fn brokers(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
) -> Result<Option<Duration>, Error> {
    let Some(broker) = &set.spec.broker else {
        return Ok(None);
    };
    let namespace = device.namespace().unwrap_or_default();
    let uid = device.uid().unwrap_or_default();
    if broker.access == Some(Access::Dra) {
        ensure_claim_template(ctx, device, set).await?;
    }
    if let Some(job) = &broker.job {
        ensure_job(ctx, device, set, job).await?;
        return Ok(None);
    }
    let Some(template) = &broker.pod else {
        return Ok(None);
    };

    let owned: Vec<Arc<Pod>> =
        Context::lookup(&ctx.stores.pods, &ctx.indexes.pods_by_owner.get(&uid));
    for pod in &owned {
        if is_ready(pod)
            && let Some(node) = brokers::node_of(pod)
        {
            ctx.broker_ok(&uid, node);
        }
    }
    let pods: Vec<&Pod> = owned.iter().map(AsRef::as_ref).collect();
    let plan = brokers::plan(device, set, template, &pods, &ctx.backoff_of(&uid));
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);

    // A pod bound to a node that no longer exists has no kubelet to finish
    // its deletion: without a force delete it would hold its slot until the
    // pod garbage collector comes round (40 s or more).
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        if on_deleted_node(ctx, pod) {
            force_delete(&api, &pod.name_any()).await?;
        }
    }

    for (name, removal) in &plan.delete {
        let pod = pods.iter().find(|p| &p.name_any() == name);
        let failed = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Failed");
        if *removal == Removal::Ended
            && failed
            && let Some(node) = pod.and_then(|p| brokers::node_of(p))
        {
            let wait = ctx.broker_failed(&uid, node);
            info!(pod = %name, node, backoff = ?wait, "broker failed; replacing it after a backoff");
        }
        if pod.is_some_and(|p| on_deleted_node(ctx, p)) {
            force_delete(&api, name).await?;
        } else {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::DeletePod {
                        pod: name.clone(),
                        source,
                    });
                }
            }
        }
        ctx.event(
            device,
            EventType::Normal,
            removal.reason(),
            format!("deleted broker pod {name}"),
        );
    }
    for pod in &plan.create {
        let name = pod.name_any();
        if ctx.awaited(&format!("{namespace}/{name}"), false) {
            continue;
        }
        let node = brokers::node_of(pod).unwrap_or_default().to_owned();
        match api
            .create(
                &PostParams {
                    field_manager: Some(contract::CONTROLLER.into()),
                    ..Default::default()
                },
                pod,
            )
            .await
        {
            Ok(_) => {
                ctx.expect(format!("{namespace}/{name}"));
                ctx.event(
                    device,
                    EventType::Normal,
                    "BrokerCreated",
                    format!("created broker pod {name} for node {node}"),
                );
            }
            // The cache lags behind an earlier create: the pod is there.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => return Err(Error::CreatePod { pod: name, source }),
        }
    }
    let over = !plan.over_capacity.is_empty();
    if ctx.over_capacity(&uid, over) {
        ctx.event(
            device,
            EventType::Normal,
            "CapacityReached",
            format!(
                "all {} slot(s) used; no broker for node(s) {}",
                device.spec.capacity,
                plan.over_capacity.join(", ")
            ),
        );
    }
    // The pod cache is a separate watch from the trigger: look again soon
    // rather than trust that a later event will come (it may have come
    // already, ahead of the cache); see `Context::look_again`.
    let fingerprint = labels::fingerprint(
        labels::version_of(device)
            .into_iter()
            .chain(pods.iter().flat_map(|p| labels::version_of(*p))),
    );
    let acted = !plan.create.is_empty() || !plan.delete.is_empty();
    let soon = ctx.look_again(&uid, fingerprint, acted).then_some(RECHECK);
    Ok(match (plan.retry_after, soon) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Creates the ResourceClaimTemplate DRA broker pods claim the device
/// through, unless the cache has it (it never changes: the Device's name
/// and namespace are all it says).
async fn ensure_claim_template(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let name = crate::access::template_name(device);
    if ctx
        .stores
        .claim_templates
        .get(&ObjectRef::new(&name).within(&namespace))
        .is_some()
        || ctx.awaited(&format!("template:{namespace}/{name}"), false)
    {
        return Ok(());
    }
    let api: Api<ResourceClaimTemplate> = Api::namespaced(ctx.client.clone(), &namespace);
    let template = crate::access::claim_template(device, &set.name_any());
    match api
        .create(
            &PostParams {
                field_manager: Some(contract::CONTROLLER.into()),
                ..Default::default()
            },
            &template,
        )
        .await
    {
        Ok(_) => {
            ctx.expect(format!("template:{namespace}/{name}"));
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::CreateClaimTemplate {
            template: name,
            source,
        }),
    }
}

/// Whether `pod` is bound to a node whose Node object is gone.
fn on_deleted_node(ctx: &Context, pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|node| ctx.stores.nodes.get(&ObjectRef::new(node)).is_none())
}

/// Deletes `name` at once (grace period 0), as the pod garbage collector
/// does with the pods of deleted nodes.
async fn force_delete(api: &Api<Pod>, name: &str) -> Result<(), Error> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeletePod {
            pod: name.to_owned(),
            source,
        }),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ensure_job(
    ctx: &Context,
    device: &Device,
    set: &DeviceSet,
    template: &k8s_openapi::api::batch::v1::JobSpec,
) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let desired = workloads::job(device, set, template);
    let name = desired.name_any();
    let existing = ctx
        .stores
        .jobs
        .get(&ObjectRef::new(&name).within(&namespace));
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let error = |source| Error::ApplyJob {
        job: name.clone(),
        source,
    };
    match existing {
        Some(job) if workloads::is_current(job.as_ref(), &desired) => return Ok(()),
        Some(_) => {
            // broker.job changed: Jobs cannot be edited, so run it anew.
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(error(source)),
            }
            return Ok(());
        }
        None => {}
    }
    match api
        .create(
            &PostParams {
                field_manager: Some(contract::CONTROLLER.into()),
                ..Default::default()
            },
            &desired,
        )
        .await
    {
        Ok(_) => {
            ctx.event(
                device,
                EventType::Normal,
                "JobCreated",
                format!("created broker Job {name}"),
            );
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(error(source)),
    }
}

async fn device_service(ctx: &Context, device: &Device, set: &DeviceSet) -> Result<(), Error> {
    let namespace = device.namespace().unwrap_or_default();
    let name = workloads::device_service_name(device);
    let existing = ctx
        .stores
        .services
        .get(&ObjectRef::new(&name).within(&namespace));
    match &set.spec.device_service {
        Some(template) => {
            let desired = workloads::device_service(device, set, template);
            if existing.is_some_and(|e| workloads::is_current(e.as_ref(), &desired)) {
                return Ok(());
            }
            apply_service(ctx, &namespace, &desired).await
        }
        None => match existing {
            Some(service) if labels::spec_hash_of(service.as_ref()).is_some() => {
                delete_service(ctx, &namespace, &name).await
            }
            _ => Ok(()),
        },
    }
}

/// Applies a Service with server-side apply.
pub async fn apply_service(ctx: &Context, namespace: &str, service: &Service) -> Result<(), Error> {
    let name = service.name_any();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(contract::CONTROLLER).force(),
        &Patch::Apply(service),
    )
    .await
    .map(drop)
    .map_err(|source| Error::ApplyService {
        service: name,
        source,
    })
}

/// Deletes a Service Ambit made and no longer wants.
pub async fn delete_service(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::ApplyService {
            service: name.to_owned(),
            source,
        }),
    }
}
