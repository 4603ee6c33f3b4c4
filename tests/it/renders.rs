//! The chart's renders (default values, every handler on, Modbus RTU, udev
//! alone, mDNS alone) through server-side dry-run on the real API server,
//! and what each must and must not give the agent.

use std::collections::BTreeMap;

use ambit_tests::TestEnv;
use serde_json::json;

use crate::chart::{all_on, apply, find, helm, is_monitoring, render};

/// The chart lints, and what it renders — default values, every handler
/// switched on, Modbus RTU — passes server-side dry-run on the real API
/// server; node access appears only with the handler that needs it.
#[tokio::test]
async fn chart_renders_pass_server_side_dry_run() -> anyhow::Result<()> {
    let env = TestEnv::new("chart-dry-run").await?;
    let helm = helm().await?;
    let ns = env.namespace.clone();
    let cases = [
        ("default", String::from("{}")),
        ("all-handlers", all_on(&ns)),
        (
            "modbus-rtu",
            "handlers: {modbus: {serialDevices: [/dev/ttyUSB0]}}\nbrokers: {enabled: false}\npodAccess: {dra: {enabled: false}, devicePlugins: {enabled: false}}\n".into(),
        ),
        (
            "udev-only",
            "handlers: {modbus: {enabled: false}, opcua: {enabled: false}, udev: {enabled: true}}\n".into(),
        ),
        (
            "mdns-only",
            "handlers: {modbus: {enabled: false}, opcua: {enabled: false}, mdns: {enabled: true}}\n".into(),
        ),
    ];
    let mut applied = BTreeMap::new();
    let mut renders = BTreeMap::new();
    for (case, values) in &cases {
        let objects = render(&helm, "ambit", &ns, values)?;
        for object in objects.iter().filter(|o| !is_monitoring(o)) {
            apply(&env.client, &ns, object, false)
                .await
                .map_err(|e| anyhow::anyhow!("{case}: {e}"))?;
            *applied.entry(*case).or_insert(0) += 1;
        }
        renders.insert(*case, objects);
    }
    eprintln!("objects dry-run applied per case: {applied:?}");

    // Default: no host network, no udev, D-Bus or serial access; the agent
    // root with every capability dropped and a read-only root; the
    // controller non-root; kubelet paths under /var/lib/kubelet.
    let default = &renders["default"];
    let agent = find(default, "DaemonSet", "ambit-agent")?;
    let pod = &agent["spec"]["template"]["spec"];
    assert!(pod["hostNetwork"].is_null(), "hostNetwork without ONVIF");
    let text = agent.to_string();
    for path in ["/run/udev", "/sys", "system_bus_socket", "\"/dev\""] {
        assert!(!text.contains(path), "{path} mounted with its handler off");
    }
    assert!(text.contains("/var/lib/kubelet/device-plugins"));
    let security = &pod["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["privileged"], false);
    let controller = find(default, "Deployment", "ambit-controller")?;
    assert_eq!(controller["spec"]["replicas"], 2);
    let pod = &controller["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(!controller.to_string().contains("hostPath"));
    assert!(find(default, "DeviceClass", "ambit.dev").is_ok());
    assert!(
        !default
            .iter()
            .any(|o| o["kind"] == "DaemonSet" && o["metadata"]["name"] == "ambit-handler"),
        "the external-handler DaemonSet is off by default"
    );

    // Every handler on: host network (ONVIF), udev and D-Bus mounts, the
    // kubelet root moved, Secrets readable by name in one namespace only.
    let all = &renders["all-handlers"];
    let agent = find(all, "DaemonSet", "ambit-agent")?;
    assert_eq!(agent["spec"]["template"]["spec"]["hostNetwork"], true);
    let text = agent.to_string();
    for path in [
        "/run/udev",
        "/sys",
        "system_bus_socket",
        "/var/snap/microk8s/common/var/lib/kubelet/plugins/ambit.dev",
    ] {
        assert!(
            text.contains(path),
            "{path} not mounted with every handler on"
        );
    }
    let handler = find(all, "DaemonSet", "ambit-handler")?;
    assert!(
        handler
            .to_string()
            .contains("debug-echo,mdns,modbus,mqtt,opcua,onvif,udev,bluetooth")
    );
    let role = find(all, "Role", "ambit-agent-properties")?;
    assert_eq!(role["metadata"]["namespace"], ns.as_str());
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    let secrets = rules.iter().find(|r| r["resources"] == json!(["secrets"]));
    assert_eq!(
        secrets.map(|r| &r["resourceNames"]),
        Some(&json!(["creds"]))
    );
    let maps = rules
        .iter()
        .find(|r| r["resources"] == json!(["configmaps"]));
    assert!(
        maps.is_some_and(|r| r["resourceNames"].is_null()),
        "configMaps: [\"*\"] is every one"
    );
    let monitors = all.iter().filter(|o| is_monitoring(o)).count();
    assert_eq!(
        monitors, 5,
        "2 ServiceMonitors, 2 PodMonitors, 1 PrometheusRule"
    );

    // The agent runs only the handlers switched on; parts of pod access
    // switched off get an empty path (the agent then leaves them alone).
    let env_of = |agent: &serde_json::Value, name: &str| {
        agent["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .map(|e| e["value"].clone())
    };
    let agent = find(default, "DaemonSet", "ambit-agent")?;
    assert_eq!(env_of(agent, "AMBIT_HANDLERS"), Some(json!("modbus,opcua")));
    let udev = find(&renders["udev-only"], "DaemonSet", "ambit-agent")?;
    assert_eq!(env_of(udev, "AMBIT_HANDLERS"), Some(json!("udev")));
    assert_eq!(
        udev["spec"]["template"]["spec"]["hostNetwork"], true,
        "udevd's netlink announcements reach only the host's network namespace"
    );
    let mdns = find(&renders["mdns-only"], "DaemonSet", "ambit-agent")?;
    assert_eq!(env_of(mdns, "AMBIT_HANDLERS"), Some(json!("mdns")));
    assert_eq!(
        mdns["spec"]["template"]["spec"]["hostNetwork"], true,
        "mDNS announcements on the node's links reach only the host's network namespace"
    );
    assert!(
        !mdns.to_string().contains("/run/udev"),
        "mDNS needs no udev mounts"
    );
    let rtu_agent = find(&renders["modbus-rtu"], "DaemonSet", "ambit-agent")?;
    assert_eq!(
        env_of(rtu_agent, "AMBIT_DEVICE_PLUGIN_DIR"),
        Some(json!(""))
    );
    assert_eq!(env_of(rtu_agent, "AMBIT_DRA"), Some(json!("false")));

    // Modbus RTU: the only case that makes the agent privileged.
    let rtu = find(&renders["modbus-rtu"], "DaemonSet", "ambit-agent")?;
    assert_eq!(
        rtu["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"],
        true
    );
    Ok(())
}
