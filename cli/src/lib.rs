//! `ambit`, the command-line tool: one subcommand per module.

mod crds;

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
    /// Print the CustomResourceDefinitions of Ambit's API, or write one file per CRD.
    Crds(crds::CrdsArgs),
}

/// Runs the command `args` names.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args { command } = args;
    match command {
        Command::Crds(args) => crds::run(args),
    }
}
