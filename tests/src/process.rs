//! Child processes that never outlive the test binary that started them.
//!
//! Every process the harness starts is reported to a *janitor*: a small shell
//! that reads PIDs on its standard input until that pipe closes, which the
//! kernel does when the test binary exits for any reason (normal end, panic,
//! abort, Ctrl-C). The janitor then stops every process it was told about,
//! runs the clean-up scripts it was given (newest first: real nodes undo
//! their cgroups, sysctls and mount points this way) and removes the control
//! plane's temporary directory. No unsafe code, no reliance on destructors of
//! statics (which Rust never runs).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use crate::Error;

const JANITOR: &str = r#"
trap '' INT HUP
dir="$1"; keep="$2"; pids=""; scripts=""
while IFS= read -r line; do
  case "$line" in
    "run "*) scripts="${line#run } $scripts" ;;
    *) pids="$pids $line" ;;
  esac
done
if [ -n "$pids" ]; then
  kill -TERM $pids 2>/dev/null
  i=0
  while [ $i -lt 50 ]; do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1; i=$((i + 1))
  done
  kill -KILL $pids 2>/dev/null
fi
for script in $scripts; do sh "$script" >"$script.log" 2>&1; done
[ "$keep" = 1 ] || rm -rf "$dir"
"#;

/// Stops the harness's processes and removes its directory when the test
/// binary exits.
#[derive(Debug)]
pub struct Janitor {
    stdin: Mutex<ChildStdin>,
    _child: Child,
}

impl Janitor {
    /// Starts a janitor that will remove `dir` (unless `keep`) once the
    /// current process exits.
    pub fn start(dir: &Path, keep: bool) -> Result<Self, Error> {
        let mut child = Command::new("sh")
            .args(["-c", JANITOR, "ambit-janitor"])
            .arg(dir)
            .arg(if keep { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::io("start the janitor shell", source))?;
        let stdin = child.stdin.take().ok_or(Error::NoPipe)?;
        Ok(Self {
            stdin: Mutex::new(stdin),
            _child: child,
        })
    }

    /// Asks the janitor to stop `pid` when the test binary exits.
    pub fn watch(&self, pid: u32) -> Result<(), Error> {
        let mut stdin = self
            .stdin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writeln!(stdin, "{pid}").map_err(|source| Error::io("tell the janitor a PID", source))
    }

    /// Asks the janitor to run the shell script at `script` (a path without
    /// spaces) once every process is stopped, before the directory goes.
    /// Scripts run newest first, and must be safe to run twice: a test may
    /// already have run one itself.
    pub fn on_exit(&self, script: &Path) -> Result<(), Error> {
        let mut stdin = self
            .stdin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writeln!(stdin, "run {}", script.display())
            .map_err(|source| Error::io("tell the janitor a clean-up script", source))
    }
}

/// A started process whose output goes to a log file.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` as `name`, its stdout and stderr appended to
    /// `<log_dir>/<name>.log`, and tells `janitor` about it.
    pub fn spawn(
        name: &str,
        cmd: Command,
        log_dir: &Path,
        janitor: &Janitor,
    ) -> Result<Self, Error> {
        Self::spawn_with_stdin(name, cmd, Stdio::null(), log_dir, janitor)
    }

    /// [`Process::spawn`], with a pipe to the process's stdin: the process
    /// reads commands from it, and sees its end when the pipe is dropped.
    pub fn spawn_piped(
        name: &str,
        cmd: Command,
        log_dir: &Path,
        janitor: &Janitor,
    ) -> Result<(Self, ChildStdin), Error> {
        let mut process = Self::spawn_with_stdin(name, cmd, Stdio::piped(), log_dir, janitor)?;
        let stdin = process.child.stdin.take().ok_or(Error::NoPipe)?;
        Ok((process, stdin))
    }

    fn spawn_with_stdin(
        name: &str,
        mut cmd: Command,
        stdin: Stdio,
        log_dir: &Path,
        janitor: &Janitor,
    ) -> Result<Self, Error> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| Error::io(format!("open {}", log.display()), source))?;
        let err = out
            .try_clone()
            .map_err(|source| Error::io("clone a log handle", source))?;
        let child = cmd
            .stdin(stdin)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::io(format!("start {name}"), source))?;
        janitor.watch(child.id())?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The process's name, as given to [`Process::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The path of the process's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: tail(&self.log, 40),
            }),
            Err(source) => Err(Error::io(format!("check on {}", self.name), source)),
        }
    }

    /// Sends SIGKILL (like `kill -9`) and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How the process exited, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits for the process to exit (SIGKILL after
    /// `grace`); how it exited, `None` if it had to be killed.
    pub fn terminate(&mut self, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A workspace binary the harness runs as a child it can kill, restart and
/// stop like an operator would (agents, controllers, external handlers):
/// one binary and one environment, each start logged to
/// `<name>-<start>.log`. The fault tests drive every component through it.
#[derive(Debug)]
pub struct Restartable {
    name: String,
    binary: PathBuf,
    env: Vec<(String, std::ffi::OsString)>,
    process: Option<Process>,
    starts: usize,
}

impl Restartable {
    /// `binary`, to run as `name` with `env` (beside `RUST_LOG`:
    /// `$AMBIT_TEST_LOG`, else `info,ambit=debug`); not started yet.
    pub fn new(
        name: &str,
        binary: &Path,
        env: impl IntoIterator<Item = (&'static str, std::ffi::OsString)>,
    ) -> Self {
        let log = std::env::var("AMBIT_TEST_LOG").unwrap_or_else(|_| "info,ambit=debug".into());
        let mut all = vec![("RUST_LOG".to_owned(), log.into())];
        all.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Self {
            name: name.to_owned(),
            binary: binary.to_owned(),
            env: all,
            process: None,
            starts: 0,
        }
    }

    /// Adds environment for the next starts.
    pub fn add_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        self.env.extend(
            env.into_iter()
                .map(|(k, v)| (k, std::ffi::OsString::from(v))),
        );
    }

    /// Starts it (again), through `control_plane`'s janitor.
    pub fn spawn(&mut self, control_plane: &crate::ControlPlane) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.starts += 1;
        let name = format!("{}-{}", self.name, self.starts);
        self.process = Some(control_plane.spawn_process(&name, cmd)?);
        Ok(())
    }

    /// Kills it like `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills it and starts it again.
    pub fn restart(&mut self, control_plane: &crate::ControlPlane) -> anyhow::Result<()> {
        self.kill();
        self.spawn(control_plane)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// How it exited, or `None` while it runs (or was never started).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(Process::exit_status)
    }

    /// Sends SIGTERM and waits up to `grace` for it to exit; how it exited,
    /// `None` if it had to be killed.
    pub fn terminate(&mut self, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(|p| p.terminate(grace))
    }

    /// The last 200 lines of the current start's log.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| tail(p.log(), 200))
            .unwrap_or_default()
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.reverse();
    last.join("\n")
}
