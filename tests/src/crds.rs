//! Installing Ambit's CRDs, the way a user would (server-side apply).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::conditions;
use kube::{Api, Client};

/// Applies every Ambit CRD and waits until each is Established. Idempotent.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("ambit-tests").force();
    for crd in ambit_crds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        crate::wait::until(
            &api,
            &name,
            Duration::from_secs(30),
            "the CRD to be Established",
            conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}
