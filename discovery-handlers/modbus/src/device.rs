//! A found unit as an Ambit [`Device`]: its stable id and its properties.
//!
//! ```text
//!   TCP  10.0.0.5:502 unit 1      ──► id tcp://10.0.0.5:502/1          shared, no device node
//!   RTU  /dev/ttyUSB0 unit 7      ──► id rtu:///dev/ttyUSB0/7          local, /dev/ttyUSB0 as device node
//! ```
//!
//! The id depends only on where the unit is, never on what it answered, so
//! the same PLC is the same Device after a restart of anything.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambit_discovery::{Device, DeviceNode};

use crate::details::{Host, Line};
use crate::session::Finding;

/// `tcp` or `rtu`.
pub const TRANSPORT: &str = "MODBUS_TRANSPORT";
/// The host as the DeviceSet gave it (address or name).
pub const HOST: &str = "MODBUS_HOST";
/// The TCP port.
pub const PORT: &str = "MODBUS_PORT";
/// The unit id (slave address).
pub const UNIT_ID: &str = "MODBUS_UNIT_ID";
/// The serial port's path.
pub const SERIAL_PORT: &str = "MODBUS_SERIAL_PORT";
/// The serial line's baud rate.
pub const BAUD_RATE: &str = "MODBUS_BAUD_RATE";
/// The serial line's parity: none, even or odd.
pub const PARITY: &str = "MODBUS_PARITY";
/// The serial line's stop bits.
pub const STOP_BITS: &str = "MODBUS_STOP_BITS";
/// Whether the device answered Read Device Identification: `true` or `false`.
pub const IDENTIFIED: &str = "MODBUS_IDENTIFIED";

/// Where a unit was found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Location<'a> {
    Tcp { host: &'a Host, port: u16 },
    Rtu { path: &'a str, line: &'a Line },
}

/// The Device for `unit` at `location`.
pub(crate) fn device(location: Location<'_>, unit: u8, finding: Finding) -> Device {
    let mut properties = BTreeMap::new();
    let (id, shared, device_nodes) = match location {
        Location::Tcp { host, port } => {
            let label = host.label();
            let authority = match host {
                Host::Addr(IpAddr::V6(_)) => format!("[{label}]:{port}"),
                _ => format!("{label}:{port}"),
            };
            properties.insert(TRANSPORT.to_owned(), "tcp".to_owned());
            properties.insert(HOST.to_owned(), label);
            properties.insert(PORT.to_owned(), port.to_string());
            (format!("tcp://{authority}/{unit}"), true, Vec::new())
        }
        Location::Rtu { path, line } => {
            properties.insert(TRANSPORT.to_owned(), "rtu".to_owned());
            properties.insert(SERIAL_PORT.to_owned(), path.to_owned());
            properties.insert(BAUD_RATE.to_owned(), line.baud_rate.to_string());
            properties.insert(PARITY.to_owned(), line.parity.as_str().to_owned());
            properties.insert(STOP_BITS.to_owned(), line.stop_bits.to_string());
            let node = DeviceNode {
                host_path: path.to_owned(),
                container_path: String::new(),
                permissions: "rw".to_owned(),
            };
            (format!("rtu://{path}/{unit}"), false, vec![node])
        }
    };
    properties.insert(UNIT_ID.to_owned(), unit.to_string());
    properties.insert(
        IDENTIFIED.to_owned(),
        finding.identity.is_some().to_string(),
    );
    if let Some(identity) = &finding.identity {
        properties.extend(identity.properties());
    }
    properties.extend(finding.probes);
    Device {
        id,
        shared,
        properties,
        device_nodes,
        mounts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::details::Parity;

    use super::*;

    #[test]
    fn ids_depend_on_the_location_only() {
        let v4 = Host::Addr("10.0.0.5".parse().unwrap());
        let v6 = Host::Addr("fd00::7".parse().unwrap());
        let name = Host::Name("plc-1.plant".into());
        let tcp = |host| device(Location::Tcp { host, port: 502 }, 1, Finding::default());
        assert_eq!(tcp(&v4).id, "tcp://10.0.0.5:502/1");
        assert_eq!(tcp(&v6).id, "tcp://[fd00::7]:502/1");
        assert_eq!(tcp(&v6).properties[HOST], "fd00::7");
        assert_eq!(tcp(&name).id, "tcp://plc-1.plant:502/1");
        assert!(tcp(&v4).shared && tcp(&v4).device_nodes.is_empty());
        assert_eq!(tcp(&v4).properties[IDENTIFIED], "false");

        let line = Line {
            baud_rate: 9600,
            parity: Parity::None,
            stop_bits: 2,
        };
        let mut finding = Finding::default();
        finding
            .probes
            .insert("MODBUS_PROBE_MODEL".into(), "1234".into());
        let rtu = device(
            Location::Rtu {
                path: "/dev/ttyUSB0",
                line: &line,
            },
            7,
            finding,
        );
        assert_eq!(rtu.id, "rtu:///dev/ttyUSB0/7");
        assert!(!rtu.shared);
        assert_eq!(rtu.device_nodes[0].host_path, "/dev/ttyUSB0");
        assert_eq!(rtu.properties[PARITY], "none");
        assert_eq!(rtu.properties[UNIT_ID], "7");
        assert_eq!(rtu.properties["MODBUS_PROBE_MODEL"], "1234");
    }
}
