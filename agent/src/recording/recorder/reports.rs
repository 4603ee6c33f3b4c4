//! The ledger's shared devices: this node's DeviceReport of each set.
//!
//! A shared device is not written into its Device by the agent (every
//! node would write every shared Device); it goes into this node's report
//! of its set, which the controller folds into the Devices. What is
//! desired is the report's shards, each a sorted list of devices; what was
//! applied is what the API holds. A set's report is one write key: its
//! changed shards are written in one go, in an order that never leaves a
//! device out of every shard while a report is resharded (new shards
//! first, then rewritten ones, deleted ones last), because the controller
//! reads the union of a node's shards.

use std::collections::BTreeMap;

use ambit_crds::v1alpha1::{DeviceReport, ReportedDevice};

use super::ledger::{Key, Ledger};
use crate::recording::desired;
use crate::recording::tracker::SetKey;

/// One shard of a report to write: its devices, or `None` to delete it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardWrite {
    /// The shard.
    pub shard: u32,
    /// Its devices; `None` deletes it (it would be empty).
    pub devices: Option<Vec<ReportedDevice>>,
}

impl Ledger {
    /// Takes over the reports a previous run wrote: what they say counts as
    /// applied, and their devices are tracked as seen until discovery
    /// confirms them or their grace period ends.
    pub(super) fn adopt_reports(&mut self, reports: &[DeviceReport], now: std::time::Instant) {
        for report in reports.iter().filter(|r| r.spec.node == self.node) {
            let Some(namespace) = &report.metadata.namespace else {
                continue;
            };
            let set = SetKey {
                namespace: namespace.clone(),
                name: report.spec.device_set.clone(),
            };
            for device in &report.spec.devices {
                let seen = desired::device_from_report(device);
                self.tracker.adopt(&set, seen, device.since.0, now);
            }
            let shard = u32::try_from(report.spec.shard).unwrap_or(0);
            let mut devices = report.spec.devices.clone();
            devices.sort_by(|a, b| a.id.cmp(&b.id));
            self.applied_reports
                .entry(set)
                .or_default()
                .insert(shard, devices);
        }
    }

    /// Recomputes `set`'s report from the shared devices tracked, marking
    /// it dirty when it changed.
    pub(super) fn refresh_report(&mut self, set: &SetKey) {
        let Some(info) = self.sets.get(set) else {
            return;
        };
        let node = &self.node;
        let mut devices: Vec<ReportedDevice> = self
            .tracker
            .devices(set)
            .filter(|seen| seen.device.shared)
            .map(|seen| {
                let spec = desired::device_spec(set, info, &seen.device, node);
                desired::reported(&spec, seen.since)
            })
            .collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        let current = self.reports.get(set).map_or_else(
            || self.applied_reports.get(set).map_or(1, |a| a.len()),
            Vec::len,
        );
        let shards = desired::shards(u32::try_from(current).unwrap_or(1), devices.len());
        let mut wanted: Vec<Vec<ReportedDevice>> = (0..shards).map(|_| Vec::new()).collect();
        for device in devices {
            let shard = desired::shard_of(&device.id, shards) as usize;
            if let Some(bucket) = wanted.get_mut(shard) {
                bucket.push(device);
            }
        }
        if self.reports.get(set) != Some(&wanted) {
            self.reports.insert(set.clone(), wanted);
            self.dirty.insert(Key::Report(set.clone()));
        }
    }

    /// The shard writes that make `set`'s report as desired, in a safe
    /// order; empty when it already is.
    pub(super) fn plan_report(&self, set: &SetKey) -> Vec<ShardWrite> {
        let empty = BTreeMap::new();
        let applied = self.applied_reports.get(set).unwrap_or(&empty);
        let wanted = self.reports.get(set).map_or(&[][..], Vec::as_slice);
        let mut created = vec![];
        let mut rewritten = vec![];
        for (shard, devices) in (0u32..).zip(wanted) {
            match applied.get(&shard) {
                Some(now) if now == devices => {}
                _ if devices.is_empty() => {}
                Some(_) => rewritten.push(ShardWrite {
                    shard,
                    devices: Some(devices.clone()),
                }),
                None => created.push(ShardWrite {
                    shard,
                    devices: Some(devices.clone()),
                }),
            }
        }
        let deleted = applied
            .keys()
            .filter(|shard| {
                wanted
                    .get(**shard as usize)
                    .is_none_or(|devices| devices.is_empty())
            })
            .map(|&shard| ShardWrite {
                shard,
                devices: None,
            });
        created
            .into_iter()
            .chain(rewritten)
            .chain(deleted)
            .collect()
    }

    /// Takes in the shard writes that were made.
    pub(super) fn report_written(&mut self, set: &SetKey, done: Vec<ShardWrite>) {
        if !self.sets.contains_key(set) {
            return;
        }
        let applied = self.applied_reports.entry(set.clone()).or_default();
        for write in done {
            match write.devices {
                Some(devices) => applied.insert(write.shard, devices),
                None => applied.remove(&write.shard),
            };
        }
    }
}
