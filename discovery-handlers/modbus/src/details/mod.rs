//! The `details` of a modbus DeviceSet, validated into a [`Plan`]: where to
//! look (TCP hosts and ports, RTU serial ports), which unit ids to try, how
//! to recognise a device, and how often to look again.
//!
//! ```yaml
//! details:
//!   tcp: { hosts: ["10.0.0.0/24"], ports: [502], unitIds: [1], concurrency: 64 }
//!   rtu: { ports: ["/dev/ttyUSB*"], baudRate: 19200, parity: even, unitIds: ["1-10"] }
//!   identification: auto            # auto | required | off
//!   identificationLevel: regular    # basic | regular | extended
//!   probes: [{ name: model, register: holding, address: 0, equals: [1234] }]
//!   filters: { vendor: { include: ["ACME*"] } }
//!   timeout: 500ms                  # per request
//!   interval: 30s                   # between scans
//! ```
//!
//! Every error names its field, e.g. `tcp.hosts[1]: "10.0.0.0/33" is not a
//! valid CIDR range (e.g. 10.0.0.0/24)`; `docs/handlers/modbus.md` lists them.

mod filters;
mod hosts;
mod probes;
mod units;

use std::time::Duration;

use ambit_discovery::fields::duration;
use ambit_discovery::{DiscoverRequest, DiscoveryError};
use serde::Deserialize;
use serde_json::Value;

pub(crate) use filters::Filter;
pub(crate) use hosts::{Host, Hosts};
pub(crate) use probes::{Probe, RegisterKind};

pub use hosts::{DEFAULT_MAX_ADDRESSES, MAX_ADDRESSES};

use crate::identify::Level;

/// The default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// The default time between the end of one scan and the start of the next.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The default number of TCP addresses scanned at once.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// The most TCP addresses scanned at once (each holds a socket).
pub const MAX_CONCURRENCY: usize = 512;
/// The Modbus TCP port.
pub const DEFAULT_PORT: u16 = 502;
/// The Modbus RTU default line settings (Modbus over serial line, 2.5.1).
pub const DEFAULT_BAUD_RATE: u32 = 19200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Details {
    tcp: Option<TcpSpec>,
    rtu: Option<RtuSpec>,
    #[serde(default)]
    identification: Identification,
    #[serde(default)]
    identification_level: Level,
    #[serde(default)]
    probes: Vec<probes::ProbeSpec>,
    #[serde(default)]
    filters: filters::FiltersSpec,
    timeout: Option<String>,
    interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TcpSpec {
    hosts: Vec<String>,
    ports: Option<Vec<u16>>,
    unit_ids: Option<Vec<Value>>,
    concurrency: Option<usize>,
    #[serde(default)]
    allow_large_ranges: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RtuSpec {
    ports: Vec<String>,
    baud_rate: Option<u32>,
    #[serde(default)]
    parity: Parity,
    stop_bits: Option<u8>,
    unit_ids: Option<Vec<Value>>,
}

/// Whether and how Read Device Identification recognises a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Identification {
    /// Ask; a device that does not support it must match a probe instead.
    #[default]
    Auto,
    /// Only devices that answer it are found.
    Required,
    /// Never ask; probes alone recognise devices.
    Off,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Parity {
    None,
    #[default]
    Even,
    Odd,
}

impl Parity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Even => "even",
            Self::Odd => "odd",
        }
    }
}

/// Everything a scan needs to tell whether a unit is a device we want.
#[derive(Debug, Clone)]
pub(crate) struct Recognise {
    pub identification: Identification,
    pub level: Level,
    pub probes: Vec<Probe>,
    pub filters: Vec<Filter>,
    pub timeout: Duration,
}

/// The validated TCP section.
#[derive(Debug, Clone)]
pub(crate) struct TcpPlan {
    pub hosts: Hosts,
    pub ports: Vec<u16>,
    pub units: Vec<u8>,
    pub concurrency: usize,
}

/// Serial line settings (8 data bits, always: Modbus RTU needs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub baud_rate: u32,
    pub parity: Parity,
    pub stop_bits: u8,
}

/// The validated RTU section.
#[derive(Debug, Clone)]
pub(crate) struct RtuPlan {
    /// Paths and globs, in the order given.
    pub ports: Vec<String>,
    pub line: Line,
    pub units: Vec<u8>,
}

/// A validated DeviceSet: what to scan and how.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub tcp: Option<TcpPlan>,
    pub rtu: Option<RtuPlan>,
    pub recognise: Recognise,
    pub interval: Duration,
}

/// Validates the request's details.
pub(crate) fn plan(request: &DiscoverRequest) -> Result<Plan, DiscoveryError> {
    let details: Details = request.details_as()?;
    validate(details).map_err(DiscoveryError::InvalidDetails)
}

fn validate(details: Details) -> Result<Plan, String> {
    if details.tcp.is_none() && details.rtu.is_none() {
        return Err("give `tcp` (hosts to scan) or `rtu` (serial ports to scan), or both".into());
    }
    let probes = probes::validate(details.probes)?;
    let filters = filters::validate(details.filters)?;
    match details.identification {
        Identification::Off if probes.is_empty() => {
            return Err(
                "probes: give at least one probe when identification is off: \
                 nothing else could recognise a device"
                    .into(),
            );
        }
        Identification::Off if !filters.is_empty() => {
            return Err(
                "filters: need identification (vendor and product come from Read Device \
                 Identification), but identification is off"
                    .into(),
            );
        }
        _ => {}
    }
    let timeout = duration(
        "timeout",
        details.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        Duration::from_millis(10)..=Duration::from_secs(60),
    )?;
    let interval = duration(
        "interval",
        details.interval.as_deref(),
        DEFAULT_INTERVAL,
        Duration::from_millis(100)..=Duration::from_secs(7 * 24 * 3600),
    )?;
    Ok(Plan {
        tcp: details.tcp.map(tcp).transpose()?,
        rtu: details.rtu.map(rtu).transpose()?,
        recognise: Recognise {
            identification: details.identification,
            level: details.identification_level,
            probes,
            filters,
            timeout,
        },
        interval,
    })
}

fn tcp(spec: TcpSpec) -> Result<TcpPlan, String> {
    let hosts = Hosts::parse(&spec.hosts, spec.allow_large_ranges)?;
    let mut ports = spec.ports.unwrap_or_else(|| vec![DEFAULT_PORT]);
    if ports.is_empty() {
        return Err("tcp.ports: give at least one port (or leave it out for 502)".into());
    }
    if let Some(index) = ports.iter().position(|port| *port == 0) {
        return Err(format!("tcp.ports[{index}]: 0 is not a port"));
    }
    if ports.len() > 32 {
        return Err(format!(
            "tcp.ports: {} ports are more than the limit of 32",
            ports.len()
        ));
    }
    ports.sort_unstable();
    ports.dedup();
    let units = match spec.unit_ids {
        Some(items) => units::parse("tcp.unitIds", &items, units::Transport::Tcp)?,
        None => vec![1],
    };
    let concurrency = spec.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(format!(
            "tcp.concurrency: must be 1 to {MAX_CONCURRENCY}, not {concurrency}"
        ));
    }
    Ok(TcpPlan {
        hosts,
        ports,
        units,
        concurrency,
    })
}

fn rtu(spec: RtuSpec) -> Result<RtuPlan, String> {
    if spec.ports.is_empty() {
        return Err("rtu.ports: give at least one serial port (a path or a glob)".into());
    }
    for (index, port) in spec.ports.iter().enumerate() {
        if !port.starts_with('/') {
            return Err(format!(
                "rtu.ports[{index}]: {port:?} must be an absolute path or glob, e.g. /dev/ttyUSB*"
            ));
        }
        glob::Pattern::new(port).map_err(|error| {
            format!("rtu.ports[{index}]: {port:?} is not a valid glob: {error}")
        })?;
    }
    let baud_rate = spec.baud_rate.unwrap_or(DEFAULT_BAUD_RATE);
    if !(300..=4_000_000).contains(&baud_rate) {
        return Err(format!(
            "rtu.baudRate: {baud_rate} is not a serial baud rate (300 to 4000000)"
        ));
    }
    let stop_bits = spec.stop_bits.unwrap_or(1);
    if !(1..=2).contains(&stop_bits) {
        return Err(format!("rtu.stopBits: must be 1 or 2, not {stop_bits}"));
    }
    let units = match spec.unit_ids {
        Some(items) => units::parse("rtu.unitIds", &items, units::Transport::Rtu)?,
        None => vec![1],
    };
    Ok(RtuPlan {
        ports: spec.ports,
        line: Line {
            baud_rate,
            parity: spec.parity,
            stop_bits,
        },
        units,
    })
}

#[cfg(test)]
mod tests;
