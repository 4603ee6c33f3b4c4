//! # ambit-handlers: Ambit's discovery handlers as external plugins
//!
//! One binary, `ambit-handler`, serves any of the handler libraries compiled
//! into it (chosen by cargo feature), each on its own socket, each
//! registered with the node agent:
//!
//! ```text
//!   ambit-handler --socket-dir /var/lib/ambit
//!     ├─ debug-echo ─► /var/lib/ambit/debug-echo.sock ─register─► /var/lib/ambit/registration.sock
//!     ├─ bluetooth ──► /var/lib/ambit/bluetooth.sock
//!     ├─ mdns ───────► /var/lib/ambit/mdns.sock
//!     ├─ modbus ─────► /var/lib/ambit/modbus.sock
//!     ├─ mqtt ───────► /var/lib/ambit/mqtt.sock
//!     └─ (udev, opcua, ... as features are added)
//! ```
//!
//! Adding a handler: a cargo feature enabling its crate, an entry in
//! [`COMPILED_IN`], an arm in `build_handler`, and its flags as a flattened
//! group in [`Args`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use ambit_discovery::{DEFAULT_SOCKET_DIR, DiscoveryHandler, PluginError, run_plugin};
use futures::future::try_join_all;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The handlers compiled into this binary.
pub const COMPILED_IN: &[&str] = &[
    #[cfg(feature = "debug-echo")]
    ambit_debug_echo::NAME,
    #[cfg(feature = "mdns")]
    ambit_mdns::NAME,
    #[cfg(feature = "modbus")]
    ambit_modbus::NAME,
    #[cfg(feature = "mqtt")]
    ambit_mqtt::NAME,
    #[cfg(feature = "onvif")]
    ambit_onvif::NAME,
    #[cfg(feature = "opcua")]
    ambit_opcua::NAME,
    #[cfg(feature = "bluetooth")]
    ambit_bluetooth::NAME,
    #[cfg(feature = "udev")]
    ambit_udev::NAME,
];

/// Command-line flags; every one can also be set from the environment.
#[derive(Debug, clap::Parser)]
#[command(
    name = "ambit-handler",
    version,
    about = "Serves Ambit discovery handlers to the node agent"
)]
pub struct Args {
    /// Directory holding the agent's registration socket; each handler
    /// serves on `<dir>/<name>.sock` beside it.
    #[arg(long, env = "AMBIT_SOCKET_DIR", default_value = DEFAULT_SOCKET_DIR)]
    pub socket_dir: PathBuf,

    /// Handlers to serve (repeat the flag or separate with commas); all
    /// compiled-in handlers when not given.
    #[arg(long = "handler", env = "AMBIT_HANDLER", value_delimiter = ',')]
    pub handlers: Vec<String>,

    /// Options of the debug-echo handler.
    #[cfg(feature = "debug-echo")]
    #[command(flatten)]
    pub debug_echo: DebugEchoArgs,
}

/// Options of the debug-echo handler.
#[cfg(feature = "debug-echo")]
#[derive(Debug, clap::Args)]
pub struct DebugEchoArgs {
    /// State directory of debug-echo: device ids listed in `<dir>/offline`
    /// are reported absent. Without it every device is always present.
    #[arg(long = "debug-echo-dir", env = "AMBIT_DEBUG_ECHO_DIR")]
    pub dir: Option<PathBuf>,

    /// The name debug-echo registers under (default `debug-echo`), so that
    /// several can run side by side, or beside the agent's embedded one.
    #[arg(long = "debug-echo-name", env = "AMBIT_DEBUG_ECHO_NAME")]
    pub name: Option<String>,
}

/// Why the handlers could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A requested handler is not compiled into this binary.
    #[error("handler {name:?} is not compiled into this binary (compiled in: {})", COMPILED_IN.join(", "))]
    NotCompiledIn {
        /// The requested name.
        name: String,
    },
    /// There is nothing to serve.
    #[error("no discovery handler is compiled into this binary; build it with a handler feature")]
    NothingToServe,
    /// A handler failed to serve.
    #[error("failed to serve handler {name}")]
    Plugin {
        /// The handler.
        name: String,
        /// Why.
        #[source]
        source: PluginError,
    },
}

/// Which handlers to serve: the requested ones, or all compiled in.
pub fn select_handlers(requested: &[String]) -> Result<Vec<&'static str>, RunError> {
    let selected = if requested.is_empty() {
        COMPILED_IN.to_vec()
    } else {
        let mut selected = Vec::new();
        for name in requested {
            let known = COMPILED_IN.iter().find(|known| **known == name.trim());
            let known = *known.ok_or_else(|| RunError::NotCompiledIn { name: name.clone() })?;
            if !selected.contains(&known) {
                selected.push(known);
            }
        }
        selected
    };
    if selected.is_empty() {
        return Err(RunError::NothingToServe);
    }
    Ok(selected)
}

fn build_handler(name: &str, args: &Args) -> Result<Arc<dyn DiscoveryHandler>, RunError> {
    match name {
        #[cfg(feature = "debug-echo")]
        ambit_debug_echo::NAME => {
            let handler = ambit_debug_echo::DebugEcho::from_state_dir(args.debug_echo.dir.clone());
            Ok(Arc::new(match &args.debug_echo.name {
                Some(renamed) => handler.named(renamed.clone()),
                None => handler,
            }))
        }
        #[cfg(feature = "bluetooth")]
        ambit_bluetooth::NAME => Ok(Arc::new(ambit_bluetooth::Bluetooth::new())),
        #[cfg(feature = "mdns")]
        ambit_mdns::NAME => Ok(Arc::new(ambit_mdns::Mdns::new())),
        #[cfg(feature = "modbus")]
        ambit_modbus::NAME => Ok(Arc::new(ambit_modbus::Modbus::new())),
        #[cfg(feature = "mqtt")]
        ambit_mqtt::NAME => Ok(Arc::new(ambit_mqtt::Mqtt::new())),
        #[cfg(feature = "onvif")]
        ambit_onvif::NAME => Ok(Arc::new(ambit_onvif::Onvif::new())),
        #[cfg(feature = "opcua")]
        ambit_opcua::NAME => Ok(Arc::new(ambit_opcua::OpcUa::new())),
        #[cfg(feature = "udev")]
        ambit_udev::NAME => Ok(Arc::new(ambit_udev::Udev::new())),
        _ => {
            let _ = args;
            Err(RunError::NotCompiledIn {
                name: name.to_owned(),
            })
        }
    }
}

/// Serves the selected handlers until `shutdown` completes.
pub async fn run(args: Args, shutdown: impl Future<Output = ()> + Send) -> Result<(), RunError> {
    let names = select_handlers(&args.handlers)?;
    let handlers = names
        .iter()
        .map(|name| build_handler(name, &args))
        .collect::<Result<Vec<_>, _>>()?;
    info!(handlers = ?names, socket_dir = %args.socket_dir.display(), "starting discovery handlers");

    let stop = CancellationToken::new();
    let plugins = handlers.into_iter().map(|handler| {
        let stop = stop.clone();
        let socket_dir = args.socket_dir.clone();
        async move {
            let name = handler.name().to_owned();
            run_plugin(handler, &socket_dir, stop.cancelled_owned())
                .await
                .map_err(|source| RunError::Plugin { name, source })
        }
    });
    let all = try_join_all(plugins);
    tokio::pin!(all);
    tokio::select! {
        result = &mut all => return result.map(drop),
        () = shutdown => stop.cancel(),
    }
    all.await.map(drop)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_serve_everything_compiled_in() {
        let args = Args::try_parse_from(["ambit-handler"]).unwrap();
        assert_eq!(args.socket_dir, PathBuf::from(DEFAULT_SOCKET_DIR));
        match select_handlers(&args.handlers) {
            Ok(selected) => assert_eq!(selected, COMPILED_IN),
            Err(error) => assert!(COMPILED_IN.is_empty(), "{error}"),
        }
    }

    #[cfg(feature = "debug-echo")]
    #[test]
    fn handlers_are_chosen_by_name() {
        let args = Args::try_parse_from([
            "ambit-handler",
            "--handler",
            "debug-echo,debug-echo",
            "--debug-echo-dir",
            "/tmp/echo",
        ])
        .unwrap();
        assert_eq!(select_handlers(&args.handlers).unwrap(), ["debug-echo"]);
        assert_eq!(args.debug_echo.dir, Some(PathBuf::from("/tmp/echo")));

        let error = select_handlers(&["zigbee".to_owned()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "handler \"zigbee\" is not compiled into this binary (compiled in: {})",
                COMPILED_IN.join(", ")
            )
        );
    }
}
