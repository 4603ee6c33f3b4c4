//! The MQTT I/O: one task per broker keeps a connection (capped backoff
//! with jitter between attempts), feeds every message to its [`Index`],
//! and sends the broker's complete set whenever it changes; the stream
//! merges the brokers' sets (first broker wins an id seen twice) and yields
//! the union when it changed.
//!
//! ```text
//!   broker task ×N ── (broker, set) ──► merge ──► DeviceStream
//!     ConnAck ─► subscribe        Publish ─► index.apply
//!     error   ─► index.reset (its devices go absent) ─► backoff ─► reconnect
//!     refused credentials ─► the stream's error (DeviceSet status)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_discovery::{Backoff, Device, DeviceStream, DiscoveryError};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use crate::details::{Broker, Plan};
use crate::index::Index;
use crate::tls;

type Update = Result<(usize, Vec<Device>), DiscoveryError>;

/// Starts one task per broker and returns the stream of complete sets.
pub fn device_sets(plan: Plan, node: &str) -> Result<DeviceStream, DiscoveryError> {
    let tls = if plan.brokers.iter().any(|b| b.tls) {
        Some(tls::client_config(&plan.tls)?)
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel::<Update>(64);
    let plan = Arc::new(plan);
    let suffix = fastrand::u32(..);
    let node: String = node
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    for (i, broker) in plan.brokers.iter().enumerate() {
        let client_id = format!("{}-{node}-{suffix:08x}-{i}", plan.client_id);
        let task = BrokerTask {
            index: i,
            broker: broker.clone(),
            plan: Arc::clone(&plan),
            tls: tls.clone(),
            client_id,
            tx: tx.clone(),
        };
        let span = tracing::info_span!("mqtt broker", broker = %broker.url);
        tokio::spawn(task.run().instrument(span));
    }
    drop(tx);
    let brokers = plan.brokers.len();
    let max_devices = plan.limits.max_devices;
    let (out, stream) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut sets: Vec<Vec<Device>> = vec![Vec::new(); brokers];
        let mut last: Vec<Device> = Vec::new();
        if out.send(Ok(Vec::new())).await.is_err() {
            return;
        }
        while let Some(update) = rx.recv().await {
            let (i, set) = match update {
                Ok(update) => update,
                Err(error) => {
                    let _ = out.send(Err(error)).await;
                    return;
                }
            };
            if let Some(slot) = sets.get_mut(i) {
                *slot = set;
            }
            let mut union: BTreeMap<String, Device> = BTreeMap::new();
            for device in sets.iter().flatten() {
                union
                    .entry(device.id.clone())
                    .or_insert_with(|| device.clone());
            }
            let merged: Vec<Device> = union.into_values().take(max_devices).collect();
            if merged != last {
                last.clone_from(&merged);
                if out.send(Ok(merged)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        stream,
    )))
}

struct BrokerTask {
    index: usize,
    broker: Broker,
    plan: Arc<Plan>,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: String,
    tx: mpsc::Sender<Update>,
}

/// Counts of ignored messages, logged at most every [`REPORT_EVERY`].
#[derive(Default)]
struct Ignoring {
    counts: BTreeMap<&'static str, u64>,
    reported: Option<Instant>,
}

const REPORT_EVERY: Duration = Duration::from_secs(30);

impl BrokerTask {
    async fn run(self) {
        let mut index = Index::new(&self.plan.watch, self.plan.limits, &self.broker.url);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut ignoring = Ignoring::default();
        let mut options = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        options.set_keep_alive(self.plan.keep_alive);
        options.set_clean_session(true);
        let max = self.plan.limits.max_payload_bytes + 64 * 1024;
        options.set_max_packet_size(max, 64 * 1024);
        if let Some(crate::details::Credentials(user, password)) = &self.plan.credentials {
            options.set_credentials(user, password);
        }
        if let (true, Some(config)) = (self.broker.tls, &self.tls) {
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::clone(config))));
        }
        let (client, mut events) = AsyncClient::new(options, 64);
        loop {
            let event = tokio::select! {
                () = self.tx.closed() => return,
                () = sleep_until(index.next_deadline()) => {
                    if index.expire(Instant::now()) && !self.send(&index).await {
                        return;
                    }
                    continue;
                }
                event = events.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(broker = %self.broker.url, "connected to the MQTT broker");
                    backoff.reset();
                    // One SUBSCRIBE for every filter (a clean session has none).
                    let filters = index
                        .subscriptions()
                        .into_iter()
                        .map(|topic| SubscribeFilter::new(topic, QoS::AtLeastOnce));
                    if let Err(error) = client.try_subscribe_many(filters) {
                        warn!(%error, "failed to subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let topic = publish.topic.as_str();
                    match index.apply(topic, &publish.payload, Instant::now()) {
                        Ok(true) => {
                            if !self.send(&index).await {
                                return;
                            }
                        }
                        Ok(false) => {}
                        Err(why) => ignoring.count(why, &self.broker.url, topic),
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if index.reset() && !self.send(&index).await {
                        return;
                    }
                    if let Some(message) = refused(&error) {
                        let message = format!("broker {}: {message}", self.broker.url);
                        let _ = self.tx.send(Err(DiscoveryError::Failed(message))).await;
                        return;
                    }
                    let delay = backoff.next_delay();
                    warn!(broker = %self.broker.url, %error, retry_in = ?delay,
                        "lost the MQTT broker; its devices are absent until it is back");
                    tokio::select! {
                        () = self.tx.closed() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn send(&self, index: &Index) -> bool {
        debug!(broker = %self.broker.url, "device set changed");
        self.tx
            .send(Ok((self.index, index.devices())))
            .await
            .is_ok()
    }
}

impl Ignoring {
    fn count(&mut self, why: crate::sparkplug::Ignored, broker: &str, topic: &str) {
        use crate::sparkplug::Ignored;
        let label = match why {
            Ignored::Topic => "unexpected topic",
            Ignored::Oversize => "payload over maxPayloadBytes",
            Ignored::Payload => "payload not Sparkplug B",
            Ignored::Filtered => "filtered out (groups, edgeNodes, devices)",
            Ignored::Limit => "a new device over maxDevices",
            Ignored::StaleDeath => "stale NDEATH (bdSeq of an earlier session)",
        };
        *self.counts.entry(label).or_default() += 1;
        debug!(broker, topic, reason = label, "ignored an MQTT message");
        let now = Instant::now();
        if why == Ignored::Filtered {
            return;
        }
        if self
            .reported
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            self.reported = Some(now);
            warn!(broker, topic, reason = label, counts = ?self.counts,
                "ignored MQTT messages (counts since start; logged every 30s at most)");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The message for a broker that refused us for good (credentials, client
/// id, authorisation): the DeviceSet's author must fix it.
fn refused(error: &ConnectionError) -> Option<&'static str> {
    match error {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => Some(
                "refused the connection: bad user name or password (properties MQTT_USERNAME, MQTT_PASSWORD)",
            ),
            ConnectReturnCode::NotAuthorized => Some(
                "refused the connection: not authorized (check properties MQTT_USERNAME and MQTT_PASSWORD, or MQTT_CLIENT_CERT)",
            ),
            ConnectReturnCode::BadClientId => {
                Some("refused the connection: bad client id (details.clientId)")
            }
            _ => None,
        },
        _ => None,
    }
}
