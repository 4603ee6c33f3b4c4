//! One run of a scenario on a control plane of its own: agents, one
//! DeviceSet, the figures.
//!
//! ```text
//!  start control plane, CRDs, nodes, agents ─► idle memory
//!  watch Devices (listed) ─► scrape ─► apply DeviceSet ═══ watch until every Device has every entry
//!  ─► watch the DeviceSet's entries ─► settle ─► scrape (load delta), memory
//!  ─► [last run] quiet window ─► scrape (steady-state delta), memory
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::ControlPlane;
use ambit_tests::agents::Agent;
use ambit_tests::controllers::Controller;
use ambit_tests::metrics::{ApiRequests, CpuTime, Memory, scrape_apiserver, sum_samples};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::kubelet::Kubelet;

/// The agent this bench builds; `AMBIT_AGENT_BIN` names another one to
/// measure (an older build, side by side on the same day).
fn agent_binary() -> std::path::PathBuf {
    std::env::var_os("AMBIT_AGENT_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_ambit-agent").into(), Into::into)
}

/// The controller beside this bench's agent build (`cargo build --release
/// -p ambit-controller`); `AMBIT_CONTROLLER_BIN` names another one. Shared
/// scenarios need it: it folds the agents' reports into the Devices.
fn controller_binary() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("AMBIT_CONTROLLER_BIN") {
        Some(path) => Ok(path.into()),
        None => Controller::sibling_binary(env!("CARGO_BIN_EXE_ambit-agent"), "ambit-controller"),
    }
}
const NAMESPACE: &str = "bench";
const SET: &str = "bench";
/// How long convergence may take before the run is given up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);
/// After convergence, before the load delta is taken: lets the writes that
/// follow the last Device (the DeviceSet entry, Events) land in the load
/// window, not in the steady-state one.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What a scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// A short name.
    pub name: &'static str,
    /// Agents, one per KWOK node.
    pub nodes: usize,
    /// Devices in the DeviceSet.
    pub devices: usize,
    /// Whether every node sees the same devices (one Device, an entry per
    /// node) or each its own.
    pub shared: bool,
}

impl Scenario {
    /// Devices objects the run ends with.
    pub fn objects(&self) -> usize {
        if self.shared {
            self.devices
        } else {
            self.devices * self.nodes
        }
    }
}

/// Per-agent figures.
#[derive(Debug, Clone)]
pub struct AgentFigures {
    /// Memory once ready, before the DeviceSet.
    pub idle: Memory,
    /// Memory after the load (settled).
    pub loaded: Memory,
    /// CPU from the apply to convergence.
    pub cpu_converge: Duration,
    /// CPU from the apply to the end of the settle window.
    pub cpu_load: Duration,
    /// The agent's own count of its writes over the load.
    pub own_writes: f64,
    /// Resources the node's played kubelet has registered after the load.
    pub registered: usize,
}

/// The steady-state window.
#[derive(Debug, Clone)]
pub struct Quiet {
    /// Its length.
    pub window: Duration,
    /// The API server's delta over it.
    pub delta: ApiRequests,
    /// The agents' own count of their writes over it.
    pub own_writes: f64,
    /// CPU per agent over it.
    pub cpu: Vec<Duration>,
    /// Memory per agent at its end.
    pub memory: Vec<Memory>,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Figures {
    /// From the apply to the first Device with an entry.
    pub first: Duration,
    /// From the apply to every Device with every entry (the convergence time).
    pub converged: Duration,
    /// From the apply to the DeviceSet's entries counting every device.
    pub set_status: Duration,
    /// From the apply to the end of the settle window (the load window).
    pub load_window: Duration,
    /// The API server's delta over the load window.
    pub load: ApiRequests,
    /// What the API server did for Devices over the load window.
    pub internals: Internals,
    /// Per agent.
    pub agents: Vec<AgentFigures>,
    /// CPU of the control plane's components, created → converged.
    pub control_plane: Vec<(&'static str, Duration)>,
    /// The steady-state window, when measured.
    pub quiet: Option<Quiet>,
    /// The same writes from one plain client, after the run.
    pub floor: crate::floor::Floor,
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Between the agents being ready and the DeviceSet: the fresh control
    /// plane finishes bootstrapping (service accounts, the CRDs' storage)
    /// and the agents sit idle before their idle memory is read.
    pub idle: Duration,
    /// The steady-state window after the load; none when zero.
    pub quiet: Duration,
    /// Where to keep kube-apiserver's raw /metrics scrapes, if anywhere.
    pub metrics_dir: Option<PathBuf>,
    /// Names the run in those files.
    pub tag: String,
}

/// The control-plane components whose CPU is reported.
pub const COMPONENTS: [&str; 4] = ["kube-apiserver", "etcd", "kube-controller-manager", "kwok"];

/// Runs `scenario` once on a fresh control plane.
pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Figures> {
    let control_plane = ControlPlane::start().await?;
    let result = Box::pin(measure(&control_plane, scenario, options)).await;
    if result.is_err() {
        eprintln!(
            "the run failed; the logs' ends:\n{}",
            control_plane.log_tails(20)
        );
    }
    control_plane.shutdown();
    result
}

async fn measure(
    control_plane: &ControlPlane,
    scenario: Scenario,
    options: &Options,
) -> anyhow::Result<Figures> {
    let Options { idle, quiet, .. } = *options;
    let client = control_plane.client().await?;
    ambit_tests::crds::install(&client).await?;
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let names = ambit_tests::nodes::create(&client, "bench", scenario.nodes, &[]).await?;
    let mut agents = Vec::with_capacity(names.len());
    let mut kubelets = Vec::with_capacity(names.len());
    let binary = agent_binary();
    // As users run it: the chart's log level, and a (played) kubelet on
    // each node, there before the agent, so every device plugin binds,
    // registers and is followed by ListAndWatch.
    let log = std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    // For ablations only (AMBIT_BENCH_AGENT_ENV, `K=V,K=V`): the figures
    // as shipped are taken without it.
    let extra = std::env::var("AMBIT_BENCH_AGENT_ENV").unwrap_or_default();
    let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", log.as_str())];
    env.extend(extra.split(',').filter_map(|kv| kv.split_once('=')));
    for name in &names {
        let kubelet_dir = control_plane.dir.join("agents").join(name).join("kubelet");
        kubelets.push(Kubelet::start(&kubelet_dir)?);
        agents.push(Agent::start_with_env(
            control_plane,
            &binary,
            name,
            NAMESPACE,
            &env,
        )?);
    }
    for agent in &agents {
        agent.wait_ready().await?;
    }
    // Shared devices reach their Devices through the controller, as
    // shipped; its CPU is reported beside the control plane's.
    let controller = if scenario.shared {
        let controller =
            Controller::start(control_plane, &controller_binary()?, NAMESPACE, "bench")?;
        controller.wait_leading(Duration::from_secs(60)).await?;
        Some(controller)
    } else {
        None
    };
    tokio::time::sleep(idle).await;
    let pids: Vec<u32> = agents
        .iter()
        .map(|a| {
            a.pid()
                .ok_or_else(|| anyhow::anyhow!("agent {} is not running", a.node))
        })
        .collect::<anyhow::Result<_>>()?;
    let idle: Vec<Memory> = pids
        .iter()
        .map(|p| Memory::of(*p))
        .collect::<Result<_, _>>()?;

    // Watch first (listed, empty), then apply: nothing is missed.
    let devices: Api<Device> = Api::namespaced(client.clone(), NAMESPACE);
    let mut progress = Progress::new(scenario);
    let mut watch = std::pin::pin!(watcher(devices, watcher::Config::default()).default_backoff());
    while let Some(event) = watch.next().await {
        if matches!(event?, watcher::Event::InitDone) {
            break;
        }
    }
    let mut names: Vec<&'static str> = COMPONENTS.to_vec();
    let mut components: Vec<u32> = COMPONENTS
        .iter()
        .map(|name| {
            control_plane
                .component_pid(name)
                .ok_or_else(|| anyhow::anyhow!("{name} is not running"))
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(controller) = &controller {
        names.push("ambit-controller");
        components.push(
            controller
                .pid()
                .ok_or_else(|| anyhow::anyhow!("the controller is not running"))?,
        );
    }
    let (before, internals_before) = scrape(&client, options, "before").await?;
    let own_before = own_writes(&agents).await?;
    let cpu_before = cpu(&pids)?;
    let components_before = cpu(&components)?;
    let applied = Instant::now();
    // For reading the agents' logs (AMBIT_KEEP_CONTROL_PLANE=1) beside the figures.
    eprintln!(
        "creating the DeviceSet at {}",
        k8s_openapi::jiff::Timestamp::now()
    );
    create_set(&client, scenario).await?;

    let mut first = None;
    let converge = async {
        while let Some(event) = watch.next().await {
            progress.on(event?);
            if first.is_none() && progress.seen_with_entry > 0 {
                first = Some(applied.elapsed());
            }
            if progress.done() {
                return Ok(applied.elapsed());
            }
        }
        anyhow::bail!("the Device watch ended")
    };
    let converged = tokio::time::timeout(CONVERGE_TIMEOUT, converge)
        .await
        .map_err(|_| anyhow::anyhow!("not converged after {CONVERGE_TIMEOUT:?}: {progress:?}"))??;
    let cpu_converge = cpu(&pids)?;
    let components_converge = cpu(&components)?;

    let sets: Api<DeviceSet> = Api::namespaced(client.clone(), NAMESPACE);
    let count = i32::try_from(scenario.devices)?;
    let nodes = scenario.nodes;
    ambit_tests::wait::until(
        &sets,
        SET,
        CONVERGE_TIMEOUT,
        "every node's entry to count every device",
        move |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes.len() == nodes && st.nodes.iter().all(|n| n.devices == count)
            })
        },
    )
    .await?;
    let set_status = applied.elapsed();

    tokio::time::sleep(SETTLE).await;
    let (after, internals_after) = scrape(&client, options, "after").await?;
    let load_window = applied.elapsed();
    let cpu_after = cpu(&pids)?;
    let own_after = own_writes(&agents).await?;
    let loaded: Vec<Memory> = pids
        .iter()
        .map(|p| Memory::of(*p))
        .collect::<Result<_, _>>()?;

    let agent_figures = (0..agents.len())
        .map(|i| AgentFigures {
            idle: idle[i],
            loaded: loaded[i],
            cpu_converge: cpu_converge[i].saturating_sub(cpu_before[i]),
            cpu_load: cpu_after[i].saturating_sub(cpu_before[i]),
            own_writes: own_after[i] - own_before[i],
            registered: kubelets[i].registered(),
        })
        .collect();

    let quiet = if quiet.is_zero() {
        None
    } else {
        // The measured window itself: nothing changes, nothing is awaited.
        tokio::time::sleep(quiet).await;
        let (end, _) = scrape(&client, options, "quiet").await?;
        let cpu_end = cpu(&pids)?;
        let own_end = own_writes(&agents).await?;
        Some(Quiet {
            window: quiet,
            delta: end.since(&after),
            own_writes: own_end.iter().zip(&own_after).map(|(e, a)| e - a).sum(),
            cpu: cpu_end
                .iter()
                .zip(&cpu_after)
                .map(|(e, a)| e.saturating_sub(*a))
                .collect(),
            memory: pids
                .iter()
                .map(|p| Memory::of(*p))
                .collect::<Result<_, _>>()?,
        })
    };
    let floor = crate::floor::measure(&client, NAMESPACE).await?;
    for agent in &agents {
        let log = agent.log();
        if log.contains("panicked") {
            eprintln!("agent {} panicked:\n{log}", agent.node);
        }
    }
    drop(agents);
    drop(controller);

    Ok(Figures {
        first: first.unwrap_or(converged),
        converged,
        set_status,
        load_window,
        load: after.since(&before),
        internals: internals_after.since(&internals_before),
        agents: agent_figures,
        floor,
        control_plane: names
            .iter()
            .zip(components_converge.iter().zip(&components_before))
            .map(|(name, (c, b))| (*name, c.saturating_sub(*b)))
            .collect(),
        quiet,
    })
}

async fn create_set(client: &Client, scenario: Scenario) -> anyhow::Result<()> {
    let set: DeviceSet = serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": SET },
        "spec": { "discovery": {
            "handler": "debug-echo",
            "details": { "count": scenario.devices, "prefix": "d", "shared": scenario.shared },
        } },
    }))?;
    Api::<DeviceSet>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &set)
        .await?;
    Ok(())
}

/// Scrapes kube-apiserver: request counts and what it did for Devices
/// inside; keeps the raw text when asked.
async fn scrape(
    client: &Client,
    options: &Options,
    label: &str,
) -> anyhow::Result<(ApiRequests, Internals)> {
    let text = scrape_apiserver(client).await?;
    if let Some(dir) = &options.metrics_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{}-{label}.prom", options.tag)), &text)?;
    }
    Ok((ApiRequests::parse(&text), Internals::parse(&text)))
}

/// What kube-apiserver did for Devices, from its own metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Internals {
    /// etcd update transactions on Devices (conflicts make more than one
    /// per write).
    pub etcd_updates: f64,
    /// etcd reads of Devices (after a conflict, the object is read again).
    pub etcd_gets: f64,
    /// Watch events sent to watchers of Devices.
    pub watch_events: f64,
    /// Their bytes.
    pub watch_bytes: f64,
    /// Watchers of Devices the watch cache closed (too slow to keep up).
    pub terminated_watchers: f64,
}

impl Internals {
    fn parse(text: &str) -> Self {
        let devices = [("group", "ambit.dev"), ("resource", "devices")];
        let op = |operation| {
            let [group, resource] = devices;
            sum_samples(
                text,
                "etcd_requests_total",
                &[group, resource, ("operation", operation)],
            )
        };
        Self {
            etcd_updates: op("update"),
            etcd_gets: op("get"),
            watch_events: sum_samples(text, "apiserver_watch_events_total", &devices),
            watch_bytes: sum_samples(text, "apiserver_watch_events_sizes_sum", &devices),
            terminated_watchers: sum_samples(text, "apiserver_terminated_watchers_total", &devices),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            etcd_updates: self.etcd_updates - before.etcd_updates,
            etcd_gets: self.etcd_gets - before.etcd_gets,
            watch_events: self.watch_events - before.watch_events,
            watch_bytes: self.watch_bytes - before.watch_bytes,
            terminated_watchers: self.terminated_watchers - before.terminated_watchers,
        }
    }
}

fn cpu(pids: &[u32]) -> anyhow::Result<Vec<Duration>> {
    pids.iter().map(|p| Ok(CpuTime::of(*p)?.0)).collect()
}

/// Each agent's own count of its API writes (`ambit_agent_api_writes_total`).
async fn own_writes(agents: &[Agent]) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::with_capacity(agents.len());
    for agent in agents {
        let (_, text) = agent.get("/metrics").await?;
        counts.push(
            text.lines()
                .filter(|l| l.starts_with("ambit_agent_api_writes_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        );
    }
    Ok(counts)
}

/// What the Device watch has shown so far.
#[derive(Debug)]
struct Progress {
    scenario: Scenario,
    /// Node entries per Device.
    entries: BTreeMap<String, usize>,
    /// Devices with at least one entry.
    seen_with_entry: usize,
}

impl Progress {
    fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            entries: BTreeMap::new(),
            seen_with_entry: 0,
        }
    }

    fn on(&mut self, event: watcher::Event<Device>) {
        match event {
            watcher::Event::Apply(device) | watcher::Event::InitApply(device) => {
                let entries = device.status.as_ref().map_or(0, |s| s.nodes.len());
                let name = device.name_any();
                let before = self.entries.insert(name, entries).unwrap_or(0);
                if before == 0 && entries > 0 {
                    self.seen_with_entry += 1;
                }
            }
            watcher::Event::Delete(device) => {
                if self.entries.remove(&device.name_any()).unwrap_or(0) > 0 {
                    self.seen_with_entry -= 1;
                }
            }
            // A relist: the InitApply events that follow rebuild the state.
            watcher::Event::Init => {
                self.entries.clear();
                self.seen_with_entry = 0;
            }
            watcher::Event::InitDone => {}
        }
    }

    fn done(&self) -> bool {
        let want = if self.scenario.shared {
            self.scenario.nodes
        } else {
            1
        };
        self.entries.len() == self.scenario.objects() && self.entries.values().all(|n| *n == want)
    }
}
