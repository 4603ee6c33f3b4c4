//! Modbus RTU: the serial ports the DeviceSet names (paths, or globs such
//! as `/dev/serial/by-id/usb-FTDI*` resolved at every scan), each bus
//! scanned by one task, one request at a time as the protocol requires;
//! different buses in parallel.
//!
//! ```text
//!   rtu.ports ──resolve──► /dev/ttyUSB0, /dev/ttyUSB1 ──► one task per port:
//!                            open ─► unit 1 ─► unit 2 ─► ... ─► close
//!                            (a unit that stays silent costs one timeout, then the line settles)
//! ```
//!
//! The port is held only while it is scanned, so a broker can use it in
//! between. A port that exists but cannot be opened (busy, no permission)
//! is [`PortScan::Unavailable`]: the caller keeps its last known devices
//! rather than flap them; a port that is gone has no devices.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ambit_discovery::Device;
use tokio_serial::{DataBits, SerialPortBuilderExt, StopBits};
use tracing::debug;

use crate::details::{Line, Parity, Recognise, RtuPlan};
use crate::device::{Location, device};
use crate::session::{self, Verdict};

/// What scanning one port gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortScan {
    /// The port was scanned: these are its devices.
    Scanned(Vec<Device>),
    /// The port exists but could not be opened.
    Unavailable(String),
}

/// The serial ports `specs` name now: literal paths that exist, and what
/// globs match, each device once (the first name given wins).
pub(crate) fn resolve(specs: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut ports = Vec::new();
    for spec in specs {
        let matches: Vec<String> = if spec.contains(['*', '?', '[']) {
            match glob::glob(spec) {
                Ok(paths) => paths
                    .filter_map(Result::ok)
                    .filter_map(|path| path.to_str().map(str::to_owned))
                    .collect(),
                Err(_) => Vec::new(),
            }
        } else if Path::new(spec).exists() {
            vec![spec.clone()]
        } else {
            Vec::new()
        };
        for path in matches {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone().into());
            if seen.insert(real) {
                ports.push(path);
            }
        }
    }
    ports
}

/// Scans the units of `plan` on the port at `path`.
pub(crate) async fn scan_port(path: &str, plan: &RtuPlan, recognise: &Recognise) -> PortScan {
    let stream = match open(path, &plan.line) {
        Ok(stream) => stream,
        Err(_) if !Path::new(path).exists() => return PortScan::Scanned(Vec::new()),
        Err(error) => return PortScan::Unavailable(error.to_string()),
    };
    let mut context = tokio_modbus::client::rtu::attach(stream);
    let mut found = Vec::new();
    for &unit in &plan.units {
        match session::examine(&mut context, unit, recognise).await {
            Verdict::Match(finding) => {
                debug!(port = path, unit, "found");
                let location = Location::Rtu {
                    path,
                    line: &plan.line,
                };
                found.push(device(location, unit, finding));
            }
            Verdict::NoMatch => {}
            Verdict::Broken(why) => {
                debug!(port = path, unit, %why, "no usable answer");
                // Let a late answer pass before the next request.
                tokio::time::sleep(settle_time(&plan.line)).await;
            }
        }
    }
    PortScan::Scanned(found)
}

fn open(path: &str, line: &Line) -> tokio_serial::Result<tokio_serial::SerialStream> {
    let parity = match line.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = if line.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    tokio_serial::new(path, line.baud_rate)
        .data_bits(DataBits::Eight)
        .parity(parity)
        .stop_bits(stop_bits)
        .open_native_async()
}

/// How long a late frame takes to pass: 256 characters of 11 bits (a
/// longest RTU frame), at least 20 ms.
fn settle_time(line: &Line) -> Duration {
    let bits = 256 * 11 * 1000 / u64::from(line.baud_rate.max(1));
    Duration::from_millis(bits.max(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_and_globs_each_device_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        for name in ["ttyUSB0", "ttyUSB1", "ttyACM0"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::os::unix::fs::symlink(dir.path().join("ttyUSB1"), dir.path().join("by-id-plc"))
            .unwrap();
        let specs = [
            format!("{root}/by-id-plc"),
            format!("{root}/ttyUSB*"),
            format!("{root}/missing"),
            format!("{root}/ttyACM0"),
        ];
        assert_eq!(
            resolve(&specs),
            [
                format!("{root}/by-id-plc"),
                format!("{root}/ttyUSB0"),
                format!("{root}/ttyACM0"),
            ]
        );
    }

    #[test]
    fn settle_time_follows_the_baud_rate() {
        let line = |baud_rate| Line {
            baud_rate,
            parity: Parity::Even,
            stop_bits: 1,
        };
        assert_eq!(settle_time(&line(9600)), Duration::from_millis(293));
        assert_eq!(settle_time(&line(115_200)), Duration::from_millis(24));
        assert_eq!(settle_time(&line(4_000_000)), Duration::from_millis(20));
    }
}
