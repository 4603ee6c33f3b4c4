//! One DeviceSet's scans: TCP and RTU side by side, merged into one
//! complete, sorted device set; and the poll loop that sends a set only
//! when it differs from the last one sent.
//!
//! ```text
//!   ┌─► scan ─┬─ tcp::scan  (hosts x ports, bounded concurrency) ─┐
//!   │         └─ rtu::scan_port per port (one request at a time)  ─┴─► sorted set ─► changed? send
//!   └── sleep(interval) ◄───────────────────────────────────────────────────────────────┘
//! ```
//!
//! Modbus has no events, so polling it is; a scan is bounded by its
//! timeouts, and scans never overlap (the interval runs from the end of one
//! to the start of the next).

use std::collections::BTreeMap;
use std::time::Instant;

use ambit_discovery::{Device, DeviceStream};
use futures::{StreamExt, future, stream};
use tracing::{debug, info, warn};

use crate::details::Plan;
use crate::rtu::{self, PortScan};
use crate::tcp;

/// Scans one DeviceSet's devices, remembering what each serial port had.
#[derive(Debug)]
pub(crate) struct Scanner {
    plan: Plan,
    /// Per serial port: the devices last seen there, and whether the port
    /// was unavailable at the last scan (to warn once, not every scan).
    ports: BTreeMap<String, (Vec<Device>, bool)>,
}

impl Scanner {
    pub(crate) fn new(plan: Plan) -> Self {
        Self {
            plan,
            ports: BTreeMap::new(),
        }
    }

    /// One complete scan: every device found, sorted by id, each once.
    pub(crate) async fn scan(&mut self) -> Vec<Device> {
        let started = Instant::now();
        let recognise = &self.plan.recognise;
        let tcp = async {
            match &self.plan.tcp {
                Some(plan) => tcp::scan(plan, recognise).await,
                None => Vec::new(),
            }
        };
        let rtu = async {
            let Some(plan) = &self.plan.rtu else {
                return Vec::new();
            };
            let paths = rtu::resolve(&plan.ports);
            let scans = paths
                .iter()
                .map(|path| rtu::scan_port(path, plan, recognise));
            paths
                .iter()
                .cloned()
                .zip(future::join_all(scans).await)
                .collect()
        };
        let (tcp, rtu): (Vec<Device>, Vec<(String, PortScan)>) = future::join(tcp, rtu).await;

        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        devices.extend(tcp.into_iter().map(|device| (device.id.clone(), device)));
        let mut ports = BTreeMap::new();
        for (path, scan) in rtu {
            let previous = self.ports.remove(&path);
            let entry = match scan {
                PortScan::Scanned(found) => (found, false),
                PortScan::Unavailable(why) => {
                    let (known, was_unavailable) = previous.unwrap_or_default();
                    if !was_unavailable {
                        warn!(port = %path, %why, devices = known.len(), "cannot open the serial port; keeping its last known devices");
                    }
                    (known, true)
                }
            };
            devices.extend(
                entry
                    .0
                    .iter()
                    .map(|device| (device.id.clone(), device.clone())),
            );
            ports.insert(path, entry);
        }
        // Ports that no longer exist are forgotten with their devices.
        self.ports = ports;
        debug!(devices = devices.len(), took = ?started.elapsed(), "scan done");
        devices.into_values().collect()
    }
}

/// The device sets of one DeviceSet: the first when the first scan ends,
/// then a new one whenever a scan finds a different set.
pub(crate) fn device_sets(plan: Plan) -> DeviceStream {
    let interval = plan.interval;
    let state = (Scanner::new(plan), None::<Vec<Device>>);
    let sets = stream::unfold(state, move |(mut scanner, mut last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(interval).await;
            }
            let set = scanner.scan().await;
            if last.as_ref() != Some(&set) {
                info!(devices = set.len(), "modbus device set changed");
                last = Some(set.clone());
                return Some((Ok(set), (scanner, last)));
            }
        }
    });
    Box::pin(sets.fuse())
}
