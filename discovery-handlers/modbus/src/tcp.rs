//! Modbus TCP: every (host, port) of the DeviceSet, `concurrency` at a
//! time, each over one connection that tries the unit ids in turn.
//!
//! ```text
//!   hosts x ports ──► at most `concurrency` targets at once
//!                       └─ connect (timeout) ──► unit 1, unit 2, ... (one request at a time)
//!                            refused / timeout: nothing there      a broken unit: reconnect, go on
//! ```
//!
//! A scan costs about targets / concurrency x timeout when nothing answers:
//! a /24 with the defaults (64 at once, 500 ms) takes about 2 s.

use std::net::SocketAddr;
use std::time::Duration;

use ambit_discovery::{BoxFuture, Device};
use futures::{StreamExt, stream};
use tokio::net::TcpStream;
use tokio_modbus::client::Context;
use tracing::debug;

use crate::details::{Host, Recognise, TcpPlan};
use crate::device::{Location, device};
use crate::session::{self, Verdict};

/// Scans every target of `plan`.
pub(crate) fn scan<'a>(plan: &'a TcpPlan, recognise: &'a Recognise) -> BoxFuture<'a, Vec<Device>> {
    let targets = plan
        .hosts
        .iter()
        .flat_map(|host| plan.ports.iter().map(move |port| (host.clone(), *port)));
    debug!(
        addresses = plan.hosts.len(),
        ports = plan.ports.len(),
        units = plan.units.len(),
        "scanning TCP"
    );
    // Boxed here, where the lifetimes are concrete: the compiler cannot
    // prove the stream of borrowing futures `Send` for every lifetime.
    Box::pin(
        stream::iter(targets)
            .map(|(host, port)| scan_target(host, port, &plan.units, recognise))
            .buffer_unordered(plan.concurrency)
            .flat_map(stream::iter)
            .collect(),
    )
}

async fn scan_target(host: Host, port: u16, units: &[u8], recognise: &Recognise) -> Vec<Device> {
    let mut found = Vec::new();
    let mut link: Option<Context> = None;
    for &unit in units {
        if link.is_none() {
            link = connect(&host, port, recognise.timeout).await;
        }
        let Some(context) = link.as_mut() else {
            break;
        };
        match session::examine(context, unit, recognise).await {
            Verdict::Match(finding) => {
                debug!(host = %host.label(), port, unit, "found");
                found.push(device(Location::Tcp { host: &host, port }, unit, finding));
            }
            Verdict::NoMatch => {}
            Verdict::Broken(why) => {
                debug!(host = %host.label(), port, unit, %why, "no usable answer; reconnecting for the next unit");
                link = None;
            }
        }
    }
    found
}

/// A connection to the host's port, or `None` when nothing answers in time.
async fn connect(host: &Host, port: u16, timeout: Duration) -> Option<Context> {
    let addresses: Vec<SocketAddr> = match host {
        Host::Addr(addr) => vec![SocketAddr::new(*addr, port)],
        Host::Name(name) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port)))
                .await
            {
                Ok(Ok(addresses)) => addresses.collect(),
                Ok(Err(error)) => {
                    debug!(host = %name, %error, "cannot resolve");
                    return None;
                }
                Err(_) => {
                    debug!(host = %name, "cannot resolve in time");
                    return None;
                }
            }
        }
    };
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // Requests are small and wait for their answer: send at once.
                let _ = stream.set_nodelay(true);
                return Some(tokio_modbus::client::tcp::attach(stream));
            }
            Ok(Err(error)) => debug!(%address, %error, "cannot connect"),
            Err(_) => debug!(%address, "no connection within the timeout"),
        }
    }
    None
}
