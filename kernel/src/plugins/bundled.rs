//! First-party plugins shipped inside the binary (built from `plugins/` by the kernel's
//! build script). On start they are installed into a store that does not have them yet;
//! a merchant's later changes (disable, settings, other versions) are left alone.

use super::{Package, Plugins};
use crate::error::Result;

pub struct BundledPlugin {
    pub id: &'static str,
    pub manifest: &'static str,
    pub wasm: &'static [u8],
    pub fixtures: &'static [(&'static str, &'static str)],
    /// Enabled right after installation (a plugin that needs settings first is not).
    pub enabled: bool,
}

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// Installs the bundled plugins that are not installed yet.
pub async fn install_missing(plugins: &Plugins) -> Result<usize> {
    let installed: Vec<String> = plugins.list().await?.into_iter().map(|p| p.id).collect();
    let mut count = 0;
    for bundled in BUNDLED {
        if installed.iter().any(|id| id == bundled.id) {
            continue;
        }
        let package = Package {
            manifest_toml: bundled.manifest.to_owned(),
            wasm: bundled.wasm.to_vec(),
            fixtures: bundled
                .fixtures
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                .collect(),
        };
        plugins
            .install(package, true, bundled.enabled, "bundled")
            .await?;
        tracing::info!(plugin = bundled.id, "installed bundled plugin");
        count += 1;
    }
    Ok(count)
}
