//! `manifest.json`: what a backup holds and how to check it. The restore trusts nothing
//! else in the directory: every file it uses is listed here with its SHA-256.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// What `format` says, so a stray JSON file is not taken for a backup.
pub const FORMAT: &str = "olivine-backup";
/// The layout of this module's backups; a restore refuses any other.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// When the backup was taken (RFC 3339, UTC): the snapshot is from about then.
    pub created_at: String,
    /// The `olivine` that took it.
    pub kernel_version: String,
    /// `sqlite` or `postgres`: a backup restores into the same backend only.
    pub backend: String,
    /// The newest migration applied in the snapshot.
    pub schema_version: i64,
    /// PostgreSQL: the schema the store's tables are in (the dump holds that schema only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_schema: Option<String>,
    /// Where the product media was: `local` (copied under `media/`), `s3:<bucket>` (not
    /// copied: the bucket keeps its own versions), or `none`.
    pub media: String,
    /// Never the key itself: a reminder of where it was.
    pub master_key: String,
    /// The per-customer keys are not in the backup either: where the latest key
    /// snapshot was written (empty in backups taken before per-customer keys).
    #[serde(default)]
    pub customer_keys: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads and checks the manifest of the backup in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (a backup without a manifest is incomplete)",
                path.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a backup manifest", path.display()))?;
        anyhow::ensure!(
            manifest.format == FORMAT && manifest.format_version == FORMAT_VERSION,
            "{} is a backup of format `{}` version {}; this olivine reads `{FORMAT}` version {FORMAT_VERSION}",
            path.display(),
            manifest.format,
            manifest.format_version
        );
        for file in &manifest.files {
            relative_path(&file.path)?;
        }
        Ok(manifest)
    }

    /// Writes the manifest last and atomically: its presence marks a finished backup.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(MANIFEST))
            .with_context(|| format!("writing the manifest in {}", dir.display()))?;
        Ok(())
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// A manifest path as a relative path that stays inside the backup directory.
pub fn relative_path(path: &str) -> anyhow::Result<PathBuf> {
    let relative = PathBuf::from(path);
    let inside = !path.is_empty()
        && relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
    anyhow::ensure!(
        inside,
        "the manifest names a file outside the backup: `{path}`"
    );
    Ok(relative)
}

/// The size and SHA-256 of a file.
pub fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Copies `from` to `to` (created, synced), answering the copy's size and SHA-256.
pub fn copy_hashed(from: &Path, to: &Path) -> std::io::Result<(u64, String)> {
    let mut source = std::fs::File::open(from)?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut target = std::fs::File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = source.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        target.write_all(&buffer[..read])?;
        bytes += read as u64;
    }
    target.sync_all()?;
    Ok((bytes, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_backup_are_refused() {
        assert!(relative_path("media/originals/abc").is_ok());
        for bad in ["", "/etc/passwd", "../x", "media/../../x", "./x"] {
            assert!(relative_path(bad).is_err(), "{bad}");
        }
    }
}
