//! When a discovery task that crashed (panicked) starts again. A crash is
//! a bug in a handler or in the agent, not the DeviceSet author's, and the
//! other sets' discovery must go on; so the task is restarted, with a delay
//! that doubles while it keeps crashing:
//!
//! ```text
//!  crash ──► restart after 1 s ──► crash ──► 2 s ──► … ──► 5 min (the cap)
//!    ▲ ran 5 min or more before crashing: the count starts again (1 s)
//!    └ its inputs changed (DeviceSet edit, handler re-registered), or the set went: forgotten
//! ```
//!
//! No I/O and the clock passed in, so the rule is tested directly; the
//! supervisor owns the timers.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::recording::tracker::SetKey;

/// The first delay.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest delay.
pub const CAP: Duration = Duration::from_secs(300);
/// A task that ran this long before crashing counts as healthy: its next
/// delay is [`FIRST`] again.
pub const HEALTHY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Crashes in a row.
    crashes: u32,
    /// When the task is due to start again (`None`: it has been started).
    due: Option<Instant>,
}

/// The sets whose discovery crashed, and when each starts again.
#[derive(Debug, Default)]
pub struct Restarts {
    pending: BTreeMap<SetKey, Pending>,
}

impl Restarts {
    /// `key`'s task, started at `started`, crashed at `now`: returns the
    /// delay before it starts again.
    pub fn crashed(&mut self, key: &SetKey, started: Instant, now: Instant) -> Duration {
        let before = self.pending.get(key).map_or(0, |p| p.crashes);
        let crashes = if now.duration_since(started) >= HEALTHY {
            1
        } else {
            before.saturating_add(1)
        };
        let delay = FIRST
            .checked_mul(1 << (crashes - 1).min(16))
            .map_or(CAP, |d| d.min(CAP));
        self.pending.insert(
            key.clone(),
            Pending {
                crashes,
                due: Some(now + delay),
            },
        );
        delay
    }

    /// Whether `key` waits for its restart (its task must not start before).
    pub fn waiting(&self, key: &SetKey, now: Instant) -> bool {
        self.pending
            .get(key)
            .and_then(|p| p.due)
            .is_some_and(|due| due > now)
    }

    /// The next restart that falls due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.due).min()
    }

    /// The sets whose restart is due at `now`, for the caller to start;
    /// each is returned once. Their crash counts are kept, so a crash soon
    /// after the restart waits longer.
    pub fn take_due(&mut self, now: Instant) -> Vec<SetKey> {
        let mut due = vec![];
        for (key, pending) in &mut self.pending {
            if pending.due.is_some_and(|d| d <= now) {
                pending.due = None;
                due.push(key.clone());
            }
        }
        due
    }

    /// Forgets `key`: its inputs changed or it went.
    pub fn forget(&mut self, key: &SetKey) {
        self.pending.remove(key);
    }

    /// How many sets have crashed and not been forgotten.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SetKey {
        SetKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_delay_doubles_to_the_cap_while_the_task_keeps_crashing() {
        let mut restarts = Restarts::default();
        let start = Instant::now();
        let mut now = start;
        let mut delays = vec![];
        for _ in 0..12 {
            let delay = restarts.crashed(&key("a"), now, now + Duration::from_millis(10));
            delays.push(delay.as_secs());
            now += Duration::from_millis(10) + delay;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn a_task_waits_until_its_restart_is_due_and_others_are_untouched() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        restarts.crashed(&key("a"), now, now);
        assert!(restarts.waiting(&key("a"), now));
        assert!(!restarts.waiting(&key("b"), now));
        assert_eq!(restarts.next_due(), Some(now + FIRST));
        assert!(restarts.take_due(now).is_empty());
        assert_eq!(restarts.take_due(now + FIRST), [key("a")]);
        assert!(!restarts.waiting(&key("a"), now + FIRST));
        assert!(
            restarts.take_due(now + FIRST).is_empty(),
            "a restart is taken once"
        );
        assert_eq!(restarts.next_due(), None);
    }

    #[test]
    fn a_task_that_ran_long_enough_starts_the_count_again() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        restarts.crashed(&key("a"), now, now);
        restarts.crashed(&key("a"), now, now);
        let third = restarts.crashed(&key("a"), now, now);
        assert_eq!(third, Duration::from_secs(4));
        let later = now + HEALTHY;
        assert_eq!(restarts.crashed(&key("a"), now, later), FIRST);
    }

    #[test]
    fn a_changed_or_removed_set_is_forgotten() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        restarts.crashed(&key("a"), now, now);
        restarts.crashed(&key("a"), now, now);
        restarts.forget(&key("a"));
        assert_eq!(restarts.len(), 0);
        assert!(!restarts.waiting(&key("a"), now));
        assert_eq!(restarts.next_due(), None);
        assert_eq!(
            restarts.crashed(&key("a"), now, now),
            FIRST,
            "counted from 1"
        );
    }
}
