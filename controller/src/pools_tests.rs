use serde_json::json;

use super::*;

const SET: SetRef<'static> = SetRef {
    namespace: "plant",
    name: "plcs",
    uid: "set-uid",
};

fn spec(id: &str, shared: bool) -> DeviceSpec {
    serde_json::from_value(json!({
        "deviceSet": "plcs", "id": id, "shared": shared, "capacity": 1,
    }))
    .unwrap_or_else(|e| panic!("a DeviceSpec: {e}"))
}

fn nodes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// `count` shared devices, `plcs-0` ..., and their specs.
fn specs(count: usize) -> Vec<(String, DeviceSpec)> {
    (0..count)
        .map(|i| (format!("plcs-{i}"), spec(&format!("plc-{i}"), true)))
        .collect()
}

fn members<'a>(specs: &'a [(String, DeviceSpec)], seen: &[&str]) -> Vec<Member<'a>> {
    specs
        .iter()
        .map(|(name, spec)| Member {
            name,
            spec,
            hostnames: nodes(seen),
        })
        .collect()
}

fn never(_: &str) -> i64 {
    0
}

fn pools(slices: &[ResourceSlice]) -> BTreeSet<&str> {
    slices.iter().map(|s| s.spec.pool.name.as_str()).collect()
}

fn names(slices: &[ResourceSlice]) -> Vec<String> {
    slices.iter().map(ResourceExt::name_any).collect()
}

#[test]
fn devices_the_same_nodes_see_are_one_pool_that_rests_when_it_says_it() {
    let specs = specs(1_300);
    let seen = members(&specs, &["edge-1", "edge-2", "edge-3"]);
    let first = plan(SET, &seen, &[], never).unwrap_or_default();
    assert_eq!(pools(&first.apply).len(), 1, "one pool");
    assert_eq!(first.apply.len(), 11, "1,300 devices, 128 a slice");
    assert!(first.retire.is_empty() && first.delete.is_empty());
    assert!(first.apply.iter().all(|s| {
        s.spec.pool.generation == 1
            && s.spec.pool.resource_slice_count == 11
            && s.labels().get(SET_UID_LABEL).map(String::as_str) == Some("set-uid")
    }));
    let selector = first.apply[0]
        .spec
        .node_selector
        .clone()
        .unwrap_or_default();
    let values = selector.node_selector_terms[0]
        .match_expressions
        .clone()
        .unwrap_or_default()[0]
        .values
        .clone();
    assert_eq!(values, Some(nodes(&["edge-1", "edge-2", "edge-3"])));
    let cached: Vec<&ResourceSlice> = first.apply.iter().collect();
    assert_eq!(
        plan(SET, &seen, &cached, never),
        None,
        "eleven slices, in index order"
    );
}

#[test]
fn a_device_whose_nodes_change_leaves_its_pool_before_it_joins_another() {
    let specs = specs(3);
    let both = members(&specs, &["edge-1", "edge-2"]);
    let first = plan(SET, &both, &[], never).unwrap_or_default();
    let cached: Vec<&ResourceSlice> = first.apply.iter().collect();

    // edge-2 stops seeing plcs-0: it moves to the pool of edge-1 alone.
    let mut moved = both.clone();
    moved[0].hostnames = nodes(&["edge-1"]);
    let next = plan(SET, &moved, &cached, never).unwrap_or_default();
    assert!(next.retire.is_empty() && next.delete.is_empty());
    assert_eq!(
        next.apply.len(),
        2,
        "the pool it left, then the one it joined"
    );
    let (left, joined) = (&next.apply[0], &next.apply[1]);
    assert_eq!(left.spec.pool.name, first.apply[0].spec.pool.name);
    assert_eq!(left.spec.pool.generation, 2);
    assert_eq!(left.spec.devices.as_ref().map(Vec::len), Some(2));
    assert_eq!(joined.spec.pool.generation, 1, "a new pool");
    let device = |s: &ResourceSlice| s.spec.devices.clone().unwrap_or_default();
    assert!(
        device(&first.apply[0])
            .iter()
            .any(|d| d.name == device(joined)[0].name),
        "the same DRA device name in its new pool"
    );

    // edge-2 sees nothing any more: its pool goes first.
    let cached: Vec<&ResourceSlice> = next.apply.iter().collect();
    let alone = members(&specs, &["edge-1"]);
    let last = plan(SET, &alone, &cached, never).unwrap_or_default();
    assert_eq!(last.retire, names(&next.apply[..1]));
    assert_eq!(last.apply.len(), 1);
    assert_eq!(last.apply[0].spec.devices.as_ref().map(Vec::len), Some(3));
}

#[test]
fn a_pool_that_shrinks_deletes_its_last_slices_and_its_generation_grows() {
    let specs = specs(300);
    let first = plan(SET, &members(&specs, &["edge-1"]), &[], never).unwrap_or_default();
    assert_eq!(first.apply.len(), 3);
    let cached: Vec<&ResourceSlice> = first.apply.iter().collect();
    let fewer = plan(SET, &members(&specs[..100], &["edge-1"]), &cached, never).unwrap_or_default();
    assert_eq!(fewer.apply.len(), 1);
    assert_eq!(fewer.delete, names(&first.apply[1..]));
    // A write the cache does not show yet counts for the generation.
    let remembered =
        plan(SET, &members(&specs[..100], &["edge-1"]), &cached, |_| 7).unwrap_or_default();
    assert_eq!(remembered.apply[0].spec.pool.generation, 8);
    assert_eq!(
        fewer.generations().values().copied().collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn devices_no_node_sees_and_local_devices_are_in_no_pool() {
    let local = [("plcs-l".to_owned(), spec("l", false))];
    assert_eq!(plan(SET, &members(&local, &["edge-1"]), &[], never), None);
    let unseen = specs(2);
    assert_eq!(plan(SET, &members(&unseen, &[]), &[], never), None);
}

#[test]
fn only_slices_of_sets_that_went_and_of_single_device_pools_are_orphans() {
    let specs = specs(1);
    let slices = plan(SET, &members(&specs, &["edge-1"]), &[], never)
        .unwrap_or_default()
        .apply;
    let live = BTreeSet::from(["set-uid".to_owned()]);
    assert!(orphans(&slices, &live).is_empty());
    assert_eq!(orphans(&slices, &BTreeSet::new()), names(&slices));
    // An earlier build's slice of one Device goes, whatever its Device.
    let mut old = slices[0].clone();
    old.labels_mut().remove(SET_UID_LABEL);
    old.labels_mut()
        .insert(DEVICE_UID_LABEL.into(), "device-uid".into());
    assert_eq!(orphans([&old], &live), names(std::slice::from_ref(&old)));
    // A slice without either label is not the controller's to delete.
    let mut foreign = slices[0].clone();
    foreign.labels_mut().remove(SET_UID_LABEL);
    assert!(orphans([&foreign], &BTreeSet::new()).is_empty());
}
