//! debug-echo through its `DiscoveryHandler` face, as the agent uses it:
//! complete sets at once, new complete sets when the offline file changes,
//! silence when nothing that matters changed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic fails the test"
)]

use std::path::Path;
use std::time::Duration;

use ambit_debug_echo::{DebugEcho, OFFLINE_FILE};
use ambit_discovery::{DeviceStream, DiscoverRequest, DiscoveryError, DiscoveryHandler};
use futures::StreamExt;
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(20);
/// Long enough for several polls to have happened.
const QUIET: Duration = Duration::from_millis(250);

async fn start(handler: &DebugEcho, details: Value) -> DeviceStream {
    handler
        .discover(DiscoverRequest::new(details))
        .await
        .unwrap()
}

async fn next_ids(stream: &mut DeviceStream) -> Vec<String> {
    let set = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a set in time")
        .expect("stream open")
        .unwrap();
    set.into_iter().map(|device| device.id).collect()
}

async fn assert_quiet(stream: &mut DeviceStream) {
    let next = tokio::time::timeout(QUIET, stream.next()).await;
    assert!(next.is_err(), "expected no message, got {next:?}");
}

fn set_offline(dir: &Path, text: &str) {
    // Written elsewhere and renamed into place, as tools do.
    let temp = dir.join(".offline.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(temp, dir.join(OFFLINE_FILE)).unwrap();
}

#[tokio::test]
async fn without_a_state_dir_every_device_is_present_once() {
    let handler = DebugEcho::new();
    let mut stream = start(&handler, json!({"devices": ["a", "b"]})).await;
    assert_eq!(next_ids(&mut stream).await, ["a", "b"]);
    assert_quiet(&mut stream).await;
}

#[tokio::test]
async fn offline_file_changes_produce_new_complete_sets() {
    let dir = tempfile::tempdir().unwrap();
    set_offline(dir.path(), "b\n");
    let handler = DebugEcho::with_state_dir_and_interval(dir.path(), POLL);
    let mut stream = start(&handler, json!({"devices": ["a", "b", "c"]})).await;
    assert_eq!(next_ids(&mut stream).await, ["a", "c"]);

    set_offline(dir.path(), "");
    assert_eq!(next_ids(&mut stream).await, ["a", "b", "c"]);

    set_offline(dir.path(), "a\nc\n");
    assert_eq!(next_ids(&mut stream).await, ["b"]);

    // The same ids again, or ids this DeviceSet does not have: no message.
    set_offline(dir.path(), "c\na\n");
    assert_quiet(&mut stream).await;
    set_offline(dir.path(), "c\na\nsomeone-else\n");
    assert_quiet(&mut stream).await;

    std::fs::remove_file(dir.path().join(OFFLINE_FILE)).unwrap();
    assert_eq!(next_ids(&mut stream).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_device_vanishes_from_one_node_only() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_one = DebugEcho::with_state_dir_and_interval(one.path(), POLL);
    let node_two = DebugEcho::with_state_dir_and_interval(two.path(), POLL);
    let details = json!({"devices": ["cam"], "shared": true});
    let mut on_one = start(&node_one, details.clone()).await;
    let mut on_two = start(&node_two, details).await;
    assert_eq!(next_ids(&mut on_one).await, ["cam"]);
    assert_eq!(next_ids(&mut on_two).await, ["cam"]);

    set_offline(one.path(), "cam\n");
    assert!(next_ids(&mut on_one).await.is_empty());
    assert_quiet(&mut on_two).await;
}

#[tokio::test]
async fn many_streams_share_the_handler_and_thousands_of_devices_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let handler = DebugEcho::with_state_dir_and_interval(dir.path(), POLL);
    let mut big = start(&handler, json!({"count": 5000, "prefix": "d-"})).await;
    let mut small = start(&handler, json!({"devices": ["d-7"]})).await;
    assert_eq!(next_ids(&mut big).await.len(), 5000);
    assert_eq!(next_ids(&mut small).await, ["d-7"]);

    set_offline(dir.path(), "d-7\n");
    let ids = next_ids(&mut big).await;
    assert_eq!(ids.len(), 4999);
    assert!(!ids.iter().any(|id| id == "d-7"));
    assert!(next_ids(&mut small).await.is_empty());
}

#[tokio::test]
async fn invalid_details_fail_before_any_stream() {
    let handler = DebugEcho::new();
    let error = handler
        .discover(DiscoverRequest::new(json!({"devices": [1]})))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error,
        DiscoveryError::InvalidDetails(
            "devices[0]: invalid type: integer `1`, expected a device id or an object with `id` and `properties`"
                .into()
        )
    );
}
