//! The demo's simulated devices on loopback: a Modbus PLC, mocked BLE
//! thermometers, OPC UA servers and a Sparkplug B edge node with its broker
//! (see the diagram in `demo.rs`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::mqtt::SparkplugNode;
use crate::ControlPlane;
use crate::process::Process;

/// Simulated devices that speak real protocols.
#[derive(Debug)]
pub struct Simulators {
    /// The simulated Modbus PLC's port on 127.0.0.1 (units 1 and 2).
    pub plc_port: u16,
    /// The private D-Bus bus where the mocked BLE sensors advertise.
    pub ble_bus: String,
    /// The simulated OPC UA servers' ports on 127.0.0.1 (two boilers).
    pub opcua_ports: [u16; 2],
    /// The simulated Sparkplug B edge node and its broker.
    pub sparkplug: SparkplugNode,
    _plc: Process,
    _ble: Process,
    _opcua: [Process; 2],
}

impl Simulators {
    /// Starts a pymodbus PLC, two mocked BLE thermometers, two OPC UA
    /// servers and a Sparkplug B edge node with its broker, and waits until
    /// all serve.
    pub async fn start(control_plane: &ControlPlane, examples_dir: &Path) -> anyhow::Result<Self> {
        let plc_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut plc = Command::new("python3");
        plc.arg(examples_dir.join("modbus/plc-simulator.py")).args([
            "--port",
            &plc_port.to_string(),
            "--unit",
            "1",
            "--unit",
            "2",
        ]);
        let plc = control_plane.spawn_process("plc-simulator", plc)?;

        let socket = control_plane.dir.join("ble-bus.sock");
        let mut ble = Command::new(examples_dir.join("bluetooth/mock-sensor.sh"));
        ble.args(["--sensors", "2", "--socket"]).arg(&socket);
        let ble = control_plane.spawn_process("ble-sensors", ble)?;

        // Two asyncua servers: a secured one and a ClientAndServer.
        let mut opcua_ports = [0; 2];
        let mut opcua = Vec::new();
        let servers: [&[&str]; 2] = [
            &["--name", "Boiler 1", "--secure"],
            &["--name", "Boiler 2", "--type", "clientAndServer"],
        ];
        for (index, args) in servers.into_iter().enumerate() {
            opcua_ports[index] = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut server = Command::new("python3");
            server
                .arg(examples_dir.join("opcua/opcua-server.py"))
                .args(["--port", &opcua_ports[index].to_string()])
                .args(args);
            opcua.push(control_plane.spawn_process(&format!("opcua-server-{index}"), server)?);
        }
        let opcua: [Process; 2] = opcua
            .try_into()
            .map_err(|_| anyhow::anyhow!("two OPC UA servers"))?;
        let mut sparkplug = SparkplugNode::start(control_plane)?;

        let deadline = Instant::now() + Duration::from_secs(60);
        let mut plc_ready = false;
        let mut opcua_ready = [false; 2];
        while !(plc_ready && socket.exists() && opcua_ready.iter().all(|ready| *ready)) {
            plc_ready = plc_ready
                || tokio::net::TcpStream::connect(("127.0.0.1", plc_port))
                    .await
                    .is_ok();
            for (ready, port) in opcua_ready.iter_mut().zip(opcua_ports) {
                *ready = *ready
                    || tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok();
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the simulators did not start (run `make setup`):\n{}\n{}\n{}\n{}",
                    crate::process::tail(plc.log(), 20),
                    crate::process::tail(ble.log(), 20),
                    crate::process::tail(opcua[0].log(), 20),
                    crate::process::tail(opcua[1].log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sparkplug.wait_ready().await?;
        let ble_bus = format!("unix:path={}", socket.display());
        Ok(Self {
            plc_port,
            ble_bus,
            opcua_ports,
            sparkplug,
            _plc: plc,
            _ble: ble,
            _opcua: opcua,
        })
    }
}
