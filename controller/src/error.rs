//! The controller's errors: each names the action that failed; its
//! category labels metrics and Events.

use std::time::Duration;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Removing a gone node's entry from a Device failed.
    #[error("failed to remove node {node}'s entry from Device {device}: {source}")]
    RemoveEntry {
        /// The Device.
        device: String,
        /// The node.
        node: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying a shared Device's metadata and spec failed.
    #[error("failed to apply shared Device {device}: {source}")]
    ApplyDevice {
        /// The Device.
        device: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying a shared Device's node entries failed.
    #[error("failed to apply the node entries of shared Device {device}: {source}")]
    DeviceNodes {
        /// The Device.
        device: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing a Device's conditions failed.
    #[error("failed to update the status of Device {device}: {source}")]
    DeviceStatus {
        /// The Device.
        device: String,
        /// The API error.
        source: kube::Error,
    },
    /// Deleting a Device no node sees failed.
    #[error("failed to delete Device {device}: {source}")]
    DeleteDevice {
        /// The Device.
        device: String,
        /// The API error.
        source: kube::Error,
    },
    /// Creating a broker pod failed.
    #[error("failed to create broker pod {pod}: {source}")]
    CreatePod {
        /// The pod.
        pod: String,
        /// The API error.
        source: kube::Error,
    },
    /// Deleting a broker pod failed.
    #[error("failed to delete broker pod {pod}: {source}")]
    DeletePod {
        /// The pod.
        pod: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying a shared device's ResourceSlice failed.
    #[error("failed to apply ResourceSlice {slice}: {source}")]
    ApplySlice {
        /// The slice.
        slice: String,
        /// The API error.
        source: kube::Error,
    },
    /// Deleting a ResourceSlice failed.
    #[error("failed to delete ResourceSlice {slice}: {source}")]
    DeleteSlice {
        /// The slice.
        slice: String,
        /// The API error.
        source: kube::Error,
    },
    /// Creating a DRA broker's ResourceClaimTemplate failed.
    #[error("failed to create ResourceClaimTemplate {template}: {source}")]
    CreateClaimTemplate {
        /// The template.
        template: String,
        /// The API error.
        source: kube::Error,
    },
    /// Creating or replacing a broker Job failed.
    #[error("failed to apply broker Job {job}: {source}")]
    ApplyJob {
        /// The Job.
        job: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying or deleting a Service failed.
    #[error("failed to apply Service {service}: {source}")]
    ApplyService {
        /// The Service.
        service: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing a DeviceSet's status failed.
    #[error("failed to update the status of DeviceSet {set}: {source}")]
    SetStatus {
        /// The DeviceSet.
        set: String,
        /// The API error.
        source: kube::Error,
    },
}

impl Error {
    /// A fixed label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::RemoveEntry { .. } => "remove_entry",
            Self::ApplyDevice { .. } => "apply_device",
            Self::DeviceNodes { .. } => "device_nodes",
            Self::DeviceStatus { .. } => "device_status",
            Self::DeleteDevice { .. } => "delete_device",
            Self::CreatePod { .. } => "create_pod",
            Self::DeletePod { .. } => "delete_pod",
            Self::ApplyJob { .. } => "apply_job",
            Self::ApplySlice { .. } => "apply_slice",
            Self::DeleteSlice { .. } => "delete_slice",
            Self::CreateClaimTemplate { .. } => "create_claim_template",
            Self::ApplyService { .. } => "apply_service",
            Self::SetStatus { .. } => "set_status",
        }
    }
}

/// Capped exponential backoff with jitter for the `attempt`th failure in a
/// row of one object: 1 s, 2 s, 4 s, … up to 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << attempt.saturating_sub(1).min(9));
    base.min(Duration::from_secs(300))
        .mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(super::backoff(1).as_secs_f64() <= 1.2);
        assert!(super::backoff(4).as_secs_f64() >= 6.4);
        assert!(super::backoff(100).as_secs_f64() <= 360.0);
    }
}
