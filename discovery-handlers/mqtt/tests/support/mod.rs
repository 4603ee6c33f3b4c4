//! Real peers for the mqtt handler's tests: Debian's mosquitto broker on a
//! free loopback port (password file made with mosquitto_passwd, TLS
//! certificates made with rcgen), and Sparkplug B edge nodes on Eclipse
//! Tahu's Node.js client (npm sparkplug-client, pinned, installed once
//! into the tests' cache, ~/.cache/ambit/npm).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic fails the test"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ambit_discovery::{Device, DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};
use futures::StreamExt;
use serde_json::Value;

pub const USER: &str = "ambit";
pub const PASSWORD: &str = "s3cret-pw";
/// Eclipse Tahu's Sparkplug B client for Node.js, pinned.
pub const TAHU_CLIENT: &str = "sparkplug-client@3.2.4";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// TLS material for the broker, and the CA's PEM for clients.
pub struct Certs {
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub fn certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ambit-mqtt-test-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "mosquitto");
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certs {
        ca_pem: ca.pem(),
        ca_file: write("ca.pem", &ca.pem()),
        cert_file: write("server.pem", &cert.pem()),
        key_file: write("server.key", &key.serialize_pem()),
    }
}

/// A mosquitto broker with a password file; plain TCP on `port`, and TLS
/// on `tls_port` when started with certificates.
pub struct Mosquitto {
    pub port: u16,
    pub tls_port: Option<u16>,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start(dir: &Path, certs: Option<&Certs>) -> Self {
        let passwords = dir.join("passwords");
        let status = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwords)
            .args([USER, PASSWORD])
            .status()
            .expect("mosquitto_passwd (Debian's mosquitto: scripts/setup-deps.txt)");
        assert!(status.success(), "mosquitto_passwd failed");
        let port = free_port();
        let mut config = format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\n\
             persistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n",
            passwords.display()
        );
        let tls_port = certs.map(|c| {
            let tls_port = free_port();
            config.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                c.ca_file.display(),
                c.cert_file.display(),
                c.key_file.display()
            ));
            tls_port
        });
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, config).unwrap();
        let mut broker = Self {
            port,
            tls_port,
            config: path,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the broker on the same ports; returns once it listens.
    pub fn restart(&mut self) {
        self.kill();
        let binary = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian's mosquitto: scripts/setup-deps.txt)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the tests keep what they download, as the ambit-tests harness
/// does: `$AMBIT_CACHE_DIR`, else `$XDG_CACHE_HOME/ambit`, else
/// `~/.cache/ambit`.
fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AMBIT_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ambit");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("ambit")
}

/// Installs the pinned Tahu client once (into a fresh folder, then renamed
/// into place, so a broken install is never taken for a good one); returns
/// its node_modules folder.
fn tahu_modules() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let npm = cache_root().join("npm");
    let dir = npm.join(TAHU_CLIENT.replace('@', "-"));
    let modules = dir.join("node_modules");
    if modules.join("sparkplug-client").join("index.js").exists() {
        return modules;
    }
    let fresh = npm.join(format!(
        "{}.{}",
        TAHU_CLIENT.replace('@', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).unwrap();
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&fresh)
        .arg(TAHU_CLIENT)
        .output()
        .expect("npm (Node.js) to install the Sparkplug edge node");
    assert!(
        output.status.success(),
        "npm install {TAHU_CLIENT} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if std::fs::rename(&fresh, &dir).is_err() {
        // Another process installed it first.
        let _ = std::fs::remove_dir_all(&fresh);
    }
    modules
}

/// A Sparkplug B edge node process (Tahu's client).
pub struct EdgeNode {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl EdgeNode {
    pub fn start(url: &str, password: &str, node: &str, devices: &[&str], bd_seq: u64) -> Self {
        Self::start_with(url, password, node, devices, bd_seq, None)
    }

    pub fn start_with(
        url: &str,
        password: &str,
        node: &str,
        devices: &[&str],
        bd_seq: u64,
        ca_file: Option<&Path>,
    ) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/edge-node.js");
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("NODE_PATH", tahu_modules())
            .env(
                "SERVER_URL",
                url.replace("tcp://", "mqtt://")
                    .replace("tls://", "mqtts://"),
            )
            .env("USERNAME", USER)
            .env("PASSWORD", password)
            .env(
                "CLIENT_ID",
                format!("{node}-{bd_seq}-{}", fastrand::u32(..)),
            )
            .env("GROUP", "plant")
            .env("NODE", node)
            .env("DEVICES", devices.join(","))
            .env("BDSEQ", bd_seq.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(ca) = ca_file {
            command.env("CA_FILE", ca);
        }
        let mut child = command.spawn().expect("node (Node.js)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for a line starting with `prefix` on the node's stdout.
    pub fn expect(&self, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(_) => panic!("the edge node did not say {prefix:?}"),
            }
        }
    }

    /// Kills the process: the broker then publishes its will (NDEATH).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running discovery and the last set it reported.
pub struct Discovery {
    stream: DeviceStream,
    pub last: Vec<Device>,
}

impl Discovery {
    pub async fn start(details: Value, properties: &[(&str, &str)]) -> Self {
        let mut request = DiscoverRequest::new(details);
        request.node_name = "test-node".into();
        request.properties = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut stream = ambit_mqtt::Mqtt::new().discover(request).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.is_empty(), "the first set is empty: {first:?}");
        // Let the handler connect and subscribe before peers publish.
        tokio::time::sleep(Duration::from_millis(700)).await;
        Self {
            stream,
            last: first,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.last.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Waits until the reported ids are `want` (sorted).
    pub async fn until(&mut self, want: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.ids() != want {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(set))) => self.last = set,
                Ok(Some(Err(error))) => panic!("discovery failed: {error}"),
                Ok(None) => panic!("discovery ended"),
                Err(_) => panic!("timed out waiting for {want:?}; have {:?}", self.ids()),
            }
        }
    }

    /// Asserts nothing new is reported for `quiet`.
    pub async fn unchanged_for(&mut self, quiet: Duration) {
        if let Ok(next) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("unexpected update: {next:?}");
        }
    }

    /// The error the stream ends with.
    pub async fn error(&mut self) -> DiscoveryError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(set))) => self.last = set,
                Ok(Some(Err(error))) => return error,
                Ok(None) => panic!("discovery ended without an error"),
                Err(_) => panic!("timed out waiting for an error"),
            }
        }
    }
}
