//! One DeviceSet's discovery on this node: resolve its properties, ask the
//! handler, forward every complete set to the recorder, and start again
//! after failures.
//!
//! ```text
//!  resolve properties ──► handler.discover ──► complete sets ──► recorder
//!        ▲                      │ error / stream ends               ▲
//!        │                      └──► Failed ──► backoff ────────────┘
//!        └── a referenced Secret/ConfigMap changed: resolve again, restart if different
//! ```
//!
//! Invalid details are the DeviceSet author's to fix: the task reports them
//! and waits; the supervisor restarts it when the DeviceSet changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ambit_crds::v1alpha1::Discovery;
use ambit_discovery::{Backoff, DiscoverRequest, DiscoveryError, DiscoveryHandler};
use futures::StreamExt;
use kube::Client;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::discovery::properties;
use crate::metrics::Metrics;
use crate::recording::recorder::Input;
use crate::recording::tracker::SetKey;

/// What a discovery task needs.
#[derive(Clone)]
pub struct Task {
    /// The API client (for properties).
    pub client: Client,
    /// This node.
    pub node: String,
    /// The set.
    pub key: SetKey,
    /// The set's discovery section.
    pub discovery: Discovery,
    /// The handler to ask.
    pub handler: Arc<dyn DiscoveryHandler>,
    /// Where results go.
    pub recorder: mpsc::Sender<Input>,
    /// The agent's metrics.
    pub metrics: Metrics,
}

enum Outcome {
    /// Start again after a backoff.
    Retry,
    /// Start again now (the inputs changed).
    Restart,
    /// Wait until the inputs change (invalid details or properties).
    WaitForChange,
    /// Stop: the recorder is gone (the agent is stopping).
    Stop,
}

/// The recorder's channel closed: the agent is stopping, and this task with it.
struct RecorderGone;

impl Task {
    /// Runs discovery until the task is aborted, or until the recorder is
    /// gone (the agent's supervision then reports why and stops).
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut changes = properties::changes(
            &self.client,
            &self.key.namespace,
            &self.discovery.properties,
        );
        loop {
            let properties = match properties::resolve(
                &self.client,
                &self.key.namespace,
                &self.discovery.properties,
            )
            .await
            {
                Ok(properties) => properties,
                Err(error) => {
                    let reported = self
                        .report(DiscoveryError::InvalidDetails(error.to_string()))
                        .await;
                    if reported.is_err() {
                        return;
                    }
                    changes.next().await;
                    continue;
                }
            };
            match self.discover(&properties, &mut changes, &mut backoff).await {
                Outcome::Restart => backoff.reset(),
                Outcome::Retry => {
                    let delay = backoff.next_delay();
                    debug!(set = %self.key, ?delay, "retrying discovery");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = changes.next() => backoff.reset(),
                    }
                }
                Outcome::WaitForChange => {
                    changes.next().await;
                }
                Outcome::Stop => return,
            }
        }
    }

    async fn discover(
        &self,
        properties: &BTreeMap<String, String>,
        changes: &mut (impl futures::Stream<Item = ()> + Unpin),
        backoff: &mut Backoff,
    ) -> Outcome {
        let request = DiscoverRequest {
            details: self
                .discovery
                .details
                .clone()
                .map_or_else(|| Value::Object(Default::default()), Value::Object),
            properties: properties.clone(),
            node_name: self.node.clone(),
        };
        let started = Instant::now();
        let mut stream = match self.handler.discover(request).await {
            Ok(stream) => stream,
            Err(error) => {
                let retry = error.is_retryable();
                if self.report(error).await.is_err() {
                    return Outcome::Stop;
                }
                return if retry {
                    Outcome::Retry
                } else {
                    Outcome::WaitForChange
                };
            }
        };
        let mut first = true;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(devices)) => {
                        if first {
                            first = false;
                            self.metrics.discovery_latency(self.handler.name(), started.elapsed().as_secs_f64());
                            info!(set = %self.key, devices = devices.len(), "discovery running");
                        }
                        backoff.reset();
                        if self.recorder.send(Input::Discovered { key: self.key.clone(), devices }).await.is_err() {
                            return Outcome::Stop;
                        }
                    }
                    Some(Err(error)) => {
                        let retry = error.is_retryable();
                        if self.report(error).await.is_err() {
                            return Outcome::Stop;
                        }
                        return if retry { Outcome::Retry } else { Outcome::WaitForChange };
                    }
                    None => {
                        let ended = DiscoveryError::Unavailable("the handler ended discovery".into());
                        if self.report(ended).await.is_err() {
                            return Outcome::Stop;
                        }
                        return Outcome::Retry;
                    }
                },
                _ = changes.next() => {
                    match properties::resolve(&self.client, &self.key.namespace, &self.discovery.properties).await {
                        Ok(now) if &now == properties => {}
                        _ => {
                            info!(set = %self.key, "referenced Secrets or ConfigMaps changed; restarting discovery");
                            return Outcome::Restart;
                        }
                    }
                }
            }
        }
    }

    async fn report(&self, error: DiscoveryError) -> Result<(), RecorderGone> {
        warn!(set = %self.key, handler = self.handler.name(), category = error.category(), message = error.message(), "discovery failed");
        self.metrics
            .discovery_error(self.handler.name(), error.category());
        self.recorder
            .send(Input::Failed {
                key: self.key.clone(),
                error,
            })
            .await
            .map_err(|_| RecorderGone)
    }
}
