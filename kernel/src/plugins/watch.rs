//! The watched plugins directory (`<data dir>/plugins` unless configured): a package
//! (`*.olpkg`, see [`super::package`]) dropped there is installed and activated without
//! a restart, through the same checks as an upload. A broken one is rejected with a
//! log line naming the file and the problem; the active version stays. A package whose
//! version is already installed with the same content changes nothing, so files left in
//! the directory do not undo a merchant's later rollback when the kernel restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::Plugins;
use super::package::{EXTENSION, PackageUpload};

/// A file is read once it has been quiet this long, so a slow copy is not read half
/// written.
const QUIET: Duration = Duration::from_millis(300);

/// Who the audit trail names for installs from the directory.
const ACTOR: &str = "plugins-dir";

fn is_package(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == EXTENSION)
}

/// What became of one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Installed { id: String, version: String },
    Unchanged,
    Rejected(String),
}

/// Installs one package file.
pub async fn load_file(plugins: &Plugins, path: &Path) -> Outcome {
    let outcome = match PackageUpload::read(path) {
        Err(err) => Outcome::Rejected(format!("{err:#}")),
        Ok(upload) => install(plugins, upload).await,
    };
    let file = path.display().to_string();
    let label = match &outcome {
        Outcome::Installed { id, version } => {
            tracing::info!(
                file,
                plugin = id,
                version,
                "installed plugin from the plugins directory"
            );
            "installed"
        }
        Outcome::Unchanged => {
            tracing::debug!(file, "plugin package already installed");
            "unchanged"
        }
        Outcome::Rejected(why) => {
            tracing::error!(
                file,
                "plugin package rejected, the active version stays: {why}"
            );
            "rejected"
        }
    };
    metrics::counter!("olivine_plugins_dir_files_total", "outcome" => label).increment(1);
    outcome
}

async fn install(plugins: &Plugins, upload: PackageUpload) -> Outcome {
    let enabled = upload.enabled;
    let package = match upload.into_package() {
        Ok(package) => package,
        Err(err) => return Outcome::Rejected(describe(&err)),
    };
    let manifest = match olivine_plugin_runtime::manifest::Manifest::parse(&package.manifest_toml) {
        Ok(manifest) => manifest,
        Err(problems) => {
            return Outcome::Rejected(
                problems
                    .iter()
                    .map(|p| format!("manifest.{p}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
    };
    let hash = olivine_plugin_runtime::Runtime::content_hash(&package.wasm);
    let version = manifest.version.to_string();
    match plugins.installed_hash(&manifest.id, &version).await {
        Ok(Some(installed)) if installed == hash => return Outcome::Unchanged,
        Ok(_) => {}
        Err(err) => return Outcome::Rejected(describe(&err)),
    }
    match plugins.install(package, true, enabled, ACTOR).await {
        Ok(info) => Outcome::Installed {
            id: info.id,
            version: info.active_version,
        },
        Err(err) => Outcome::Rejected(describe(&err)),
    }
}

/// An API error as one log line: the message and every field problem.
fn describe(err: &crate::Error) -> String {
    let body = err.body();
    let mut text = body.message.clone();
    for field in &body.fields {
        text.push_str(&format!("; {}: {}", field.field, field.message));
    }
    text
}

/// Installs the packages already in `dir`, then watches it until `shutdown`.
pub async fn start(
    plugins: Arc<Plugins>,
    dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the plugins directory {}", dir.display()))?;
    let (sender, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Create, write, and rename into the directory (a Modify(Name) event).
            Ok(event) if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) => {
                for path in event.paths {
                    if is_package(&path) {
                        let _ = sender.send(path);
                    }
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "watching the plugins directory"),
        }
    })
    .context("starting the plugins directory watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;

    let mut existing: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_package(path))
        .collect();
    existing.sort();
    for path in &existing {
        load_file(&plugins, path).await;
    }
    tracing::info!(dir = %dir.display(), "watching the plugins directory");

    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropped, and the watch ended, when this task ends
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                Some(path) = changed.recv() => {
                    pending.insert(path, Instant::now());
                }
                _ = tick.tick() => {
                    let ready: Vec<PathBuf> = pending
                        .iter()
                        .filter(|(_, at)| at.elapsed() >= QUIET)
                        .map(|(path, _)| path.clone())
                        .collect();
                    for path in ready {
                        pending.remove(&path);
                        // Renamed away or deleted while we waited.
                        if path.is_file() {
                            load_file(&plugins, &path).await;
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }))
}
