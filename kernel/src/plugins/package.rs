//! The plugin package: one JSON document holding `plugin.toml`, the component
//! (base64) and the self-test fixtures. It is the body of `POST /api/v1/admin/plugins`,
//! the file `olivine plugin build` writes (`<id>-<version>.olpkg`), and what the
//! watched plugins directory accepts. One file, so a copy into the directory is one
//! rename away from atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Package;
use crate::error::{Error, Result};

/// File extension of a package.
pub const EXTENSION: &str = "olpkg";

/// A plugin package: `plugin.toml` text, the component base64-encoded, and fixtures.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageUpload {
    /// The text of plugin.toml.
    pub manifest: String,
    /// The `.wasm` component, base64 (standard alphabet).
    #[schema(value_type = crate::http::schema::Base64)]
    pub wasm_base64: String,
    /// Self-test fixtures by file name; run through the real host before installing.
    #[serde(default)]
    pub fixtures: BTreeMap<String, String>,
    /// Make this version the active one (default true).
    #[serde(default = "yes")]
    pub activate: bool,
    /// For a first installation: start enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl PackageUpload {
    /// Decodes the component; errors name the field.
    pub fn into_package(self) -> Result<Package> {
        let wasm = base64::engine::general_purpose::STANDARD
            .decode(self.wasm_base64.trim())
            .map_err(|e| Error::invalid("wasm_base64", format!("not base64: {e}")))?;
        Ok(Package {
            manifest_toml: self.manifest,
            wasm,
            fixtures: self.fixtures.into_iter().collect(),
        })
    }

    pub fn new(manifest: String, wasm: &[u8], fixtures: BTreeMap<String, String>) -> Self {
        PackageUpload {
            manifest,
            wasm_base64: base64::engine::general_purpose::STANDARD.encode(wasm),
            fixtures,
            activate: true,
            enabled: true,
        }
    }

    /// Packs a plugin crate's `plugin.toml`, a built component and `fixtures/*.json`.
    pub fn from_parts(crate_dir: &Path, wasm_path: &Path) -> anyhow::Result<Self> {
        let manifest_path = crate_dir.join("plugin.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let wasm =
            std::fs::read(wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
        let fixtures_dir = crate_dir.join("fixtures");
        let fixtures = if fixtures_dir.is_dir() {
            olivine_plugin_runtime::fixtures::read_dir(&fixtures_dir)
                .with_context(|| format!("reading {}", fixtures_dir.display()))?
                .into_iter()
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(PackageUpload::new(manifest, &wasm, fixtures))
    }

    /// Reads a `.olpkg` file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a plugin package", path.display()))
    }

    /// Writes the package atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension(format!("{EXTENSION}.tmp"));
        let json = serde_json::to_vec(self)?;
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// `<id>-<version>.olpkg`, from the manifest (or `plugin.olpkg` if it does not parse).
    pub fn file_name(&self) -> PathBuf {
        match olivine_plugin_runtime::manifest::Manifest::parse(&self.manifest) {
            Ok(m) => PathBuf::from(format!("{}-{}.{EXTENSION}", m.id, m.version)),
            Err(_) => PathBuf::from(format!("plugin.{EXTENSION}")),
        }
    }
}
