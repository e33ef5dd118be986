//! Routes of product media: the admin API (upload, list, reorder, change, delete) and
//! the public `/media/<hash>/<width>.<format>`.

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::variants::{self, Rejection, SourceFormat};
use super::{Format, ProductImage, storage};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, FieldError, Result};
use crate::http::extract::{JsonBody, PathParam, StaffAuth};
use crate::store::Backend;

/// Caches keep a variant a year: its URL changes with its content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// What answers in a variant's stead (the next size, or the original) is kept a minute:
/// the variant itself comes soon.
pub const STAND_IN: &str = "public, max-age=60";

/// The admin routes; the upload's body may be as large as the media limit.
pub fn admin_routes(max_upload_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_image))
        .routes(routes!(replace_image))
        .layer(DefaultBodyLimit::max(
            max_upload_bytes.saturating_add(64 * 1024),
        ))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(list_images))
                .routes(routes!(reorder_images))
                .routes(routes!(update_image, delete_image)),
        )
}

/// The public route of media files (not part of the JSON API).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/media/{hash}/{file}", axum::routing::get(serve))
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImageUpload {
    /// The image: JPEG, PNG, WebP or AVIF, as its part's `Content-Type` says, up to
    /// OLIVINE_MEDIA_MAX_UPLOAD_BYTES (25 MB by default) and OLIVINE_MEDIA_MAX_PIXELS.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The text alternative (up to 500 characters).
    #[schema(max_length = 500)]
    alt: Option<String>,
    /// The variant of the product it shows, if not the whole product.
    variant_id: Option<i64>,
}

/// A change to an image; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePatch {
    /// The text alternative (up to 500 characters).
    #[schema(max_length = 500)]
    pub alt: Option<String>,
    /// The variant it shows; `null` for the whole product.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub variant_id: Option<Option<i64>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}

/// The new order of a product's images: every one of its image ids, once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageOrder {
    pub image_ids: Vec<i64>,
}

const MAX_ALT: usize = 500;
const MAX_TEXT_PART: usize = 4096;

fn file_error(status: StatusCode, message: impl Into<String>) -> Error {
    let message = message.into();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Error::MediaTooLarge {
            field: "file".to_owned(),
            message,
        },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedFile {
            field: "file".to_owned(),
            message,
        },
        _ => Error::invalid("file", message),
    }
}

fn multipart_error(err: MultipartError, field: &str, limit: usize) -> Error {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::MediaTooLarge {
            field: field.to_owned(),
            message: format!("larger than the limit of {limit} bytes"),
        }
    } else {
        Error::BadRequest {
            message: format!("the multipart body does not parse: {}", err.body_text()),
            fields: vec![FieldError::new(field, err.body_text())],
        }
    }
}

/// Reads a part whole, refusing it past `limit` bytes.
async fn read_part(
    field: &mut Field<'_>,
    name: &str,
    limit: usize,
    upload_limit: usize,
) -> Result<Bytes> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, name, upload_limit))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(Error::MediaTooLarge {
                field: name.to_owned(),
                message: format!("larger than the limit of {limit} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

async fn read_text(field: &mut Field<'_>, name: &str, upload_limit: usize) -> Result<String> {
    let bytes = read_part(field, name, MAX_TEXT_PART, upload_limit).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::invalid(name, "must be UTF-8 text"))
}

fn check_alt(alt: &str) -> Result<String> {
    let alt = alt.trim();
    if alt.chars().count() > MAX_ALT {
        return Err(Error::invalid(
            "alt",
            format!("at most {MAX_ALT} characters"),
        ));
    }
    if alt.contains('\0') {
        return Err(Error::invalid("alt", "must not contain a NUL character"));
    }
    Ok(alt.to_owned())
}

/// The slug of product `id`, or 404.
async fn product_slug(conn: &mut sqlx::AnyConnection, id: i64) -> Result<String> {
    sqlx::query("SELECT slug FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("product {id}")))
}

async fn check_variant(
    conn: &mut sqlx::AnyConnection,
    product_id: i64,
    variant_id: i64,
) -> Result<()> {
    let found = sqlx::query("SELECT 1 FROM variants WHERE id = $1 AND product_id = $2")
        .bind(variant_id)
        .bind(product_id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(Error::invalid(
            "variant_id",
            format!("product {product_id} has no variant {variant_id}"),
        ));
    }
    Ok(())
}

fn audit_state(image: &ProductImage) -> serde_json::Value {
    serde_json::json!({
        "product_id": image.product_id,
        "variant_id": image.variant_id,
        "hash": image.hash,
        "content_type": image.content_type,
        "byte_size": image.byte_size,
        "width": image.width,
        "height": image.height,
        "alt": image.alt,
        "position": image.position,
    })
}

/// Uploads an image of a product (multipart: `file`, a JPEG, PNG, WebP or AVIF, and
/// optionally `alt` and `variant_id`). It answers at once, with the image `processing`: a
/// background job makes its variants (320, 640, 1024 and 1600 px wide, never wider than the
/// original, in AVIF, WebP and JPEG; EXIF orientation applied, metadata stripped). A file that is not an
/// image, is truncated, declares too many pixels, has another type than its part's
/// `Content-Type` says, or is too large is refused naming `file`, and nothing is stored.
#[utoipa::path(post, path = "/products/{id}/images", tag = "admin-catalog",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = ProductImage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_image(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(product_id): PathParam<i64>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<ProductImage>)> {
    let form = read_form(&state, multipart_body(multipart)?, &[]).await?;
    let image = add_image(&state, &staff.actor, product_id, form).await?;
    Ok((StatusCode::CREATED, Json(image)))
}

/// Adds an uploaded image to product `product_id` (the admin API's upload and the admin
/// page's): checked, its original stored, its variants left to the job.
pub async fn add_image(
    state: &AppState,
    actor: &str,
    product_id: i64,
    form: UploadForm,
) -> Result<ProductImage> {
    let alt = form.alt.unwrap_or_default();
    let variant_id = form.variant_id;
    let Checked {
        bytes,
        hash,
        inspected,
    } = check_file(state, form.file).await?;
    let storage = &state.media;
    {
        // The product must exist before anything is stored.
        let mut conn = state.db.pool.acquire().await?;
        product_slug(&mut conn, product_id).await?;
        if let Some(variant_id) = variant_id {
            check_variant(&mut conn, product_id, variant_id).await?;
        }
    }
    let files = lock_files(state).await?;
    store_original(storage, &hash, &bytes).await?;
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    let slug = product_slug(&mut tx, product_id).await?;
    let position: i64 = sqlx::query(
        "SELECT CAST(COALESCE(MAX(position) + 1, 0) AS BIGINT) FROM product_images WHERE product_id = $1",
    )
    .bind(product_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    let already_made = variants_exist(&mut tx, &hash).await?;
    let status = if already_made { "ready" } else { "processing" };
    let image_id: i64 = sqlx::query(
        "INSERT INTO product_images (product_id, variant_id, hash, content_type, byte_size,
            width, height, alt, position, status, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
    )
    .bind(product_id)
    .bind(variant_id)
    .bind(&hash)
    .bind(inspected.format.content_type())
    .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
    .bind(i64::from(inspected.width))
    .bind(i64::from(inspected.height))
    .bind(&alt)
    .bind(position)
    .bind(status)
    .bind(actor)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if !already_made {
        crate::jobs::enqueue(&mut tx, &super::variants_job_for(&hash), state.clock.now()).await?;
    }
    let image = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("image {image_id} vanished")))?;
    record_change(
        &mut tx,
        actor,
        product_id,
        Change {
            event: "media.added",
            payload: serde_json::json!({ "id": image_id, "product_id": product_id, "hash": hash, "products": [slug] }),
            action: "product.image_added",
            target: ("product_image", image_id.to_string()),
            before: None,
            after: Some(audit_state(&image)),
        },
    )
    .await?;
    tx.commit().await?;
    drop(files);
    state.bus.notify();
    state.bus.notify_jobs();
    metrics::counter!("olivine_media_uploads_total").increment(1);
    Ok(image)
}

/// The parts of an upload form.
pub struct UploadForm {
    file: Option<(Bytes, String)>,
    alt: Option<String>,
    variant_id: Option<i64>,
}

fn multipart_body(
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Multipart> {
    multipart.map_err(|rejection| Error::UnsupportedFile {
        field: "body".to_owned(),
        message: format!(
            "expected a multipart/form-data body with a `file` part: {}",
            rejection.body_text()
        ),
    })
}

/// Reads an upload's parts (`file`, `alt`, `variant_id`); parts named in `ignored` (the
/// admin page's `csrf`, checked before) are skipped, any other is refused.
pub async fn read_form(
    state: &AppState,
    mut multipart: Multipart,
    ignored: &[&str],
) -> Result<UploadForm> {
    let limit = state.config.media.media_max_upload_bytes;
    let mut form = UploadForm {
        file: None,
        alt: None,
        variant_id: None,
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, "file", limit))?
    {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                if form.file.is_some() {
                    return Err(Error::invalid("file", "one file per upload"));
                }
                let declared = field.content_type().unwrap_or("").to_owned();
                if SourceFormat::from_content_type(&declared).is_none() {
                    return Err(file_error(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "the part's Content-Type must be image/jpeg, image/png, image/webp or image/avif, not `{}`",
                            if declared.is_empty() {
                                "nothing"
                            } else {
                                &declared
                            }
                        ),
                    ));
                }
                let bytes = read_part(&mut field, "file", limit, limit).await?;
                form.file = Some((bytes, declared));
            }
            "alt" => form.alt = Some(check_alt(&read_text(&mut field, "alt", limit).await?)?),
            "variant_id" => {
                // Empty, as an HTML form sends "the whole product": none.
                let text = read_text(&mut field, "variant_id", limit).await?;
                form.variant_id = match text.trim() {
                    "" => None,
                    id => Some(
                        id.parse()
                            .map_err(|_| Error::invalid("variant_id", "must be a variant's id"))?,
                    ),
                };
            }
            other if ignored.contains(&other) => {}
            other => {
                return Err(Error::invalid(
                    if other.is_empty() { "body" } else { other },
                    "unknown part: expected `file`, `alt` or `variant_id`",
                ));
            }
        }
    }
    Ok(form)
}

/// An uploaded file that passed every check, with its content hash.
struct Checked {
    bytes: Bytes,
    hash: String,
    inspected: variants::Inspected,
}

async fn check_file(state: &AppState, file: Option<(Bytes, String)>) -> Result<Checked> {
    let Some((bytes, declared)) = file else {
        return Err(Error::invalid("file", "required: the image to upload"));
    };
    if bytes.is_empty() {
        return Err(Error::invalid("file", "is empty"));
    }
    let sniffed = SourceFormat::sniff(&bytes)
        .ok_or_else(|| Error::invalid("file", Rejection::NotAnImage.to_string()))?;
    if SourceFormat::from_content_type(&declared) != Some(sniffed) {
        return Err(file_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("declared as {declared} but is a {} image", sniffed.name()),
        ));
    }
    // Decoding the whole file proves it is not truncated; it is the one heavy step of the
    // upload (80 ms for a 12-megapixel photo), so it runs at the media priority: on a busy
    // node shoppers' requests go first. Variants are the job's work.
    let max_pixels = state.config.media.media_max_pixels;
    let checked = bytes.clone();
    // A decoded photo takes up to 8 bytes a pixel: a burst of uploads waits its turn here
    // rather than decoding all at once.
    let _turn = UPLOAD_CHECKS
        .acquire()
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("waiting to check an upload: {e}")))?;
    let (inspected, hash) =
        super::at_media_priority(state.config.media.media_nice, false, move || {
            (
                variants::inspect(&checked, max_pixels),
                // The media hash: the original's SHA-256, in hex.
                crate::plugins::decisions::hash(&checked),
            )
        })
        .map_err(Error::Internal)?
        .await
        .map_err(|_| Error::Internal(anyhow::anyhow!("inspecting an upload panicked")))?;
    let inspected = match inspected {
        Ok(inspected) => inspected,
        Err(why @ Rejection::Unsupported(_)) => {
            return Err(file_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                why.to_string(),
            ));
        }
        Err(why) => return Err(Error::invalid("file", why.to_string())),
    };
    Ok(Checked {
        bytes,
        hash,
        inspected,
    })
}

/// How many uploads this node decodes to check them at once.
static UPLOAD_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Whether variants of `hash` were made already (the same file uploaded before).
async fn variants_exist(conn: &mut sqlx::AnyConnection, hash: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM media_variants WHERE hash = $1 LIMIT 1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// Held by the media changes that decide whether an original's files stay: an upload's
/// "is the original stored?" and its commit, a deletion's "does an image still show it?"
/// and the removal of its files. Without it, a file uploaded again while the last image
/// showing it is deleted could be committed as stored just as its files go. These are
/// rare staff actions, so one lock serves them all: a transaction-scoped advisory lock
/// on PostgreSQL (every node of a cluster), a process mutex on SQLite (a single node).
/// Taken before the change's transaction, always, so two holders never wait on each other.
pub(crate) struct FilesLock {
    _local: Option<tokio::sync::MutexGuard<'static, ()>>,
    _cluster: Option<crate::store::Tx>,
}

static LOCAL_FILES_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The PostgreSQL advisory lock's key ("olmedia1" in ASCII).
pub(crate) const FILES_LOCK_KEY: i64 = 0x6f6c_6d65_6469_6131;

pub(crate) async fn lock_files(state: &AppState) -> Result<FilesLock> {
    Ok(match state.db.backend {
        Backend::Sqlite => FilesLock {
            _local: Some(LOCAL_FILES_LOCK.lock().await),
            _cluster: None,
        },
        Backend::Postgres => {
            // Dropping the transaction (the lock's end) rolls it back, which releases it.
            let mut tx = state.db.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FILES_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
            FilesLock {
                _local: None,
                _cluster: Some(tx),
            }
        }
    })
}

/// Stores an upload's original unless the same bytes are stored already (under the
/// files lock, so a deletion cannot remove them between the check and the commit).
async fn store_original(storage: &storage::Storage, hash: &str, bytes: &Bytes) -> Result<()> {
    let key = storage::original_key(hash);
    if !storage.exists(&key).await? {
        storage.put(&key, bytes.clone()).await?;
    }
    Ok(())
}

/// Deletes the files of `hash` when no image shows it (any more), under the files lock.
/// After the commit: a failure here leaves files no URL names, never a URL without its
/// file.
async fn delete_files_if_unused(state: &AppState, hash: &str) -> Result<()> {
    let unused = {
        let mut conn = state.db.pool.acquire().await?;
        !super::hash_in_use(&mut conn, hash).await?
    };
    if unused {
        let storage = &state.media;
        if let Err(err) = async {
            storage.delete_all(&storage::variants_prefix(hash)).await?;
            storage.delete(&storage::original_key(hash)).await
        }
        .await
        {
            tracing::warn!(hash, error = %format!("{err:#}"), "deleting media files failed");
        }
    }
    Ok(())
}

/// Replaces an image's file (multipart: `file`, and optionally `alt` and `variant_id`),
/// keeping its place among the product's images and, unless given anew, its alt text and
/// variant. The same checks as an upload; the new file's variants are made by the job,
/// and the old file's are deleted unless another image shows it.
#[utoipa::path(put, path = "/products/{id}/images/{image_id}/file", tag = "admin-catalog",
    params(("id" = i64, Path), ("image_id" = i64, Path)), security(("staff_token" = [])),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = 200, body = ProductImage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace_image(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam((product_id, image_id)): PathParam<(i64, i64)>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Json<ProductImage>> {
    let form = read_form(&state, multipart_body(multipart)?, &[]).await?;
    let Checked {
        bytes,
        hash,
        inspected,
    } = check_file(&state, form.file).await?;
    {
        let mut conn = state.db.pool.acquire().await?;
        product_slug(&mut conn, product_id).await?;
        super::image_of(&mut conn, product_id, image_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
        if let Some(variant_id) = form.variant_id {
            check_variant(&mut conn, product_id, variant_id).await?;
        }
    }
    let files = lock_files(&state).await?;
    store_original(&state.media, &hash, &bytes).await?;
    let mut tx = state.db.begin().await?;
    let slug = product_slug(&mut tx, product_id).await?;
    let before = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
    let already_made = variants_exist(&mut tx, &hash).await?;
    sqlx::query(
        "UPDATE product_images SET hash = $1, content_type = $2, byte_size = $3, width = $4,
            height = $5, alt = $6, variant_id = $7, status = $8, error = NULL, updated_at = $9
         WHERE id = $10",
    )
    .bind(&hash)
    .bind(inspected.format.content_type())
    .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
    .bind(i64::from(inspected.width))
    .bind(i64::from(inspected.height))
    .bind(form.alt.as_deref().unwrap_or(&before.alt))
    .bind(form.variant_id.or(before.variant_id))
    .bind(if already_made { "ready" } else { "processing" })
    .bind(state.clock.now_text())
    .bind(image_id)
    .execute(&mut *tx)
    .await?;
    if !already_made {
        crate::jobs::enqueue(&mut tx, &super::variants_job_for(&hash), state.clock.now()).await?;
    }
    let old_unused = before.hash != hash && !super::hash_in_use(&mut tx, &before.hash).await?;
    if old_unused {
        sqlx::query("DELETE FROM media_variants WHERE hash = $1")
            .bind(&before.hash)
            .execute(&mut *tx)
            .await?;
    }
    let after = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("image {image_id} vanished")))?;
    record_change(
        &mut tx,
        &staff.actor,
        product_id,
        Change {
            event: "media.updated",
            payload: serde_json::json!({ "id": image_id, "product_id": product_id, "hash": hash, "products": [slug] }),
            action: "product.image_replaced",
            target: ("product_image", image_id.to_string()),
            before: Some(audit_state(&before)),
            after: Some(audit_state(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    state.bus.notify_jobs();
    if old_unused {
        delete_files_if_unused(&state, &before.hash).await?;
    }
    drop(files);
    Ok(Json(after))
}

/// The images of a product, in order, with their variants.
#[utoipa::path(get, path = "/products/{id}/images", tag = "admin-catalog",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Vec<ProductImage>), (status = 404, body = ErrorBody)))]
async fn list_images(
    State(state): State<AppState>,
    PathParam(product_id): PathParam<i64>,
) -> Result<Json<Vec<ProductImage>>> {
    Ok(Json(images(&state, product_id).await?))
}

/// The images of product `product_id`, in order (404 for an unknown product).
pub async fn images(state: &AppState, product_id: i64) -> Result<Vec<ProductImage>> {
    let mut conn = state.db.pool.acquire().await?;
    product_slug(&mut conn, product_id).await?;
    super::images_of(&mut conn, product_id).await
}

/// Puts a product's images in a new order: `image_ids` lists every image of the product
/// once, first to last.
#[utoipa::path(put, path = "/products/{id}/images/order", tag = "admin-catalog",
    params(("id" = i64, Path)), security(("staff_token" = [])), request_body = ImageOrder,
    responses((status = 200, body = Vec<ProductImage>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reorder_images(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(product_id): PathParam<i64>,
    JsonBody(order): JsonBody<ImageOrder>,
) -> Result<Json<Vec<ProductImage>>> {
    Ok(Json(
        reorder(&state, &staff.actor, product_id, &order.image_ids).await?,
    ))
}

/// Puts product `product_id`'s images in the order of `image_ids` (each of its images
/// once).
pub async fn reorder(
    state: &AppState,
    actor: &str,
    product_id: i64,
    image_ids: &[i64],
) -> Result<Vec<ProductImage>> {
    let mut tx = state.db.begin().await?;
    let slug = product_slug(&mut tx, product_id).await?;
    let before = super::images_of(&mut tx, product_id).await?;
    let mut current: Vec<i64> = before.iter().map(|i| i.id).collect();
    let mut wanted = image_ids.to_vec();
    current.sort_unstable();
    wanted.sort_unstable();
    if current != wanted {
        return Err(Error::invalid(
            "image_ids",
            format!(
                "must list each of the product's {} image(s) once, and no other",
                current.len()
            ),
        ));
    }
    let now = state.clock.now_text();
    for (position, id) in image_ids.iter().enumerate() {
        sqlx::query("UPDATE product_images SET position = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    record_change(
        &mut tx,
        actor,
        product_id,
        Change {
            event: "media.reordered",
            payload: serde_json::json!({ "product_id": product_id, "image_ids": image_ids, "products": [slug] }),
            action: "product.images_reordered",
            target: ("product", product_id.to_string()),
            before: Some(
                serde_json::json!({ "image_ids": before.iter().map(|i| i.id).collect::<Vec<_>>() }),
            ),
            after: Some(serde_json::json!({ "image_ids": image_ids })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    let mut conn = state.db.pool.acquire().await?;
    super::images_of(&mut conn, product_id).await
}

/// Changes an image's alt text or the variant it shows.
#[utoipa::path(patch, path = "/products/{id}/images/{image_id}", tag = "admin-catalog",
    params(("id" = i64, Path), ("image_id" = i64, Path)), security(("staff_token" = [])),
    request_body = ImagePatch,
    responses((status = 200, body = ProductImage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_image(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam((product_id, image_id)): PathParam<(i64, i64)>,
    JsonBody(patch): JsonBody<ImagePatch>,
) -> Result<Json<ProductImage>> {
    Ok(Json(
        change_image(&state, &staff.actor, product_id, image_id, patch).await?,
    ))
}

/// Changes an image's alt text or the variant it shows.
pub async fn change_image(
    state: &AppState,
    actor: &str,
    product_id: i64,
    image_id: i64,
    patch: ImagePatch,
) -> Result<ProductImage> {
    let alt = patch.alt.as_deref().map(check_alt).transpose()?;
    let mut tx = state.db.begin().await?;
    let slug = product_slug(&mut tx, product_id).await?;
    let before = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
    if let Some(Some(variant_id)) = patch.variant_id {
        check_variant(&mut tx, product_id, variant_id).await?;
    }
    let variant_id = match patch.variant_id {
        Some(v) => v,
        None => before.variant_id,
    };
    sqlx::query(
        "UPDATE product_images SET alt = $1, variant_id = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(alt.as_deref().unwrap_or(&before.alt))
    .bind(variant_id)
    .bind(state.clock.now_text())
    .bind(image_id)
    .execute(&mut *tx)
    .await?;
    let after = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("image {image_id} vanished")))?;
    record_change(
        &mut tx,
        actor,
        product_id,
        Change {
            event: "media.updated",
            payload: serde_json::json!({ "id": image_id, "product_id": product_id, "products": [slug] }),
            action: "product.image_updated",
            target: ("product_image", image_id.to_string()),
            before: Some(audit_state(&before)),
            after: Some(audit_state(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(after)
}

/// Deletes an image. Its original and every variant go from storage too, unless another
/// image shows the same file.
#[utoipa::path(delete, path = "/products/{id}/images/{image_id}", tag = "admin-catalog",
    params(("id" = i64, Path), ("image_id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn delete_image(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam((product_id, image_id)): PathParam<(i64, i64)>,
) -> Result<StatusCode> {
    remove_image(&state, &staff.actor, product_id, image_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an image, and its files unless another image shows the same file.
pub async fn remove_image(
    state: &AppState,
    actor: &str,
    product_id: i64,
    image_id: i64,
) -> Result<()> {
    let files = lock_files(state).await?;
    let mut tx = state.db.begin().await?;
    let slug = product_slug(&mut tx, product_id).await?;
    let before = super::image_of(&mut tx, product_id, image_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
    sqlx::query("DELETE FROM product_images WHERE id = $1")
        .bind(image_id)
        .execute(&mut *tx)
        .await?;
    // Close the gap in the positions.
    sqlx::query(
        "UPDATE product_images SET position = position - 1 WHERE product_id = $1 AND position > $2",
    )
    .bind(product_id)
    .bind(before.position)
    .execute(&mut *tx)
    .await?;
    let orphaned = !super::hash_in_use(&mut tx, &before.hash).await?;
    if orphaned {
        sqlx::query("DELETE FROM media_variants WHERE hash = $1")
            .bind(&before.hash)
            .execute(&mut *tx)
            .await?;
    }
    record_change(
        &mut tx,
        actor,
        product_id,
        Change {
            event: "media.deleted",
            payload: serde_json::json!({ "id": image_id, "product_id": product_id, "hash": before.hash, "products": [slug] }),
            action: "product.image_deleted",
            target: ("product_image", image_id.to_string()),
            before: Some(audit_state(&before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    // A variants job still running drops what it makes.
    if orphaned {
        delete_files_if_unused(state, &before.hash).await?;
    }
    drop(files);
    Ok(())
}

/// What an image change records in its transaction: the product's event (the search
/// index and caches follow it) and the audit entry.
struct Change {
    event: &'static str,
    payload: serde_json::Value,
    action: &'static str,
    target: (&'static str, String),
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

async fn record_change(
    conn: &mut sqlx::AnyConnection,
    actor: &str,
    product_id: i64,
    change: Change,
) -> Result<()> {
    crate::bus::record(conn, "product", product_id, change.event, &change.payload).await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: change.action,
            target_type: change.target.0,
            target_id: change.target.1,
            before: change.before,
            after: change.after,
        },
    )
    .await?;
    Ok(())
}

// ---- serving ---------------------------------------------------------------------------

/// `/media/<hash>/<width>.<format>`: the variant, or while it is not made yet, the
/// nearest size made (the next wider first) or the original with its metadata stripped.
async fn serve(
    State(state): State<AppState>,
    axum::extract::Path((hash, file)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match serve_file(&state, &hash, &file, &headers).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn parse_file(file: &str) -> Option<(u32, Format)> {
    let (width, ext) = file.split_once('.')?;
    if width.is_empty() || width.len() > 5 || !width.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((width.parse().ok()?, Format::from_extension(ext)?))
}

async fn serve_file(
    state: &AppState,
    hash: &str,
    file: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    let not_found = || Error::not_found(format!("media /media/{hash}/{file}"));
    if !super::is_hash(hash) {
        return Err(not_found());
    }
    let (width, format) = parse_file(file).ok_or_else(not_found)?;
    let storage = &state.media;
    let exact = storage::variant_key(hash, width, format);
    if let Some(bytes) = storage.get(&exact).await? {
        return Ok(answer(
            headers,
            bytes,
            format.content_type(),
            &etag(hash, file),
            IMMUTABLE,
        ));
    }
    // Not made (yet): the nearest width made in this format, wider ones first.
    let prefix = storage::variants_prefix(hash);
    let ext = format.extension();
    let mut made: Vec<u32> = storage
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|name| parse_file(name))
        .filter(|(_, f)| *f == format)
        .map(|(w, _)| w)
        .collect();
    made.sort_unstable();
    let stand_in = made
        .iter()
        .find(|w| **w >= width)
        .or_else(|| made.iter().rev().find(|w| **w < width))
        .copied();
    if let Some(w) = stand_in
        && let Some(bytes) = storage.get(&storage::variant_key(hash, w, format)).await?
    {
        let name = format!("{w}.{ext}");
        return Ok(answer(
            headers,
            bytes,
            format.content_type(),
            &etag(hash, &name),
            STAND_IN,
        ));
    }
    let Some(original) = storage.get(&storage::original_key(hash)).await? else {
        return Err(not_found());
    };
    let kind = SourceFormat::sniff(&original).ok_or_else(not_found)?;
    // An AVIF's Exif and XMP items are not stripped here (no AVIF writer): it is never
    // served as uploaded. Its sizes come within seconds; until then, nothing.
    if kind == SourceFormat::Avif {
        return Err(not_found());
    }
    let stripped = super::strip::metadata(&original, kind);
    Ok(answer(
        headers,
        stripped,
        kind.content_type(),
        &etag(hash, "original"),
        STAND_IN,
    ))
}

fn etag(hash: &str, name: &str) -> String {
    format!("\"{}-{}\"", &hash[..16.min(hash.len())], name)
}

/// The file, or 304 when the client holds it already.
fn answer(
    headers: &HeaderMap,
    bytes: Bytes,
    content_type: &str,
    etag: &str,
    cache: &'static str,
) -> Response {
    let held = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let mut response = if held {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, bytes).into_response()
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if !held && let Ok(value) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
