//! # ambit-modbus: the `modbus` discovery handler
//!
//! Finds Modbus devices on TCP networks and RTU serial buses: each unit id
//! of each host (or serial port) the DeviceSet names is asked who it is —
//! Read Device Identification (function 43 / MEI 14) and/or probe reads of
//! registers with expected values — and the units that answer as asked
//! become devices, keyed by where they are (`tcp://10.0.0.5:502/1`,
//! `rtu:///dev/ttyUSB0/7`). Modbus has no events, so the handler scans
//! again every `interval` and sends a new complete set only when it changed.
//!
//! ```text
//!   details ──details::plan──► Plan ──scan::device_sets──► stream of complete sets
//!                                       ├─ tcp: hosts x ports, bounded concurrency ─┐
//!                                       └─ rtu: one task per bus, one request at a time ┴─► session::examine(unit)
//! ```
//!
//! `docs/handlers/modbus.md` describes the details and properties.

mod details;
mod device;
mod identify;
mod rtu;
mod scan;
mod session;
mod tcp;

use ambit_discovery::{BoxFuture, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};

pub use details::{
    DEFAULT_BAUD_RATE, DEFAULT_CONCURRENCY, DEFAULT_INTERVAL, DEFAULT_MAX_ADDRESSES, DEFAULT_PORT,
    DEFAULT_TIMEOUT, MAX_ADDRESSES, MAX_CONCURRENCY,
};
pub use device::{
    BAUD_RATE, HOST, IDENTIFIED, PARITY, PORT, SERIAL_PORT, STOP_BITS, TRANSPORT, UNIT_ID,
};

/// The handler's name.
pub const NAME: &str = "modbus";

/// The modbus handler. It keeps no state between DeviceSets: each
/// discovery scans on its own.
#[derive(Debug, Default)]
pub struct Modbus;

impl Modbus {
    /// The handler.
    pub fn new() -> Self {
        Self
    }
}

impl DiscoveryHandler for Modbus {
    fn name(&self) -> &str {
        NAME
    }

    fn discover(
        &self,
        request: DiscoverRequest,
    ) -> BoxFuture<'_, Result<DeviceStream, DiscoveryError>> {
        Box::pin(async move {
            let plan = details::plan(&request)?;
            Ok(scan::device_sets(plan))
        })
    }
}

/// Entry points for the fuzz target (`fuzz/`) and the malformed-input
/// tests; not part of the handler's API.
#[doc(hidden)]
pub mod fuzzing {
    use tokio_modbus::Response;
    use tokio_modbus::bytes::Bytes;

    use crate::identify::{Assembler, Level, decode_value};

    /// Feeds `data` — length-prefixed response PDUs, as a device might send
    /// them — through tokio-modbus's decoder into the identification
    /// assembler, and every object value through the value decoder. Must
    /// never panic or loop.
    pub fn identification(data: &[u8]) {
        let mut assembler = Assembler::new(Level::Extended);
        let mut rest = data;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            let (pdu, tail) = tail.split_at(len);
            rest = tail;
            let _ = decode_value(pdu);
            let Ok(Response::ReadDeviceIdentification(response)) =
                Response::try_from(Bytes::copy_from_slice(pdu))
            else {
                continue;
            };
            if assembler.request().is_none() {
                break;
            }
            if assembler.push(&response).is_err() {
                break;
            }
        }
        let identity = assembler.finish();
        for (name, value) in identity.properties() {
            debug_assert!(name.starts_with("MODBUS_") && !value.is_empty());
        }
    }
}
