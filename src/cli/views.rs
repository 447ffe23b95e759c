//! `berth models`, `versions`, `show`, `compare` (being written).

use super::RegistryArgs;

macro_rules! pending {
    ($($args:ident $f:ident),*) => {$(
        #[derive(Debug, clap::Args)]
        pub struct $args {
            #[command(flatten)]
            pub registry: RegistryArgs,
        }
        pub async fn $f(_a: $args) -> anyhow::Result<()> {
            anyhow::bail!(concat!("berth ", stringify!($f), " is not implemented yet"))
        }
    )*};
}
pending!(ModelsArgs models, VersionsArgs versions, ShowArgs show, CompareArgs compare);
