//! Printing: the machine, each run, and each scenario's figures as the
//! Markdown tables that go into `docs/benchmarks.md`.

use std::io::Write;
use std::time::Duration;

use ambit_tests::metrics::{ApiRequests, RequestKey, is_ambit, is_event};

use crate::Config;
use crate::run::{Figures, SETTLE, Scenario};

macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}
pub(crate) use say;

/// A write the agents make: anything but a read, on Ambit's resources or
/// `events.k8s.io` Events (the agent's kind) — except the DeviceSet the
/// benchmark itself creates. Core-group Events come from other components
/// (the controller-manager's node controller); they are shown apart.
pub fn agent_write(key: &RequestKey) -> bool {
    !key.is_read()
        && (is_ambit(key) || (is_event(key) && key.group == "events.k8s.io"))
        && !(key.verb == "POST" && key.resource == "devicesets")
}

/// A write of an Event in the core group: not the agent's.
fn core_event_write(key: &RequestKey) -> bool {
    !key.is_read() && is_event(key) && key.group.is_empty()
}

/// A count, without a sign on zero.
fn count(n: f64) -> String {
    format!("{:.0}", n + 0.0)
}

fn read_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// What, how and on what.
pub fn machine(config: &Config) -> anyhow::Result<()> {
    let cpuinfo = read_file("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let meminfo = read_file("/proc/meminfo");
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map_or("unknown", str::trim);
    let profile = if cfg!(debug_assertions) {
        "debug (NOT for figures: use cargo bench)"
    } else {
        "release (cargo bench)"
    };
    say!("# ambit-agent at scale");
    say!();
    say!("| machine | |");
    say!("|---|---|");
    say!(
        "| cores | {} ({model}) |",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    say!("| memory | {memory} |");
    say!(
        "| kernel | {} |",
        read_file("/proc/sys/kernel/osrelease").trim()
    );
    say!(
        "| control plane | Kubernetes {}, KWOK {}, etcd without fsync, all on loopback |",
        ambit_tests::binaries::KUBERNETES_VERSION,
        ambit_tests::binaries::KWOK_VERSION
    );
    say!("| build | {profile} |");
    say!(
        "| commit | {} |",
        command("git", &["rev-parse", "--short", "HEAD"])
    );
    say!(
        "| date | {} |",
        command("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    say!();
    say!(
        "{} run(s) per scenario, each on a fresh control plane; {} devices; idle {} s between the agents being ready and the DeviceSet; quiet window {} s on the last run; settle {} s after convergence.",
        config.runs,
        config.devices,
        config.idle.as_secs(),
        config.quiet.as_secs(),
        SETTLE.as_secs()
    );
    say!(
        "API figures: delta of kube-apiserver `apiserver_request_total` from just before the DeviceSet is created to the end of the settle window; agent writes = verbs other than GET/LIST/WATCH on ambit.dev resources and events.k8s.io Events (the benchmark's own DeviceSet POST left out; core Events, which the agent does not write, shown apart). WATCH requests are counted when they end."
    );
    say!();
    Ok(())
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Median, min and max.
pub fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&mut values), min, max)
}

/// Writes per device per node.
pub fn per_device(scenario: Scenario, n: f64) -> f64 {
    n / (scenario.devices * scenario.nodes) as f64
}

/// One line per run, as it ends.
pub fn run(scenario: Scenario, i: usize, f: &Figures) -> anyhow::Result<()> {
    let writes = f.load.sum(agent_write);
    let own: f64 = f.agents.iter().map(|a| a.own_writes).sum();
    say!(
        "scenario {} run {i}: converged {:.2} s (first Device {:.2} s, set entries {:.2} s); {} agent writes ({:.3} per device per node; agents counted {}); max RSS {:.1} MiB; kubelet registrations per agent {}; floor {:.2} s for the same {} writes from one client ({:.1}× it)",
        scenario.name,
        secs(f.converged),
        secs(f.first),
        secs(f.set_status),
        count(writes),
        per_device(scenario, writes),
        count(own),
        f.agents
            .iter()
            .map(|a| mib(a.loaded.rss))
            .fold(0.0, f64::max),
        f.agents
            .iter()
            .map(|a| a.registered.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        secs(f.floor.took),
        f.floor.writes,
        secs(f.converged) / secs(f.floor.took).max(1e-9),
    );
    Ok(())
}

/// A row of median, min and max over the runs.
fn row(what: &str, unit: &str, values: Vec<f64>, digits: usize) -> anyhow::Result<()> {
    let (median, min, max) = stats(values);
    say!("| {what} | {median:.digits$} {unit} | {min:.digits$} | {max:.digits$} |");
    Ok(())
}

/// The figures of a scenario over its runs.
pub fn scenario(scenario: Scenario, runs: &[Figures]) -> anyhow::Result<()> {
    let Scenario {
        name,
        nodes,
        devices,
        shared,
    } = scenario;
    let kind = if shared { "shared" } else { "local" };
    say!();
    say!(
        "## Scenario {name}: {nodes} agent(s) on {nodes} KWOK node(s), {devices} {kind} debug-echo devices, {} Device objects",
        scenario.objects()
    );
    say!();
    say!("| figure ({} runs) | median | min | max |", runs.len());
    say!("|---|---|---|---|");
    let each = |f: fn(&Figures) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    row(
        "convergence: DeviceSet created → every Device has every node entry",
        "s",
        each(|f| secs(f.converged)),
        2,
    )?;
    row(
        "first Device with its entry",
        "s",
        each(|f| secs(f.first)),
        2,
    )?;
    row(
        "floor: the same writes from one plain client (same run, same API server)",
        "s",
        each(|f| secs(f.floor.took)),
        2,
    )?;
    row(
        "convergence ÷ floor",
        "×",
        each(|f| secs(f.converged) / secs(f.floor.took).max(1e-9)),
        1,
    )?;
    row(
        "DeviceSet's node entries count every device",
        "s",
        each(|f| secs(f.set_status)),
        2,
    )?;
    row(
        "agent API writes per device per node",
        "",
        runs.iter()
            .map(|f| per_device(scenario, f.load.sum(agent_write)))
            .collect(),
        3,
    )?;
    row(
        "API reads of ambit.dev per device per node (incl. the benchmark's watch)",
        "",
        runs.iter()
            .map(|f| per_device(scenario, f.load.sum(|k| k.is_read() && is_ambit(k))))
            .collect(),
        3,
    )?;
    row(
        "agent CPU, created → converged (per agent, % of one core)",
        "%",
        runs.iter()
            .flat_map(|f| {
                f.agents
                    .iter()
                    .map(|a| secs(a.cpu_converge) / secs(f.converged) * 100.0)
            })
            .collect(),
        0,
    )?;
    row(
        "agent CPU time, created → settled (per agent)",
        "s",
        runs.iter()
            .flat_map(|f| f.agents.iter().map(|a| secs(a.cpu_load)))
            .collect(),
        2,
    )?;
    let device_writes = |f: &Figures| {
        f.load
            .sum(|k| !k.is_read() && is_ambit(k) && k.resource.starts_with("devices"))
            .max(1.0)
    };
    row(
        "kube-apiserver: etcd update txns per Device write (1 = no conflict retries)",
        "",
        runs.iter()
            .map(|f| f.internals.etcd_updates / device_writes(f))
            .collect(),
        2,
    )?;
    row(
        "kube-apiserver: etcd reads of Devices per Device write",
        "",
        runs.iter()
            .map(|f| f.internals.etcd_gets / device_writes(f))
            .collect(),
        2,
    )?;
    row(
        "kube-apiserver: watch events sent for Devices per Device write",
        "",
        runs.iter()
            .map(|f| f.internals.watch_events / device_writes(f))
            .collect(),
        1,
    )?;
    row(
        "kube-apiserver: watch event bytes sent for Devices",
        "MB",
        runs.iter().map(|f| f.internals.watch_bytes / 1e6).collect(),
        0,
    )?;
    row(
        "kube-apiserver: Device watchers closed for falling behind",
        "",
        runs.iter()
            .map(|f| f.internals.terminated_watchers)
            .collect(),
        0,
    )?;
    let components = runs.first().map(|f| f.control_plane.len()).unwrap_or(0);
    for i in 0..components {
        let component = runs
            .first()
            .and_then(|f| f.control_plane.get(i))
            .map_or("?", |(name, _)| *name);
        row(
            &format!("{component} CPU, created → converged (% of one core)"),
            "%",
            runs.iter()
                .map(|f| {
                    f.control_plane
                        .get(i)
                        .map_or(f64::NAN, |(_, c)| secs(*c) / secs(f.converged) * 100.0)
                })
                .collect(),
            0,
        )?;
    }
    let memory = |label: &str, pick: fn(&crate::run::AgentFigures) -> u64| -> anyhow::Result<()> {
        row(
            &format!("agent {label}, max over agents"),
            "MiB",
            runs.iter()
                .map(|f| f.agents.iter().map(|a| mib(pick(a))).fold(0.0, f64::max))
                .collect(),
            1,
        )?;
        if nodes > 1 {
            row(
                &format!("agent {label}, median over agents"),
                "MiB",
                runs.iter()
                    .map(|f| median(&mut f.agents.iter().map(|a| mib(pick(a))).collect::<Vec<_>>()))
                    .collect(),
                1,
            )?;
        }
        Ok(())
    };
    memory("VmRSS idle, before the DeviceSet", |a| a.idle.rss)?;
    memory("VmRSS after the load (settled)", |a| a.loaded.rss)?;
    memory("VmHWM (peak) after the load", |a| a.loaded.hwm)?;

    if let Some(last) = runs.last() {
        say!();
        say!(
            "API requests of the last run, created → settled ({:.1} s), on ambit.dev and Events:",
            secs(last.load_window)
        );
        say!();
        say!("| request | count | per device per node |");
        say!("|---|---|---|");
        for (key, n) in &last.load.filter(|k| is_ambit(k) || is_event(k)).0 {
            say!(
                "| {key} | {} | {:.3} |",
                count(*n),
                per_device(scenario, *n)
            );
        }
        let others = last
            .load
            .filter(|k| !k.is_read() && !is_ambit(k) && !is_event(k));
        say!(
            "| (other components' writes: {}) | {} | |",
            summary(&others),
            count(others.sum(|_| true))
        );
    }
    if let Some(quiet) = runs.last().and_then(|f| f.quiet.as_ref()) {
        let window = secs(quiet.window);
        let writes = quiet.delta.filter(agent_write);
        say!();
        say!(
            "Steady state, last run: a quiet window of {window:.0} s after the load, nothing changing:"
        );
        say!();
        say!("| figure | value |");
        say!("|---|---|");
        say!(
            "| agent API writes (target 0) | {} {} |",
            count(writes.sum(|_| true)),
            if writes.0.is_empty() {
                String::new()
            } else {
                format!("({})", summary(&writes))
            }
        );
        say!(
            "| writes the agents counted themselves | {} |",
            count(quiet.own_writes)
        );
        say!(
            "| core Events written (by anyone) | {} |",
            count(quiet.delta.sum(core_event_write))
        );
        say!(
            "| reads of ambit.dev (watches renewing) | {} |",
            count(quiet.delta.sum(|k| k.is_read() && is_ambit(k)))
        );
        let others = quiet
            .delta
            .filter(|k| !k.is_read() && !agent_write(k) && !core_event_write(k));
        say!(
            "| other components' writes (KWOK heartbeats, leases, ...) | {} ({}) |",
            count(others.sum(|_| true)),
            summary(&others)
        );
        let (cpu, _, cpu_max) = stats(
            quiet
                .cpu
                .iter()
                .map(|c| secs(*c) / window * 100.0)
                .collect(),
        );
        say!("| agent CPU, % of one core (median / max over agents) | {cpu:.2} / {cpu_max:.2} |");
        let (rss, _, rss_max) = stats(quiet.memory.iter().map(|m| mib(m.rss)).collect());
        say!(
            "| agent VmRSS at the end, MiB (median / max over agents) | {rss:.1} / {rss_max:.1} |"
        );
    }
    say!();
    Ok(())
}

/// `n VERB resource.group, ...`, biggest first.
fn summary(requests: &ApiRequests) -> String {
    let mut rows: Vec<(&RequestKey, &f64)> = requests.0.iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(a.1));
    rows.iter()
        .map(|(k, n)| format!("{} {k}", count(**n)))
        .collect::<Vec<_>>()
        .join(", ")
}
