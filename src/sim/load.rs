//! `vigil sim --load`: many MQTT connections from this process against a
//! running engine, at a paced rate; publish→ack latency and errors.

use clap::Args;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Run a load instead of scenarios.
    #[arg(long)]
    pub load: bool,
}

pub async fn run(_args: &super::SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("load mode is not built yet")
}
