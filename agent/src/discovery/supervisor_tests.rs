//! The supervisor against the shared test control plane's API server (real
//! DeviceSets, a real watch), with two in-process handlers standing in for
//! a buggy handler and a good one: a crash in one set's discovery is
//! reported as that set's failure and restarted after a doubling delay,
//! and the other set's discovery goes on untouched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSet;
use ambit_discovery::{
    self as sdk, BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler,
};
use kube::api::PostParams;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Supervisor;
use crate::discovery::handlers::{Available, HandlerMap};
use crate::metrics::Metrics;
use crate::recording::recorder::Input;

/// Panics in its first `crashes` calls to `discover`, then finds `d1`.
struct Handler {
    name: &'static str,
    crashes: usize,
    calls: AtomicUsize,
}

impl DiscoveryHandler for Handler {
    fn name(&self) -> &str {
        self.name
    }

    fn discover(&self, _: DiscoverRequest) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let crash = call < self.crashes;
        Box::pin(async move {
            assert!(!crash, "{} crashed on call {call}", self.name);
            let found = futures::stream::iter([Ok(vec![sdk::Device::new("d1")])]);
            let stream: DeviceStream =
                Box::pin(futures::StreamExt::chain(found, futures::stream::pending()));
            Ok(stream)
        })
    }
}

fn available(name: &'static str, crashes: usize) -> Available {
    Available {
        handler: Arc::new(Handler {
            name,
            crashes,
            calls: AtomicUsize::new(0),
        }),
        kind: "embedded",
        generation: 1,
    }
}

/// The next input about `set` (others are kept in `others`).
async fn next_about(
    inputs: &mut mpsc::Receiver<Input>,
    set: &str,
    others: &mut Vec<Input>,
) -> anyhow::Result<Input> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let input = tokio::time::timeout_at(deadline, inputs.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no input about {set} in 30 s; others: {others:?}"))?
            .ok_or_else(|| anyhow::anyhow!("the supervisor stopped"))?;
        let about = match &input {
            Input::SetUpserted { .. } => None,
            Input::Discovered { key, .. } | Input::Failed { key, .. } => Some(key.name.clone()),
            other => anyhow::bail!("unexpected input: {other:?}"),
        };
        if about.as_deref() == Some(set) {
            return Ok(input);
        }
        others.push(input);
    }
}

fn failure(input: &Input) -> Option<&DiscoveryError> {
    match input {
        Input::Failed { error, .. } => Some(error),
        _ => None,
    }
}

#[tokio::test]
async fn a_crashing_discovery_is_reported_and_restarted_and_others_go_on() -> anyhow::Result<()> {
    let env = ambit_tests::TestEnv::new("supervisor-crash").await?;
    ambit_tests::crds::install(&env.client).await?;
    let sets: kube::Api<DeviceSet> = env.api();
    for (name, handler) in [("crashy", "crashy"), ("steady", "steady")] {
        let set = serde_json::from_value(json!({
            "apiVersion": "ambit.dev/v1alpha1", "kind": "DeviceSet",
            "metadata": { "name": name },
            "spec": { "discovery": { "handler": handler } },
        }))?;
        sets.create(&PostParams::default(), &set).await?;
    }
    let handlers = HandlerMap::from([
        ("crashy".to_owned(), available("crashy", 2)),
        ("steady".to_owned(), available("steady", 0)),
    ]);
    let (_handlers_tx, handlers_rx) = watch::channel(handlers);
    let (ready_tx, _ready) = watch::channel(false);
    let (tx, mut inputs) = mpsc::channel(64);
    let metrics = Metrics::register(&mut Registry::default(), "node-a");
    let supervisor = Supervisor::new(
        env.client.clone(),
        Some(env.namespace.clone()),
        "node-a".to_owned(),
        tx,
        metrics,
    );
    let supervising = tokio::spawn(supervisor.run(handlers_rx, ready_tx));

    let mut others = vec![];
    let first = next_about(&mut inputs, "crashy", &mut others).await?;
    let crashed_at = Instant::now();
    let error = failure(&first).ok_or_else(|| anyhow::anyhow!("not a failure: {first:?}"))?;
    assert_eq!(error.category(), "failed");
    assert!(
        error.message().contains("crashy crashed on call 0")
            && error.message().contains("restarting it in 1s"),
        "{error}"
    );

    let second = next_about(&mut inputs, "crashy", &mut others).await?;
    let waited = crashed_at.elapsed();
    let error = failure(&second).ok_or_else(|| anyhow::anyhow!("not a failure: {second:?}"))?;
    assert!(
        error.message().contains("crashy crashed on call 1")
            && error.message().contains("restarting it in 2s"),
        "{error}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "restarted after {waited:?}"
    );

    let third = next_about(&mut inputs, "crashy", &mut others).await?;
    let waited = crashed_at.elapsed();
    assert!(
        matches!(&third, Input::Discovered { devices, .. } if devices.len() == 1),
        "{third:?}"
    );
    assert!(
        waited >= Duration::from_millis(2_900),
        "found after {waited:?}"
    );

    // The steady set found its device once, and never failed.
    let steady: Vec<&Input> = others
        .iter()
        .filter(|i| matches!(i, Input::Discovered { key, .. } | Input::Failed { key, .. } if key.name == "steady"))
        .collect();
    assert!(
        matches!(steady.as_slice(), [Input::Discovered { .. }]),
        "{steady:?}"
    );
    assert!(!supervising.is_finished(), "the supervisor still runs");
    supervising.abort();
    Ok(())
}
