//! An mDNS peer: python-zeroconf (PyPI `zeroconf`, pinned, installed once
//! into a venv in the harness's cache, ~/.cache/ambit/venv) running
//! `examples/mdns/responder.py`, a DNS-SD responder driven by JSON lines on
//! stdin (see the script). Multicast does not work on loopback, so it runs
//! in a network namespace of its own, on one end of a veth pair.

use std::path::PathBuf;
use std::process::Command;

use super::run;

/// python-zeroconf, pinned.
pub const ZEROCONF: &str = "zeroconf==0.154.0";

/// The venv: the harness's cache's `venv/zeroconf-<version>`.
fn venv_dir() -> PathBuf {
    crate::binaries::cache_root()
        .join("venv")
        .join(ZEROCONF.replace("==", "-"))
}

/// Whether the pinned python-zeroconf's venv is there already.
pub fn zeroconf_installed() -> bool {
    venv_dir().join("bin/python").exists()
}

/// Installs the pinned python-zeroconf once into a venv (see
/// [`super::install_once`]); returns its python.
pub fn zeroconf_python() -> anyhow::Result<PathBuf> {
    let dir = venv_dir();
    super::install_once(&dir, zeroconf_installed, |fresh| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(fresh);
        let hint = "Debian's python3 and python3-venv: run `make setup`";
        run(venv, "python3 -m venv", hint)?;
        let mut pip = Command::new(fresh.join("bin/pip"));
        pip.args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            ZEROCONF,
        ]);
        run(pip, &format!("pip install {ZEROCONF}"), "the venv's pip")
    })?;
    // A venv's scripts name its folder, but the interpreter is called by
    // its path (bin/python is a symlink, which the rename keeps).
    Ok(dir.join("bin/python"))
}

/// The command that runs the responder in network namespace `netns`,
/// answering on the interfaces with the `addresses` given (installing
/// python-zeroconf first if it is not yet in the cache). It prints `ready`,
/// then `ok` for each command done.
pub fn responder_command(netns: &str, addresses: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns])
        .arg(zeroconf_python()?)
        .arg(super::example("mdns/responder.py"))
        .args(addresses);
    Ok(command)
}
