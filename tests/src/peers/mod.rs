//! Real protocol peers that the handlers' tests and the demo both run: what
//! they install (pinned, once, into the harness's cache) and how they are
//! started. Each test suite keeps its own thin wrapper (panicking, as tests
//! do); the demo runs the same commands under the control plane's janitor.
//!
//! - [`mqtt`]: Debian's mosquitto with a password file, Sparkplug B edge
//!   nodes on Eclipse Tahu's Node.js client (`examples/mqtt/edge-node.js`).
//! - [`mdns`]: a python-zeroconf DNS-SD responder (`examples/mdns/responder.py`).
//! - [`LineProcess`]: a peer driven by lines on its stdin that answers in
//!   lines on its stdout, as both scripts are.

pub mod mdns;
pub mod mqtt;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// A file of the workspace's `examples/` folder, where the simulated devices'
/// scripts live.
pub fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
}

pub use crate::free_port;

/// Makes the cache folder `dir` once, unless `installed` says it is there:
/// `install` fills a fresh sibling folder, renamed into place only once it
/// is complete, so a broken install is never taken for a good one (and of
/// two processes racing, the second drops its own).
fn install_once(
    dir: &Path,
    installed: impl Fn() -> bool,
    install: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if installed() {
        return Ok(());
    }
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("no folder name in {}", dir.display()))?;
    let fresh = dir.with_file_name(format!("{}.{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    install(&fresh)?;
    if std::fs::rename(&fresh, dir).is_err() {
        // Another process installed it first.
        let _ = std::fs::remove_dir_all(&fresh);
    }
    Ok(())
}

/// Runs `command` (`what`) to its end; an error when it cannot start
/// (saying `hint`) or fails (with its stderr).
fn run(mut command: Command, what: &str, hint: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("failed to run {what} ({hint})"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Runs `ip args` (iproute2); the error is its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("cannot run ip: {error}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A child process driven by lines written to its stdin, whose stdout lines
/// are read on a thread of their own; its stderr is this process's. Killed
/// when dropped.
#[derive(Debug)]
pub struct LineProcess {
    what: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl LineProcess {
    /// Starts `command` (`what` names it in errors).
    pub fn spawn(what: &str, mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("failed to start {what}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("{what} has no stdin or stdout pipe");
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            what: what.to_owned(),
            child,
            stdin,
            lines,
        })
    }

    /// Writes `line` (and a newline) to the process's stdin.
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("failed to write to {}", self.what))
    }

    /// Waits up to `within` for a line starting with `prefix`, passing over
    /// any others; returns it.
    pub fn expect(&self, prefix: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let line = self.next_line(prefix, deadline)?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// Waits up to `within` for the next line, which must start with `prefix`.
    pub fn expect_next(&self, prefix: &str, within: Duration) -> anyhow::Result<String> {
        let line = self.next_line(prefix, Instant::now() + within)?;
        anyhow::ensure!(
            line.starts_with(prefix),
            "{} said {line:?}, not {prefix:?}",
            self.what
        );
        Ok(line)
    }

    fn next_line(&self, prefix: &str, deadline: Instant) -> anyhow::Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .map_err(|_| anyhow::anyhow!("{} did not say {prefix:?}", self.what))
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
