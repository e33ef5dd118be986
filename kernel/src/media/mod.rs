//! Product media: images of products (or of one of their variants) uploaded by staff,
//! resized into WebP, AVIF and JPEG variants by a durable job, served at content-hashed
//! URLs (`/media/<hash>/<width>.<format>`) that caches keep for a year.
//!
//! Owns the tables `product_images` (one row per image of a product, naming its original
//! by the SHA-256 of its bytes) and `media_variants` (the files made of an original), the
//! events `media.added`, `media.updated`, `media.reordered`, `media.deleted` and
//! `media.variants_ready` (each names the products whose JSON changes, so the catalog
//! cache drops them), the job `media.variants`, the admin routes under
//! `/api/v1/admin/products/{id}/images` and the public route `/media/...`.
//!
//! The upload answers as soon as the original is stored and checked (it decodes, within
//! the pixel limit); variants are made only by the job, never on a request. Until they
//! are, `/media/...` answers the next size available or the original (metadata stripped),
//! with a short `Cache-Control`, so the page works at once and caches pick up the variant.

pub mod api;
mod avif;
pub mod pages;
pub mod storage;
pub mod strip;
pub mod variants;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::config::ServeConfig;
use crate::error::Result;
use crate::jobs::{FnHandler, JobContext, JobHandler, NewJob, Permanent};
pub use storage::Storage;

/// The job that makes an original's variants.
pub const VARIANTS_JOB: &str = "media.variants";

/// A variant's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Format {
    #[serde(rename = "webp")]
    WebP,
    #[serde(rename = "avif")]
    Avif,
    #[serde(rename = "jpg")]
    Jpeg,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Avif, Format::WebP, Format::Jpeg];

    pub fn extension(self) -> &'static str {
        match self {
            Format::WebP => "webp",
            Format::Avif => "avif",
            Format::Jpeg => "jpg",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "webp" => Some(Format::WebP),
            "avif" => Some(Format::Avif),
            "jpg" => Some(Format::Jpeg),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::WebP => "image/webp",
            Format::Avif => "image/avif",
            Format::Jpeg => "image/jpeg",
        }
    }
}

/// Where an image's variants are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// The job has not made the variants yet: their URLs answer the next size available
    /// or the original meanwhile.
    Processing,
    Ready,
    /// The original could not be decoded by the job (see `error`).
    Failed,
}

impl ImageStatus {
    fn parse(text: &str) -> ImageStatus {
        match text {
            "ready" => ImageStatus::Ready,
            "failed" => ImageStatus::Failed,
            _ => ImageStatus::Processing,
        }
    }
}

/// One file of an image: a width in a format.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageVariant {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub content_type: &'static str,
    /// Content-hashed and immutable once made.
    pub url: String,
    /// Made already; until then the URL answers the next size available or the original.
    pub ready: bool,
}

/// An image of a product, with every variant made (or to be made) of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductImage {
    pub id: i64,
    pub product_id: i64,
    /// The variant it shows, when it is not of the whole product.
    pub variant_id: Option<i64>,
    /// The text alternative, for screen readers and when the image cannot load.
    pub alt: String,
    /// Order among the product's images, from 0.
    pub position: i64,
    /// Size as displayed (EXIF orientation applied), in pixels.
    pub width: u32,
    pub height: u32,
    /// SHA-256 of the original as uploaded: the images' URLs are under it.
    pub hash: String,
    /// The original's type and size as uploaded.
    pub content_type: String,
    pub byte_size: i64,
    pub status: ImageStatus,
    /// Why the variants could not be made (status `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A URL for clients that take one: the largest JPEG variant.
    pub url: String,
    /// Every width in AVIF, WebP and JPEG, narrowest first.
    pub variants: Vec<ImageVariant>,
    pub created_at: String,
    pub updated_at: String,
}

impl ProductImage {
    /// The variants of `format`, narrowest first.
    pub fn of_format(&self, format: Format) -> impl Iterator<Item = &ImageVariant> {
        self.variants.iter().filter(move |v| v.format == format)
    }
}

/// The URL of a variant.
pub fn variant_url(hash: &str, width: u32, format: Format) -> String {
    format!("/media/{hash}/{width}.{}", format.extension())
}

/// The encoding settings of the configuration.
pub fn encoding(config: &ServeConfig) -> variants::Encoding {
    let media = &config.media;
    variants::Encoding {
        webp_quality: media.media_webp_quality,
        avif_quality: media.media_avif_quality,
        avif_speed: media.media_avif_speed,
        jpeg_quality: media.media_jpeg_quality,
        max_pixels: media.media_max_pixels,
    }
}

pub(crate) const IMAGE_COLUMNS: &str = "id, product_id, variant_id, alt, position, width, height, hash, content_type, byte_size, status, error, created_at, updated_at";

fn image_from_row(row: &sqlx::any::AnyRow, made: &[(String, u32, Format)]) -> Result<ProductImage> {
    let hash: String = row.try_get(7)?;
    let width = u32::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0);
    let height = u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0);
    let mut list = Vec::new();
    for format in Format::ALL {
        for w in variants::planned_widths(width) {
            list.push(ImageVariant {
                width: w,
                height: variants::scaled_height(width, height, w),
                format,
                content_type: format.content_type(),
                url: variant_url(&hash, w, format),
                ready: made
                    .iter()
                    .any(|(h, mw, mf)| h == &hash && *mw == w && *mf == format),
            });
        }
    }
    let largest = variants::planned_widths(width)
        .last()
        .copied()
        .unwrap_or(width);
    Ok(ProductImage {
        id: row.try_get(0)?,
        product_id: row.try_get(1)?,
        variant_id: row.try_get(2)?,
        alt: row.try_get(3)?,
        position: row.try_get(4)?,
        width,
        height,
        url: variant_url(&hash, largest, Format::Jpeg),
        hash,
        content_type: row.try_get(8)?,
        byte_size: row.try_get(9)?,
        status: ImageStatus::parse(&row.try_get::<String, _>(10)?),
        error: row.try_get(11)?,
        variants: list,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

/// The images of a product, in order.
pub async fn images_of(conn: &mut AnyConnection, product_id: i64) -> Result<Vec<ProductImage>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {IMAGE_COLUMNS} FROM product_images WHERE product_id = $1 ORDER BY position, id"
    )))
    .bind(product_id)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let made = sqlx::query(
        "SELECT DISTINCT v.hash, v.width, v.format FROM media_variants v
         JOIN product_images i ON i.hash = v.hash WHERE i.product_id = $1",
    )
    .bind(product_id)
    .fetch_all(&mut *conn)
    .await?;
    let made: Vec<(String, u32, Format)> = made
        .iter()
        .filter_map(|r| {
            let hash: String = r.try_get(0).ok()?;
            let width = u32::try_from(r.try_get::<i64, _>(1).ok()?).ok()?;
            let format = Format::from_extension(&r.try_get::<String, _>(2).ok()?)?;
            Some((hash, width, format))
        })
        .collect();
    rows.iter().map(|row| image_from_row(row, &made)).collect()
}

/// One image of a product.
pub async fn image_of(
    conn: &mut AnyConnection,
    product_id: i64,
    image_id: i64,
) -> Result<Option<ProductImage>> {
    Ok(images_of(conn, product_id)
        .await?
        .into_iter()
        .find(|i| i.id == image_id))
}

/// Whether any image names the original `hash`.
pub(crate) async fn hash_in_use(conn: &mut AnyConnection, hash: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM product_images WHERE hash = $1 LIMIT 1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// The slugs of the products showing the original `hash`.
pub(crate) async fn products_showing(conn: &mut AnyConnection, hash: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT p.slug FROM products p JOIN product_images i ON i.product_id = p.id
         WHERE i.hash = $1",
    )
    .bind(hash)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
}

/// The job that makes an original's variants (one per original at a time).
pub fn variants_job_for(hash: &str) -> NewJob {
    NewJob::new(VARIANTS_JOB, serde_json::json!({ "hash": hash }))
        .unique(format!("{VARIANTS_JOB}:{hash}"))
        .max_attempts(5)
}

/// A hash as the kernel writes them: 64 lowercase hex digits.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Deserialize)]
struct VariantsPayload {
    hash: String,
}

/// `media.variants`: decodes the original once and stores every variant as it is made
/// (so each URL serves its own file as soon as possible), then records them with the
/// event that refreshes the products' cached JSON, completing the job in that
/// transaction. An original that does not decode marks its images `failed` and ends the
/// job: nothing a retry could fix, and never a crash of the worker.
pub fn variants_job() -> Arc<dyn JobHandler> {
    FnHandler::new(VARIANTS_JOB, |ctx: &JobContext| {
        Box::pin(async move { make_variants(ctx).await })
    })
}

async fn make_variants(ctx: &JobContext) -> anyhow::Result<()> {
    let payload: VariantsPayload = ctx.payload()?;
    let hash = payload.hash;
    if !is_hash(&hash) {
        return Err(Permanent(format!("`{hash}` is not a media hash")).into());
    }
    let state = &ctx.state;
    let storage = &state.media;
    let Some(original) = storage.get(&storage::original_key(&hash)).await? else {
        let mut conn = state.db.pool.acquire().await?;
        if hash_in_use(&mut conn, &hash).await.map_err(to_anyhow)? {
            return Err(Permanent(format!("the original {hash} is missing from storage")).into());
        }
        // Deleted before its variants were made: nothing to do.
        return Ok(());
    };
    let encoding = encoding(&state.config);
    let nice = state.config.media.media_nice;
    let (sender, mut made) = tokio::sync::mpsc::channel::<variants::Made>(2);
    // A thread of its own at a lower CPU priority: shoppers' requests go first.
    let work = at_media_priority(nice, true, move || {
        variants::make_all(&original, &encoding, |variant| {
            sender
                .blocking_send(variant)
                .map_err(|_| anyhow::anyhow!("the job stopped taking variants"))
        })
    })?;
    let mut stored: Vec<(u32, u32, Format, usize)> = Vec::new();
    let mut store_error = None;
    while let Some(variant) = made.recv().await {
        let key = storage::variant_key(&hash, variant.width, variant.format);
        let size = variant.bytes.len();
        match storage.put(&key, bytes::Bytes::from(variant.bytes)).await {
            Ok(()) => stored.push((variant.width, variant.height, variant.format, size)),
            Err(err) => {
                store_error = Some(err);
                break;
            }
        }
    }
    drop(made);
    let outcome = work.await;
    if let Some(err) = store_error {
        return Err(err.context("storing a variant"));
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(variants::MakeError::Rejected(why))) => {
            return mark_failed(ctx, &hash, &format!("the original {why}")).await;
        }
        Ok(Err(variants::MakeError::Failed(err))) => return Err(err),
        Err(_) => {
            // A codec that panicked on this original will panic again: fail the image.
            tracing::error!(hash, "making media variants panicked");
            return mark_failed(ctx, &hash, "the variants could not be made").await;
        }
    }
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    if !hash_in_use(&mut tx, &hash).await.map_err(to_anyhow)? {
        // Every image of it was deleted meanwhile: drop what was made.
        tx.rollback().await?;
        storage.delete_all(&storage::variants_prefix(&hash)).await?;
        return Ok(());
    }
    for (width, height, format, size) in &stored {
        sqlx::query(
            "INSERT INTO media_variants (hash, width, height, format, byte_size, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash, width, format) DO NOTHING",
        )
        .bind(&hash)
        .bind(i64::from(*width))
        .bind(i64::from(*height))
        .bind(format.extension())
        .bind(i64::try_from(*size).unwrap_or(i64::MAX))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE product_images SET status = 'ready', error = NULL, updated_at = $2 WHERE hash = $1",
    )
    .bind(&hash)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    let products = products_showing(&mut tx, &hash).await.map_err(to_anyhow)?;
    crate::bus::record(
        &mut tx,
        "media",
        &hash,
        "media.variants_ready",
        &serde_json::json!({ "hash": hash, "variants": stored.len(), "products": products }),
    )
    .await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    state.bus.notify();
    metrics::counter!("olivine_media_variants_made_total").increment(stored.len() as u64);
    Ok(())
}

async fn mark_failed(ctx: &JobContext, hash: &str, why: &str) -> anyhow::Result<()> {
    tracing::warn!(hash, why, "media variants cannot be made");
    let state = &ctx.state;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE product_images SET status = 'failed', error = $2, updated_at = $3 WHERE hash = $1",
    )
    .bind(hash)
    .bind(why)
    .bind(state.clock.now_text())
    .execute(&mut *tx)
    .await?;
    let products = products_showing(&mut tx, hash).await.map_err(to_anyhow)?;
    crate::bus::record(
        &mut tx,
        "media",
        hash,
        "media.variants_failed",
        &serde_json::json!({ "hash": hash, "error": why, "products": products }),
    )
    .await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(())
}

fn to_anyhow(err: crate::error::Error) -> anyhow::Error {
    match err {
        crate::error::Error::Internal(err) => err,
        other => anyhow::anyhow!("{}", other.body().message),
    }
}

/// Starts `work` on a thread of its own at the media priority (`nice`, as
/// `OLIVINE_MEDIA_NICE`) and answers where its result comes (an error there if it
/// panicked): image work never takes CPU time a shopper's request wants. `idle_class`
/// allows Linux's idle class at nice 19 (for the variants, which may wait for the load to
/// ease); without it nice 19 is the lowest normal priority (for the upload's check, which
/// a member of staff waits for).
pub(crate) fn at_media_priority<T: Send + 'static>(
    nice: i32,
    idle_class: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<T>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("media".to_owned())
        .spawn(move || {
            lower_priority(nice, idle_class);
            let _ = done.send(work());
        })
        .map_err(|e| anyhow::anyhow!("starting a media thread: {e}"))?;
    Ok(result)
}

/// Lowers the calling thread's CPU priority to `nice` (0: unchanged; 19 with
/// `idle_class`: the idle class, which runs only on CPU time no other thread wants).
/// Linux applies `setpriority` and `sched_setscheduler` with 0 to the calling thread
/// only; the thread ends with its work.
fn lower_priority(nice: i32, idle_class: bool) {
    #[cfg(target_os = "linux")]
    if nice >= 19 && idle_class {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: 0 names the calling thread; `param` lives on this stack for the call.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if result != 0 {
            // SAFETY: as below.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            tracing::debug!("could not put the media thread in the idle class");
        }
    } else if nice > 0 {
        // SAFETY: setpriority takes plain integers and touches no memory of ours.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if result != 0 {
            tracing::debug!("could not lower the media thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (nice, idle_class);
}
