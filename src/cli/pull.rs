//! `berth pull` (being written).

use super::RegistryArgs;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(_args: PullArgs) -> anyhow::Result<()> {
    anyhow::bail!("berth pull is not implemented yet")
}
