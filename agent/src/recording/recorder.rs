//! The recorder: the one task that turns what discovery reports into API
//! writes. The rules live in the pure [`Ledger`] (what is wanted, what was
//! written, which writes are due); this is its thin driver, which feeds it
//! inputs, clocks and finished writes, runs the writes it plans, and says
//! its notes as Events and metrics.
//!
//! ```text
//!  discovery tasks ──Discovered/Failed──►┐
//!  DeviceSet watch ──SetUpserted/Removed─►├─► Recorder ─► Ledger ─► planned writes (≤ 32 at once) ──► Writer ──► API
//!  Device watch ────DeviceSpec/Deleted───►┘      ▲  wakes for grace periods and retries    │
//!                                                └──────────── Done ◄──────────────────────┘
//! ```

use std::time::Instant;

use ambit_crds::v1alpha1::{Device, DeviceReport};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::recording::events::Events;
use crate::recording::writes::Writer;

mod input;
mod ledger;
#[cfg(test)]
mod ledger_tests;
mod plan;
mod reports;
#[cfg(test)]
mod reports_tests;

pub use input::Input;
use ledger::{Done, Failure, Ledger, Note, Planned};
pub use reports::ShardWrite;

/// How many writes may be under way at once.
const MAX_IN_FLIGHT: usize = 32;

/// The recorder; see the module docs.
#[derive(Debug)]
pub struct Recorder {
    writer: Writer,
    events: Events,
    ledger: Ledger,
}

impl Recorder {
    /// A recorder that takes over what a previous run of the agent wrote:
    /// the node entries of local Devices (`existing`: every Device whose
    /// `status.nodes` names this node) and the node's DeviceReports. They
    /// stay, untouched, unless discovery does not confirm them within their
    /// grace period.
    pub fn new(
        writer: Writer,
        events: Events,
        existing: &[Device],
        reports: &[DeviceReport],
    ) -> Self {
        let ledger = Ledger::adopt(
            &writer.node,
            existing,
            reports,
            Instant::now(),
            fastrand::Rng::new(),
        );
        info!(
            adopted = ledger.recorded(),
            "took over this node's existing Device entries and reports"
        );
        Self {
            writer,
            events,
            ledger,
        }
    }

    /// Runs until `inputs` closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        loop {
            for planned in self
                .ledger
                .plan(MAX_IN_FLIGHT, Instant::now(), Timestamp::now())
            {
                tasks.spawn(write(self.writer.clone(), planned));
            }
            self.say();
            let wake = self.ledger.next_wake();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.ledger.handle(input, Instant::now(), Timestamp::now()),
                    None => break,
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok(done) => self.ledger.complete(done, Instant::now()),
                    Err(error) => warn!(%error, "a write task failed"),
                },
                () = sleep_until(wake), if wake.is_some() => self.ledger.expire(Instant::now()),
            }
        }
    }

    /// Says the ledger's notes: Events, metrics, the log.
    fn say(&mut self) {
        let metrics = &self.writer.metrics;
        for note in self.ledger.take_notes() {
            match note {
                Note::Appeared(set, ids) => self.events.devices_appeared(&set, &ids),
                Note::Expired(set, ids) => self.events.devices_expired(&set, &ids),
                Note::HandlerState(set, state, error) => {
                    self.events.handler_state(&set, state, &error);
                }
                Note::Presence {
                    set,
                    vanished,
                    returned,
                } => metrics.presence_changes(&set, vanished, returned),
                Note::Devices(set, present) => metrics.set_devices(&set, present),
                Note::SetGone(set) => metrics.remove_set(&set),
                Note::WriteFailed {
                    failure,
                    attempts,
                    retry_in,
                } => {
                    metrics.api_error(failure.category);
                    warn!(error = %failure.message, attempts, ?retry_in, "write failed; will retry");
                }
            }
        }
    }
}

/// Makes one planned write.
async fn write(writer: Writer, planned: Planned) -> Done {
    let failure = |error: crate::recording::writes::WriteError| Failure {
        category: error.category(),
        message: error.to_string(),
    };
    match planned {
        Planned::Device { key, write } => {
            let result = writer.device(&write).await.map_err(failure);
            Done::Device { key, write, result }
        }
        Planned::Report { key, uid, writes } => {
            let (done, result) = writer.report(&key, &uid, writes).await;
            Done::Report {
                key,
                done,
                result: result.map_err(failure),
            }
        }
        Planned::SetEntry { key, view, at } => {
            let result = writer.set_entry(&key, &view, at).await.map_err(failure);
            Done::SetEntry {
                key,
                view,
                at,
                result,
            }
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    if let Some(wake) = wake {
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}
