//! Asking one unit, over an open connection (TCP) or bus (RTU), whether it
//! is a device the DeviceSet looks for. The same for both transports.
//!
//! ```text
//!   Read Device Identification ──► filters ──► probes ──► Match{identity, probe values}
//!        │ exception: unsupported    │ fail      │ exception / mismatch
//!        ▼                           ▼           ▼
//!   probes decide (auto)          NoMatch     NoMatch
//!   any timeout, transport error or undecodable frame ──► Broken: the link needs a reset
//! ```
//!
//! Every request is bounded by the DeviceSet's timeout, so a unit costs at
//! most (identification requests + probes) x timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio_modbus::ExceptionCode;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{Slave, SlaveContext};
use tracing::debug;

use crate::details::{Identification, Probe, Recognise, RegisterKind};
use crate::identify::{Assembler, Identity, Level};

/// What one unit turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A device the DeviceSet looks for.
    Match(Finding),
    /// It answered, but is not one: an exception, a filter or probe that
    /// did not match, an identification that made no sense.
    NoMatch,
    /// No usable answer (nothing there, a timeout, a broken or garbled
    /// link): not a match, and the link must be reset before the next unit.
    Broken(String),
}

/// What a matching unit told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Finding {
    /// Its identification objects, if it supports Read Device Identification.
    pub identity: Option<Identity>,
    /// Reported probe values by property, comma-separated.
    pub probes: BTreeMap<String, String>,
}

enum Reply<T> {
    Answer(T),
    Exception(ExceptionCode),
    Broken(String),
}

async fn ask<T>(
    timeout: Duration,
    request: impl Future<Output = tokio_modbus::Result<T>>,
) -> Reply<T> {
    match tokio::time::timeout(timeout, request).await {
        Err(_) => Reply::Broken(format!("no answer within {timeout:?}")),
        Ok(Err(error)) => Reply::Broken(error.to_string()),
        Ok(Ok(Err(code))) => Reply::Exception(code),
        Ok(Ok(Ok(answer))) => Reply::Answer(answer),
    }
}

/// Examines `unit` over `context`.
pub(crate) async fn examine(context: &mut Context, unit: u8, recognise: &Recognise) -> Verdict {
    context.set_slave(Slave(unit));
    let identity = match recognise.identification {
        Identification::Off => None,
        Identification::Auto | Identification::Required => {
            match identify(context, unit, recognise).await {
                Ok(identity) => identity,
                Err(verdict) => return verdict,
            }
        }
    };
    match (&identity, recognise.identification) {
        (None, Identification::Required) => return Verdict::NoMatch,
        (None, _) if recognise.probes.is_empty() => return Verdict::NoMatch,
        _ => {}
    }
    let passes = recognise
        .filters
        .iter()
        .all(|filter| filter.passes(identity.as_ref().and_then(|id| id.get(filter.object))));
    if !passes {
        debug!(unit, "filtered out");
        return Verdict::NoMatch;
    }
    let mut probes = BTreeMap::new();
    for probe in &recognise.probes {
        match read(context, probe, recognise.timeout).await {
            Reply::Answer(values) if probe.matches(&values) => {
                if probe.report {
                    probes.insert(probe.property.clone(), join(&values));
                }
            }
            Reply::Answer(values) => {
                debug!(unit, probe = %probe.property, ?values, "probe did not match");
                return Verdict::NoMatch;
            }
            Reply::Exception(code) => {
                debug!(unit, probe = %probe.property, ?code, "probe answered with an exception");
                return Verdict::NoMatch;
            }
            Reply::Broken(why) => return Verdict::Broken(why),
        }
    }
    Verdict::Match(Finding { identity, probes })
}

/// Reads the unit's identification: `Ok(None)` when it does not support it.
async fn identify(
    context: &mut Context,
    unit: u8,
    recognise: &Recognise,
) -> Result<Option<Identity>, Verdict> {
    let mut level = recognise.level;
    'levels: loop {
        let mut assembler = Assembler::new(level);
        let mut first = true;
        while let Some((code, from)) = assembler.request() {
            let request = context.read_device_identification(code, from);
            match ask(recognise.timeout, request).await {
                Reply::Answer(response) => {
                    if let Err(garbage) = assembler.push(&response) {
                        debug!(unit, %garbage, "device identification makes no sense");
                        return Err(Verdict::NoMatch);
                    }
                }
                // Some devices refuse a level above theirs instead of
                // answering at their own level, as the standard asks.
                Reply::Exception(_) if first && level > Level::Basic => {
                    level = Level::Basic;
                    continue 'levels;
                }
                Reply::Exception(code) if first => {
                    debug!(unit, ?code, "no device identification");
                    return Ok(None);
                }
                // A later part failed: keep what the first parts told.
                Reply::Exception(_) => break,
                Reply::Broken(why) => return Err(Verdict::Broken(why)),
            }
            first = false;
        }
        return Ok(Some(assembler.finish()));
    }
}

async fn read(context: &mut Context, probe: &Probe, timeout: Duration) -> Reply<Vec<u16>> {
    match probe.register {
        RegisterKind::Holding => {
            ask(
                timeout,
                context.read_holding_registers(probe.address, probe.count),
            )
            .await
        }
        RegisterKind::Input => {
            ask(
                timeout,
                context.read_input_registers(probe.address, probe.count),
            )
            .await
        }
    }
}

fn join(values: &[u16]) -> String {
    values
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
