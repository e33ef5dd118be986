//! A product's images: upload (JPEG, PNG, WebP, AVIF; the variants are made in the background),
//! the text alternative and the variant each shows, their order, deletion after a
//! confirmation. Through `media::api`'s functions, as the admin API's routes are
//! (audited; each change records the product's event, so caches and search follow).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, form_alert};
use super::session::{AdminSession, CSRF_FIELD, SignedIn};
use crate::app::AppState;
use crate::catalog::model::Product;
use crate::error::{Error, Result};
use crate::media::api::{self as media, ImagePatch};
use crate::media::{Format, ImageStatus, ProductImage};
use crate::staff::Staff;

const SECTION: &str = "/admin/products";

/// The upload's form may be as large as the media limit allows, with room for its other
/// parts.
pub fn upload_limit(state: &AppState) -> usize {
    state
        .config
        .media
        .media_max_upload_bytes
        .saturating_add(64 * 1024)
}

/// Whether a form post is an image upload (its body may be larger than other forms').
pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST
        && path
            .strip_prefix("/admin/products/")
            .and_then(|rest| rest.strip_suffix("/images"))
            .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
}

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/admin/products/{id}/images",
            get(images_page)
                .post(upload)
                .layer(DefaultBodyLimit::max(upload_limit(state))),
        )
        .route("/admin/products/{id}/images/{image_id}", post(change))
        .route(
            "/admin/products/{id}/images/{image_id}/move",
            post(move_image),
        )
        .route(
            "/admin/products/{id}/images/{image_id}/delete",
            get(confirm_delete).post(delete),
        )
}

const NOTICES: &[(&str, &str)] = &[
    (
        "uploaded",
        "Uploaded. Its sizes are being made; the shop shows the original meanwhile.",
    ),
    ("saved", "Saved."),
    ("moved", "Moved."),
    ("deleted", "Deleted, with its files."),
];

fn images_path(product_id: i64) -> String {
    format!("{SECTION}/{product_id}/images")
}

/// The form that came back with problems: the upload, or one image's own form.
enum Returned<'a> {
    None,
    Upload(&'a FormErrors),
    Image(i64, &'a Form, &'a FormErrors),
}

async fn images_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(product_id): PagePath<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), NOTICES);
    page(&state, &staff, &admin, product_id, notice, Returned::None).await
}

async fn page(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    product_id: i64,
    notice: Option<&str>,
    returned: Returned<'_>,
) -> Response {
    let loaded = async {
        let product = crate::catalog::product_for_staff(state, product_id).await?;
        Ok::<_, Error>((product, media::images(state, product_id).await?))
    };
    let (product, images) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "product"),
    };
    let may_write = super::may(staff.role, &Method::POST, "/admin/products/{id}/images");
    let no_errors = FormErrors::default();
    let (upload_errors, status) = match &returned {
        Returned::Upload(errors) => (*errors, errors.status()),
        Returned::Image(_, _, errors) => (&no_errors, errors.status()),
        Returned::None => (&no_errors, StatusCode::OK),
    };
    let last = images.len().saturating_sub(1);
    let body = html! {
        p.crumbs { a href=(SECTION) { "Products" } " › " a href={ (SECTION) "/" (product.id) } { (product.name) } }
        h1 { "Images of " (product.name) }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        @if images.is_empty() { p.empty { "No image yet: the shop shows the product without one." } }
        @for (index, image) in images.iter().enumerate() {
            @let this = match &returned {
                Returned::Image(id, form, errors) if *id == image.id => Some((*form, *errors)),
                _ => None,
            };
            (image_card(&product, image, index == 0, index == last, may_write, admin, this))
        }
        @if may_write {
            section {
                h2 { "Upload an image" }
                p.hint { "JPEG, PNG, WebP or AVIF, up to " (state.config.media.media_max_upload_bytes / 1_000_000)
                    " MB. The shop gets sizes from 320 to 1600 pixels wide in AVIF, WebP and JPEG, made in the background; "
                    "location and camera details are removed." }
                (form_alert(upload_errors))
                form method="post" action=(images_path(product.id)) enctype="multipart/form-data" novalidate {
                    (admin.csrf_input())
                    @let file_error = upload_errors.field("file").or(upload_errors.field("body"));
                    div.field {
                        label for="f-file" { "Image file" }
                        input #f-file type="file" name="file" accept="image/jpeg,image/png,image/webp,image/avif" required
                            aria-invalid=[file_error.map(|_| "true")]
                            aria-describedby=[file_error.map(|_| "f-file-error")];
                        @if let Some(message) = file_error {
                            p.field-error #f-file-error { (layout::sentence(message)) }
                        }
                    }
                    (field("Text alternative (what the image shows, for screen readers)", "alt", Kind::Text, "", upload_errors))
                    (variant_select(&product, "", upload_errors))
                    button.button.primary type="submit" { "Upload" }
                }
            }
        }
    };
    layout::page_with_status(
        status,
        staff,
        admin.csrf_input(),
        &format!("Images of {}", product.name),
        SECTION,
        body,
    )
}

/// The choice of the variant an image shows.
fn variant_select(product: &Product, chosen: &str, errors: &FormErrors) -> Markup {
    let labels: Vec<(String, String)> =
        std::iter::once((String::new(), "The whole product".to_owned()))
            .chain(
                product
                    .variants
                    .iter()
                    .map(|v| (v.id.to_string(), format!("{} ({})", v.title, v.sku))),
            )
            .collect();
    let options: Vec<(&str, &str)> = labels
        .iter()
        .map(|(value, label)| (value.as_str(), label.as_str()))
        .collect();
    field(
        "Shows",
        "variant_id",
        Kind::Select(&options),
        chosen,
        errors,
    )
}

fn image_card(
    product: &Product,
    image: &ProductImage,
    first: bool,
    last: bool,
    may_write: bool,
    admin: &AdminSession,
    returned: Option<(&Form, &FormErrors)>,
) -> Markup {
    let path = format!("{}/{}", images_path(product.id), image.id);
    let no_errors = FormErrors::default();
    let (alt, variant, errors) = match returned {
        Some((form, errors)) => (
            form.get("alt").to_owned(),
            form.get("variant_id").to_owned(),
            errors,
        ),
        None => (
            image.alt.clone(),
            image.variant_id.map(|v| v.to_string()).unwrap_or_default(),
            &no_errors,
        ),
    };
    let (status, status_class) = match image.status {
        ImageStatus::Ready => ("Ready", "active"),
        ImageStatus::Processing => ("Sizes being made", "pending"),
        ImageStatus::Failed => ("Sizes could not be made", "failed"),
    };
    html! {
        article.variant id={ "image-" (image.id) } {
            div.title-row {
                // The 320-pixel WebP; until it is made the media route answers the nearest
                // size or the original.
                img src=(crate::media::variant_url(&image.hash, 320, Format::WebP)) width="160"
                    height=(u64::from(image.height) * 160 / u64::from(image.width.max(1)))
                    alt=(image.alt) loading="lazy";
                p.meta {
                    span class={ "badge " (status_class) } { (status) }
                    " · " (image.width) " × " (image.height) " px · " (image.content_type)
                    " · " (image.byte_size / 1000) " kB"
                    @if let Some(error) = &image.error { br; span.hint { (error) } }
                }
            }
            @if may_write {
                (form_alert(errors))
                form method="post" action=(path) novalidate {
                    (admin.csrf_input())
                    (field("Text alternative", "alt", Kind::Text, &alt, errors))
                    (variant_select(product, &variant, errors))
                    button.button type="submit" { "Save" }
                }
                div.actions {
                    @if !first {
                        form.inline method="post" action={ (path) "/move" } {
                            (admin.csrf_input())
                            input type="hidden" name="to" value="earlier";
                            button.button type="submit" { "Move earlier" }
                        }
                    }
                    @if !last {
                        form.inline method="post" action={ (path) "/move" } {
                            (admin.csrf_input())
                            input type="hidden" name="to" value="later";
                            button.button type="submit" { "Move later" }
                        }
                    }
                    a.button.danger href={ (path) "/delete" } { "Delete…" }
                }
            }
        }
    }
}

async fn upload(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(product_id): PagePath<i64>,
    multipart: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let added = async {
        let multipart = multipart.map_err(|rejection| {
            Error::invalid(
                "file",
                format!("the form could not be read: {}", rejection.body_text()),
            )
        })?;
        let form = media::read_form(&state, multipart, &[CSRF_FIELD]).await?;
        media::add_image(&state, &staff.actor, product_id, form).await
    };
    match added.await {
        Ok(_) => layout::see_other(&format!("{}?done=uploaded", images_path(product_id))),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                page(
                    &state,
                    &staff,
                    &admin,
                    product_id,
                    None,
                    Returned::Upload(&errors),
                )
                .await
            }
            None => layout::error_page(&err, "image"),
        },
    }
}

/// The variant of a form's `variant_id`: `None` for the whole product.
fn variant_from(form: &Form) -> Result<Option<i64>> {
    match form.get("variant_id").trim() {
        "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid("variant_id", "choose one of the product's variants")),
    }
}

async fn change(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath((product_id, image_id)): PagePath<(i64, i64)>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let changed = async {
        let patch = ImagePatch {
            alt: Some(form.get("alt").to_owned()),
            variant_id: Some(variant_from(&form)?),
        };
        media::change_image(&state, &staff.actor, product_id, image_id, patch).await
    };
    match changed.await {
        Ok(_) => layout::see_other(&format!("{}?done=saved", images_path(product_id))),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                let returned = Returned::Image(image_id, &form, &errors);
                page(&state, &staff, &admin, product_id, None, returned).await
            }
            None => layout::error_page(&err, "image"),
        },
    }
}

/// One place earlier or later among the product's images.
async fn move_image(
    State(state): State<AppState>,
    SignedIn(staff, _admin): SignedIn,
    PagePath((product_id, image_id)): PagePath<(i64, i64)>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let moved = async {
        let mut ids: Vec<i64> = media::images(&state, product_id)
            .await?
            .iter()
            .map(|i| i.id)
            .collect();
        let at = ids
            .iter()
            .position(|id| *id == image_id)
            .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
        let to = match form.get("to") {
            "earlier" => at.checked_sub(1),
            _ => Some(at + 1).filter(|to| *to < ids.len()),
        };
        if let Some(to) = to {
            ids.swap(at, to);
            media::reorder(&state, &staff.actor, product_id, &ids).await?;
        }
        Ok::<_, Error>(())
    };
    match moved.await {
        Ok(()) => layout::see_other(&format!("{}?done=moved", images_path(product_id))),
        Err(err) => layout::error_page(&err, "image"),
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath((product_id, image_id)): PagePath<(i64, i64)>,
) -> Response {
    let loaded = async {
        let product = crate::catalog::product_for_staff(&state, product_id).await?;
        let image = media::images(&state, product_id)
            .await?
            .into_iter()
            .find(|i| i.id == image_id)
            .ok_or_else(|| Error::not_found(format!("image {image_id} of product {product_id}")))?;
        Ok::<_, Error>((product, image))
    };
    let (product, image) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "image"),
    };
    let path = format!("{}/{}", images_path(product_id), image_id);
    let body = html! {
        p.crumbs { a href=(SECTION) { "Products" } " › " a href={ (SECTION) "/" (product.id) } { (product.name) }
            " › " a href=(images_path(product_id)) { "Images" } }
        h1 { "Delete this image?" }
        img src=(crate::media::variant_url(&image.hash, 320, Format::WebP)) width="320"
            height=(u64::from(image.height) * 320 / u64::from(image.width.max(1))) alt=(image.alt);
        p { "The shop stops showing it at once, and its original and every size are deleted. This cannot be undone." }
        form method="post" action={ (path) "/delete" } {
            (admin.csrf_input())
            div.actions {
                button.button.danger type="submit" { "Delete the image" }
                a.button href=(images_path(product_id)) { "Keep it" }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Delete an image", SECTION, body)
}

async fn delete(
    State(state): State<AppState>,
    SignedIn(staff, _admin): SignedIn,
    PagePath((product_id, image_id)): PagePath<(i64, i64)>,
) -> Response {
    match media::remove_image(&state, &staff.actor, product_id, image_id).await {
        Ok(()) => layout::see_other(&format!("{}?done=deleted", images_path(product_id))),
        Err(err) => layout::error_page(&err, "image"),
    }
}
