//! Waiting for the API to show a state, by watching (never by sleeping).

use std::fmt::Debug;
use std::time::Duration;

use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Waits until the object `name` of `api` satisfies `condition`, for at most
/// `timeout`, and returns it. Fails with `what` in the message otherwise.
pub async fn until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => anyhow::bail!("{name} was deleted while waiting for {what}"),
        Ok(Err(error)) => anyhow::bail!("watch failed while waiting for {what}: {error}"),
        Err(_) => anyhow::bail!("timed out after {timeout:?} waiting for {what} ({name})"),
    }
}

/// Waits until the object `name` of `api` is gone.
pub async fn deleted<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let gone = await_condition(api.clone(), name, |obj: Option<&K>| obj.is_none());
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => anyhow::bail!("watch failed while waiting for {name} to go: {error}"),
        Err(_) => anyhow::bail!("timed out after {timeout:?} waiting for {name} to be deleted"),
    }
}
