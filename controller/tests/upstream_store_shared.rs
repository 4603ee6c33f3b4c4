//! Pins a bug in kube-runtime 5.0.0 that Ambit works around: the controller
//! feeds its triggers from its own caches instead of `store_shared` readers
//! (see `controller/src/cache.rs`). No cluster: a synthetic watch of
//! ConfigMaps goes into `reflector::reflector`.
//!
//! A `ReflectHandle` (the reader `Writer::subscribe` returns) receives only an
//! object's key and looks the object up in the store. When the object has
//! been deleted by then, `poll_next` returns `Pending` without registering a
//! waker (kube-runtime-5.0.0 `src/reflector/dispatcher.rs:137-141`), so the
//! reader is never woken again. Its unread messages then fill the broadcast
//! buffer, the reflector waits for room for ever (`src/reflector/mod.rs:124`),
//! and the store and every other reader stop too.
//!
//! When a test here fails after a kube upgrade, the bug has been fixed
//! upstream and the workaround may be reconsidered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::task::{ArcWake, waker};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::watcher::{self, Event};
use tokio::time::timeout;

/// The broadcast buffer of the shared store.
const BUFFER: usize = 4;
/// Waited for what must happen; reached only when a test fails.
const PATIENCE: Duration = Duration::from_secs(2);
/// Watched for what must not happen.
const QUIET: Duration = Duration::from_millis(200);

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// A shared store whose reflector runs in a task of its own, fed from a
/// channel, with one reader subscribed before the reflector is first polled.
struct Watch {
    events: mpsc::UnboundedSender<watcher::Result<Event<ConfigMap>>>,
    /// One item per event the reflector has applied, dispatched and yielded.
    yielded: mpsc::UnboundedReceiver<()>,
    store: Store<ConfigMap>,
}

impl Watch {
    /// The watch and its one reader. Keep the reader moving or drop it: an
    /// idle reader, or an idle clone of it, holds up the reflector too.
    fn start() -> (Self, ReflectHandle<ConfigMap>) {
        let (store, writer) = reflector::store_shared::<ConfigMap>(BUFFER);
        let Some(reader) = writer.subscribe() else {
            panic!("a shared store's writer can be subscribed to");
        };
        let (events, input) = mpsc::unbounded();
        let (yield_tx, yielded) = mpsc::unbounded();
        tokio::spawn(reflector::reflector(writer, input).for_each(move |_| {
            let _ = yield_tx.unbounded_send(());
            async {}
        }));
        (
            Self {
                events,
                yielded,
                store,
            },
            reader,
        )
    }

    fn send(&self, event: Event<ConfigMap>) {
        let sent = self.events.unbounded_send(Ok(event));
        assert!(sent.is_ok(), "the reflector task runs");
    }

    /// Sends the listing of cm-0, then Apply(cm-x) and, with `delete`,
    /// Delete(cm-x), and waits until the reflector has yielded all of them.
    async fn list_then_apply_cm_x(&mut self, delete: bool) {
        self.send(Event::Init);
        self.send(Event::InitApply(cm("cm-0")));
        self.send(Event::InitDone);
        self.send(Event::Apply(cm("cm-x")));
        if delete {
            self.send(Event::Delete(cm("cm-x")));
        }
        let n = if delete { 5 } else { 4 };
        assert_eq!(
            self.count_yielded(PATIENCE, n).await,
            n,
            "the first events flow"
        );
    }

    /// How many events the reflector yields within `within`, up to `most`.
    async fn count_yielded(&mut self, within: Duration, most: usize) -> usize {
        let mut n = 0;
        while n < most && timeout(within, self.yielded.next()).await.is_ok() {
            n += 1;
        }
        n
    }

    fn stored(&self) -> Vec<String> {
        sorted(self.store.state().iter().map(|o| o.name_any()).collect())
    }
}

/// Polls `reader` in a task of its own, as a Controller's trigger is: only
/// when its waker fires. Returns the names it yields.
fn drain(mut reader: ReflectHandle<ConfigMap>) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded();
    tokio::spawn(async move {
        while let Some(obj) = reader.next().await {
            let _ = tx.unbounded_send(obj.name_any());
        }
    });
    rx
}

/// The names `seen` yields, until none comes for `within` or `most` came.
async fn collect(
    seen: &mut mpsc::UnboundedReceiver<String>,
    within: Duration,
    most: usize,
) -> Vec<String> {
    let mut names = Vec::new();
    while names.len() < most {
        match timeout(within, seen.next()).await {
            Ok(Some(name)) => names.push(name),
            Ok(None) | Err(_) => break,
        }
    }
    names
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn names(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// A waker that records that it was woken.
struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(flag: &Arc<Self>) {
        flag.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_store_shared_reader_that_misses_a_deleted_object_stalls_the_watch() {
    let (mut watch, reader) = Watch::start();
    watch.list_then_apply_cm_x(true).await;
    let mut seen = drain(reader);
    for name in names("cm-", 1..=20) {
        watch.send(Event::Apply(cm(&name)));
    }

    // The reader yields cm-0, gets the key of cm-x, misses it, and is never
    // woken again, although the store holds cm-1 and later.
    assert_eq!(collect(&mut seen, QUIET, 22).await, ["cm-0"]);
    // The reflector yields cm-1..cm-4 (the buffer), applies cm-5, and waits
    // for ever to broadcast it: the store stops there.
    assert_eq!(watch.count_yielded(QUIET, 20).await, BUFFER);
    assert_eq!(watch.stored(), sorted(names("cm-", 0..=5)));
}

#[tokio::test]
async fn a_store_shared_reader_returns_pending_without_a_waker_for_a_deleted_object() {
    let (mut watch, mut reader) = Watch::start();
    watch.list_then_apply_cm_x(true).await;
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = waker(flag.clone());
    let mut cx = Context::from_waker(&waker);

    let first = reader.poll_next_unpin(&mut cx);
    assert!(
        matches!(&first, Poll::Ready(Some(o)) if o.name_any() == "cm-0"),
        "{first:?}"
    );
    // The key of cm-x, whose object is gone.
    assert!(reader.poll_next_unpin(&mut cx).is_pending());
    watch.send(Event::Apply(cm("cm-1")));
    assert_eq!(watch.count_yielded(PATIENCE, 1).await, 1);
    assert!(
        !flag.0.load(Ordering::SeqCst),
        "the reader is not woken for cm-1"
    );
    // Polled anyway, it goes on: only the wake-up was lost.
    let next = reader.poll_next_unpin(&mut cx);
    assert!(
        matches!(&next, Poll::Ready(Some(o)) if o.name_any() == "cm-1"),
        "{next:?}"
    );
}

#[tokio::test]
async fn without_the_delete_a_store_shared_reader_sees_every_object() {
    let (mut watch, reader) = Watch::start();
    watch.list_then_apply_cm_x(false).await;
    let mut seen = drain(reader);
    for name in names("cm-", 1..=20) {
        watch.send(Event::Apply(cm(&name)));
    }

    let mut expected = vec!["cm-0".to_owned(), "cm-x".to_owned()];
    expected.extend(names("cm-", 1..=20));
    assert_eq!(collect(&mut seen, PATIENCE, 22).await, expected);
    assert_eq!(watch.count_yielded(PATIENCE, 20).await, 20);
    assert_eq!(watch.stored(), sorted(expected));
}
