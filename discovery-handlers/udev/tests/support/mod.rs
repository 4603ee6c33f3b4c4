//! umockdev for the udev handler's tests: a testbed process and a handler
//! process that sees it.
//!
//! ```text
//!   test ──stdin──► testbed.py (UMockdev.Testbed, under the preload)
//!     │               add <record> / remove <devpath> → fake sysfs + uevents
//!     └──spawn──► this test binary again, `--ignored --exact <entry>`,
//!                 with LD_PRELOAD=libumockdev-preload.so.0 and UMOCKDEV_DIR:
//!                 runs the handler, prints each device set as `SET <json>`
//! ```
//!
//! umockdev works by LD_PRELOAD-ing its library into a process at start, so
//! the handler runs in a child process: the test binary itself, re-executed
//! into an ignored entry test ([`run_child`]). The devices are the only
//! mock: sysfs and uevents are umockdev's; libudev, the monitor and the
//! handler are the real ones.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ambit_discovery::{Device, DiscoverRequest, DiscoveryHandler};
use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The preload library of Debian's `umockdev` package.
pub const PRELOAD: &str = "libumockdev-preload.so.0";
/// Environment variable holding the details the child discovers with.
pub const DETAILS_VAR: &str = "AMBIT_UDEV_TEST_DETAILS";
/// How long to wait for anything before calling the test failed: generous,
/// for loaded CI machines; the handler itself never waits on a timer.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The record files of tests/umockdev.
pub fn record(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/umockdev")
        .join(format!("{name}.umockdev"))
}

/// Devpaths of the records' USB devices.
pub const CAMERA_PORT1: &str = "/devices/pci0000:00/0000:00:14.0/usb1/1-1";
/// The camera re-plugged.
pub const CAMERA_PORT2: &str = "/devices/pci0000:00/0000:00:14.0/usb1/1-2";
/// The serial adapter.
pub const SERIAL_ADAPTER: &str = "/devices/pci0000:00/0000:00:14.0/usb1/1-3";

/// Markers of the child's output lines.
const SET: &str = "@@SET ";
const ERROR: &str = "@@ERROR ";

const PYTHON: &str = "/usr/bin/python3";

/// A running umockdev testbed.
#[derive(Debug)]
pub struct Testbed {
    process: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The testbed's directory (UMOCKDEV_DIR).
    pub dir: String,
}

impl Testbed {
    /// Starts a testbed with no devices.
    pub async fn start() -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/umockdev/testbed.py");
        let mut process = Command::new(PYTHON)
            .arg(&script)
            .env("LD_PRELOAD", PRELOAD)
            .env_remove("UMOCKDEV_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {PYTHON} {}", script.display()))?;
        let stdin = process.stdin.take().context("testbed stdin")?;
        let stdout = process.stdout.take().context("testbed stdout")?;
        let mut testbed = Self {
            process,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            dir: String::new(),
        };
        let line = testbed.line().await.context(
            "the umockdev testbed did not start: run the setup (scripts/setup.sh), which \
             installs Debian's umockdev and gir1.2-umockdev-1.0 with python3-gi",
        )?;
        let Some(dir) = line.strip_prefix("ready ") else {
            bail!("unexpected first line from the testbed: {line:?}");
        };
        testbed.dir = dir.to_owned();
        Ok(testbed)
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        match tokio::time::timeout(PATIENCE, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("the testbed ended"),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => bail!("the testbed did not answer within {PATIENCE:?}"),
        }
    }

    async fn command(&mut self, command: String) -> anyhow::Result<Instant> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = self.line().await?;
        // The uevents are out when the answer comes.
        let sent = Instant::now();
        if !line.starts_with("ok") {
            bail!("testbed: {command}: {line}");
        }
        Ok(sent)
    }

    /// Plugs in the devices of a record file (see [`record`]), with "add"
    /// uevents; returns when they are sent.
    pub async fn add(&mut self, name: &str) -> anyhow::Result<Instant> {
        self.add_file(&record(name)).await
    }

    /// Plugs in the devices of a record file anywhere.
    pub async fn add_file(&mut self, path: &Path) -> anyhow::Result<Instant> {
        self.command(format!("add {}", path.display())).await
    }

    /// Unplugs a device and everything below it, with "remove" uevents.
    pub async fn remove(&mut self, devpath: &str) -> anyhow::Result<Instant> {
        self.command(format!("remove {devpath}")).await
    }

    /// The environment that makes a process see this testbed.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [("LD_PRELOAD", PRELOAD), ("UMOCKDEV_DIR", self.dir.as_str())]
    }

    /// Stops the testbed.
    pub async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = self.process.wait().await;
    }
}

/// The handler running in a child process that sees a testbed.
#[derive(Debug)]
pub struct Discovery {
    process: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Discovery {
    /// Starts the handler with `details`, in this test binary re-executed
    /// into the ignored test `entry` (which calls [`run_child`]).
    pub fn start(
        testbed: &Testbed,
        entry: &str,
        details: &serde_json::Value,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut process = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                entry,
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(testbed.env())
            .env(DETAILS_VAR, details.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = process.stdout.take().context("child stdout")?;
        Ok(Self {
            process,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// The next device set the handler sends.
    pub async fn next_set(&mut self) -> anyhow::Result<Vec<Device>> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => bail!("the handler's process ended"),
                Ok(Err(error)) => return Err(error.into()),
                Err(_) => bail!("no device set within {PATIENCE:?}"),
            };
            // libtest may have printed `test child ... ` on the same line.
            if let Some((_, json)) = line.split_once(SET) {
                return Ok(serde_json::from_str(json)?);
            }
            if let Some((_, error)) = line.split_once(ERROR) {
                bail!("discovery failed: {error}");
            }
        }
    }

    /// The first set `accept` takes, skipping others (a burst of uevents
    /// spread out by a loaded machine may show as several sets).
    pub async fn until(
        &mut self,
        accept: impl Fn(&[Device]) -> bool,
    ) -> anyhow::Result<Vec<Device>> {
        loop {
            let set = self.next_set().await?;
            if accept(&set) {
                return Ok(set);
            }
        }
    }

    /// Stops the child.
    pub async fn stop(mut self) {
        let _ = self.process.kill().await;
    }
}

/// The child's side: runs the handler with the details from the
/// environment and prints every set. Returns at once when not started by
/// [`Discovery::start`].
#[allow(
    clippy::print_stdout,
    reason = "stdout is the child's channel to the test"
)]
pub async fn run_child() {
    let Ok(details) = std::env::var(DETAILS_VAR) else {
        return;
    };
    // Logs to stderr, which the test shows (RUST_LOG=debug for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let details = match serde_json::from_str(&details) {
        Ok(details) => details,
        Err(error) => {
            println!("{ERROR}details: {error}");
            return;
        }
    };
    let handler = ambit_udev::Udev::new();
    let mut stream = match handler.discover(DiscoverRequest::new(details)).await {
        Ok(stream) => stream,
        Err(error) => {
            println!("{ERROR}{error}");
            return;
        }
    };
    while let Some(set) = stream.next().await {
        match set {
            Ok(devices) => match serde_json::to_string(&devices) {
                Ok(json) => println!("{SET}{json}"),
                Err(error) => println!("{ERROR}{error}"),
            },
            Err(error) => {
                println!("{ERROR}{error}");
                return;
            }
        }
    }
    println!("{ERROR}the stream ended");
}

/// The ids of a set.
pub fn ids(set: &[Device]) -> Vec<&str> {
    set.iter().map(|d| d.id.as_str()).collect()
}

/// The device with `id` in a set.
pub fn device<'a>(set: &'a [Device], id: &str) -> &'a Device {
    set.iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no device {id} in {:?}", ids(set)))
}
