use clap::Parser;

fn main() -> anyhow::Result<()> {
    ambit_cli::run(ambit_cli::Args::parse())
}
