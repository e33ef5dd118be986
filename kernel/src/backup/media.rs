//! Product media on local disk, in and out of a backup (`media/` in the backup mirrors
//! the media directory's `originals/` and `variants/`).
//!
//! The copy is taken after the database snapshot: an upload stores its file before the
//! row that names it commits, so every image in the snapshot has its file on disk by
//! then. A file deleted in between (its image deleted meanwhile) is missing from the
//! backup; the copy says how many.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Ticker;
use super::manifest::{FileEntry, copy_hashed, relative_path};

/// The folders of the media store a backup holds.
const FOLDERS: [&str; 2] = ["originals", "variants"];
/// The backup's folder for them.
pub const BACKUP_FOLDER: &str = "media";

/// Copies the media directory into `<backup>/media/`; answers the files copied.
pub async fn copy_out(media_dir: PathBuf, backup_dir: PathBuf) -> anyhow::Result<Vec<FileEntry>> {
    tokio::task::spawn_blocking(move || copy_out_blocking(&media_dir, &backup_dir))
        .await
        .context("the media copy stopped")?
}

fn copy_out_blocking(media_dir: &Path, backup_dir: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let files = list_media(media_dir)?;
    let ticker = Ticker::new("media", files.len());
    let mut copied = Vec::with_capacity(files.len());
    let mut vanished = 0usize;
    for (done, relative) in files.iter().enumerate() {
        let path = format!("{BACKUP_FOLDER}/{relative}");
        let target = backup_dir.join(relative_path(&path)?);
        match copy_hashed(&media_dir.join(relative), &target) {
            Ok((bytes, sha256)) => copied.push(FileEntry {
                path,
                bytes,
                sha256,
            }),
            // Deleted since it was listed: its image went meanwhile.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => vanished += 1,
            Err(err) => {
                return Err(err).with_context(|| format!("copying media file {relative}"));
            }
        }
        ticker.set(done + 1);
    }
    let bytes: u64 = copied.iter().map(|f| f.bytes).sum();
    println!(
        "    {} media file(s), {} copied{}",
        copied.len(),
        human_bytes(bytes),
        if vanished > 0 {
            format!("; {vanished} deleted while copying (their images went meanwhile)")
        } else {
            String::new()
        }
    );
    Ok(copied)
}

/// Every file under the media folders, as `/`-separated paths relative to `root`;
/// temporary files of writes in progress are left out.
fn list_media(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for folder in FOLDERS {
        walk(root, folder, &mut found)?;
    }
    found.sort();
    Ok(found)
}

fn walk(root: &Path, relative: &str, found: &mut Vec<String>) -> anyhow::Result<()> {
    let dir = root.join(relative);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // not a name the media store writes
        };
        if name.contains(".tmp-") {
            continue;
        }
        let child = format!("{relative}/{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &child, found)?;
        } else if kind.is_file() {
            found.push(child);
        }
    }
    Ok(())
}

/// Copies the backup's media files (already checked against the manifest) into
/// `media_dir`; answers how many.
pub async fn copy_in(
    backup_dir: PathBuf,
    files: Vec<FileEntry>,
    media_dir: PathBuf,
) -> anyhow::Result<usize> {
    tokio::task::spawn_blocking(move || {
        let media: Vec<&FileEntry> = files
            .iter()
            .filter(|f| f.path.starts_with(&format!("{BACKUP_FOLDER}/")))
            .collect();
        let ticker = Ticker::new("media", media.len());
        for (done, file) in media.iter().enumerate() {
            let inside = &file.path[BACKUP_FOLDER.len() + 1..];
            let target = media_dir.join(relative_path(inside)?);
            copy_hashed(&backup_dir.join(relative_path(&file.path)?), &target)
                .with_context(|| format!("restoring media file {inside}"))?;
            ticker.set(done + 1);
        }
        Ok(media.len())
    })
    .await
    .context("the media copy stopped")?
}

/// Whether the media directory holds any media file.
pub fn has_media(media_dir: &Path) -> anyhow::Result<bool> {
    Ok(!list_media(media_dir)?.is_empty())
}

pub fn human_bytes(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / MB)
    } else {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    }
}
