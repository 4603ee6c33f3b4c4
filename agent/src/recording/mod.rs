//! Recording: what discovery found, made into Device objects and DeviceSet
//! node entries, calmly.
//!
//! ```text
//!  enters: recorder inputs from discovery; the one Device watch (first listing, spec hashes, deletions)
//!  devices (watch) ──first listing──┐
//!  reports (one list at start) ─────┴► recorder adopts what a previous run wrote
//!  discovery ──► recorder: ledger (tracker: grace periods; desired: the objects) ──► writes ──► API
//!                                    └── notes ──► events (Events), metrics
//!  leaves: local Devices' specs and this node's entries in them, this node's DeviceReports (its
//!          shared devices, folded into Devices by the controller), DeviceSet node entries, Events
//!          (server-side apply as `ambit-agent/<node>`); the Device watch's offers, to pod access
//! ```

pub mod desired;
pub mod devices;
pub mod events;
pub mod recorder;
pub mod reports;
pub mod tracker;
pub mod writes;
