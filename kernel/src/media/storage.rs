//! Where media files live. Keys are `/`-separated paths (`originals/<hash>`,
//! `variants/<hash>/<width>.<format>`); the URLs shoppers see never name the storage, so
//! they stay the same whichever serves them.
//!
//! Local disk (the default) under `<data dir>/media`: a write goes to a temporary file
//! beside its destination and is renamed into place, so a reader never sees half a file.
//! An S3-compatible bucket (`OLIVINE_MEDIA_S3_BUCKET`) through `object_store`, so every
//! node of a cluster sees the same files; a put there is atomic too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};

/// The media storage of this node.
#[derive(Debug, Clone)]
pub enum Storage {
    Local(LocalStorage),
    S3(S3Storage),
}

#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<dyn ObjectStore>,
    bucket: String,
}

impl Storage {
    pub fn local(root: impl Into<PathBuf>) -> Storage {
        Storage::Local(LocalStorage { root: root.into() })
    }

    /// The storage the configuration names: the S3 bucket when one is set, else the
    /// local media directory.
    pub fn from_config(config: &crate::config::ServeConfig) -> anyhow::Result<Storage> {
        let media = &config.media;
        let Some(bucket) = media
            .media_s3_bucket
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        else {
            return Ok(Storage::local(config.media_dir()));
        };
        // The S3 client's TLS is rustls without a built-in provider (no aws-lc to build):
        // ring becomes the process's provider unless one was chosen already (ring has no
        // post-quantum key exchange, hence rustls's deprecation note; aws-lc would).
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // AWS_* variables fill in what the settings leave out (credentials from the
        // environment or the instance, as the AWS tools do).
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&media.media_s3_region);
        if let Some(endpoint) = media.media_s3_endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = media.media_s3_access_key_id.as_deref() {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = media.media_s3_secret_access_key.as_deref() {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the media bucket `{bucket}`"))?;
        Ok(Storage::S3(S3Storage {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
        }))
    }

    /// A short description for the logs.
    pub fn describe(&self) -> String {
        match self {
            Storage::Local(local) => format!("local disk at {}", local.root.display()),
            Storage::S3(s3) => format!("S3 bucket {}", s3.bucket),
        }
    }

    /// Stores `bytes` at `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        match self {
            Storage::Local(local) => local.put(key, bytes).await,
            Storage::S3(s3) => {
                s3.store
                    .put(&object_path(key)?, bytes.into())
                    .await
                    .with_context(|| format!("storing media `{key}` in S3"))?;
                Ok(())
            }
        }
    }

    /// The file at `key`, or `None` when there is none.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self {
            Storage::Local(local) => local.get(key).await,
            Storage::S3(s3) => match s3.store.get(&object_path(key)?).await {
                Ok(found) => {
                    Ok(Some(found.bytes().await.with_context(|| {
                        format!("reading media `{key}` from S3")
                    })?))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(err) => Err(err).with_context(|| format!("reading media `{key}` from S3")),
            },
        }
    }

    /// Whether a file is at `key`.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self {
            Storage::Local(local) => Ok(tokio::fs::try_exists(local.path(key)?).await?),
            Storage::S3(s3) => match s3.store.head(&object_path(key)?).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(err) => Err(err).with_context(|| format!("looking for media `{key}` in S3")),
            },
        }
    }

    /// The names of the files directly under the folder `prefix` (no trailing `/`).
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Storage::Local(local) => local.list(prefix).await,
            Storage::S3(s3) => {
                let listed = s3
                    .store
                    .list_with_delimiter(Some(&object_path(prefix)?))
                    .await
                    .with_context(|| format!("listing media `{prefix}` in S3"))?;
                let mut names: Vec<String> = listed
                    .objects
                    .iter()
                    .filter_map(|o| o.location.filename().map(str::to_owned))
                    .collect();
                names.sort();
                Ok(names)
            }
        }
    }

    /// Deletes the file at `key`; nothing there is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Storage::Local(local) => local.delete(key).await,
            Storage::S3(s3) => match s3.store.delete(&object_path(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(err) => Err(err).with_context(|| format!("deleting media `{key}` in S3")),
            },
        }
    }

    /// Deletes every file under the folder `prefix`.
    pub async fn delete_all(&self, prefix: &str) -> anyhow::Result<()> {
        for name in self.list(prefix).await? {
            self.delete(&format!("{prefix}/{name}")).await?;
        }
        match self {
            // The empty folder too; gone already is fine.
            Storage::Local(local) => {
                let _ = tokio::fs::remove_dir(local.path(prefix)?).await;
            }
            Storage::S3(_) => {}
        }
        Ok(())
    }
}

/// A key as an object path (the same checks as on disk).
fn object_path(key: &str) -> anyhow::Result<object_store::path::Path> {
    anyhow::ensure!(
        !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".."),
        "bad media key `{key}`"
    );
    object_store::path::Path::parse(key).with_context(|| format!("bad media key `{key}`"))
}

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// The file of `key`; a key that could leave the root is refused.
    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            !key.is_empty()
                && key.split('/').all(|part| {
                    !part.is_empty()
                        && part != "."
                        && part != ".."
                        && !part.contains('\\')
                        && !part.contains('\0')
                }),
            "bad media key `{key}`"
        );
        Ok(self.root.join(Path::new(key)))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
        tokio::fs::write(&tmp, &bytes)
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        if let Err(err) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(err).with_context(|| format!("renaming into {}", path.display()));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading media `{key}`")),
        }
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut entries = match tokio::fs::read_dir(self.path(prefix)?).await {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).with_context(|| format!("listing media `{prefix}`")),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry.file_name().to_str()
                && !name.contains(".tmp-")
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("deleting media `{key}`")),
        }
    }
}

/// The key of an original.
pub fn original_key(hash: &str) -> String {
    format!("originals/{hash}")
}

/// The folder of an original's variants.
pub fn variants_prefix(hash: &str) -> String {
    format!("variants/{hash}")
}

/// The key of one variant.
pub fn variant_key(hash: &str, width: u32, format: super::Format) -> String {
    format!("variants/{hash}/{width}.{}", format.extension())
}
