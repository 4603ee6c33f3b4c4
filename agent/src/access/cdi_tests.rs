//! Tests of the CDI spec writer.

use ambit_crds::v1alpha1::{Allocation, DeviceNode, DeviceSpec, Mount};
use serde_json::json;

use super::*;
use crate::access::offers::offers_of;

fn offer(namespace: &str, name: &str) -> Offer {
    Offer {
        namespace: namespace.into(),
        name: name.into(),
        uid: "u".into(),
        spec: DeviceSpec {
            device_set: "cams".into(),
            id: "/dev/video0".into(),
            shared: false,
            node: Some("edge-1".into()),
            capacity: 1,
            properties: [("ROOM".to_owned(), "lab".to_owned())].into(),
            device_nodes: vec![DeviceNode {
                host_path: "/dev/video0".into(),
                container_path: Some("/dev/cam".into()),
                permissions: None,
            }],
            mounts: vec![Mount {
                host_path: "/sys/cam".into(),
                container_path: "/cam".into(),
                read_only: true,
            }],
        },
        nodes: vec!["edge-1".into()],
        allocations: vec![],
    }
}

#[test]
fn a_spec_carries_env_device_nodes_and_mounts() {
    let spec = spec(&offer("ns", "cams-1"), "edge-1").unwrap();
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        json!({
            "cdiVersion": "0.5.0",
            "kind": "ambit.dev/device",
            "devices": [{
                "name": "cams-1",
                "containerEdits": {
                    "env": ["ROOM=lab", "AMBIT_DEVICE=cams-1", "AMBIT_DEVICE_SET=cams",
                            "AMBIT_DEVICE_ID=/dev/video0", "AMBIT_NODE_NAME=edge-1"],
                    "deviceNodes": [{ "path": "/dev/cam", "hostPath": "/dev/video0", "permissions": "rw" }],
                    "mounts": [{ "hostPath": "/sys/cam", "containerPath": "/cam", "options": ["bind", "ro"] }],
                }
            }]
        })
    );
}

#[test]
fn names_and_paths_follow_the_cdi_rules() {
    assert!(valid_device_name("cams-0123abcd"));
    assert!(valid_device_name("a"));
    for bad in ["", "-a", "a-", "a/b", "a b", "é"] {
        assert!(!valid_device_name(bad), "{bad:?}");
    }
    let mut relative = offer("ns", "cams-1");
    relative.spec.device_nodes[0].host_path = "dev/video0".into();
    assert_eq!(
        spec(&relative, "n"),
        Err(Invalid::Path {
            what: "device node",
            path: "dev/video0".into()
        })
    );
}

#[test]
fn the_directory_holds_exactly_the_offered_devices() {
    let dir = tempfile::tempdir().unwrap();
    // A file of a previous run, and somebody else's file.
    std::fs::write(dir.path().join("ambit.dev-device_gone.json"), "{}").unwrap();
    std::fs::write(dir.path().join("vendor.json"), "{}").unwrap();
    let mut specs = SpecDir::new(dir.path().to_owned(), "edge-1".into());

    let written = specs.sync(&offers_of(&[
        offer("a", "cams-1"),
        offer("b", "cams-1"),
        offer("a", "cams-2"),
    ]));
    assert_eq!(
        written.values().cloned().collect::<Vec<_>>(),
        ["ambit.dev/device=cams-1", "ambit.dev/device=cams-2"],
        "the second cams-1 (namespace b) gets no spec"
    );
    assert!(written.contains_key(&("a".to_owned(), "cams-1".to_owned())));
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ambit.dev-device_cams-1.json",
            "ambit.dev-device_cams-2.json",
            "vendor.json"
        ]
    );
    let text = std::fs::read_to_string(dir.path().join("ambit.dev-device_cams-1.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["kind"], "ambit.dev/device");

    // cams-1 of namespace a goes: namespace b's device takes the name.
    let written = specs.sync(&offers_of(&[offer("b", "cams-1")]));
    assert!(written.contains_key(&("b".to_owned(), "cams-1".to_owned())));
    assert!(!dir.path().join("ambit.dev-device_cams-2.json").exists());

    let written = specs.sync(&offers_of(&[]));
    assert!(written.is_empty());
    assert!(!dir.path().join("ambit.dev-device_cams-1.json").exists());
    assert!(dir.path().join("vendor.json").exists());
}

#[test]
fn a_sync_touches_only_the_devices_that_changed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut specs = SpecDir::new(dir.path().to_owned(), "edge-1".into());
    let (one, two) = (offer("a", "cams-1"), offer("a", "cams-2"));
    specs.sync(&offers_of(&[one.clone(), two.clone()]));
    let file = |name: &str| dir.path().join(format!("ambit.dev-device_{name}.json"));
    let inode = |name: &str| std::fs::metadata(file(name)).unwrap().ino();
    let (first_one, first_two) = (inode("cams-1"), inode("cams-2"));

    // A slot taken elsewhere changes the offer, not the spec: no write
    // (a rename would give the file a new inode).
    let mut taken = one.clone();
    taken.allocations.push(Allocation {
        slot: 0,
        node: "edge-2".into(),
        pod: None,
        since: None,
    });
    // Only the first sync sweeps the directory: a file that appears
    // later is left alone.
    std::fs::write(dir.path().join("ambit.dev-device_other.json"), "{}").unwrap();
    specs.sync(&offers_of(&[taken.clone(), two.clone()]));
    assert_eq!(inode("cams-1"), first_one);
    assert_eq!(inode("cams-2"), first_two);

    // A changed spec is written again; the other file stays as it was.
    let mut moved = two.clone();
    moved.spec.properties.insert("ROOM".into(), "hall".into());
    specs.sync(&offers_of(&[taken.clone(), moved]));
    assert_ne!(inode("cams-2"), first_two);
    assert!(
        std::fs::read_to_string(file("cams-2"))
            .unwrap()
            .contains("ROOM=hall")
    );
    assert_eq!(inode("cams-1"), first_one);

    // A device that leaves takes only its own file with it.
    let written = specs.sync(&offers_of(&[taken]));
    assert_eq!(written.len(), 1);
    assert!(!file("cams-2").exists());
    assert!(file("other").exists());
}
