//! The ledger's rules, driven directly: inputs and completions in, planned
//! writes and notes out, with the clocks passed in and a seeded generator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{DeviceNodeStatus, DeviceStatus, HandlerState};
use ambit_discovery::{self as sdk, DiscoveryError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::Input;
use super::ledger::{Done, Failure, Key, Ledger, Note, Planned};
use crate::recording::desired::{self, SetInfo};
use crate::recording::tracker::SetKey;
use crate::recording::writes::EntryOutcome;

const NODE: &str = "edge-1";
const GRACE: Duration = Duration::from_secs(5);

pub(super) fn set() -> SetKey {
    SetKey {
        namespace: "plant".into(),
        name: "cams".into(),
    }
}

pub(super) fn info() -> SetInfo {
    SetInfo {
        uid: "uid-cams".into(),
        handler: "debug-echo".into(),
        capacity: 1,
        broker_properties: BTreeMap::new(),
    }
}

pub(super) fn wall(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn upserted() -> Input {
    Input::SetUpserted {
        key: set(),
        info: info(),
        grace: Some(GRACE),
        entry: None,
    }
}

fn discovered(ids: &[&str]) -> Input {
    Input::Discovered {
        key: set(),
        devices: ids.iter().map(|id| sdk::Device::new(*id)).collect(),
    }
}

pub(super) fn ledger(existing: &[ambit_crds::v1alpha1::Device], t0: Instant) -> Ledger {
    Ledger::adopt(NODE, existing, &[], t0, fastrand::Rng::with_seed(7))
}

/// The Device a previous run wrote for `id`, with this node's entry.
fn recorded(id: &str, since: Timestamp) -> ambit_crds::v1alpha1::Device {
    let device = sdk::Device::new(id);
    let name = desired::device_name(&set(), &device, NODE);
    let spec = desired::device_spec(&set(), &info(), &device, NODE);
    let mut object = desired::device_object(&name, &set(), &info(), spec);
    object.status = Some(DeviceStatus {
        nodes: vec![DeviceNodeStatus {
            node: NODE.into(),
            since: Time(since),
        }],
        ..DeviceStatus::default()
    });
    object
}

fn device_writes(planned: &[Planned]) -> Vec<&crate::recording::writes::DeviceWrite> {
    planned
        .iter()
        .filter_map(|p| match p {
            Planned::Device { write, .. } => Some(&**write),
            Planned::Report { .. } | Planned::SetEntry { .. } => None,
        })
        .collect()
}

/// Completes every planned write as the API would when it succeeds.
pub(super) fn succeed(ledger: &mut Ledger, planned: Vec<Planned>, now: Instant) {
    for planned in planned {
        let done = match planned {
            Planned::Device { key, write } => Done::Device {
                key,
                write,
                result: Ok(EntryOutcome::Applied),
            },
            Planned::Report { key, writes, .. } => Done::Report {
                key,
                done: writes,
                result: Ok(()),
            },
            Planned::SetEntry { key, view, at } => Done::SetEntry {
                key,
                view,
                at,
                result: Ok(()),
            },
        };
        ledger.complete(done, now);
    }
}

/// Plans and completes writes until nothing is due; how many were made.
pub(super) fn settle(ledger: &mut Ledger, now: Instant, at: Timestamp) -> usize {
    let mut made = 0;
    loop {
        let planned = ledger.plan(32, now, at);
        if planned.is_empty() {
            return made;
        }
        made += planned.len();
        succeed(ledger, planned, now);
    }
}

#[test]
fn nothing_is_written_before_discovery_speaks() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    assert_eq!(l.plan(32, t0, wall(0)), vec![]);
}

#[test]
fn a_new_device_is_written_once_then_nothing_at_rest() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    let notes = l.take_notes();
    assert!(
        notes.contains(&Note::Appeared(set(), vec!["cam-1".into()])),
        "{notes:?}"
    );
    let planned = l.plan(32, t0, wall(0));
    let devices = device_writes(&planned);
    assert_eq!(devices.len(), 1, "{planned:?}");
    assert!(devices[0].spec.is_some(), "a new Device gets its spec");
    assert_eq!(
        devices[0].entry,
        Some(Some(wall(0))),
        "and this node's entry"
    );
    assert_eq!(planned.len(), 2, "and the set's node entry: {planned:?}");
    succeed(&mut l, planned, t0);

    // The same answer again, and again: nothing more to write.
    for i in 1..4 {
        l.handle(discovered(&["cam-1"]), t0, wall(i));
        assert_eq!(l.plan(32, t0, wall(i)), vec![], "poll {i}");
    }
}

#[test]
fn a_restart_that_discovery_confirms_writes_nothing() {
    let t0 = Instant::now();
    let since = wall(-3600);
    let existing = [recorded("cam-1", since), recorded("cam-2", since)];
    let mut l = ledger(&existing, t0);
    assert_eq!(l.recorded(), 2);
    let entry = ambit_crds::v1alpha1::DeviceSetNodeStatus {
        node: NODE.into(),
        handler: HandlerState::Available,
        devices: 2,
        last_error: String::new(),
        last_transition_time: Some(Time(since)),
    };
    l.handle(
        Input::SetUpserted {
            key: set(),
            info: info(),
            grace: Some(GRACE),
            entry: Some(entry),
        },
        t0,
        wall(0),
    );
    l.handle(discovered(&["cam-1", "cam-2"]), t0, wall(0));
    assert_eq!(l.plan(32, t0, wall(0)), vec![]);
    let notes = l.take_notes();
    assert!(
        !notes
            .iter()
            .any(|n| matches!(n, Note::Appeared(..) | Note::HandlerState(..))),
        "no Event for what a previous run announced: {notes:?}"
    );
}

#[test]
fn an_adopted_device_discovery_does_not_confirm_goes_after_its_grace() {
    let t0 = Instant::now();
    let existing = [recorded("cam-1", wall(-60)), recorded("cam-2", wall(-60))];
    let mut l = ledger(&existing, t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    assert_eq!(device_writes(&l.plan(32, t0, wall(0))), Vec::<&_>::new());
    l.expire(t0 + GRACE + Duration::from_millis(1));
    let planned = l.plan(32, t0 + GRACE, wall(6));
    let devices = device_writes(&planned);
    assert_eq!(devices.len(), 1, "{planned:?}");
    assert_eq!(devices[0].entry, Some(None), "cam-2's entry is given up");
    assert!(
        l.take_notes()
            .contains(&Note::Expired(set(), vec!["cam-2".into()]))
    );
}

#[test]
fn a_device_that_flaps_within_its_grace_writes_nothing() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    assert!(settle(&mut l, t0, wall(0)) > 0);
    for i in 1..20 {
        let now = t0 + Duration::from_millis(200 * i);
        let ids: &[&str] = if i % 2 == 0 { &["cam-1"] } else { &[] };
        l.handle(discovered(ids), now, wall(0));
        l.expire(now);
        let devices = l.plan(32, now, wall(0));
        assert_eq!(device_writes(&devices), Vec::<&_>::new(), "flap {i}");
        succeed(&mut l, devices, now);
    }
}

#[test]
fn a_spec_another_node_applied_is_not_applied_again() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    let device = sdk::Device::new("plc");
    let name = desired::device_name(&set(), &device, NODE);
    let spec = desired::device_spec(&set(), &info(), &device, NODE);
    l.handle(
        Input::DeviceSpec {
            namespace: set().namespace,
            name,
            hash: desired::spec_hash(&spec),
        },
        t0,
        wall(0),
    );
    l.handle(discovered(&["plc"]), t0, wall(0));
    let planned = l.plan(32, t0, wall(0));
    let devices = device_writes(&planned);
    assert_eq!(devices.len(), 1);
    assert!(devices[0].spec.is_none(), "the spec is already there");
    assert!(devices[0].entry.is_some(), "only the entry is written");
}

#[test]
fn a_failed_write_is_retried_after_its_backoff_and_said() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    let _ = l.take_notes();
    let planned = l.plan(32, t0, wall(0));
    for planned in planned {
        let done = match planned {
            Planned::Device { key, write } => Done::Device {
                key,
                write,
                result: Err(Failure {
                    category: "apply_device",
                    message: "connection refused".into(),
                }),
            },
            Planned::Report { .. } => unreachable!("no shared devices here"),
            Planned::SetEntry { key, view, at } => Done::SetEntry {
                key,
                view,
                at,
                result: Ok(()),
            },
        };
        l.complete(done, t0);
    }
    let notes = l.take_notes();
    let Some(Note::WriteFailed {
        attempts, retry_in, ..
    }) = notes.iter().find(|n| matches!(n, Note::WriteFailed { .. }))
    else {
        panic!("no WriteFailed note: {notes:?}");
    };
    assert_eq!(*attempts, 1);
    assert!(
        (Duration::from_millis(300)..=Duration::from_millis(500)).contains(retry_in),
        "{retry_in:?}"
    );
    assert_eq!(l.next_wake(), Some(t0 + *retry_in));
    assert_eq!(l.plan(32, t0, wall(0)), vec![], "not before its backoff");
    let later = t0 + *retry_in;
    assert_eq!(device_writes(&l.plan(32, later, wall(1))).len(), 1);
}

#[test]
fn no_more_than_the_limit_is_in_flight() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    let ids: Vec<String> = (0..100).map(|i| format!("cam-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    l.handle(discovered(&ids), t0, wall(0));
    let first = l.plan(32, t0, wall(0));
    assert_eq!(first.len(), 32);
    assert_eq!(l.plan(32, t0, wall(0)), vec![], "no room left");
    let mut first = first.into_iter();
    succeed(&mut l, first.by_ref().take(5).collect(), t0);
    let refill = l.plan(32, t0, wall(0));
    assert_eq!(refill.len(), 5, "as many as finished");
    succeed(&mut l, first.chain(refill).collect(), t0);
    // Everything is written exactly once.
    assert!(settle(&mut l, t0, wall(0)) > 0);
    assert_eq!(l.plan(32, t0, wall(0)), vec![]);
    assert_eq!(l.recorded(), 100);
}

#[test]
fn a_deleted_device_still_seen_is_written_again_with_its_spec() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    settle(&mut l, t0, wall(0));
    let name = desired::device_name(&set(), &sdk::Device::new("cam-1"), NODE);
    l.handle(
        Input::DeviceDeleted {
            namespace: set().namespace,
            name,
        },
        t0,
        wall(1),
    );
    let planned = l.plan(32, t0, wall(1));
    let devices = device_writes(&planned);
    assert_eq!(devices.len(), 1);
    assert!(devices[0].spec.is_some() && devices[0].entry.is_some());
}

#[test]
fn the_handler_state_is_written_and_announced_once_per_change() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&[]), t0, wall(0));
    assert_eq!(settle(&mut l, t0, wall(0)), 1, "the set's node entry");
    let failed = || Input::Failed {
        key: set(),
        error: DiscoveryError::Unavailable("server down".into()),
    };
    l.handle(failed(), t0, wall(10));
    let planned = l.plan(32, t0, wall(10));
    assert!(
        matches!(&planned[..], [Planned::SetEntry { view, at, .. }]
            if view.handler == HandlerState::Failing && view.last_error == "server down" && *at == wall(10)),
        "{planned:?}"
    );
    succeed(&mut l, planned, t0);
    let _ = l.take_notes();
    l.handle(failed(), t0, wall(20));
    assert_eq!(l.plan(32, t0, wall(20)), vec![], "the same failure again");
    assert!(
        !l.take_notes()
            .iter()
            .any(|n| matches!(n, Note::HandlerState(..)))
    );
    l.handle(Input::HandlerUnavailable { key: set() }, t0, wall(30));
    let notes = l.take_notes();
    assert!(
        notes.iter().any(
            |n| matches!(n, Note::HandlerState(_, HandlerState::Unavailable, m)
            if m.contains("debug-echo"))
        ),
        "{notes:?}"
    );
}

#[test]
fn a_removed_set_is_forgotten_without_writes() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(discovered(&["cam-1"]), t0, wall(0));
    l.handle(Input::SetRemoved { key: set() }, t0, wall(0));
    // The Device's key may still be dirty, but with no set known there is
    // nothing to write from (the controller's garbage collection and the
    // owner reference remove the Devices).
    assert_eq!(l.plan(32, t0, wall(0)), vec![]);
    assert!(l.take_notes().contains(&Note::SetGone(set())));
    assert!(!l.dirty.contains(&Key::SetEntry(set())));
}
