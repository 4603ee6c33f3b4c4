//! What the recorder is told, by the supervisor, the discovery tasks and
//! the Device watch.

use std::time::Duration;

use ambit_crds::v1alpha1::DeviceSetNodeStatus;
use ambit_discovery::{self as sdk, DiscoveryError};

use crate::recording::desired::SetInfo;
use crate::recording::tracker::SetKey;

/// What the recorder is told.
#[derive(Debug)]
pub enum Input {
    /// A DeviceSet this node discovers for exists (or changed).
    SetUpserted {
        /// The set.
        key: SetKey,
        /// What Devices are written from.
        info: SetInfo,
        /// The set's grace period, if it gives one.
        grace: Option<Duration>,
        /// This node's entry in the set's status, as a previous run left it.
        entry: Option<DeviceSetNodeStatus>,
    },
    /// A DeviceSet was deleted or is not this node's business any more.
    SetRemoved {
        /// The set.
        key: SetKey,
    },
    /// A handler reported a complete set.
    Discovered {
        /// The set.
        key: SetKey,
        /// Every device the handler sees now.
        devices: Vec<sdk::Device>,
    },
    /// Discovery failed (and will be retried, or waits for a change).
    Failed {
        /// The set.
        key: SetKey,
        /// Why.
        error: DiscoveryError,
    },
    /// The set's handler is not available on this node.
    HandlerUnavailable {
        /// The set.
        key: SetKey,
    },
    /// A Device exists with a spec of this hash (from the metadata watch).
    DeviceSpec {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The hash of its spec (`ambit.dev/spec-hash`).
        hash: String,
    },
    /// A Device was deleted (by the controller, GC, or a person).
    DeviceDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}
