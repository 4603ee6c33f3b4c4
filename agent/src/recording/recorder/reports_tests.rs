//! The ledger's shared devices: one report per set, not a write per Device.

use std::time::{Duration, Instant};

use ambit_crds::v1alpha1::{DeviceReport, DeviceReportSpec};
use ambit_discovery as sdk;
use kube::api::ObjectMeta;

use super::Input;
use super::ledger::{Done, Failure, Ledger, Planned};
use super::ledger_tests::{ledger, set, settle, succeed, upserted, wall};
use super::reports::ShardWrite;
use crate::recording::desired;

fn shared(ids: &[String]) -> Input {
    Input::Discovered {
        key: set(),
        devices: ids
            .iter()
            .map(|id| {
                let mut device = sdk::Device::new(id.clone());
                device.shared = true;
                device
            })
            .collect(),
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The report writes among `planned`.
fn reports(planned: &[Planned]) -> Vec<&Vec<ShardWrite>> {
    planned
        .iter()
        .filter_map(|p| match p {
            Planned::Report { writes, .. } => Some(writes),
            _ => None,
        })
        .collect()
}

fn no_device_writes(planned: &[Planned]) -> bool {
    planned.iter().all(|p| !matches!(p, Planned::Device { .. }))
}

#[test]
fn shared_devices_go_into_one_report_and_no_device_is_written() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(shared(&ids("plc-", 3)), t0, wall(0));
    let planned = l.plan(32, t0, wall(0));
    assert!(no_device_writes(&planned), "{planned:?}");
    let writes = reports(&planned);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].len(), 1, "one shard");
    let devices = writes[0][0].devices.as_ref().expect("applied, not deleted");
    let got: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(got, ["plc-0", "plc-1", "plc-2"]);
    succeed(&mut l, planned, t0);
    assert_eq!(settle(&mut l, t0, wall(0)), 0);
    l.handle(shared(&ids("plc-", 3)), t0, wall(1));
    assert_eq!(settle(&mut l, t0, wall(1)), 0, "at rest: nothing");
}

#[test]
fn a_restart_that_discovery_confirms_writes_no_report() {
    let t0 = Instant::now();
    let mut first = ledger(&[], t0);
    first.handle(upserted(), t0, wall(0));
    first.handle(shared(&ids("plc-", 2)), t0, wall(0));
    let planned = first.plan(32, t0, wall(0));
    let devices = reports(&planned)[0][0].devices.clone().unwrap_or_default();
    let report = DeviceReport {
        metadata: ObjectMeta {
            name: Some("cams-r0-0".into()),
            namespace: Some(set().namespace),
            ..ObjectMeta::default()
        },
        spec: DeviceReportSpec {
            device_set: set().name,
            node: "edge-1".into(),
            shard: 0,
            devices,
        },
    };
    let t1 = t0 + Duration::from_secs(60);
    let mut again = Ledger::adopt("edge-1", &[], &[report], t1, fastrand::Rng::with_seed(1));
    assert_eq!(again.recorded(), 2);
    again.handle(upserted(), t1, wall(60));
    again.handle(shared(&ids("plc-", 2)), t1, wall(60));
    let planned = again.plan(32, t1, wall(60));
    assert!(reports(&planned).is_empty(), "{planned:?}");
}

#[test]
fn a_vanished_shared_device_stays_for_its_grace_then_its_empty_shard_goes() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(shared(&ids("plc-", 1)), t0, wall(0));
    settle(&mut l, t0, wall(0));
    l.handle(shared(&[]), t0, wall(1));
    let planned = l.plan(32, t0, wall(1));
    assert!(
        reports(&planned).is_empty(),
        "within its grace: {planned:?}"
    );
    succeed(&mut l, planned, t0);
    let later = t0 + Duration::from_secs(6);
    l.expire(later);
    let planned = l.plan(32, later, wall(6));
    let writes = reports(&planned);
    assert_eq!(
        writes,
        [&vec![ShardWrite {
            shard: 0,
            devices: None
        }]],
        "an empty report is deleted"
    );
}

#[test]
fn a_report_grows_into_shards_without_leaving_a_device_out() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(shared(&ids("d", 900)), t0, wall(0));
    settle(&mut l, t0, wall(0));
    l.handle(shared(&ids("d", 1500)), t0, wall(1));
    let planned = l.plan(32, t0, wall(1));
    let writes = reports(&planned);
    let order: Vec<u32> = writes[0].iter().map(|w| w.shard).collect();
    assert_eq!(order, [1, 0], "the new shard first, then the rewritten one");
    // What the controller would read after each write: never fewer
    // devices than before the resharding started.
    let mut shard0: Vec<String> = ids("d", 900);
    let mut shard1: Vec<String> = vec![];
    for write in writes[0] {
        let now: Vec<String> = write
            .devices
            .iter()
            .flatten()
            .map(|d| d.id.clone())
            .collect();
        if write.shard == 0 {
            shard0 = now;
        } else {
            shard1 = now;
        }
        let union: std::collections::BTreeSet<&String> = shard0.iter().chain(&shard1).collect();
        assert!(union.len() >= 900, "{} devices seen", union.len());
    }
    let total: usize = writes[0]
        .iter()
        .map(|w| w.devices.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(total, 1500);
    for write in writes[0] {
        for device in write.devices.iter().flatten() {
            assert_eq!(desired::shard_of(&device.id, 2), write.shard);
        }
    }
}

#[test]
fn a_failed_shard_write_keeps_what_was_written_and_retries_the_rest() {
    let t0 = Instant::now();
    let mut l = ledger(&[], t0);
    l.handle(upserted(), t0, wall(0));
    l.handle(shared(&ids("d", 1500)), t0, wall(0));
    let planned = l.plan(32, t0, wall(0));
    let Some(Planned::Report { key, writes, .. }) = planned
        .into_iter()
        .find(|p| matches!(p, Planned::Report { .. }))
    else {
        panic!("no report planned");
    };
    assert_eq!(writes.len(), 2);
    let first = writes[0].clone();
    l.complete(
        Done::Report {
            key,
            done: vec![first.clone()],
            result: Err(Failure {
                category: "write_report",
                message: "connection refused".into(),
            }),
        },
        t0,
    );
    let later = t0 + Duration::from_secs(1);
    let planned = l.plan(32, later, wall(1));
    let writes = reports(&planned);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].len(), 1, "only the shard not written yet");
    assert_ne!(writes[0][0].shard, first.shard);
    assert!(l.plan(32, later, wall(1)).is_empty());
}
