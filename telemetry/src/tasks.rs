//! A service's long-lived tasks, owned by its `run`: each runs in a span
//! named for it, and the first one that ends — returns, fails or panics —
//! is why the process stops. A task aborted on purpose (the controller's
//! reconcilers, when another replica takes the Lease) is
//! [`Tasks::stop`]ped and so is no failure.
//!
//! ```text
//!  run ─ Tasks ─┬─ http   (/metrics, /healthz, /readyz)
//!               ├─ task b (a watch, a reconciler, a socket server …)
//!               └─ task c
//!  first to end ─► Ended { task, reason } ─► /healthz 503 naming it, exit 1
//! ```
//!
//! The agent and the controller both run this way (see their `run`).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;

use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tracing::Instrument;

/// A task that ended while it should have run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The task's name.
    pub task: &'static str,
    /// How it ended: its error, its panic message, or that it returned.
    pub reason: String,
}

/// What a task's future ends with: nothing (it was meant to run forever)
/// or a result whose error says why it stopped.
pub trait Outcome {
    /// `Err` with the reason, or `Ok` for a task that returned.
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// The running tasks, by name.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Spawns `task` as `name`, inside a span of that name. A task that
    /// cannot fail returns `()`; one that can returns `Result<(), E>`.
    pub fn spawn<F>(&mut self, name: &'static str, task: F) -> AbortHandle
    where
        F: Future + Send + 'static,
        F::Output: Outcome,
    {
        let span = tracing::info_span!("task", task = name);
        let task = async move { task.await.into_result() };
        let handle = self.set.spawn(task.instrument(span));
        self.names.insert(handle.id(), name);
        handle
    }

    /// Aborts a task on purpose: its end is not reported.
    pub fn stop(&mut self, handle: &AbortHandle) {
        self.names.remove(&handle.id());
        handle.abort();
    }

    /// Aborts every task.
    pub fn stop_all(&mut self) {
        self.names.clear();
        self.set.abort_all();
    }

    /// Waits for the next task to end that was not stopped; pending forever
    /// while none runs.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let Some(joined) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, reason) = match joined {
                Ok((id, Ok(()))) => (id, "returned".to_owned()),
                Ok((id, Err(error))) => (id, error),
                Err(error) => (error.id(), describe(error)),
            };
            if let Some(task) = self.names.remove(&id) {
                return Ended { task, reason };
            }
        }
    }
}

fn describe(error: JoinError) -> String {
    if error.is_cancelled() {
        return "was cancelled".to_owned();
    }
    format!("panicked: {}", panic_message(error))
}

/// What the panic that ended a task said (`error` must be a panic, not a
/// cancellation).
pub fn panic_message(error: JoinError) -> String {
    let panic = error.into_panic();
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn forever() -> Result<(), String> {
        std::future::pending().await
    }

    #[tokio::test]
    async fn the_first_task_to_end_is_reported_by_name_with_why() {
        let mut tasks = Tasks::default();
        tasks.spawn("http", forever());
        tasks.spawn("leader election", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err("the Lease expired unrenewed")
        });
        assert_eq!(
            tasks.ended().await,
            Ended {
                task: "leader election",
                reason: "the Lease expired unrenewed".into()
            }
        );
        tasks.spawn("sweeper", async { Ok::<(), String>(()) });
        assert_eq!(tasks.ended().await.reason, "returned");
        tasks.spawn("recorder", async {});
        assert_eq!(
            tasks.ended().await,
            Ended {
                task: "recorder",
                reason: "returned".into()
            }
        );
    }

    #[tokio::test]
    async fn a_panic_is_reported_with_its_message() {
        let mut tasks = Tasks::default();
        tasks.spawn("controllers", async {
            if true {
                panic!("boom");
            }
            Ok::<(), String>(())
        });
        let ended = tasks.ended().await;
        assert_eq!(ended.task, "controllers");
        assert_eq!(ended.reason, "panicked: boom");
    }

    #[tokio::test]
    async fn a_stopped_task_is_no_failure() {
        let mut tasks = Tasks::default();
        let controllers = tasks.spawn("controllers", forever());
        tasks.spawn("http", async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err("bind failed")
        });
        tasks.stop(&controllers);
        assert_eq!(tasks.ended().await.task, "http");
    }
}
