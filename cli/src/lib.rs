//! `ambit`, the command-line tool: one subcommand per module.

mod check;
mod crds;
mod devices;
mod discover;

use clap::{Parser, Subcommand};

/// Ambit's command-line tool.
#[derive(Debug, Parser)]
#[command(name = "ambit", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that an install works: CRDs, agent, handlers, controller and
    /// its Lease, the DeviceClass; one line per check, exit 1 on any failure.
    Check(check::CheckArgs),
    /// Print the CustomResourceDefinitions of Ambit's API, or write one file per CRD.
    Crds(crds::CrdsArgs),
    /// List the Devices of a namespace (or all), with the nodes that see
    /// them, their slots in use and whether they are Available.
    Devices(devices::DevicesArgs),
    /// Run a DeviceSet's discovery locally, with no cluster, and print the
    /// devices it would create.
    Discover(discover::DiscoverArgs),
}

/// Runs the command `args` names.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Args { command } = args;
    match command {
        Command::Check(args) => check::run(args).await,
        Command::Crds(args) => crds::run(args),
        Command::Devices(args) => devices::run(args).await,
        Command::Discover(args) => discover::run(args).await,
    }
}
