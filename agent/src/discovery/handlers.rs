//! The discovery handlers available on this node: embedded ones (compiled in
//! through cargo features) and external ones (registered on the agent's
//! socket). Published on a watch channel, so discovery starts the moment a
//! handler registers.
//!
//! An external handler with the name of an embedded one takes its place
//! while registered (a newer plugin can replace a built-in); when it goes,
//! the embedded one is used again.

use std::collections::BTreeMap;
use std::sync::Arc;

use ambit_discovery::{DiscoveryHandler, ExternalHandler, RegistrationEvent};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::metrics::Metrics;

/// A handler that can run now.
#[derive(Clone)]
pub struct Available {
    /// The handler.
    pub handler: Arc<dyn DiscoveryHandler>,
    /// `embedded` or `external`.
    pub kind: &'static str,
    /// Changes whenever the handler is (re)registered, so discovery bound to
    /// an old connection restarts.
    pub generation: u64,
}

impl std::fmt::Debug for Available {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Available")
            .field("handler", &self.handler.name())
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Handlers by name.
pub type HandlerMap = BTreeMap<String, Available>;

/// Keeps the map of available handlers up to date.
#[derive(Debug)]
pub struct Handlers {
    embedded: HandlerMap,
    external: HandlerMap,
    generation: u64,
    sender: watch::Sender<HandlerMap>,
    metrics: Metrics,
}

impl Handlers {
    /// Handlers starting with the `embedded` ones.
    pub fn new(embedded: Vec<Arc<dyn DiscoveryHandler>>, metrics: Metrics) -> Self {
        let embedded: HandlerMap = embedded
            .into_iter()
            .map(|handler| {
                metrics.handler_connected(handler.name(), "embedded", true);
                let name = handler.name().to_owned();
                (
                    name,
                    Available {
                        handler,
                        kind: "embedded",
                        generation: 0,
                    },
                )
            })
            .collect();
        let (sender, _) = watch::channel(embedded.clone());
        Self {
            embedded,
            external: HandlerMap::new(),
            generation: 0,
            sender,
            metrics,
        }
    }

    /// A receiver that sees every change of the map.
    pub fn subscribe(&self) -> watch::Receiver<HandlerMap> {
        self.sender.subscribe()
    }

    /// Applies registration events until the registration service stops.
    pub async fn follow(mut self, mut events: mpsc::UnboundedReceiver<RegistrationEvent>) {
        while let Some(event) = events.recv().await {
            self.apply(event);
        }
    }

    /// Applies one registration event.
    pub fn apply(&mut self, event: RegistrationEvent) {
        match event {
            RegistrationEvent::Registered { name, socket } => {
                info!(handler = %name, socket = %socket.display(), "external handler registered");
                self.generation += 1;
                let handler = Arc::new(ExternalHandler::new(name.clone(), socket));
                self.metrics.handler_connected(&name, "external", true);
                self.external.insert(
                    name,
                    Available {
                        handler,
                        kind: "external",
                        generation: self.generation,
                    },
                );
            }
            RegistrationEvent::Deregistered { name } => {
                info!(handler = %name, "external handler went away");
                self.metrics.handler_connected(&name, "external", false);
                self.external.remove(&name);
            }
        }
        let mut map = self.embedded.clone();
        map.extend(self.external.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.sender.send_replace(map);
    }
}
