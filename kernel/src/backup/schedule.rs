//! The scheduled backup: with `OLIVINE_BACKUP_DIR` set, a durable job every
//! `OLIVINE_BACKUP_INTERVAL_SECS` (once for the cluster, on a node that has the setting)
//! takes a backup into `<dir>/olivine-<time>` and keeps the newest
//! `OLIVINE_BACKUP_KEEP`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{BackupArgs, FileSettings, manifest::MANIFEST};
use crate::config::ServeConfig;
use crate::jobs::{FnHandler, JobContext, JobHandler, Schedule};

pub const JOB: &str = "backup.scheduled";
/// The start of every scheduled backup's directory name; the rest sorts by time.
const PREFIX: &str = "olivine-";

#[derive(clap::Args, Clone, Debug)]
pub struct ScheduleConfig {
    /// Where scheduled backups go, a directory each (`olivine-<time>`). Unset: none are
    /// taken. Only nodes with it set take them (on PostgreSQL they need pg_dump).
    #[arg(long, env = "OLIVINE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// How often a scheduled backup is taken (seconds).
    #[arg(long, env = "OLIVINE_BACKUP_INTERVAL_SECS", default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub backup_interval_secs: u64,

    /// How many scheduled backups are kept; older ones are deleted after a new one is
    /// complete.
    #[arg(long, env = "OLIVINE_BACKUP_KEEP", default_value_t = 7,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub backup_keep: u64,

    /// The pg_dump scheduled backups run (PostgreSQL stores).
    #[arg(long, env = "OLIVINE_PG_DUMP", default_value = "pg_dump")]
    pub backup_pg_dump: String,

    /// Where scheduled backups write the customer key snapshot (each replaces it).
    /// Unset: `<data dir>/customer-keys.snapshot`.
    #[arg(long, env = "OLIVINE_CUSTOMER_KEY_SNAPSHOT")]
    pub backup_key_snapshot: Option<PathBuf>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            backup_dir: None,
            backup_interval_secs: 86_400,
            backup_keep: 7,
            backup_pg_dump: "pg_dump".to_owned(),
            backup_key_snapshot: None,
        }
    }
}

/// The schedule, when this node takes scheduled backups.
pub fn schedule(config: &ServeConfig) -> Option<Schedule> {
    config.backups.backup_dir.as_ref()?;
    Some(Schedule {
        name: "backup.scheduled",
        kind: JOB,
        interval: Duration::from_secs(config.backups.backup_interval_secs.max(1)),
        at_start: false,
    })
}

pub fn job() -> Arc<dyn JobHandler> {
    FnHandler::new(JOB, |ctx| Box::pin(run(ctx)))
}

async fn run(ctx: &JobContext) -> anyhow::Result<()> {
    let config = &ctx.state.config;
    let Some(root) = config.backups.backup_dir.clone() else {
        return Ok(()); // the setting went away since the job was queued
    };
    // The job's id keeps a retried run from meeting its own half-written directory.
    let name = format!(
        "{PREFIX}{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        ctx.job.id
    );
    let mut args = BackupArgs::new(root.join(&name), config.store.clone());
    args.files = FileSettings {
        media_dir: Some(config.media_dir()),
        media_s3_bucket: config.media.media_s3_bucket.clone(),
        master_key_file: Some(config.master_key_file()),
        customer_key_snapshot: config.backups.backup_key_snapshot.clone(),
    };
    args.pg_dump = config.backups.backup_pg_dump.clone();
    super::backup(&args).await?;
    let removed = prune(&root, config.backups.backup_keep as usize)?;
    tracing::info!(backup = %name, removed, "scheduled backup taken");
    Ok(())
}

/// Deletes all but the newest `keep` complete backups, and unfinished ones older than
/// the newest complete one (a run that failed); answers how many went.
pub fn prune(root: &Path, keep: usize) -> anyhow::Result<usize> {
    let mut complete = Vec::new();
    let mut unfinished = Vec::new();
    let entries = std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.starts_with(PREFIX) || !entry.file_type()?.is_dir() {
            continue; // not ours
        }
        if entry.path().join(MANIFEST).is_file() {
            complete.push(name);
        } else {
            unfinished.push(name);
        }
    }
    complete.sort();
    let newest = complete.last().cloned();
    let cut = complete.len().saturating_sub(keep);
    let mut doomed: Vec<String> = complete.drain(..cut).collect();
    doomed.extend(
        unfinished
            .into_iter()
            .filter(|name| newest.as_ref().is_some_and(|newest| name < newest)),
    );
    for name in &doomed {
        let path = root.join(name);
        std::fs::remove_dir_all(&path).with_context(|| format!("deleting {}", path.display()))?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_are_kept_and_failed_runs_cleared() {
        let root = std::env::temp_dir().join(format!("olivine-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (name, complete) in [
            ("olivine-20260101T000000Z-1", true),
            ("olivine-20260102T000000Z-2", false),
            ("olivine-20260103T000000Z-3", true),
            ("olivine-20260104T000000Z-4", true),
            ("olivine-20260105T000000Z-5", false),
            ("other", true),
        ] {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).expect("dir");
            if complete {
                std::fs::write(dir.join(MANIFEST), "{}").expect("manifest");
            }
        }
        assert_eq!(prune(&root, 2).expect("prune"), 2);
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        // The run in progress (newer than the newest complete one) is left alone.
        assert_eq!(
            left,
            [
                "olivine-20260103T000000Z-3",
                "olivine-20260104T000000Z-4",
                "olivine-20260105T000000Z-5",
                "other"
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
