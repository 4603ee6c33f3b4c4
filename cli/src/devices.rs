//! `ambit devices`: the Devices of a namespace (or all), one line each, with
//! what operators ask first — which nodes see it, how many slots are used,
//! and whether it is Available (and if not, why).

use std::io::Write;

use ambit_crds::conditions::AVAILABLE;
use ambit_crds::v1alpha1::Device;
use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// Flags of `ambit devices`.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,

    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,

    /// Only Devices of this DeviceSet.
    #[arg(short = 's', long = "set")]
    device_set: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    /// Aligned columns.
    Table,
    /// The Devices as YAML.
    Yaml,
    /// The Devices as JSON.
    Json,
}

/// Lists the Devices.
pub async fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes cluster configured (KUBECONFIG or in-cluster)")?;
    let api: Api<Device> = if args.all_namespaces {
        Api::all(client)
    } else if let Some(namespace) = &args.namespace {
        Api::namespaced(client, namespace)
    } else {
        Api::default_namespaced(client)
    };
    let mut devices: Vec<Device> = api
        .list(&ListParams::default())
        .await
        .context("failed to list Devices (are Ambit's CRDs installed?)")?
        .items
        .into_iter()
        .filter(|d| {
            args.device_set
                .as_ref()
                .is_none_or(|set| &d.spec.device_set == set)
        })
        .collect();
    devices.sort_by_key(|d| (d.namespace(), d.spec.device_set.clone(), d.name_any()));
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Yaml => out.write_all(serde_yaml_ng::to_string(&devices)?.as_bytes())?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &devices)?;
            writeln!(out)?;
        }
        Output::Table => out.write_all(table(&devices, Timestamp::now()).as_bytes())?,
    }
    Ok(())
}

/// The table, one row per Device, columns aligned.
fn table(devices: &[Device], now: Timestamp) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "SET",
            "SHARED",
            "NODES",
            "SLOTS",
            "AVAILABLE",
            "AGE",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for device in devices {
        let status = device.status.as_ref();
        let nodes: Vec<&str> = status
            .iter()
            .flat_map(|s| &s.nodes)
            .map(|n| n.node.as_str())
            .collect();
        let used = status.map_or(0, |s| s.allocations.len());
        let available = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == AVAILABLE))
            .map_or_else(
                || "-".to_owned(),
                |c| {
                    if c.status == "True" {
                        "True".to_owned()
                    } else {
                        format!("{} ({})", c.status, c.reason)
                    }
                },
            );
        let age = device.creation_timestamp().map_or_else(
            || "-".to_owned(),
            |t| short_age(now.duration_since(t.0).unsigned_abs()),
        );
        rows.push(vec![
            device.namespace().unwrap_or_default(),
            device.name_any(),
            device.spec.device_set.clone(),
            device.spec.shared.to_string(),
            if nodes.is_empty() {
                "<none>".to_owned()
            } else {
                nodes.join(",")
            },
            format!("{used}/{}", device.spec.capacity.max(1)),
            available,
            age,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("   ").trim_end());
        text.push('\n');
    }
    text
}

/// An age as kubectl prints it: `45s`, `12m`, `3h`, `5d`.
fn short_age(age: std::time::Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ambit_crds::v1alpha1::{Allocation, DeviceNodeStatus, DeviceSpec, DeviceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    #[test]
    fn a_row_says_where_it_is_seen_slots_and_why_it_is_not_available() {
        let now = Timestamp::UNIX_EPOCH + std::time::Duration::from_secs(3_700);
        let mut device = Device::new(
            "plc-1a",
            DeviceSpec {
                device_set: "plcs".into(),
                id: "10.0.0.5:502/1".into(),
                shared: true,
                node: None,
                capacity: 2,
                properties: BTreeMap::new(),
                device_nodes: vec![],
                mounts: vec![],
            },
        );
        device.metadata.namespace = Some("plant".into());
        device.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        device.status = Some(DeviceStatus {
            nodes: vec![
                DeviceNodeStatus {
                    node: "edge-1".into(),
                    since: Time(Timestamp::UNIX_EPOCH),
                },
                DeviceNodeStatus {
                    node: "edge-2".into(),
                    since: Time(Timestamp::UNIX_EPOCH),
                },
            ],
            allocations: vec![Allocation {
                slot: 0,
                node: "edge-1".into(),
                pod: None,
                since: None,
            }],
            conditions: vec![Condition {
                type_: AVAILABLE.into(),
                status: "False".into(),
                reason: "NotSeen".into(),
                message: String::new(),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
        });
        let text = table(&[device], now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"), "{text}");
        for part in [
            "plant",
            "plc-1a",
            "plcs",
            "true",
            "edge-1,edge-2",
            "1/2",
            "False (NotSeen)",
            "61m",
        ] {
            assert!(
                lines[1].contains(part),
                "{part} missing from {:?}",
                lines[1]
            );
        }
    }

    #[test]
    fn ages_read_like_kubectls() {
        use std::time::Duration;
        assert_eq!(short_age(Duration::from_secs(5)), "5s");
        assert_eq!(short_age(Duration::from_secs(600)), "10m");
        assert_eq!(short_age(Duration::from_secs(10_800)), "3h");
        assert_eq!(short_age(Duration::from_secs(259_200)), "3d");
    }
}
