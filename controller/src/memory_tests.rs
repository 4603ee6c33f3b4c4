use super::*;

/// Gives the Device `uid` something in every part of its entry.
fn remember_device(memory: &Memory, uid: &str) {
    memory.wrote(uid, "True/Seen".into());
    memory.broker_failed(uid, "edge-1");
    memory.over_capacity(uid, true);
    memory.failed_attempt(Kind::Device, uid);
    memory.expect(uid, "ns/pod".into());
}

fn remember_set(memory: &Memory, uid: &str) {
    memory.pace_status(uid, Duration::from_secs(1));
    memory.failed_attempt(Kind::DeviceSet, uid);
}

fn device(uid: &str) -> Gone<'_> {
    Gone {
        kind: Kind::Device,
        key: uid,
        namespace: "ns",
        name: "cams-1",
    }
}

#[test]
fn a_deleted_device_is_forgotten_and_others_stay() {
    let memory = Memory::default();
    remember_device(&memory, "d1");
    remember_device(&memory, "d2");
    remember_set(&memory, "s1");
    assert_eq!(memory.len(), 3);

    memory.gone(device("d1"));
    assert_eq!(memory.len(), 2);
    // Nothing of d1 is left: it reads as never seen...
    assert!(memory.should_write("d1", "True/Seen"));
    assert!(memory.backoff_of("d1").is_empty());
    assert!(!memory.awaited("d1", "ns/pod", false));
    assert!(memory.over_capacity("d1", true), "reported anew");
    // ...while d2 keeps all of its memory.
    assert!(!memory.should_write("d2", "True/Seen"));
    assert!(memory.backoff_of("d2").contains_key("edge-1"));
    assert!(memory.awaited("d2", "ns/pod", false));
}

#[test]
fn a_deleted_set_is_forgotten() {
    let memory = Memory::default();
    remember_set(&memory, "s1");
    remember_device(&memory, "s1-is-not-a-device");
    memory.gone(Gone {
        kind: Kind::DeviceSet,
        key: "s1",
        namespace: "ns",
        name: "cams",
    });
    assert_eq!(memory.len(), 1, "only the Device is left");
    assert_eq!(memory.pace_status("s1", Duration::from_secs(1)), None);
    assert_eq!(memory.failed_attempt(Kind::DeviceSet, "s1"), 1);
}

#[test]
fn a_deleted_node_takes_its_broker_backoff_with_it() {
    let memory = Memory::default();
    memory.broker_failed("d1", "edge-1");
    memory.broker_failed("d1", "edge-2");
    memory.gone(Gone {
        kind: Kind::Node,
        key: "edge-1",
        namespace: "",
        name: "edge-1",
    });
    let left = memory.backoff_of("d1");
    assert_eq!(left.keys().collect::<Vec<_>>(), ["edge-2"]);
}

#[test]
fn a_relisting_forgets_what_went_while_the_watch_was_down() {
    let memory = Memory::default();
    remember_device(&memory, "d1");
    remember_device(&memory, "d2");
    remember_set(&memory, "s1");
    memory.broker_failed("d2", "edge-2");

    let live: HashSet<String> = ["d2".to_owned()].into();
    memory.listed(Kind::Device, &live);
    assert_eq!(memory.len(), 2, "d2 and the set are left");
    assert!(memory.should_write("d1", "True/Seen"));

    let nodes: HashSet<String> = ["edge-2".to_owned()].into();
    memory.listed(Kind::Node, &nodes);
    assert_eq!(
        memory.backoff_of("d2").keys().collect::<Vec<_>>(),
        ["edge-2"]
    );

    memory.listed(Kind::DeviceSet, &HashSet::new());
    assert_eq!(memory.len(), 1);
}

#[test]
fn a_reconcile_that_finds_its_device_gone_forgets_it() {
    let memory = Memory::default();
    remember_device(&memory, "d1");
    memory.forget(Kind::Device, "d1");
    assert_eq!(memory.len(), 0);
}

#[test]
fn reading_makes_no_entry() {
    let memory = Memory::default();
    assert!(memory.should_write("d1", "x"));
    assert!(memory.backoff_of("d1").is_empty());
    assert!(!memory.awaited("d1", "ns/pod", false));
    memory.broker_ok("d1", "edge-1");
    memory.succeeded(Kind::Device, "d1");
    assert!(!memory.over_capacity("d1", false));
    assert_eq!(memory.len(), 0);
}

#[test]
fn stale_expectations_do_not_pile_up() {
    let memory = Memory::default();
    memory.expect("d1", "ns/a".into());
    memory.peek(Kind::Device, "d1", |entry| {
        for at in entry.expected.values_mut() {
            *at = at
                .checked_sub(CACHE_LAG)
                .expect("the clock has run past 30 s");
        }
    });
    memory.expect("d1", "ns/b".into());
    let keys = memory.peek(Kind::Device, "d1", |e| e.expected.len());
    assert_eq!(keys, Some(1), "the old expectation went");
}

#[test]
fn a_sets_slices_are_not_written_again_from_the_same_inputs_and_its_pools_keep_their_generation() {
    let memory = Memory::default();
    assert!(memory.slices_due("s1", 7));
    assert_eq!(memory.pool_generation("s1", "shared/ns/plcs/a"), 0);
    let generations = BTreeMap::from([
        ("shared/ns/plcs/a".to_owned(), 3),
        ("shared/ns/plcs/b".to_owned(), 1),
    ]);
    memory.slices_wrote("s1", 7, generations, &BTreeSet::new());
    assert!(!memory.slices_due("s1", 7), "the same inputs, just written");
    assert!(memory.slices_due("s1", 8), "other inputs");
    assert!(memory.slices_due("s2", 7), "another set");
    assert_eq!(memory.pool_generation("s1", "shared/ns/plcs/a"), 3);

    // A pool deleted is forgotten; the others keep theirs.
    let gone = BTreeSet::from(["shared/ns/plcs/b".to_owned()]);
    memory.slices_wrote("s1", 8, BTreeMap::new(), &gone);
    assert_eq!(memory.pool_generation("s1", "shared/ns/plcs/b"), 0);
    assert_eq!(memory.pool_generation("s1", "shared/ns/plcs/a"), 3);
}
