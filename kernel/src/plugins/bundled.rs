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

/// What starting with the bundled plugins did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Bundled plugins the store did not have.
    pub installed: usize,
    /// Installed plugins given the newer version this binary bundles.
    pub upgraded: usize,
}

/// Installs the bundled plugins the store does not have, and upgrades those it has: a
/// bundled version newer than every installed version of that plugin is installed (its
/// fixtures run first, like any upload). It becomes the active version only when the
/// active one came bundled too; a merchant who activated a version of their own keeps
/// it, and finds the new one in the plugin's version history. Settings, hosts, priority
/// and on/off stay as the merchant left them.
pub async fn install_or_upgrade(plugins: &Plugins) -> Result<Outcome> {
    let installed = plugins.list().await?;
    let mut outcome = Outcome::default();
    for bundled in BUNDLED {
        match installed.iter().find(|p| p.id == bundled.id) {
            None => {
                plugins
                    .install(package(bundled), true, bundled.enabled, "bundled")
                    .await?;
                tracing::info!(plugin = bundled.id, "installed bundled plugin");
                outcome.installed += 1;
            }
            Some(current) => {
                let activate = match upgrade(bundled, current) {
                    Upgrade::None => continue,
                    Upgrade::Activate => true,
                    Upgrade::InstallOnly => false,
                };
                plugins
                    .install(package(bundled), activate, bundled.enabled, "bundled")
                    .await?;
                tracing::info!(
                    plugin = bundled.id,
                    activate,
                    "installed the newer bundled version"
                );
                outcome.upgraded += 1;
            }
        }
    }
    Ok(outcome)
}

enum Upgrade {
    /// The store has this version or a newer one.
    None,
    /// Newer, and the active version came bundled: make it active.
    Activate,
    /// Newer, but the merchant activated a version of their own: install beside it.
    InstallOnly,
}

fn upgrade(bundled: &BundledPlugin, current: &super::PluginInfo) -> Upgrade {
    let Some(version) = manifest_version(bundled.manifest) else {
        return Upgrade::None;
    };
    let newer_than_all = current.versions.iter().all(|installed| {
        semver::Version::parse(&installed.version).is_ok_and(|installed| installed < version)
    });
    if !newer_than_all {
        return Upgrade::None;
    }
    let active_came_bundled = current
        .versions
        .iter()
        .any(|v| v.version == current.active_version && v.installed_by == "bundled");
    if active_came_bundled {
        Upgrade::Activate
    } else {
        Upgrade::InstallOnly
    }
}

/// The version a bundled manifest declares (the build script checked it parses).
fn manifest_version(manifest: &str) -> Option<semver::Version> {
    olivine_plugin_runtime::Manifest::parse(manifest)
        .ok()
        .map(|m| m.version)
}

fn package(bundled: &BundledPlugin) -> Package {
    Package {
        manifest_toml: bundled.manifest.to_owned(),
        wasm: bundled.wasm.to_vec(),
        fixtures: bundled
            .fixtures
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect(),
    }
}
