//! Figures for benchmarks and tests: API requests as kube-apiserver counts
//! them, and a process's memory and CPU as the kernel counts them.
//!
//! ```text
//!  kube-apiserver /metrics ──scrape──► ApiRequests (verb, group, resource) ──after − before──► delta
//!  /proc/<pid>/status ──► VmRSS, VmHWM        /proc/<pid>/stat ──► utime + stime
//! ```
//!
//! `apiserver_request_total` counts every client's requests (KWOK's
//! heartbeats, the controller-manager's watches, the test's own): split the
//! delta by resource to tell them apart. Long-running requests (WATCH) are
//! counted when they end.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::Resource as _;

/// One series of `apiserver_request_total`, summed over the other labels
/// (code, scope, version, component, dry_run).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The request's verb as the API server records it (`APPLY`, `POST`,
    /// `LIST`, `WATCH`, ...).
    pub verb: String,
    /// The API group (empty for the core group).
    pub group: String,
    /// The resource, with `/<subresource>` when there is one
    /// (`devices/status`).
    pub resource: String,
}

impl RequestKey {
    /// Whether the verb only reads (GET, LIST, WATCH, WATCHLIST).
    pub fn is_read(&self) -> bool {
        matches!(
            self.verb.to_ascii_uppercase().as_str(),
            "GET" | "LIST" | "WATCH" | "WATCHLIST"
        )
    }
}

impl std::fmt::Display for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}.{}", self.verb, self.resource, group)
    }
}

/// Request counts by verb, group and resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiRequests(pub BTreeMap<RequestKey, f64>);

impl ApiRequests {
    /// Scrapes kube-apiserver's `/metrics` through `client` (which needs the
    /// right to read it: the harness's admin client has).
    pub async fn scrape(client: &Client) -> anyhow::Result<Self> {
        Ok(Self::parse(&scrape_apiserver(client).await?))
    }

    /// Sums the `apiserver_request_total` samples of a Prometheus text
    /// exposition.
    pub fn parse(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
            let subresource = label("subresource");
            let mut resource = label("resource");
            if !subresource.is_empty() {
                resource = format!("{resource}/{subresource}");
            }
            let key = RequestKey {
                verb: label("verb"),
                group: label("group"),
                resource,
            };
            *counts.entry(key).or_insert(0.0) += value;
        }
        Self(counts)
    }

    /// What was counted since `before` (series that did not change left out).
    pub fn since(&self, before: &Self) -> Self {
        let delta = self
            .0
            .iter()
            .map(|(key, after)| {
                (
                    key.clone(),
                    after - before.0.get(key).copied().unwrap_or(0.0),
                )
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        Self(delta)
    }

    /// The sum of the series that `keep` selects.
    pub fn sum(&self, keep: impl Fn(&RequestKey) -> bool) -> f64 {
        self.0.iter().filter(|(k, _)| keep(k)).map(|(_, n)| n).sum()
    }

    /// The series that `keep` selects.
    pub fn filter(&self, keep: impl Fn(&RequestKey) -> bool) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        )
    }
}

/// kube-apiserver's `/metrics`, as text, through `client`.
pub async fn scrape_apiserver(client: &Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics").body(vec![])?;
    tokio::time::timeout(Duration::from_secs(30), client.request_text(request))
        .await
        .map_err(|_| anyhow::anyhow!("timed out scraping kube-apiserver /metrics"))?
        .map_err(anyhow::Error::from)
}

/// The sum of the samples of `metric` (exactly that name, any labels) whose
/// labels include every pair of `labels`, in a Prometheus text exposition.
pub fn sum_samples(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (found, value) = match rest.strip_prefix('{') {
                Some(rest) => {
                    let (found, value) = rest.rsplit_once("} ")?;
                    (parse_labels(found), value)
                }
                None => (BTreeMap::new(), rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| found.get(*k).is_some_and(|f| f == v))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Whether `key` is a request about Ambit's resources (group `ambit.dev`).
pub fn is_ambit(key: &RequestKey) -> bool {
    key.group == ambit_crds::v1alpha1::Device::group(&()).as_ref()
}

/// Whether `key` is about Events (core or `events.k8s.io`).
pub fn is_event(key: &RequestKey) -> bool {
    key.resource == "events"
}

/// Parses `a="x",b="y\"z"` into a map, undoing the exposition format's escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if name.is_empty() || chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_owned(), value);
    }
}

/// A process's memory, from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss: u64,
    /// The peak resident set size so far (VmHWM).
    pub hwm: u64,
}

impl Memory {
    /// Reads the memory of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("bad {name} in /proc/{pid}/status: {e}"))?;
            Ok(kib * 1024)
        };
        Ok(Self {
            rss: field("VmRSS")?,
            hwm: field("VmHWM")?,
        })
    }
}

/// CPU time a process has used so far (user + system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuTime(pub Duration);

impl CpuTime {
    /// Reads utime + stime of process `pid` from `/proc/<pid>/stat`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name (field 2) may hold spaces and parentheses: the
        // fields that follow start after the last ')'.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After the name: state is field 3, utime field 14, stime field 15.
        let ticks = |index: usize| -> anyhow::Result<u64> {
            fields
                .get(index - 3)
                .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
                .parse()
                .map_err(|e| anyhow::anyhow!("bad field {index} of /proc/{pid}/stat: {e}"))
        };
        let total = ticks(14)? + ticks(15)?;
        let hz = clock_ticks_per_second();
        Ok(Self(Duration::from_secs_f64(total as f64 / hz as f64)))
    }

    /// The CPU used between `before` and now, as a percentage of one core
    /// over `wall`.
    pub fn percent_since(&self, before: &Self, wall: Duration) -> f64 {
        if wall.is_zero() {
            return 0.0;
        }
        self.0.saturating_sub(before.0).as_secs_f64() / wall.as_secs_f64() * 100.0
    }
}

/// The kernel's USER_HZ (`getconf CLK_TCK`; 100 on every Linux we run on).
fn clock_ticks_per_second() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|hz| *hz > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_are_summed_by_verb_group_and_resource() {
        let text = r#"
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="ambit.dev",resource="devices",scope="resource",subresource="",verb="APPLY",version="v1alpha1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ambit.dev",resource="devices",scope="resource",subresource="",verb="APPLY",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="ambit.dev",resource="devices",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="LIST",version="v1"} 2
apiserver_request_duration_seconds_count{verb="LIST"} 99
"#;
        let counts = ApiRequests::parse(text);
        let key = |verb: &str, group: &str, resource: &str| RequestKey {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        };
        assert_eq!(counts.0[&key("APPLY", "ambit.dev", "devices")], 10.0);
        assert_eq!(counts.0[&key("APPLY", "ambit.dev", "devices/status")], 10.0);
        assert!(key("LIST", "", "nodes").is_read());
        assert_eq!(counts.0.len(), 3);

        let later = ApiRequests::parse(&text.replace("} 2", "} 5"));
        let delta = later.since(&counts);
        assert_eq!(delta.0.len(), 1);
        assert_eq!(delta.sum(|k| k.is_read()), 3.0);
        assert_eq!(counts.sum(is_ambit), 20.0);
    }

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let text = "etcd_requests_total{group=\"ambit.dev\",operation=\"update\",resource=\"devices\"} 4\n\
                    etcd_requests_total{group=\"ambit.dev\",operation=\"get\",resource=\"devices\"} 2\n\
                    etcd_requests_total_other{operation=\"update\"} 100\n\
                    plain 7\n";
        assert_eq!(
            sum_samples(text, "etcd_requests_total", &[("operation", "update")]),
            4.0
        );
        assert_eq!(sum_samples(text, "etcd_requests_total", &[]), 6.0);
        assert_eq!(sum_samples(text, "plain", &[]), 7.0);
    }

    #[test]
    fn labels_with_escapes_parse() {
        let labels = parse_labels(r#"a="x",b="y\"z,w",c="""#);
        assert_eq!(labels["a"], "x");
        assert_eq!(labels["b"], "y\"z,w");
        assert_eq!(labels["c"], "");
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let pid = std::process::id();
        let memory = Memory::of(pid).unwrap();
        assert!(memory.rss > 0 && memory.hwm >= memory.rss);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(CpuTime::of(pid).unwrap().0 >= Duration::ZERO);
    }
}
