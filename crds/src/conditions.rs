//! Condition types and reasons, and a helper that keeps
//! `lastTransitionTime` honest.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// DeviceSet: every part of the set works (handlers found, brokers ready).
pub const READY: &str = "Ready";
/// Device: at least one node sees the device and it answers.
pub const AVAILABLE: &str = "Available";

/// `status` of a condition that holds.
pub const TRUE: &str = "True";
/// `status` of a condition that does not hold.
pub const FALSE: &str = "False";
/// `status` of a condition that cannot be told yet.
pub const UNKNOWN: &str = "Unknown";

/// Sets the condition of `new.type_` in `conditions` to `new`, keeping the old
/// `lastTransitionTime` when the status did not change. Returns whether
/// anything changed, so callers can skip writes that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = old.status != new.status
                || old.reason != new.reason
                || old.message != new.message
                || old.observed_generation != new.observed_generation;
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// A condition of `type_` with `status`, `reason` and `message`, observed at
/// `generation`, that changes now.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conds = vec![];
        assert!(set_condition(
            &mut conds,
            condition(READY, FALSE, "Pending", "", Some(1))
        ));
        let first = conds[0].last_transition_time.clone();

        let mut later = condition(READY, FALSE, "Pending", "still", Some(2));
        later.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        assert!(set_condition(&mut conds, later));
        assert_eq!(conds[0].last_transition_time, first);
        assert_eq!(conds[0].message, "still");

        let mut flipped = condition(READY, TRUE, "Ready", "", Some(2));
        flipped.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        assert!(set_condition(&mut conds, flipped.clone()));
        assert_eq!(conds[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
        assert!(
            !set_condition(&mut conds, flipped),
            "the same condition again is no change"
        );
        assert_eq!(conds.len(), 1);
    }
}
