//! Discovery: which DeviceSets this node serves, and what their handlers
//! find.
//!
//! ```text
//!  enters: DeviceSets (watch), handlers (embedded, and external ones registering on the socket),
//!          the Secrets and ConfigMaps a set's properties name
//!  DeviceSet watch ──► supervisor ──► one discovery task per set ──► handler.discover(details, properties)
//!  registration socket ──► handlers map ──┘ (a new or re-registered handler restarts its sets' tasks)
//!  leaves: recorder inputs — SetUpserted / SetRemoved / HandlerUnavailable (supervisor),
//!          Discovered / Failed (discovery tasks)
//! ```
//!
//! Nothing here writes to the API: everything found goes to the recorder.

pub mod handlers;
pub mod properties;
mod restarts;
pub mod supervisor;
pub mod task;
