//! One running discovery: datagrams and probe cycles in, complete device
//! sets out.
//!
//! ```text
//!   every probeInterval: Probe (repeated with back-off) ─┐
//!   datagrams (ProbeMatches, Hello, Bye) ─► Tracker ◄────┤
//!   matchTimeout after each Probe: end of cycle ─────────┤
//!   interrogations (JoinSet, ≤ 16 at once) ──────────────┘
//!                       └─► devices() ─► sent when it differs from the last set sent
//! ```
//!
//! The first set goes out when the first cycle has ended and its cameras
//! are interrogated (or after three request timeouts at most), so it is
//! complete rather than empty; later sets go out on every change — a Hello
//! or a Bye shows at once, not at the next probe.

use std::sync::Arc;
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoveryError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, debug, info, info_span};

use crate::details::Config;
use crate::interrogate::{self, Ask, Info};
use crate::net::{self, Sockets};
use crate::tracker::{Job, Tracker};
use crate::wsd;

/// The most cameras interrogated at once.
const CONCURRENCY: usize = 16;
/// SOAP-over-UDP's retransmission delays (Appendix I of the 1.1 spec):
/// the first repeat after a random 50–250 ms, each next one after twice
/// the last, at most 500 ms.
const UDP_MIN_DELAY: u64 = 50;
const UDP_MAX_DELAY: u64 = 250;
const UDP_UPPER_DELAY: Duration = Duration::from_millis(500);

/// Opens the sockets and starts the discovery task.
pub(crate) fn start(config: Arc<Config>) -> Result<DeviceStream, DiscoveryError> {
    let sockets = Sockets::open(&config).map_err(|error| {
        DiscoveryError::Failed(format!(
            "cannot open a UDP socket for WS-Discovery: {error}"
        ))
    })?;
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(run(config, sockets, sender).instrument(info_span!("onvif")));
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

type Sender = mpsc::Sender<Result<Vec<Device>, DiscoveryError>>;

/// The repeats left of the current Probe.
struct Repeat {
    at: Instant,
    left: u32,
    delay: Duration,
}

async fn run(config: Arc<Config>, mut sockets: Sockets, sender: Sender) {
    let mut tracker = Tracker::default();
    let mut running: JoinSet<(Job, Info)> = JoinSet::new();
    let mut next_probe = Instant::now();
    let mut cycle_end: Option<Instant> = None;
    let mut first_ready: Option<Instant> = None;
    let mut repeat: Option<Repeat> = None;
    let mut probe = String::new();
    let mut interfaces = Vec::new();
    let mut last_sent: Option<Vec<Device>> = None;
    let mut buffers = [(); 4].map(|()| vec![0u8; wsd::MAX_DATAGRAM]);
    let ask = Ask {
        credentials: None,
        timeout: config.timeout,
        streams: config.streams,
    };

    loop {
        let room = CONCURRENCY.saturating_sub(running.len());
        for job in tracker.jobs(&config, room) {
            let ask = Ask {
                credentials: config
                    .credentials
                    .for_device(crate::device::uuid(&job.address))
                    .cloned(),
                ..ask.clone()
            };
            running.spawn(async move {
                let info = interrogate::interrogate(&job.address, &job.xaddrs, &ask).await;
                (job, info)
            });
        }
        let ready = first_ready.is_some_and(|at| !tracker.busy() || Instant::now() >= at);
        if ready {
            let set = tracker.devices(&config);
            if last_sent.as_ref() != Some(&set) {
                info!(devices = set.len(), "onvif device set changed");
                if sender.send(Ok(set.clone())).await.is_err() {
                    break;
                }
                last_sent = Some(set);
            }
        }
        let [b0, b1, b2, b3] = &mut buffers;
        tokio::select! {
            () = sender.closed() => break,
            () = sleep_until(next_probe) => {
                interfaces = net::interfaces(&config);
                sockets.join(&interfaces);
                probe = format!("urn:uuid:{}", random_uuid());
                tracker.start_cycle(probe.clone());
                let datagram = wsd::probe(&probe, &config.types);
                if !sockets.multicast(datagram.as_bytes(), &interfaces).await {
                    debug!(interfaces = interfaces.len(), "the Probe went out on no interface");
                }
                let now = Instant::now();
                repeat = (config.probe_repeat > 0).then(|| {
                    let delay = Duration::from_millis(fastrand::u64(UDP_MIN_DELAY..=UDP_MAX_DELAY));
                    Repeat { at: now + delay, left: config.probe_repeat, delay }
                });
                cycle_end = Some(now + config.match_timeout);
                next_probe = now + config.probe_interval;
            }
            () = sleep_until_some(repeat.as_ref().map(|r| r.at)) => {
                let datagram = wsd::probe(&probe, &config.types);
                sockets.multicast(datagram.as_bytes(), &interfaces).await;
                repeat = repeat.take().and_then(|r| {
                    let delay = (r.delay * 2).min(UDP_UPPER_DELAY);
                    (r.left > 1).then(|| Repeat { at: Instant::now() + delay, left: r.left - 1, delay })
                });
            }
            () = sleep_until_some(cycle_end) => {
                cycle_end = None;
                tracker.end_cycle(config.missed_probes);
                if first_ready.is_none() {
                    first_ready = Some(Instant::now() + config.timeout * 3);
                }
            }
            Some((length, from)) = receive(Some(&sockets.probe_v4), b0) => {
                observe(&mut tracker, &b0[..length], from);
            }
            Some((length, from)) = receive(sockets.listen_v4.as_ref(), b1) => {
                observe(&mut tracker, &b1[..length], from);
            }
            Some((length, from)) = receive(sockets.probe_v6.as_ref(), b2) => {
                observe(&mut tracker, &b2[..length], from);
            }
            Some((length, from)) = receive(sockets.listen_v6.as_ref(), b3) => {
                observe(&mut tracker, &b3[..length], from);
            }
            Some(done) = running.join_next(), if !running.is_empty() => match done {
                Ok((job, info)) => {
                    if let Some(error) = &info.error {
                        info!(camera = %job.address, %error, "camera not fully described");
                    }
                    tracker.interrogated(job, info);
                }
                Err(error) => debug!(%error, "an interrogation task ended abnormally"),
            },
        }
        // Wake the first set as soon as the interrogations end.
        if let Some(at) = first_ready
            && !tracker.busy()
            && Instant::now() < at
        {
            first_ready = Some(Instant::now());
        }
    }
    running.abort_all();
    debug!("onvif discovery stopped");
}

fn observe(tracker: &mut Tracker, datagram: &[u8], from: std::net::SocketAddr) {
    match wsd::parse(datagram) {
        Ok(message) => {
            tracker.observe(message, from.ip());
        }
        Err(why) => debug!(%from, %why, "ignored a datagram"),
    }
}

async fn receive(
    socket: Option<&UdpSocket>,
    buffer: &mut [u8],
) -> Option<(usize, std::net::SocketAddr)> {
    match socket {
        Some(socket) => match socket.recv_from(buffer).await {
            Ok(received) => Some(received),
            Err(error) => {
                debug!(%error, "receive failed");
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A random (version 4) UUID for a MessageID.
fn random_uuid() -> String {
    let bits = fastrand::u128(..);
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
