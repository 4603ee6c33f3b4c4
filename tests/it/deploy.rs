//! What ships in `deploy/`, against real things: the Helm chart rendered by
//! real Helm and applied (server-side dry-run) to the real control plane;
//! its RBAC applied for real and used by a real agent and controller as
//! their only rights; Debian's real Prometheus scraping them, with the
//! alerting rules firing as each condition is staged; every Grafana panel
//! query evaluated against that Prometheus.
//!
//! ```text
//!  helm template ──► dry-run apply ──► kube-apiserver
//!  chart RBAC ──apply──► agents (2 KWOK nodes) + controller, as the chart's ServiceAccounts
//!  prometheus ──scrape 1 s──► them; rules (for: 1 s) ──► /api/v1/alerts
//!  deploy/grafana/*.json ──every target, variables substituted──► /api/v1/query
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_tests::agents::{Agent, ExternalHandler};
use ambit_tests::controllers::Controller;
use ambit_tests::helm::chart_dir;
use ambit_tests::prometheus::{Job, Prometheus};
use ambit_tests::{TestEnv, nodes, wait};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

mod chart;
mod dashboards;
mod renders;

use chart::{HELM_BIN, apply, helm, render, repo};
use dashboards::check_dashboards;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Files that are copies or generated: the chart's CRDs and alert rules,
/// the dashboards' JSON.
#[test]
fn generated_and_copied_files_are_current() -> anyhow::Result<()> {
    let crds = chart_dir().join("crds");
    for (file, yaml) in ambit_crds::manifests()? {
        let copy = std::fs::read_to_string(crds.join(&file)).unwrap_or_default();
        assert!(
            copy == yaml,
            "deploy/helm/ambit/crds/{file} is stale: run `make crds` and commit"
        );
    }
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/ambit-alerts.yaml"))?;
    let copy = std::fs::read_to_string(chart_dir().join("files/ambit-alerts.yaml"))?;
    assert!(
        rules == copy,
        "deploy/helm/ambit/files/ambit-alerts.yaml is stale: copy deploy/prometheus/ambit-alerts.yaml"
    );
    let output = Command::new("python3")
        .arg(repo().join("deploy/grafana/generate.py"))
        .arg("--check")
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The alerting rules load and pass their unit tests.
#[test]
fn alert_rules_load_and_pass_promtool_tests() -> anyhow::Result<()> {
    let dir = repo().join("deploy/prometheus");
    for args in [
        ["check", "rules", "ambit-alerts.yaml"],
        ["test", "rules", "ambit-alerts.test.yaml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()?;
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn set(name: &str, handler: &str, details: Value, extra: Value) -> anyhow::Result<DeviceSet> {
    let mut spec = json!({
        "discovery": { "handler": handler, "details": details, "gracePeriodSeconds": 60 },
        "capacity": 1,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "properties" {
                spec["discovery"]["properties"] = v.clone();
            } else {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
        "metadata": { "name": name }, "spec": spec,
    }))?)
}

fn broker(container: Value) -> Value {
    json!({ "broker": { "pod": { "containers": [container] } } })
}

/// Rewrites every `for:` of the rules to one second, so staged conditions
/// fire within the test.
fn quick_rules(dir: &Path) -> anyhow::Result<PathBuf> {
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/ambit-alerts.yaml"))?;
    let quick: String = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("ambit-alerts-quick.yaml");
    std::fs::write(&path, quick)?;
    Ok(path)
}

async fn wait_firing(
    prometheus: &Prometheus,
    alert: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let firing = prometheus.firing().await?;
        if firing.iter().any(|(name, l)| {
            name == alert && labels.iter().all(|(k, v)| l[*k].as_str() == Some(*v))
        }) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{alert} {labels:?} did not fire within {TIMEOUT:?}; firing: {firing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn metric(port: u16, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let (_, text) = ambit_tests::http_get(port, "/metrics").await?;
    Ok(ambit_tests::metrics::sum_samples(&text, name, labels))
}

async fn wait_metric(
    port: u16,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    // Connection errors count as "not yet": the process may still be starting.
    while metric(port, name, labels).await.unwrap_or(0.0) < at_least {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} did not reach {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The chart's RBAC is all a real agent and controller need; Prometheus
/// scrapes them, every alert fires when its condition is staged, and every
/// dashboard panel query returns data.
#[tokio::test]
async fn alerts_fire_and_every_panel_shows_data() -> anyhow::Result<()> {
    let env = TestEnv::new("alerts").await?;
    let ns = env.namespace.clone();
    let cp = env.control_plane;
    ambit_tests::crds::install(&env.client).await?;
    env.wait_for_default_service_account().await?;

    // The chart's ServiceAccounts and RBAC, applied for real.
    let release = format!("r{}", ns.len() + ns.bytes().map(usize::from).sum::<usize>());
    let helm = helm().await?;
    let values = format!(
        "agent: {{propertySources: {{namespaces: [{{namespace: {ns}, secrets: [creds]}}]}}}}\n"
    );
    let objects = render(&helm, &release, &ns, &values)?;
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind)
        {
            apply(&env.client, &ns, object, true).await?;
        }
    }
    let identity = |component: &str| {
        cp.kubeconfig_for(
            &format!("system:serviceaccount:{ns}:{release}-{component}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{ns}"),
            ],
        )
    };
    let agent_kubeconfig = identity("agent")?.display().to_string();
    let controller_kubeconfig = identity("controller")?;

    // Two KWOK nodes with an agent each (and an external handler on the
    // first), the controller: all with the chart's rights only.
    let agent_binary = Controller::sibling_binary(HELM_BIN, "ambit-agent")?;
    let mut agents = vec![];
    for i in 0..2 {
        let node = nodes::create(&env.client, &format!("{ns}-{i}"), 1, &[])
            .await?
            .remove(0);
        let env_vars = [("KUBECONFIG", agent_kubeconfig.as_str())];
        agents.push(Agent::start_with_env(
            cp,
            &agent_binary,
            &node,
            &ns,
            &env_vars,
        )?);
    }
    for agent in &agents {
        agent.wait_ready().await?;
    }
    let handler_binary = Controller::sibling_binary(HELM_BIN, "ambit-handler")?;
    let mut external = ExternalHandler::start(cp, &handler_binary, &agents[0], "echo-ext")?;
    let controller_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(Controller::sibling_binary(HELM_BIN, "ambit-controller")?);
    cmd.env("KUBECONFIG", &controller_kubeconfig)
        .env("RUST_LOG", "info,ambit=debug")
        .env("AMBIT_NAMESPACE", &ns)
        .env("AMBIT_LEASE_NAMESPACE", &ns)
        .env("AMBIT_POD_NAME", "c1")
        .env("AMBIT_LEASE_DURATION", "6s")
        .env("AMBIT_METRICS_ADDR", format!("127.0.0.1:{controller_port}"));
    let mut controller = cp.spawn_process("controller-chart-rbac", cmd)?;
    wait_metric(controller_port, "ambit_controller_leader", &[], 1.0)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; its log:\n{}",
                ambit_tests::process::tail(controller.log(), 40)
            )
        })?;

    // Prometheus, with the rules' `for:` shortened.
    let rules = quick_rules(&cp.dir)?;
    let agent_targets = agents
        .iter()
        .map(|a| format!("127.0.0.1:{}", a.metrics_port))
        .collect();
    let jobs = [
        Job {
            name: "ambit-agent".into(),
            targets: agent_targets,
        },
        Job {
            name: "ambit-controller".into(),
            targets: vec![format!("127.0.0.1:{controller_port}")],
        },
    ];
    let prometheus = Prometheus::start(cp, &format!("prometheus-{ns}"), &jobs, &[rules]).await?;

    // The staged conditions.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds" }, "stringData": { "token": "s3cret" },
    }))?;
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await?;
    let other: Secret = serde_json::from_value(json!({
        "metadata": { "name": "not-granted" }, "stringData": { "token": "x" },
    }))?;
    env.api::<Secret>()
        .create(&PostParams::default(), &other)
        .await?;
    let token = |secret: &str| json!([{ "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": secret, "key": "token" } } }]);
    let sets: Api<DeviceSet> = env.api();
    let container = json!({ "name": "broker", "image": "example/broker:1" });
    let unschedulable = json!({ "name": "broker", "image": "example/broker:1",
        "resources": { "limits": { "example.com/never": "1" } } });
    let invalid = json!({ "name": "Not_A_DNS_Label", "image": "example/broker:1" });
    let mut with_secret = broker(container.clone());
    with_secret["properties"] = token("creds");
    for set in [
        // Shared, capacity 1, seen by two nodes: slots exhausted; flapped below.
        set(
            "flappy",
            "debug-echo",
            json!({ "shared": true, "devices": ["f1", "f2"] }),
            with_secret,
        )?,
        set(
            "never-ready",
            "debug-echo",
            json!({ "devices": ["n1"] }),
            broker(unschedulable),
        )?,
        set(
            "bad-broker",
            "debug-echo",
            json!({ "devices": ["b1"] }),
            broker(invalid),
        )?,
        set(
            "broken",
            "debug-echo",
            json!({ "count": "many" }),
            json!({}),
        )?,
        set(
            "forbidden",
            "debug-echo",
            json!({ "devices": ["x1"] }),
            json!({ "properties": token("not-granted") }),
        )?,
        set("ext", "echo-ext", json!({ "devices": ["e1"] }), json!({}))?,
    ] {
        sets.create(&PostParams::default(), &set).await?;
    }

    // The agent read the granted Secret (the digest of the properties
    // reached the Devices) and was refused the other one.
    let devices: Api<Device> = env.api();
    wait::list_until(
        &devices,
        TIMEOUT,
        "flappy's Devices with the Secret's digest",
        |ds| {
            ds.iter()
                .filter(|d| d.spec.device_set == "flappy")
                .filter(|d| d.spec.properties.contains_key(ambit_debug_echo_digest()))
                .count()
                == 2
        },
    )
    .await?;
    wait::until(
        &sets,
        "forbidden",
        TIMEOUT,
        "a forbidden Secret reported",
        |s: Option<&DeviceSet>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.nodes.iter().any(|n| {
                    n.last_error.contains("not-granted") && n.last_error.contains("forbidden")
                })
            })
        },
    )
    .await?;

    // Flap f1 on the first node four times, once Prometheus has seen that
    // node's counter at zero (increase() cannot count what came before a
    // series' first sample). The other node's series is at zero too: a
    // query without the node matched it, and when the first agent's series
    // came later (its Secret read retried, say) the alert never fired.
    prometheus
        .wait_for(
            &format!(
                r#"ambit_agent_device_presence_changes_total{{device_set="flappy", change="returned", node="{}"}} == 0"#,
                agents[0].node
            ),
            TIMEOUT,
        )
        .await?;
    let port = agents[0].metrics_port;
    let flappy = |change| [("device_set", "flappy"), ("change", change)];
    for i in 1..=4 {
        agents[0].set_offline(&["f1"])?;
        wait_metric(
            port,
            "ambit_agent_device_presence_changes_total",
            &flappy("vanished"),
            f64::from(i),
        )
        .await?;
        agents[0].set_offline(&[])?;
        wait_metric(
            port,
            "ambit_agent_device_presence_changes_total",
            &flappy("returned"),
            f64::from(i),
        )
        .await?;
    }

    for (alert, labels) in [
        (
            "AmbitDiscoveryErrors",
            vec![("handler", "debug-echo"), ("category", "invalid_details")],
        ),
        ("AmbitDevicesFlapping", vec![("device_set", "flappy")]),
        ("AmbitBrokersNotReady", vec![("device_set", "never-ready")]),
        ("AmbitSlotsExhausted", vec![("device_set", "flappy")]),
        (
            "AmbitControllerReconcileErrors",
            vec![("category", "create_pod")],
        ),
    ] {
        wait_firing(&prometheus, alert, &labels).await?;
        eprintln!("fired: {alert} {labels:?}");
    }
    let firing = prometheus.firing().await?;
    for quiet in [
        "AmbitControllerNoLeader",
        "AmbitHandlerDown",
        "AmbitAgentAPIErrors",
    ] {
        assert!(
            !firing.iter().any(|(name, _)| name == quiet),
            "{quiet} fires while all is well: {firing:?}"
        );
    }

    // Every panel query of every dashboard returns data.
    let checked = check_dashboards(&prometheus).await?;
    eprintln!("panel queries checked: {checked}");

    // A handler killed; the controller killed.
    external.kill();
    wait_firing(
        &prometheus,
        "AmbitHandlerDown",
        &[("handler", "echo-ext"), ("kind", "external")],
    )
    .await?;
    eprintln!("fired: AmbitHandlerDown");
    controller.kill();
    wait_firing(&prometheus, "AmbitControllerNoLeader", &[]).await?;
    eprintln!("fired: AmbitControllerNoLeader");

    // Nothing the agents or controller did was refused by the chart's RBAC
    // (the one refusal staged above aside).
    for (name, log) in agents.iter().map(|a| (a.node.clone(), a.log())).chain([(
        "controller".to_owned(),
        ambit_tests::process::tail(controller.log(), 400),
    )]) {
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") && !l.contains("not-granted"))
            .collect();
        assert!(
            refused.is_empty(),
            "{name} was refused by RBAC:\n{}",
            refused.join("\n")
        );
    }
    Ok(())
}

fn ambit_debug_echo_digest() -> &'static str {
    "DEBUG_ECHO_PROPERTIES_DIGEST"
}
