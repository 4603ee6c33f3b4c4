//! `ambit-demo-camera`: the demo's simulated ONVIF camera. The `onvif-server`
//! crate serves its ONVIF device and media services over HTTP and answers
//! WS-Discovery Probes on 239.255.255.250:3702; this binary only says what the
//! camera is (maker, model, MAC, stream URI). The demo runs it inside a network
//! namespace of its own (`ip netns exec`), so its multicast never reaches a real
//! network. No RTSP server runs behind the stream URI it advertises.
//!
//! Prints `ready <device service URL>` once it accepts connections.

use std::io::Write;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use clap::Parser;
use onvif_server::{
    DeviceInfo, DeviceService, MediaService, NetworkInterface, OnvifError, OnvifServer,
};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "ambit-demo-camera",
    about = "A simulated ONVIF camera for Ambit's demo"
)]
struct Args {
    /// The address the camera announces and listens on (its namespace's veth address).
    #[arg(long)]
    address: Ipv4Addr,
    /// The HTTP port of its ONVIF services.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Its WS-Discovery identity (`urn:uuid:<uuid>`), stable across restarts.
    #[arg(long)]
    uuid: String,
    /// The user name ONVIF requests must carry (WS-Security UsernameToken).
    #[arg(long, default_value = "admin")]
    username: String,
    /// That user's password.
    #[arg(long, env = "AMBIT_DEMO_CAMERA_PASSWORD", hide_env_values = true)]
    password: String,
}

/// What the camera says about itself.
#[derive(Debug, Clone)]
struct Camera {
    address: Ipv4Addr,
    serial: String,
}

#[async_trait]
impl DeviceService for Camera {
    async fn get_device_information(&self) -> Result<DeviceInfo, OnvifError> {
        Ok(DeviceInfo {
            manufacturer: "Ambit Demo Optics".into(),
            model: "DemoCam 1080".into(),
            firmware_version: "1.0.0".into(),
            serial_number: self.serial.clone(),
            hardware_id: "demo-cam-1".into(),
        })
    }

    async fn get_network_interfaces(&self) -> Result<Vec<NetworkInterface>, OnvifError> {
        Ok(vec![NetworkInterface {
            token: "eth0".into(),
            enabled: true,
            name: "eth0".into(),
            // A locally administered address: never a real vendor's.
            hw_address: "02:00:5e:0a:4e:02".into(),
            mtu: 1500,
        }])
    }
}

#[async_trait]
impl MediaService for Camera {
    async fn get_stream_uri(&self, profile: &str) -> Result<String, OnvifError> {
        Ok(format!("rtsp://{}:8554/{profile}", self.address))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Args {
        address,
        port,
        uuid,
        username,
        password,
    } = Args::parse();
    let camera = Camera {
        address,
        serial: format!("DC-{}", uuid.chars().take(8).collect::<String>()),
    };
    let server = OnvifServer::builder()
        .port(port)
        .advertised_host(&address.to_string())
        .discovery_uuid(
            uuid.parse()
                .map_err(|error| anyhow::anyhow!("--uuid {uuid:?} is not a UUID: {error}"))?,
        )
        .device_service(camera.clone())
        .media_service(camera)
        .auth(&username, &password)
        .build()
        .map_err(|error| anyhow::anyhow!("cannot build the camera: {error}"))?;
    // run() starts the WS-Discovery responder, then serves HTTP on 0.0.0.0:<port>.
    let serve = tokio::spawn(server.run());
    while tokio::net::TcpStream::connect((address, port))
        .await
        .is_err()
    {
        if serve.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if !serve.is_finished() {
        writeln!(
            std::io::stdout(),
            "ready http://{address}:{port}/onvif/device_service"
        )?;
    }
    match serve.await {
        Ok(Ok(())) => anyhow::bail!("the camera's server stopped"),
        Ok(Err(error)) => anyhow::bail!("the camera's server failed: {error}"),
        Err(error) => anyhow::bail!("the camera's server task failed: {error}"),
    }
}
