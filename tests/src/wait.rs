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
    // Boxed: a watch over large objects makes a large future.
    let wait = Box::pin(await_condition(api.clone(), name, condition));
    match tokio::time::timeout(timeout, wait).await {
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
    let gone = Box::pin(await_condition(api.clone(), name, |obj: Option<&K>| {
        obj.is_none()
    }));
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => anyhow::bail!("watch failed while waiting for {name} to go: {error}"),
        Err(_) => anyhow::bail!("timed out after {timeout:?} waiting for {name} to be deleted"),
    }
}

/// Watches every object of `api` and waits until `condition` holds for the
/// whole list (evaluated after every change), for at most `timeout`.
/// Returns the list that satisfied it.
pub async fn list_until<K>(
    api: &Api<K>,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&[K]) -> bool,
) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher};

    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()));
    let mut stream = std::pin::pin!(stream);
    let mut last: Vec<K> = vec![];
    let mut listed = false;
    let wait = async {
        // Check once the initial listing is in, then after every change.
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
                Some(Err(error)) => anyhow::bail!("watch failed while waiting for {what}: {error}"),
                None => anyhow::bail!("watch ended while waiting for {what}"),
            }
            if listed {
                last = store.state().iter().map(|o| (**o).clone()).collect();
                if condition(&last) {
                    return Ok(last.clone());
                }
            }
        }
    };
    match tokio::time::timeout(timeout, Box::pin(wait)).await {
        Ok(result) => result,
        Err(_) => {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {last:#?}")
        }
    }
}
