//! The dashboards' side of the deploy tests: every panel query, its
//! variables substituted, evaluated against the real Prometheus.

use ambit_tests::prometheus::Prometheus;
use serde_json::Value;

use crate::chart::repo;

/// Evaluates every target of every panel of deploy/grafana/*.json with the
/// variables substituted (each query variable resolved from Prometheus,
/// "All" as every value), and fails on any that returns no data (or NaN).
/// Returns how many queries were checked.
pub async fn check_dashboards(prometheus: &Prometheus) -> anyhow::Result<usize> {
    let mut checked = 0;
    let mut empty = vec![];
    for file in ["ambit-overview.json", "ambit-agent.json"] {
        let text = std::fs::read_to_string(repo().join("deploy/grafana").join(file))?;
        let dashboard: Value = serde_json::from_str(&text)?;
        let mut vars: Vec<(String, String)> = vec![
            ("__rate_interval".into(), "30s".into()),
            ("__range".into(), "10m".into()),
        ];
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if variable["type"] != "query" {
                continue;
            }
            let name = variable["name"].as_str().unwrap_or_default().to_owned();
            let query = substitute(variable["query"].as_str().unwrap_or_default(), &vars);
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .ok_or_else(|| {
                    anyhow::anyhow!("{file}: variable {name}: unexpected query {query}")
                })?;
            let (selector, label) = inner
                .rsplit_once(',')
                .ok_or_else(|| anyhow::anyhow!("{file}: variable {name}: no label in {query}"))?;
            let mut values = prometheus
                .label_values(label.trim(), selector.trim())
                .await?;
            values.sort();
            anyhow::ensure!(
                !values.is_empty(),
                "{file}: variable {name} has no values ({query})"
            );
            let value = if variable["multi"] == true {
                values.join("|")
            } else {
                values[0].clone()
            };
            vars.push((name, value));
        }
        // Longest names first, so `$node` never eats part of `$nodes`.
        vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = substitute(target["expr"].as_str().unwrap_or_default(), &vars);
                let result = prometheus.query(&expr).await?;
                checked += 1;
                let values: Vec<&str> = result
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["value"][1].as_str())
                    .collect();
                if values.is_empty() || values.iter().all(|v| *v == "NaN") {
                    empty.push(format!("{file}: {}: {expr}", panel["title"]));
                }
            }
        }
    }
    anyhow::ensure!(
        empty.is_empty(),
        "panel queries without data:\n{}",
        empty.join("\n")
    );
    Ok(checked)
}

fn substitute(text: &str, vars: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = vars.iter().collect();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = text.to_owned();
    for (name, value) in sorted {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}
