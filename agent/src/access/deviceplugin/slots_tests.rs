use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSpec;

use super::*;
use crate::access::offers::{Offer, offers_of};

fn offer(namespace: &str, name: &str, set: &str, capacity: i32) -> Offer {
    Offer {
        namespace: namespace.into(),
        name: name.into(),
        uid: "u".into(),
        spec: DeviceSpec {
            device_set: set.into(),
            id: name.into(),
            shared: true,
            node: None,
            capacity,
            properties: Default::default(),
            device_nodes: vec![],
            mounts: vec![],
        },
        nodes: vec!["a".into(), "b".into()],
        allocations: vec![],
    }
}

fn allocation(slot: i32, node: &str) -> Allocation {
    Allocation {
        slot,
        node: node.into(),
        pod: None,
        since: Some(Time(Timestamp::UNIX_EPOCH)),
    }
}

fn key(namespace: &str, name: &str) -> DeviceKey {
    (namespace.into(), name.into())
}

/// Slots of `node` whose sets `sets` (namespace, set) want per-device resources.
fn per_device(node: &str, sets: &[(&str, &str)]) -> Slots {
    let mut slots = Slots::new(node);
    let sets = sets.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned()));
    assert!(slots.set_per_device(sets.collect()).is_empty());
    slots
}

#[test]
fn a_set_is_one_resource_and_its_devices_are_resources_only_when_it_asks() {
    let mut slots = Slots::new("a");
    slots.set_offers(offers_of(&[
        offer("ns", "cam-1", "cams", 2),
        offer("ns", "cam-2", "cams", 1),
        offer("ns", "mic-1", "mics", 1),
    ]));
    assert_eq!(
        slots.resources().keys().collect::<Vec<_>>(),
        ["ambit.dev/cams", "ambit.dev/mics"]
    );
    assert_eq!(slots.list("ambit.dev/cam-1"), []);
    assert_eq!(
        slots
            .check("ambit.dev/cam-1", "cam-1-0")
            .unwrap_err()
            .reason(),
        "unknown_device"
    );

    let sets = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect()
    };
    slots.set_per_device(sets(&[("ns", "cams")]));
    assert_eq!(
        slots.resources().keys().collect::<Vec<_>>(),
        [
            "ambit.dev/cam-1",
            "ambit.dev/cam-2",
            "ambit.dev/cams",
            "ambit.dev/mics"
        ]
    );
    // Another namespace's set of the same name asks for nothing here.
    slots.set_per_device(sets(&[("other", "mics")]));
    assert_eq!(
        slots.resources().keys().collect::<Vec<_>>(),
        ["ambit.dev/cams", "ambit.dev/mics"]
    );
}

#[test]
fn each_device_and_each_set_is_a_resource_with_capacity_slots() {
    let mut slots = per_device("a", &[("ns", "cams")]);
    slots.set_offers(offers_of(&[
        offer("ns", "cam-1", "cams", 2),
        offer("ns", "cam-2", "cams", 1),
    ]));
    assert_eq!(
        slots.resources().keys().collect::<Vec<_>>(),
        ["ambit.dev/cam-1", "ambit.dev/cam-2", "ambit.dev/cams"]
    );
    assert_eq!(
        slots.list("ambit.dev/cam-1"),
        [("cam-1-0".to_owned(), true), ("cam-1-1".to_owned(), true)]
    );
    assert_eq!(
        slots.list("ambit.dev/cams"),
        [
            ("cam-1-0".to_owned(), true),
            ("cam-1-1".to_owned(), true),
            ("cam-2-0".to_owned(), true)
        ]
    );
}

#[test]
fn a_name_wanted_twice_is_served_once_and_keeps_its_owner() {
    let mut slots = per_device("a", &[("a", "set-a"), ("b", "set-b"), ("a", "other")]);
    // Namespace b's device came first.
    slots.set_offers(offers_of(&[offer("b", "x", "set-b", 1)]));
    let collisions = slots.set_offers(offers_of(&[
        offer("a", "x", "set-a", 1),
        offer("b", "x", "set-b", 1),
        offer("a", "set-a", "other", 1),
    ]));
    assert_eq!(
        slots.resources()["ambit.dev/x"],
        Owner::Device(key("b", "x")),
        "the first owner keeps the name"
    );
    assert_eq!(
        slots.resources()["ambit.dev/set-a"],
        Owner::Device(key("a", "set-a")),
        "a device comes before a set of the same name"
    );
    assert_eq!(
        slots.resources()["ambit.dev/set-b"],
        Owner::Set {
            namespace: "b".into(),
            set: "set-b".into()
        }
    );
    assert_eq!(collisions.len(), 2, "{collisions:?}");
    // Reported once only.
    let again = slots.set_offers(slots.offers().clone());
    assert!(again.is_empty());
}

#[test]
fn names_that_cannot_be_resources_are_skipped() {
    assert!(valid_resource_name("cams-1.a_b"));
    assert!(!valid_resource_name(&"x".repeat(64)));
    assert!(!valid_resource_name("-a"));
    let long = "s".repeat(70);
    let mut slots = Slots::new("a");
    slots.set_offers(offers_of(&[offer("ns", "cam-1", &long, 1)]));
    assert!(slots.resources().is_empty(), "the set's name is too long");
    let mut slots = per_device("a", &[("ns", &long)]);
    slots.set_offers(offers_of(&[offer("ns", "cam-1", &long, 1)]));
    assert_eq!(
        slots.resources().keys().collect::<Vec<_>>(),
        ["ambit.dev/cam-1"],
        "the device's own name still is one"
    );
}

#[test]
fn a_slot_held_elsewhere_or_through_the_other_resource_is_unhealthy() {
    let mut slots = per_device("a", &[("ns", "cams")]);
    let mut cam = offer("ns", "cam", "cams", 3);
    cam.allocations = vec![allocation(0, "b")];
    slots.set_offers(offers_of(&[cam]));

    let refusal = slots.check("ambit.dev/cams", "cam-0").unwrap_err();
    assert_eq!(refusal.reason(), "held_by_other_node");
    assert!(refusal.to_string().contains("held by node b"), "{refusal}");

    let (slot, again) = slots.check("ambit.dev/cam", "cam-1").unwrap();
    assert!(!again);
    slots.hold(&slot, "ambit.dev/cam", Timestamp::UNIX_EPOCH);
    assert_eq!(
        slots.check("ambit.dev/cam", "cam-1").unwrap(),
        (slot.clone(), true),
        "the same resource may ask again"
    );
    assert_eq!(
        slots.check("ambit.dev/cams", "cam-1").unwrap_err().reason(),
        "held_by_other_resource"
    );
    assert_eq!(
        slots.list("ambit.dev/cam"),
        [
            ("cam-0".to_owned(), false),
            ("cam-1".to_owned(), true),
            ("cam-2".to_owned(), true)
        ]
    );
    assert_eq!(
        slots.list("ambit.dev/cams"),
        [
            ("cam-0".to_owned(), false),
            ("cam-1".to_owned(), false),
            ("cam-2".to_owned(), true)
        ]
    );
    assert_eq!(slots.usage()[&("ns".to_owned(), "cams".to_owned())], (2, 1));

    for bad in ["cam", "cam-x", "cam-3", "other-0"] {
        assert_eq!(
            slots.check("ambit.dev/cam", bad).unwrap_err().reason(),
            "unknown_device",
            "{bad}"
        );
    }
    assert_eq!(
        slots.check("ambit.dev/none", "cam-0").unwrap_err().reason(),
        "unknown_device"
    );
}

#[test]
fn entries_are_written_for_held_slots_and_adopted_after_a_restart() {
    let mut slots = per_device("a", &[("ns", "cams")]);
    slots.set_offers(offers_of(&[offer("ns", "cam", "cams", 2)]));
    let slot = (key("ns", "cam"), 1);
    slots.hold(&slot, "ambit.dev/cam", Timestamp::UNIX_EPOCH);
    assert_eq!(
        slots.take_dirty().into_iter().collect::<Vec<_>>(),
        [key("ns", "cam")]
    );
    let entries = slots.entries(&key("ns", "cam"));
    assert_eq!(entries, [allocation(1, "a")]);

    // Not shown by the API yet: kept.
    slots.set_offers(offers_of(&[offer("ns", "cam", "cams", 2)]));
    assert!(slots.holds(&slot));

    // A new run reads it back from the API, resource unknown: the device
    // resource is assumed, the set resource reports it unhealthy.
    let mut shown = offer("ns", "cam", "cams", 2);
    shown.allocations = entries;
    let mut restarted = per_device("a", &[("ns", "cams")]);
    restarted.set_offers(offers_of(&[shown.clone()]));
    assert!(restarted.holds(&slot));
    assert_eq!(
        restarted.list("ambit.dev/cam")[1],
        ("cam-1".to_owned(), true)
    );
    assert_eq!(
        restarted.list("ambit.dev/cams")[1],
        ("cam-1".to_owned(), false)
    );

    // Someone removes the recorded entry: it is forgotten.
    restarted.set_offers(offers_of(&[offer("ns", "cam", "cams", 2)]));
    assert!(!restarted.holds(&slot));

    // A set without per-device resources: the slot can only have been
    // taken through the set's resource, which reports it held by itself.
    let mut set_only = Slots::new("a");
    set_only.set_offers(offers_of(&[shown]));
    assert!(set_only.holds(&slot));
    assert_eq!(
        set_only.list("ambit.dev/cams"),
        [("cam-0".to_owned(), true), ("cam-1".to_owned(), true)]
    );
    assert_eq!(
        set_only.check("ambit.dev/cams", "cam-1").unwrap(),
        (slot, true)
    );
}

#[test]
fn pods_name_their_slots_and_slots_of_no_pod_are_reclaimed_after_the_grace() {
    let mut slots = per_device("a", &[("ns", "cams")]);
    slots.set_offers(offers_of(&[offer("ns", "cam", "cams", 2)]));
    let start = Timestamp::UNIX_EPOCH;
    slots.hold(&(key("ns", "cam"), 0), "ambit.dev/cams", start);
    slots.hold(&(key("ns", "cam"), 1), "ambit.dev/cam", start);
    slots.take_dirty();

    let pods = [(
        ("ambit.dev/cams".to_owned(), "cam-0".to_owned()),
        "ns/p".to_owned(),
    )]
    .into();
    let grace = Duration::from_secs(30);
    let observed = slots.observe_pods(&pods, grace, start + Duration::from_secs(5));
    assert!(observed.released.is_empty(), "within the grace");
    assert!(observed.changed, "slot 0 learned its pod");
    assert_eq!(
        slots.entries(&key("ns", "cam"))[0].pod.as_deref(),
        Some("ns/p")
    );
    assert_eq!(slots.take_dirty().len(), 1, "the pod is written");

    let observed = slots.observe_pods(&pods, grace, start + Duration::from_secs(31));
    assert_eq!(observed.released, [(key("ns", "cam"), 1)]);
    assert!(observed.changed);
    assert!(slots.holds(&(key("ns", "cam"), 0)));
    assert_eq!(slots.entries(&key("ns", "cam")).len(), 1);
    assert_eq!(slots.take_dirty().len(), 1, "the release is written");

    // At rest: the same pods again change nothing, so nothing is resent.
    let observed = slots.observe_pods(&pods, grace, start + Duration::from_secs(40));
    assert_eq!(observed, Observed::default());
    assert!(slots.take_dirty().is_empty());
}

#[test]
fn a_released_slot_is_not_adopted_again_from_a_watch_event_that_lags() {
    let mut slots = per_device("a", &[("ns", "cams")]);
    let slot = (key("ns", "cam"), 0);
    slots.set_offers(offers_of(&[offer("ns", "cam", "cams", 1)]));
    slots.hold(&slot, "ambit.dev/cam", Timestamp::UNIX_EPOCH);
    let mut shown = offer("ns", "cam", "cams", 1);
    shown.allocations = slots.entries(&key("ns", "cam"));
    slots.set_offers(offers_of(&[shown.clone()]));
    assert!(slots.holds(&slot));

    // Released (the pod ended); the write is under way, and the watch still
    // shows the entry: it stays released, and the empty entries are written.
    slots.release(&slot);
    slots.take_dirty();
    slots.set_offers(offers_of(&[shown]));
    assert!(!slots.holds(&slot));
    assert!(slots.entries(&key("ns", "cam")).is_empty());
}
