use serde::Deserialize;
use serde_json::json;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Details {
    #[allow(dead_code)]
    devices: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    #[allow(dead_code)]
    id: String,
}

#[test]
fn details_errors_name_the_field() {
    let request = DiscoverRequest::new(json!({"devices": [{"id": "a"}, {"id": 3}]}));
    let error = request.details_as::<Details>().unwrap_err();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails(
            "devices[1].id: invalid type: integer `3`, expected a string".into()
        )
    );
    let request = DiscoverRequest::new(json!({"devics": []}));
    let error = request.details_as::<Details>().unwrap_err();
    assert!(
        error.message().contains("unknown field `devics`"),
        "{error}"
    );
}

#[test]
fn wire_details_must_be_a_json_object() {
    let wire = |details: &str| v1::DiscoverRequest {
        details: details.into(),
        ..Default::default()
    };
    let empty = DiscoverRequest::try_from(wire("")).unwrap();
    assert_eq!(empty.details, json!({}));
    let error = DiscoverRequest::try_from(wire("[1]")).unwrap_err();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails("details must be a JSON object, not an array".into())
    );
    let error = DiscoverRequest::try_from(wire("{")).unwrap_err();
    assert!(
        error.message().starts_with("details are not valid JSON"),
        "{error}"
    );
}

#[test]
fn debug_hides_property_values() {
    let mut request = DiscoverRequest::new(json!({}));
    request
        .properties
        .insert("password".into(), "hunter2".into());
    let shown = format!("{request:?}");
    assert!(
        shown.contains("password") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn devices_round_trip_through_the_wire_types() {
    let device = Device {
        id: "usb-1".into(),
        shared: true,
        properties: [("A".to_owned(), "1".to_owned())].into(),
        device_nodes: vec![DeviceNode {
            host_path: "/dev/ttyUSB0".into(),
            ..Default::default()
        }],
        mounts: vec![Mount {
            host_path: "/a".into(),
            container_path: "/b".into(),
            read_only: true,
        }],
    };
    let wire = v1::Device::from(device.clone());
    assert_eq!(Device::from(wire), device);
}

#[test]
fn device_sets_need_unique_non_empty_ids() {
    assert_eq!(
        check_device_set(&[Device::new("a"), Device::new("b")]),
        Ok(())
    );
    let error = check_device_set(&[Device::new("a"), Device::new("a")]).unwrap_err();
    assert_eq!(error.category(), "protocol");
    assert!(check_device_set(&[Device::new("")]).is_err());
}
