//! `berth attach` (being written).

use super::RegistryArgs;

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(_args: AttachArgs) -> anyhow::Result<()> {
    anyhow::bail!("berth attach is not implemented yet")
}
