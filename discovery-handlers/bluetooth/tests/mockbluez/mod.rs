//! A mocked BlueZ for tests: python-dbusmock's `bluez5` template on a
//! private D-Bus bus that the test starts, never the machine's own.
//!
//! btleplug finds the system bus through `DBUS_SYSTEM_BUS_ADDRESS`, read by
//! libdbus when it connects. Setting it inside a running test process is
//! not possible safely (other threads read the environment), so each test
//! runs twice:
//!
//! ```text
//!   cargo test ──► test fn (parent) ── starts dbus-daemon + dbusmock on a private socket
//!                    └─ runs this test binary again, `--exact <test>`, with
//!                       DBUS_SYSTEM_BUS_ADDRESS set ──► test fn (child) runs the body
//! ```
//!
//! Every test gets a bus of its own, so tests run in parallel. Missing
//! tools fail the test with a message saying how to install them.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a panic fails the test"
)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::blocking::Connection;
use dbus::channel::Channel;

/// Marks the child run; holds nothing but "1".
const CHILD: &str = "AMBIT_BLUETOOTH_TEST_CHILD";
/// Overrides the Python that runs dbusmock.
const PYTHON: &str = "AMBIT_DBUSMOCK_PYTHON";
const SETUP: &str = "run `make setup` (scripts/setup.sh): it installs dbus-daemon (Debian's \
                     dbus-daemon) and python-dbusmock (into ~/.cache/ambit/dbusmock-venv, with \
                     Debian's python3-gi and python3-dbus)";

const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `body` against a mocked BlueZ on a private bus. `name` is the test
/// function's name, as `cargo test --exact` knows it.
pub fn run<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Mock) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var_os(CHILD).is_some() {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "ambit_bluetooth=debug".into()),
            )
            .with_test_writer()
            .try_init();
        runtime.block_on(body(Mock::connect(&address)));
        return;
    }
    let bus = PrivateBus::start();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the test failed against the mocked BlueZ ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- dbusmock log\n{}",
        output.status,
        bus.log()
    );
    assert!(
        stdout.contains("1 passed"),
        "the child run did not run the test {name}:\n{stdout}"
    );
}

/// Another control connection to the bus of the running (child) test.
pub fn connect_from_env() -> Mock {
    Mock::connect(&std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap())
}

/// dbus-daemon and dbusmock's bluez5 template, stopped on drop.
struct PrivateBus {
    dir: tempfile::TempDir,
    daemon: Child,
    mock: Option<Child>,
    address: String,
}

impl PrivateBus {
    fn start() -> Self {
        let python = dbusmock_python();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&dir.path().join("system_bus_socket"))).unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start dbus-daemon ({error}): {SETUP}"));
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon did not print its address: {line:?}"
        );
        let log = std::fs::File::create(dir.path().join("dbusmock.log")).unwrap();
        let mock = Command::new(&python)
            .args(["-m", "dbusmock", "--system", "--template", "bluez5"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {} ({error}): {SETUP}", python.display()));
        let mut bus = Self {
            dir,
            daemon,
            mock: Some(mock),
            address,
        };
        bus.wait_for_bluez();
        bus
    }

    fn wait_for_bluez(&mut self) {
        let connection = open(&self.address);
        let proxy = connection.with_proxy("org.freedesktop.DBus", "/", TIMEOUT);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (owned,): (bool,) = proxy
                .method_call("org.freedesktop.DBus", "NameHasOwner", ("org.bluez",))
                .unwrap();
            if owned {
                return;
            }
            if let Some(status) = self.mock.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "dbusmock exited ({status}) before serving org.bluez:\n{}\n{SETUP}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dbusmock did not serve org.bluez within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dbusmock.log")).unwrap_or_default()
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        for child in self.mock.iter_mut().chain([&mut self.daemon]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python that can run dbusmock: `$AMBIT_DBUSMOCK_PYTHON`, else the
/// virtualenv scripts/setup.sh makes.
fn dbusmock_python() -> PathBuf {
    let python = std::env::var_os(PYTHON)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .expect("HOME is set");
            cache.join("ambit/dbusmock-venv/bin/python3")
        });
    let check = Command::new(&python)
        .args(["-c", "import dbusmock, dbus, gi"])
        .output();
    match check {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import dbusmock, dbus and gi: {}\n{SETUP}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("cannot run {} ({error}): {SETUP}", python.display()),
    }
}

fn bus_config(socket: &std::path::Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

fn open(address: &str) -> Connection {
    let mut channel = Channel::open_private(address).unwrap();
    channel.register().unwrap();
    Connection::from(channel)
}

/// Controls the mocked BlueZ from the test body.
pub struct Mock {
    connection: Connection,
}

/// A property value for [`Mock::update`].
pub type Value = Variant<Box<dyn RefArg>>;

/// A value of any D-Bus type.
pub fn value(value: impl RefArg + 'static) -> Value {
    Variant(Box::new(value))
}

/// Manufacturer data, `a{qv}` as BlueZ sends it.
pub fn manufacturer_data(entries: &[(u16, &[u8])]) -> Value {
    let map: HashMap<u16, Value> = entries
        .iter()
        .map(|(id, data)| (*id, value(data.to_vec())))
        .collect();
    value(map)
}

const DEVICE: &str = "org.bluez.Device1";

impl Mock {
    fn connect(address: &str) -> Self {
        Self {
            connection: open(address),
        }
    }

    fn call<A: dbus::arg::AppendAll, R: dbus::arg::ReadAll>(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        args: A,
    ) -> R {
        self.connection
            .with_proxy("org.bluez", path, TIMEOUT)
            .method_call(interface, method, args)
            .unwrap_or_else(|error| panic!("{interface}.{method} on {path}: {error}"))
    }

    /// Adds an adapter (`hci0`).
    pub fn add_adapter(&self, name: &str) {
        let _: (String,) = self.call("/", "org.bluez.Mock", "AddAdapter", (name, "ambit-test"));
    }

    /// Adds a device, as if just found by a scan (RSSI -79); returns its path.
    pub fn add_device(&self, adapter: &str, address: &str, name: &str) -> String {
        let (path,): (String,) =
            self.call("/", "org.bluez.Mock", "AddDevice", (adapter, address, name));
        path
    }

    /// Changes device properties and sends PropertiesChanged, as BlueZ does
    /// on an advertisement.
    pub fn update(&self, device: &str, properties: Vec<(&str, Value)>) {
        let properties: PropMap = properties
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let () = self.call(
            device,
            "org.freedesktop.DBus.Mock",
            "UpdateProperties",
            (DEVICE, properties),
        );
    }

    /// An advertisement with this RSSI.
    pub fn rssi(&self, device: &str, rssi: i16) {
        self.update(device, vec![("RSSI", value(rssi))]);
    }

    /// BlueZ forgets the device (InterfacesRemoved).
    pub fn remove_device(&self, adapter: &str, device: &str) {
        let path = dbus::Path::from(device.to_owned());
        let () = self.call(
            &format!("/org/bluez/{adapter}"),
            "org.bluez.Adapter1",
            "RemoveDevice",
            (path,),
        );
    }

    /// Gives a device a GATT service with one readable characteristic, and
    /// marks its services resolved, as BlueZ does after connecting.
    pub fn add_gatt_characteristic(
        &self,
        device: &str,
        service_uuid: &str,
        characteristic_uuid: &str,
        value_bytes: &[u8],
    ) {
        let service = format!("{device}/service0010");
        let characteristic = format!("{service}/char0011");
        // dbusmock writes the <interface> element of an interface without
        // methods after the child <node>s in its introspection XML, which
        // bluez-async's parser rejects ("duplicate field `interface`"); a
        // method nobody calls keeps it in place.
        let methods = vec![("AmbitTestNoop", "", "", "")];
        let service_properties: PropMap = [
            ("UUID".to_owned(), value(service_uuid.to_owned())),
            ("Primary".to_owned(), value(true)),
            (
                "Device".to_owned(),
                value(dbus::Path::from(device.to_owned())),
            ),
        ]
        .into_iter()
        .collect();
        let () = self.call(
            "/",
            "org.freedesktop.DBus.Mock",
            "AddObject",
            (
                service.as_str(),
                "org.bluez.GattService1",
                service_properties,
                methods.clone(),
            ),
        );
        let bytes: Vec<String> = value_bytes.iter().map(u8::to_string).collect();
        let read = format!("ret = dbus.Array([{}], signature='y')", bytes.join(", "));
        let characteristic_properties: PropMap = [
            ("UUID".to_owned(), value(characteristic_uuid.to_owned())),
            (
                "Service".to_owned(),
                value(dbus::Path::from(service.clone())),
            ),
            ("Flags".to_owned(), value(vec!["read".to_owned()])),
            ("Value".to_owned(), value(value_bytes.to_vec())),
        ]
        .into_iter()
        .collect();
        let () = self.call(
            "/",
            "org.freedesktop.DBus.Mock",
            "AddObject",
            (
                characteristic.as_str(),
                "org.bluez.GattCharacteristic1",
                characteristic_properties,
                vec![("ReadValue", "a{sv}", "ay", read.as_str())],
            ),
        );
        self.update(device, vec![("ServicesResolved", value(true))]);
    }

    /// Whether the adapter is scanning now.
    pub fn discovering(&self, adapter: &str) -> bool {
        use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
        self.connection
            .with_proxy("org.bluez", format!("/org/bluez/{adapter}"), TIMEOUT)
            .get("org.bluez.Adapter1", "Discovering")
            .unwrap()
    }

    /// The adapter stops scanning, as after bluetoothd restarted.
    pub fn stop_discovery(&self, adapter: &str) {
        let () = self.call(
            &format!("/org/bluez/{adapter}"),
            "org.bluez.Adapter1",
            "StopDiscovery",
            (),
        );
    }

    /// Whether the device is connected now.
    pub fn connected(&self, device: &str) -> bool {
        use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
        self.connection
            .with_proxy("org.bluez", device, TIMEOUT)
            .get(DEVICE, "Connected")
            .unwrap()
    }
}
