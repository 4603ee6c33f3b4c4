//! The controller at scale (issue 4 §4), on a real control plane with KWOK
//! nodes and the real scheduler: `cargo bench -p ambit-controller --bench scale`.
//!
//! 10,000 local Devices over 100 KWOK nodes (100 per node), each with an
//! entry for its node, written directly (as agents would) BEFORE the
//! controller starts; a DeviceSet with a pod broker, capacity 1. Then the
//! controller (release build) starts, and the clock runs until every broker
//! pod is Running (seen through a watch). Reported: that time, the
//! controller's memory (VmRSS, VmHWM) and CPU, API requests per Device by
//! verb and resource (kube-apiserver's `apiserver_request_total`, before and
//! after; the scheduler's bindings and KWOK's status updates show under
//! their own resources), and the writes during a quiet window after.
//!
//! | variable | default | |
//! |---|---|---|
//! | `AMBIT_BENCH_NODES` | 100 | KWOK nodes |
//! | `AMBIT_BENCH_DEVICES_PER_NODE` | 100 | local Devices per node |
//! | `AMBIT_BENCH_QUIET_SECS` | 60 | the steady-state window |
//! | `AMBIT_BENCH_JSON` | — | append the figures to this file, one JSON object a line (`scale/json.rs`); a relative path is from `controller/`, where cargo runs the bench |
//!
//! Under `cargo test` (no `--bench` argument) it only says how to run it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::ControlPlane;
use ambit_tests::controllers::Controller;
use ambit_tests::metrics::{ApiRequests, CpuTime, Memory, RequestKey};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

#[path = "scale/floor.rs"]
mod floor;
#[path = "scale/json.rs"]
mod json;

const CONTROLLER: &str = env!("CARGO_BIN_EXE_ambit-controller");
const NAMESPACE: &str = "bench";

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
    }};
}

fn env_or(name: &str, default: u64) -> anyhow::Result<u64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
    })
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        say!("scale: a benchmark; run it with `cargo bench -p ambit-controller --bench scale`");
        return Ok(());
    }
    let nodes = usize::try_from(env_or("AMBIT_BENCH_NODES", 100)?)?;
    let per_node = usize::try_from(env_or("AMBIT_BENCH_DEVICES_PER_NODE", 100)?)?;
    let quiet = Duration::from_secs(env_or("AMBIT_BENCH_QUIET_SECS", 60)?);
    let json = std::env::var_os("AMBIT_BENCH_JSON").map(PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(Box::pin(bench(nodes, per_node, quiet, json)))
}

async fn bench(
    nodes: usize,
    per_node: usize,
    quiet: Duration,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    let devices = nodes * per_node;
    say!("# ambit-controller scale benchmark");
    say!(
        "machine: {} cores; Kubernetes {} (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK {}); controller: release build",
        std::thread::available_parallelism().map_or(0, usize::from),
        ambit_tests::binaries::KUBERNETES_VERSION,
        ambit_tests::binaries::KWOK_VERSION
    );
    say!(
        "load: {devices} local Devices over {nodes} KWOK nodes, pod broker, capacity 1 → {devices} broker pods"
    );

    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    ambit_tests::crds::install(&client).await?;
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let node_names = ambit_tests::nodes::create(&client, "bench-node", nodes, &[]).await?;
    default_account(&client, NAMESPACE).await?;

    let set = write_set(&client).await?;
    let started = Instant::now();
    write_devices(&client, &set, &node_names, per_node).await?;
    say!(
        "setup: {devices} Devices with node entries written in {:.1?} (not measured)",
        started.elapsed()
    );

    // The clock starts when the controller starts; the Devices exist.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let before = ApiRequests::scrape(&client).await?;
    let t0 = Instant::now();
    let controller = Controller::start(&cp, CONTROLLER.as_ref(), NAMESPACE, "bench")?;
    let pid = controller
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the controller is not running"))?;
    let cpu0 = CpuTime::of(pid)?;
    let converged = running_pods(&pods, devices, Duration::from_secs(1800)).await?;
    let cpu = CpuTime::of(pid)?;
    let memory = Memory::of(pid)?;
    tokio::time::sleep(Duration::from_secs(5)).await; // let the last status writes land
    let after = ApiRequests::scrape(&client).await?;
    let load = after.since(&before);

    // Over the time since the start so far (the settle and the scrape included).
    let cpu_pct = cpu.percent_since(&cpu0, t0.elapsed());
    say!("\n## convergence (controller start → {devices} broker pods Running)");
    say!("time: {:.1?}", converged.running);
    say!(
        "  every pod created (the controller): {:.1?}; bound (kube-scheduler): {:.1?}; Running (KWOK): {:.1?}",
        converged.created,
        converged.bound,
        converged.running
    );
    say!(
        "controller CPU over it: {:.1?} ({:.0}% of one core)",
        cpu.0.saturating_sub(cpu0.0),
        cpu_pct
    );
    say!(
        "controller memory: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(memory.rss),
        mib(memory.hwm)
    );
    say!("\n## API requests per Device during convergence (all clients; by verb and resource)");
    report(&load, devices);

    say!("\n## steady state: {quiet:?} with nothing changing");
    let quiet_before = ApiRequests::scrape(&client).await?;
    let quiet_cpu0 = CpuTime::of(pid)?;
    tokio::time::sleep(quiet).await;
    let quiet_delta = ApiRequests::scrape(&client).await?.since(&quiet_before);
    let writes = quiet_delta.filter(|k| {
        !k.is_read()
            && (k.group == "ambit.dev"
                || k.resource.starts_with("pods")
                || k.resource == "events"
                || k.resource == "services"
                || k.resource == "jobs")
    });
    say!(
        "writes to Ambit's objects, pods, Services, Jobs and Events: {}",
        writes.sum(|_| true)
    );
    report(&writes, 1);
    let quiet_cpu = CpuTime::of(pid)?.percent_since(&quiet_cpu0, quiet);
    let quiet_rss = mib(Memory::of(pid)?.rss);
    say!("controller CPU: {quiet_cpu:.1}% of one core; VmRSS {quiet_rss:.1} MiB");
    drop(controller);

    say!(
        "\n## floor: the same writes from one plain client, {} at once",
        32
    );
    let floor = floor::measure(&client, NAMESPACE).await?;
    say!(
        "{devices} × (conditions applied, pod created, Event posted): {floor:.1?}; the controller's pod creation took {:.1}× that, its convergence {:.1}×",
        converged.created.as_secs_f64() / floor.as_secs_f64(),
        converged.running.as_secs_f64() / floor.as_secs_f64()
    );
    cp.shutdown();

    if let Some(path) = json {
        let per_device = |keep: &dyn Fn(&RequestKey) -> bool| load.sum(keep) / devices as f64;
        let line = json::RunLine {
            bench: "controller",
            nodes,
            devices_per_node: per_node,
            devices,
            convergence_s: converged.running.as_secs_f64(),
            created_s: converged.created.as_secs_f64(),
            bound_s: converged.bound.as_secs_f64(),
            floor_s: floor.as_secs_f64(),
            ratio: converged.running.as_secs_f64() / floor.as_secs_f64(),
            created_ratio: converged.created.as_secs_f64() / floor.as_secs_f64(),
            controller_cpu_s: cpu.0.saturating_sub(cpu0.0).as_secs_f64(),
            controller_cpu_pct: cpu_pct,
            controller_rss_mib: mib(memory.rss),
            controller_hwm_mib: mib(memory.hwm),
            pod_posts_per_device: per_device(&|k| {
                k.verb == "POST" && k.group.is_empty() && k.resource == "pods"
            }),
            device_status_writes_per_device: per_device(&|k| {
                !k.is_read() && k.group == "ambit.dev" && k.resource == "devices/status"
            }),
            writes_per_device: load
                .0
                .iter()
                .filter(|(k, n)| **n > 0.0 && !k.is_read())
                .map(|(k, n)| (k.to_string(), n / devices as f64))
                .collect(),
            quiet_s: quiet.as_secs_f64(),
            at_rest_writes: writes.sum(|_| true) + 0.0,
            at_rest_cpu_pct: quiet_cpu,
            at_rest_rss_mib: quiet_rss,
            commit: json::commit(),
            timestamp: json::timestamp(),
        };
        json::append(&path, &line)?;
    }
    Ok(())
}

/// Waits for `namespace`'s default ServiceAccount (pods cannot be created
/// before it).
async fn default_account(client: &Client, namespace: &str) -> anyhow::Result<()> {
    ambit_tests::env::default_service_account(client, namespace, Duration::from_secs(60)).await
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(delta: &ApiRequests, per: usize) {
    for (key, count) in &delta.0 {
        if *count > 0.0 && !key.is_read() {
            say!(
                "  {key:<45} {count:>8.0}  {:>7.3} per Device",
                count / per as f64
            );
        }
    }
    let reads: f64 = delta.sum(|k| k.is_read()) + 0.0;
    say!("  (reads: {reads:.0} in all)");
}

async fn write_set(client: &Client) -> anyhow::Result<DeviceSet> {
    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": "bench", "namespace": NAMESPACE },
        "spec": {
            "discovery": { "handler": "debug-echo", "gracePeriodSeconds": 3600 },
            "capacity": 1,
            "broker": { "pod": { "containers": [{ "name": "broker", "image": "example/broker:1" }] } },
        },
    }))?;
    Ok(Api::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &set)
        .await?)
}

/// Writes the Devices as agents would: the object, then the node's entry.
async fn write_devices(
    client: &Client,
    set: &DeviceSet,
    nodes: &[String],
    per_node: usize,
) -> anyhow::Result<()> {
    let api: Api<Device> = Api::namespaced(client.clone(), NAMESPACE);
    let owner = json!([{
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet", "name": set.name_any(),
        "uid": set.uid().unwrap_or_default(), "controller": true,
    }]);
    let work: Vec<(String, usize)> = nodes
        .iter()
        .flat_map(|n| (0..per_node).map(move |i| (n.clone(), i)))
        .collect();
    stream::iter(work)
        .map(|(node, i)| {
            let api = api.clone();
            let owner = owner.clone();
            async move {
                let id = format!("dev-{i}");
                let name = ambit_crds::names::device_name("bench", &id, Some(&node));
                let manager = PatchParams::apply(&format!("ambit-agent/{node}")).force();
                let device = json!({
                    "apiVersion": "ambit.dev/v1alpha1", "kind": "Device",
                    "metadata": { "name": name, "ownerReferences": owner },
                    "spec": { "deviceSet": "bench", "id": id, "shared": false, "node": node, "capacity": 1 },
                });
                api.patch(&name, &manager, &Patch::Apply(&device)).await?;
                let entry = json!({
                    "apiVersion": "ambit.dev/v1alpha1", "kind": "Device", "metadata": { "name": name },
                    "status": { "nodes": [{ "node": node, "since": "2026-01-01T00:00:00Z" }] },
                });
                api.patch_status(&name, &manager, &Patch::Apply(&entry)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// When each stage had every pod: created (the controller's part), bound
/// to a node (kube-scheduler's), Running (KWOK's).
struct Stages {
    created: Duration,
    bound: Duration,
    running: Duration,
}

/// Watches pods until `want` of them are Running; returns when every pod
/// was created, bound and Running.
async fn running_pods(api: &Api<Pod>, want: usize, timeout: Duration) -> anyhow::Result<Stages> {
    let started = Instant::now();
    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut bound: BTreeSet<String> = BTreeSet::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let (mut all_created, mut all_bound) = (None, None);
    let mut last_report = Instant::now();
    let events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let mut events = std::pin::pin!(events);
    let wait = async {
        while let Some(pod) = events.try_next().await? {
            let name = pod.name_any();
            let live = pod.metadata.deletion_timestamp.is_none();
            let is_running =
                pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && live;
            let is_bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) && live;
            for (set, is) in [
                (&mut created, live),
                (&mut bound, is_bound),
                (&mut running, is_running),
            ] {
                if is {
                    set.insert(name.clone());
                } else {
                    set.remove(&name);
                }
            }
            if all_created.is_none() && created.len() >= want {
                all_created = Some(started.elapsed());
            }
            if all_bound.is_none() && bound.len() >= want {
                all_bound = Some(started.elapsed());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                say!(
                    "  … after {:.0?}: {} pods created, {} bound, {} Running",
                    started.elapsed(),
                    created.len(),
                    bound.len(),
                    running.len()
                );
                last_report = Instant::now();
            }
            if running.len() >= want {
                let running = started.elapsed();
                return anyhow::Ok(Stages {
                    created: all_created.unwrap_or(running),
                    bound: all_bound.unwrap_or(running),
                    running,
                });
            }
        }
        anyhow::bail!("the pod watch ended")
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| anyhow::anyhow!("not converged within {timeout:?}"))?
}
