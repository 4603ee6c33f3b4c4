//! `ambit discover`: runs a DeviceSet's discovery handler locally, with no
//! cluster, and prints the devices that would become Device objects — the
//! way to debug a DeviceSet before applying it.
//!
//! The handler is an embedded one (compiled into this binary) or an
//! external one reached on its unix socket (`--handler-socket`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambit_agent::desired::{self, SetInfo};
use ambit_agent::tracker::SetKey;
use ambit_crds::v1alpha1::DeviceSet;
use ambit_discovery::{Device, DiscoverRequest, DiscoveryHandler, ExternalHandler};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::Value;

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The DeviceSet manifest (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,

    /// Output format: a table that updates as devices come and go, or the
    /// Device objects as YAML or JSON.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Stop after this long (e.g. `10s`, `2m`); without it, run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Print the first complete device set and stop.
    #[arg(long, conflicts_with = "duration")]
    once: bool,

    /// Reach an external handler on this unix socket instead of an embedded one.
    #[arg(long, env = "AMBIT_HANDLER_SOCKET")]
    handler_socket: Option<PathBuf>,

    /// The node name to discover as (local devices are named after it).
    #[arg(long, env = "AMBIT_NODE_NAME", default_value = "local")]
    node: String,

    /// A value for a property that the DeviceSet reads from a Secret or
    /// ConfigMap (`NAME=VALUE`; repeat for several).
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,

    /// State directory for the embedded debug-echo handler (its `offline`
    /// file hides devices).
    #[arg(long, env = "AMBIT_DEBUG_ECHO_DIR")]
    debug_echo_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

pub(crate) async fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let DiscoverArgs {
        file,
        output,
        duration,
        once,
        handler_socket,
        node,
        properties,
        debug_echo_dir,
    } = args;
    let set = read_set(&file)?;
    let handler_name = set.spec.discovery.handler.clone();
    let handler: Arc<dyn DiscoveryHandler> = match handler_socket {
        Some(socket) => Arc::new(ExternalHandler::new(handler_name.clone(), socket)),
        None => embedded(&handler_name, debug_echo_dir)?,
    };
    let request = DiscoverRequest {
        details: set
            .spec
            .discovery
            .details
            .clone()
            .map_or_else(|| Value::Object(Default::default()), Value::Object),
        properties: resolve_properties(&set, properties)?,
        node_name: node.clone(),
    };

    let key = SetKey {
        namespace: set
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: set.metadata.name.clone().unwrap_or_default(),
    };
    let info = SetInfo {
        uid: "<none>".into(),
        handler: handler_name.clone(),
        capacity: set.spec.capacity,
        broker_properties: set.spec.broker_properties.clone(),
    };
    let mut stream = handler
        .discover(request)
        .await
        .with_context(|| format!("handler {handler_name:?} refused the DeviceSet"))?;

    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = sleep_until(deadline) => return Ok(()),
        };
        match next {
            Some(Ok(devices)) => {
                print(output, &key, &info, &node, &devices)?;
                if once {
                    return Ok(());
                }
            }
            Some(Err(error)) => bail!("discovery failed: {error}"),
            None => bail!("the handler ended discovery"),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn read_set(file: &PathBuf) -> anyhow::Result<DeviceSet> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("failed to read standard input")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?
    };
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", file.display()))?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if kind != "DeviceSet" {
        bail!(
            "{} holds a {kind:?}, not a DeviceSet (apiVersion ambit.dev/v1alpha1)",
            file.display()
        );
    }
    serde_yaml_ng::from_value(value)
        .with_context(|| format!("{} is not a valid DeviceSet", file.display()))
}

fn embedded(
    name: &str,
    debug_echo_dir: Option<PathBuf>,
) -> anyhow::Result<Arc<dyn DiscoveryHandler>> {
    let handlers = ambit_agent::embedded_handlers(&ambit_agent::HandlerOptions { debug_echo_dir });
    let names: Vec<String> = handlers.iter().map(|h| h.name().to_owned()).collect();
    handlers.into_iter().find(|h| h.name() == name).with_context(|| {
        format!(
            "no handler named {name:?} is built into ambit (built in: {}); for an external handler, give its socket with --handler-socket",
            names.join(", ")
        )
    })
}

fn resolve_properties(
    set: &DeviceSet,
    given: Vec<(String, String)>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut given: BTreeMap<String, String> = given.into_iter().collect();
    let mut resolved = BTreeMap::new();
    for property in &set.spec.discovery.properties {
        if let Some(value) = given.remove(&property.name) {
            resolved.insert(property.name.clone(), value);
        } else if let Some(value) = &property.value {
            resolved.insert(property.name.clone(), value.clone());
        } else {
            let from = property.value_from.as_ref();
            let source = from
                .and_then(|f| {
                    f.secret_key_ref
                        .as_ref()
                        .map(|s| format!("Secret {} key {}", s.name, s.key))
                })
                .or_else(|| {
                    from.and_then(|f| {
                        f.config_map_key_ref
                            .as_ref()
                            .map(|c| format!("ConfigMap {} key {}", c.name, c.key))
                    })
                })
                .unwrap_or_default();
            bail!(
                "property {} comes from {source}, which ambit discover cannot read without a cluster: give it with --property {}=VALUE",
                property.name,
                property.name
            );
        }
    }
    if let Some(name) = given.keys().next() {
        bail!("--property {name}: the DeviceSet has no property of that name");
    }
    Ok(resolved)
}

fn print(
    output: Output,
    key: &SetKey,
    info: &SetInfo,
    node: &str,
    devices: &[Device],
) -> anyhow::Result<()> {
    let objects: Vec<_> = devices
        .iter()
        .map(|device| {
            let name = desired::device_name(key, device, node);
            let spec = desired::device_spec(key, info, device, node);
            desired::device_object(&name, key, info, spec)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match output {
        Output::Yaml => {
            for object in &objects {
                write!(out, "---\n{}", serde_yaml_ng::to_string(object)?)?;
            }
        }
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&objects)?)?,
        Output::Table => {
            let now = k8s_openapi::jiff::Timestamp::now();
            writeln!(out, "# {now}: {} device(s)", objects.len())?;
            let rows: Vec<[String; 4]> = objects
                .iter()
                .map(|o| {
                    let props: Vec<String> = o
                        .spec
                        .properties
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    [
                        o.metadata.name.clone().unwrap_or_default(),
                        o.spec.id.clone(),
                        if o.spec.shared {
                            "shared".into()
                        } else {
                            format!("local ({node})")
                        },
                        props.join(" "),
                    ]
                })
                .collect();
            let header = ["NAME", "ID", "SCOPE", "PROPERTIES"].map(String::from);
            let widths: Vec<usize> = (0..3)
                .map(|i| {
                    rows.iter()
                        .chain(std::iter::once(&header))
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in std::iter::once(&header).chain(&rows) {
                writeln!(
                    out,
                    "{:w0$}  {:w1$}  {:w2$}  {}",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
