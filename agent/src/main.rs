use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ambit_telemetry::init_logging();
    ambit_agent::run(ambit_agent::Args::parse()).await?;
    Ok(())
}
