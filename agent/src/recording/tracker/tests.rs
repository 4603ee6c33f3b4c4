use super::*;
// The tests wait out the defaults by name.
use ambit_crds::contract::{DEFAULT_LOCAL_GRACE, DEFAULT_SHARED_GRACE};

fn key() -> SetKey {
    SetKey {
        namespace: "plant".into(),
        name: "cams".into(),
    }
}

fn dev(id: &str) -> Device {
    Device::new(id)
}

fn ids(t: &Tracker) -> Vec<String> {
    t.devices(&key()).map(|s| s.device.id.clone()).collect()
}

const T0: Timestamp = Timestamp::UNIX_EPOCH;

#[test]
fn a_vanished_device_stays_for_its_grace_period() {
    let mut t = Tracker::default();
    let start = Instant::now();
    t.set_grace(&key(), Some(Duration::from_secs(5)));
    assert!(t.observe(&key(), vec![dev("a"), dev("b")], start, T0));
    assert!(
        !t.observe(&key(), vec![dev("a"), dev("b")], start, T0),
        "the same set is no change"
    );

    t.observe(&key(), vec![dev("a")], start + Duration::from_secs(1), T0);
    assert_eq!(ids(&t), ["a", "b"], "b is missing but within grace");
    assert_eq!(t.present(&key()), 1);
    assert_eq!(t.next_expiry(), Some(start + Duration::from_secs(6)));

    assert!(t.expire(start + Duration::from_secs(5)).is_empty());
    assert_eq!(t.expire(start + Duration::from_secs(6)), vec![key()]);
    assert_eq!(ids(&t), ["a"]);
    assert_eq!(t.next_expiry(), None);
}

#[test]
fn a_device_that_comes_back_within_grace_keeps_its_since() {
    let mut t = Tracker::default();
    let start = Instant::now();
    let first = Timestamp::from_second(100).unwrap();
    t.observe(&key(), vec![dev("a")], start, first);
    t.observe(
        &key(),
        vec![],
        start + Duration::from_secs(1),
        Timestamp::from_second(101).unwrap(),
    );
    t.observe(
        &key(),
        vec![dev("a")],
        start + Duration::from_secs(2),
        Timestamp::from_second(102).unwrap(),
    );
    let seen: Vec<_> = t.devices(&key()).collect();
    assert_eq!(seen[0].since, first);
    assert_eq!(seen[0].presence, Presence::Present);
    assert!(
        t.expire(start + Duration::from_secs(3600)).is_empty(),
        "present devices never expire"
    );
}

#[test]
fn default_grace_depends_on_shared() {
    let mut t = Tracker::default();
    let start = Instant::now();
    let mut shared = dev("net");
    shared.shared = true;
    t.observe(&key(), vec![dev("usb"), shared], start, T0);
    t.interrupt(&key(), start);
    t.expire(start + DEFAULT_LOCAL_GRACE);
    assert_eq!(
        ids(&t),
        ["net"],
        "the local device went after 10 s, the network one stays"
    );
    t.expire(start + DEFAULT_SHARED_GRACE);
    assert!(ids(&t).is_empty());
}

#[test]
fn adopted_devices_survive_a_restart_when_rediscovered() {
    let mut t = Tracker::default();
    let start = Instant::now();
    let since = Timestamp::from_second(42).unwrap();
    t.set_grace(&key(), Some(Duration::from_secs(5)));
    t.adopt(&key(), dev("a"), since, start);
    t.adopt(&key(), dev("b"), since, start);
    // Discovery resumes and reports only a.
    assert!(!t.observe(&key(), vec![dev("a")], start + Duration::from_secs(1), T0));
    assert_eq!(
        t.devices(&key()).next().map(|s| s.since),
        Some(since),
        "since is kept"
    );
    assert_eq!(t.expire(start + Duration::from_secs(5)), vec![key()]);
    assert_eq!(ids(&t), ["a"]);
}

#[test]
fn changed_properties_are_a_change() {
    let mut t = Tracker::default();
    let now = Instant::now();
    t.observe(&key(), vec![dev("a")], now, T0);
    let mut moved = dev("a");
    moved
        .properties
        .insert("DEVNODE".into(), "/dev/video2".into());
    assert!(t.observe(&key(), vec![moved.clone()], now, T0));
    assert_eq!(t.devices(&key()).next().map(|s| &s.device), Some(&moved));
}
