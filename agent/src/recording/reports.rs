//! This node's DeviceReports as a previous run left them: listed once at
//! start, before the recorder writes anything, so an agent restart rewrites
//! none of them (see [`crate::recording::recorder`]).

use ambit_crds::v1alpha1::DeviceReport;
use kube::Client;
use kube::api::ListParams;
use tracing::warn;

use crate::recording::devices::scoped;

/// Every DeviceReport of `node` (in `namespace`, or all), retried with
/// capped backoff for as long as the API server does not answer.
pub async fn list_own(client: Client, namespace: Option<&str>, node: &str) -> Vec<DeviceReport> {
    let api = scoped::<DeviceReport>(client, namespace);
    let params = ListParams::default().fields(&format!("spec.node={node}"));
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match api.list(&params).await {
            Ok(list) => return list.items,
            Err(error) => {
                warn!(%error, retry_in = ?delay, "cannot list this node's DeviceReports yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}
