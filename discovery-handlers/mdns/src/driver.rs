//! The mDNS I/O: one mdns-sd daemon (its own thread and sockets, on the
//! interfaces the plan selects) per discovery, one browse per service
//! type. Every event goes through the [`Index`]; the stream yields the
//! complete set whenever it changed. Each `requery` the browses start
//! afresh: a new query goes out and the daemon's cache is replayed, which
//! confirms every live service to the index.
//!
//! ```text
//!   mdns-sd daemon ── browse(type) ×N ── forwarder task ──► events ─┐
//!     announcements, goodbyes, answers, TTL expiry in its cache      ▼
//!   requery tick ─► browse again (old forwarders retired)     Index ─► DeviceStream
//!   deadline ─────► index.expire (services the replays no longer confirm)
//! ```
//!
//! Dropping the stream ends the loop and shuts the daemon down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_discovery::{Device, DeviceStream, DiscoveryError};
use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use crate::details::Plan;
use crate::device::{Ignored, Service};
use crate::index::Index;

/// How long past two missed re-queries a device is kept.
const STALE_SLACK: Duration = Duration::from_secs(30);
/// Ignored services and daemon errors are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The daemon, shut down when dropped.
struct Daemon(ServiceDaemon);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

fn failed(what: &str, error: &mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Failed(format!("failed to {what}: {error}"))
}

/// Starts the daemon and the browses and returns the stream of complete
/// sets.
pub fn device_sets(plan: Plan) -> Result<DeviceStream, DiscoveryError> {
    let daemon = Daemon(ServiceDaemon::new().map_err(|e| failed("start the mDNS daemon", &e))?);
    select_interfaces(&daemon.0, &plan).map_err(|e| failed("select interfaces", &e))?;
    let monitor = daemon
        .0
        .monitor()
        .map_err(|e| failed("monitor the mDNS daemon", &e))?;
    let (events_tx, events) = mpsc::channel::<ServiceEvent>(1024);
    let forwarders = browse(&daemon.0, &plan.service_types, &events_tx)?;
    let (out, stream) = mpsc::channel(4);
    let task = Browser {
        daemon,
        plan,
        events_tx,
        events,
        monitor,
        forwarders,
        out,
    };
    let span = tracing::info_span!("mdns browse");
    tokio::spawn(task.run().instrument(span));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        stream,
    )))
}

/// Interfaces: all by default; only those named when `interfaces` is set;
/// an address family off when `ipv4` or `ipv6` is false.
fn select_interfaces(daemon: &ServiceDaemon, plan: &Plan) -> mdns_sd::Result<()> {
    if !plan.interfaces.is_empty() {
        daemon.disable_interface(IfKind::All)?;
        let names: Vec<IfKind> = plan
            .interfaces
            .iter()
            .map(|name| IfKind::Name(name.clone()))
            .collect();
        daemon.enable_interface(names)?;
    }
    if !plan.rules.ipv4 {
        daemon.disable_interface(IfKind::IPv4)?;
    }
    if !plan.rules.ipv6 {
        daemon.disable_interface(IfKind::IPv6)?;
    }
    Ok(())
}

/// Browses every type; one task per browse forwards its events until the
/// daemon drops the browse (a newer browse of the type replaces it).
fn browse(
    daemon: &ServiceDaemon,
    types: &[String],
    tx: &mpsc::Sender<ServiceEvent>,
) -> Result<Vec<JoinHandle<()>>, DiscoveryError> {
    let mut forwarders = Vec::with_capacity(types.len());
    for ty in types {
        let receiver = daemon
            .browse(ty)
            .map_err(|e| failed(&format!("browse {ty}"), &e))?;
        let tx = tx.clone();
        forwarders.push(tokio::spawn(async move {
            while let Ok(event) = receiver.recv_async().await {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(forwarders)
}

struct Browser {
    daemon: Daemon,
    plan: Plan,
    events_tx: mpsc::Sender<ServiceEvent>,
    events: mpsc::Receiver<ServiceEvent>,
    monitor: mdns_sd::Receiver<DaemonEvent>,
    forwarders: Vec<JoinHandle<()>>,
    out: mpsc::Sender<Result<Vec<Device>, DiscoveryError>>,
}

impl Browser {
    async fn run(mut self) {
        let stale_after = self.plan.requery * 2 + STALE_SLACK;
        let mut index = Index::new(self.plan.rules.clone(), stale_after);
        let mut ignoring = Ignoring::default();
        let mut retiring: Vec<JoinHandle<()>> = Vec::new();
        let requery = self.plan.requery;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + requery, requery);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(service_types = ?self.plan.service_types, "browsing");
        if self.out.send(Ok(Vec::new())).await.is_err() {
            return;
        }
        loop {
            let changed = tokio::select! {
                () = self.out.closed() => break,
                Some(event) = self.events.recv() => match event {
                    ServiceEvent::ServiceResolved(resolved) => {
                        let service = service(&resolved);
                        match index.resolved(&service, Instant::now()) {
                            Ok(changed) => changed,
                            Err(why) => {
                                ignoring.count(why, &service.fullname);
                                false
                            }
                        }
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        debug!(service = %fullname, "service removed");
                        index.removed(&fullname)
                    }
                    _ => false,
                },
                _ = ticks.tick() => {
                    // Forwarders of two browses ago are surely drained.
                    for old in retiring.drain(..) {
                        old.abort();
                    }
                    match browse(&self.daemon.0, &self.plan.service_types, &self.events_tx) {
                        Ok(new) => retiring = std::mem::replace(&mut self.forwarders, new),
                        Err(error) => warn!(%error, "failed to re-query"),
                    }
                    false
                }
                () = sleep_until(index.next_deadline()) => {
                    let changed = index.expire(Instant::now());
                    if changed {
                        info!("services no longer confirmed by the re-queries left the set");
                    }
                    changed
                }
                Ok(event) = self.monitor.recv_async() => {
                    if let DaemonEvent::Error(error) = event {
                        ignoring.daemon_error(&error);
                    }
                    false
                }
            };
            if changed {
                debug!(devices = index.len(), "device set changed");
                if self.out.send(Ok(index.devices())).await.is_err() {
                    break;
                }
            }
        }
        for task in self.forwarders.iter().chain(&retiring) {
            task.abort();
        }
    }
}

/// A resolved service in plain types.
fn service(resolved: &ResolvedService) -> Service {
    let mut addresses: Vec<_> = resolved.addresses.iter().map(|a| a.to_ip_addr()).collect();
    addresses.sort();
    Service {
        fullname: resolved.fullname.clone(),
        service_type: resolved.ty_domain.clone(),
        host: resolved.host.clone(),
        port: resolved.port,
        addresses,
        txt: resolved
            .txt_properties
            .iter()
            .map(|p| (p.key().to_owned(), p.val().map(<[u8]>::to_vec)))
            .collect(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Counts of ignored services, logged at most every [`REPORT_EVERY`].
#[derive(Default)]
struct Ignoring {
    counts: BTreeMap<&'static str, u64>,
    reported: Option<Instant>,
    errors_reported: Option<Instant>,
}

impl Ignoring {
    fn count(&mut self, why: Ignored, service: &str) {
        let label = match why {
            Ignored::Filtered => "filtered out (instances, txt)",
            Ignored::NoAddress => "no address of a kept family (ipv4, ipv6)",
            Ignored::Malformed => "malformed name",
            Ignored::Limit => "a new device over maxDevices",
        };
        *self.counts.entry(label).or_default() += 1;
        debug!(service, reason = label, "ignored a service");
        if why == Ignored::Filtered {
            return;
        }
        if due(&mut self.reported) {
            warn!(service, reason = label, counts = ?self.counts,
                "ignored services (counts since start; logged every 30s at most)");
        }
    }

    fn daemon_error(&mut self, error: &mdns_sd::Error) {
        debug!(%error, "mDNS daemon error");
        if due(&mut self.errors_reported) {
            warn!(%error, "mDNS daemon error (logged every 30s at most)");
        }
    }
}

fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_none_or(|at| now.duration_since(at) >= REPORT_EVERY) {
        *last = Some(now);
        true
    } else {
        false
    }
}
