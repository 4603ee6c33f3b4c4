//! Debian's real Prometheus, started on loopback for a test: it scrapes the
//! targets it is given every second, evaluates rule files every second, and
//! answers PromQL over its HTTP API.
//!
//! ```text
//!  agents, controllers ◄──scrape (1 s)── prometheus ──► /api/v1/query, /api/v1/alerts
//!                                        (rules, 1 s)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::ControlPlane;
use crate::process::Process;

/// A Prometheus process.
#[derive(Debug)]
pub struct Prometheus {
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    process: Process,
}

/// One scrape job: a name and its `host:port` targets.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job label.
    pub name: String,
    /// `127.0.0.1:<port>` targets.
    pub targets: Vec<String>,
}

impl Prometheus {
    /// Starts `prometheus` (from PATH) scraping `jobs` with `rule_files`,
    /// its data and config in a directory of the control plane's, and waits
    /// until it is ready.
    pub async fn start(
        control_plane: &ControlPlane,
        name: &str,
        jobs: &[Job],
        rule_files: &[PathBuf],
    ) -> anyhow::Result<Self> {
        let dir = control_plane.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = config(jobs, rule_files);
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(["--log.level=warn", "--storage.tsdb.retention.time=1h"]);
        let process = control_plane.spawn_process(name, cmd)?;
        let prometheus = Self { port, process };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = crate::http_get(self.port, "/-/ready").await {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "Prometheus not ready after 60 s; its log:\n{}",
                crate::process::tail(self.process.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET <path>` on the HTTP API, parsed; fails unless `status` is success.
    pub async fn api(&self, path: &str) -> anyhow::Result<Value> {
        let (code, body) = crate::http_get(self.port, path).await?;
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            anyhow::anyhow!("GET {path} answered {code} with no JSON ({e}): {body}")
        })?;
        anyhow::ensure!(
            value["status"] == "success",
            "GET {path} failed ({code}): {body}"
        );
        Ok(value["data"].clone())
    }

    /// An instant query: the result vector (or scalar) as JSON.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        Ok(data["result"].clone())
    }

    /// The values of `label` on the series that `selector` matches.
    pub async fn label_values(&self, label: &str, selector: &str) -> anyhow::Result<Vec<String>> {
        let data = self
            .api(&format!(
                "/api/v1/label/{label}/values?match[]={}",
                encode(selector)
            ))
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// The names of the alerts firing now, with their labels.
    pub async fn firing(&self) -> anyhow::Result<Vec<(String, Value)>> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or("").to_owned();
                (name, a["labels"].clone())
            })
            .collect())
    }

    /// Waits until `promql` returns a non-empty vector, for at most `timeout`.
    pub async fn wait_for(&self, promql: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let result = self.query(promql).await?;
            if result.as_array().is_some_and(|r| !r.is_empty()) {
                return Ok(result);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for data from {promql}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        crate::process::tail(self.process.log(), 60)
    }

    /// Where its log goes.
    pub fn log_path(&self) -> &Path {
        self.process.log()
    }
}

fn config(jobs: &[Job], rule_files: &[PathBuf]) -> String {
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n",
    );
    for file in rule_files {
        text.push_str(&format!("  - {:?}\n", file.display().to_string()));
    }
    text.push_str("scrape_configs:\n");
    for job in jobs {
        // honor_labels, as Ambit's docs ask: the metrics' own `namespace`
        // and `node` labels win over target labels.
        text.push_str(&format!(
            "  - job_name: {:?}\n    honor_labels: true\n    static_configs:\n      - targets: {:?}\n",
            job.name, job.targets
        ));
    }
    text
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
