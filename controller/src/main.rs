use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ambit_telemetry::init_logging();
    ambit_controller::run(ambit_controller::Args::parse()).await?;
    Ok(())
}
