//! MQTT peers: Debian's mosquitto broker on a free loopback port (password
//! file made with mosquitto_passwd, TLS certificates made with rcgen), and
//! Sparkplug B edge nodes on Eclipse Tahu's Node.js client (npm
//! sparkplug-client, pinned, installed once into the harness's cache,
//! ~/.cache/ambit/npm) running `examples/mqtt/edge-node.js`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{free_port, run};

/// The user the broker's password file knows.
pub const USER: &str = "ambit";
/// That user's password.
pub const PASSWORD: &str = "s3cret-pw";
/// Eclipse Tahu's Sparkplug B client for Node.js, pinned.
pub const TAHU_CLIENT: &str = "sparkplug-client@3.2.4";

/// TLS material for the broker, and the CA's PEM for clients.
#[derive(Debug)]
pub struct Certs {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate's file.
    pub ca_file: PathBuf,
    /// The broker's certificate (for 127.0.0.1 and localhost), PEM file.
    pub cert_file: PathBuf,
    /// The broker's private key, PEM file.
    pub key_file: PathBuf,
}

/// Makes a CA and a broker certificate signed by it, in `dir`.
pub fn certs(dir: &Path) -> anyhow::Result<Certs> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ambit-mqtt-test-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "mosquitto");
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca)?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        anyhow::Ok(path)
    };
    Ok(Certs {
        ca_pem: ca.pem(),
        ca_file: write("ca.pem", &ca.pem())?,
        cert_file: write("server.pem", &cert.pem())?,
        key_file: write("server.key", &key.serialize_pem())?,
    })
}

/// A mosquitto broker with a password file (user [`USER`], password
/// [`PASSWORD`]); plain TCP on `port`, and TLS on `tls_port` when made with
/// certificates. Killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    /// The plain listener's port on 127.0.0.1.
    pub port: u16,
    /// The TLS listener's port on 127.0.0.1, if any.
    pub tls_port: Option<u16>,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the password file and configuration into `dir` and starts the
    /// broker; returns once it listens.
    pub fn start(dir: &Path, certs: Option<&Certs>) -> anyhow::Result<Self> {
        let mut broker = Self::configure(dir, certs)?;
        broker.restart()?;
        Ok(broker)
    }

    /// Writes the password file and configuration into `dir`, on free
    /// ports, without starting the broker: [`Mosquitto::command`] runs it.
    pub fn configure(dir: &Path, certs: Option<&Certs>) -> anyhow::Result<Self> {
        let passwords = dir.join("passwords");
        let mut passwd = Command::new("mosquitto_passwd");
        passwd
            .args(["-c", "-b"])
            .arg(&passwords)
            .args([USER, PASSWORD]);
        run(
            passwd,
            "mosquitto_passwd",
            "Debian's mosquitto: run `make setup`",
        )?;
        let port = free_port()?;
        let mut config = format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\n\
             persistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n",
            passwords.display()
        );
        let tls_port = match certs {
            Some(c) => {
                let tls_port = free_port()?;
                config.push_str(&format!(
                    "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                    c.ca_file.display(),
                    c.cert_file.display(),
                    c.key_file.display()
                ));
                Some(tls_port)
            }
            None => None,
        };
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, config)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(Self {
            port,
            tls_port,
            config: path,
            child: None,
        })
    }

    /// The broker's plain URL, `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The command that runs this broker (its log on stderr).
    pub fn command(&self) -> Command {
        let binary = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let mut command = Command::new(binary);
        command.arg("-c").arg(&self.config);
        command
    }

    /// Kills the broker this started, if it runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the broker on the same ports, its output dropped; returns
    /// once it listens.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start mosquitto (Debian's mosquitto: run `make setup`)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {} in 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the pinned Tahu client is installed: the harness's cache's
/// `npm/sparkplug-client-<version>`.
fn tahu_dir() -> PathBuf {
    crate::binaries::cache_root()
        .join("npm")
        .join(TAHU_CLIENT.replace('@', "-"))
}

/// Whether the pinned Tahu client is installed already.
pub fn tahu_installed() -> bool {
    tahu_dir()
        .join("node_modules/sparkplug-client/index.js")
        .exists()
}

/// Installs the pinned Tahu client once (see [`super::install_once`]);
/// returns its node_modules folder.
pub fn tahu_modules() -> anyhow::Result<PathBuf> {
    let dir = tahu_dir();
    super::install_once(&dir, tahu_installed, |fresh| {
        std::fs::create_dir_all(fresh)
            .with_context(|| format!("failed to create {}", fresh.display()))?;
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(fresh)
            .arg(TAHU_CLIENT);
        let hint = "Node.js's npm, for the Sparkplug edge node";
        run(npm, &format!("npm install {TAHU_CLIENT}"), hint)
    })?;
    Ok(dir.join("node_modules"))
}

/// A Sparkplug B edge node to run: `examples/mqtt/edge-node.js` on Tahu's
/// client, which publishes its births (NBIRTH, then a DBIRTH per device)
/// whenever it connects, says `born` on stdout then, and takes commands on
/// stdin (see the script).
#[derive(Debug, Clone)]
pub struct EdgeNodeConfig<'a> {
    /// The broker, `tcp://` or `tls://`.
    pub url: &'a str,
    /// [`USER`]'s password (a wrong one for tests of refused connections).
    pub password: &'a str,
    /// The Sparkplug group.
    pub group: &'a str,
    /// The edge node's name.
    pub node: &'a str,
    /// The devices it is born with.
    pub devices: &'a [&'a str],
    /// The session's bdSeq.
    pub bd_seq: u64,
    /// A CA certificate to check a `tls://` broker with.
    pub ca_file: Option<&'a Path>,
}

impl EdgeNodeConfig<'_> {
    /// The command that runs this edge node (installing Tahu's client first
    /// if it is not yet in the cache).
    pub fn command(&self) -> anyhow::Result<Command> {
        static SESSIONS: AtomicU32 = AtomicU32::new(0);
        let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new("node");
        command
            .arg(super::example("mqtt/edge-node.js"))
            .env("NODE_PATH", tahu_modules()?)
            .env(
                "SERVER_URL",
                self.url
                    .replace("tcp://", "mqtt://")
                    .replace("tls://", "mqtts://"),
            )
            .env("USERNAME", USER)
            .env("PASSWORD", self.password)
            .env(
                "CLIENT_ID",
                format!(
                    "{}-{}-{}-{session}",
                    self.node,
                    self.bd_seq,
                    std::process::id()
                ),
            )
            .env("GROUP", self.group)
            .env("NODE", self.node)
            .env("DEVICES", self.devices.join(","))
            .env("BDSEQ", self.bd_seq.to_string());
        if let Some(ca) = self.ca_file {
            command.env("CA_FILE", ca);
        }
        Ok(command)
    }
}
