//! `berth push` (being written).

use super::RegistryArgs;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(_args: PushArgs) -> anyhow::Result<()> {
    anyhow::bail!("berth push is not implemented yet")
}
