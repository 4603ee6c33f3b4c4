//! The demo's simulated mDNS-announced service: an IPP printer that
//! python-zeroconf (`examples/mdns/responder.py`) announces from the
//! devices' network namespace of the demo's LAN (see `lan.rs`), found by the
//! nodes' mdns handlers through `examples/mdns/printers.yaml`.

use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::time::Duration;

use anyhow::Context;
use kube::Client;

use super::lan::PRINTER_ADDRESS;
use super::{apply_example, wait_for_line};
use crate::ControlPlane;
use crate::process::Process;

/// The printer's DNS-SD instance name: `examples/mdns/printers.yaml` takes
/// instances named `Office*` whose TXT `ty` matches `*Laser*`.
pub const PRINTER_INSTANCE: &str = "Office Laser";
/// The printer's Device id: its DNS-SD service instance name.
pub const PRINTER_ID: &str = "Office Laser._ipp._tcp.local";

/// The responder announcing the printer (`_ipp._tcp` on port 631 of
/// 10.78.0.3) until the demo ends.
#[derive(Debug)]
pub struct MdnsPrinter {
    responder: Process,
    /// The responder's commands, kept open: at its end the responder exits.
    _stdin: ChildStdin,
}

impl MdnsPrinter {
    /// Starts the responder in network namespace `netns` (making its
    /// python-zeroconf venv first if `make setup` has not) and tells it to
    /// announce the printer once it runs.
    pub(super) fn start(control_plane: &ControlPlane, netns: &str) -> anyhow::Result<Self> {
        let command = crate::peers::mdns::responder_command(netns, &[PRINTER_ADDRESS])?;
        let (responder, mut stdin) = control_plane.spawn_piped_process("mdns-printer", command)?;
        let register = serde_json::json!({
            "op": "register",
            "name": PRINTER_INSTANCE,
            "type": "_ipp._tcp",
            "port": 631,
            "txt": {"ty": "HP LaserJet 4000", "rp": "ipp/print", "note": "2nd floor"},
            "host": "office-laser.local.",
            "addresses": [PRINTER_ADDRESS],
        });
        // The responder reads it once it runs.
        writeln!(stdin, "{register}")
            .and_then(|()| stdin.flush())
            .context("failed to tell the mDNS responder to announce the printer")?;
        Ok(Self {
            responder,
            _stdin: stdin,
        })
    }

    /// Waits until the responder has announced the printer (after its
    /// probes; it says `ok` then).
    pub(super) async fn wait_announced(&mut self) -> anyhow::Result<()> {
        wait_for_line(
            &mut self.responder,
            "ok",
            Duration::from_secs(30),
            "the mDNS responder",
        )
        .await
    }

    /// Applies `examples/mdns/printers.yaml`.
    pub(super) async fn apply(client: &Client, examples_dir: &Path) -> anyhow::Result<()> {
        apply_example(client, examples_dir, "mdns/printers.yaml", &[]).await
    }
}
