//! Product media: uploads (and the bad ones refused), the variants the background job
//! makes (sizes, formats, orientation, metadata), serving with cache headers and the
//! fallbacks, the product JSON and page, reorder, alt text, deletion, audit.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use image::{ImageDecoder, Rgb, RgbImage};
use serde_json::{Value, json};

use crate::common::*;

const BOUNDARY: &str = "olivine-media-test-boundary";
/// Marks metadata that must never reach a shopper.
const SECRET: &str = "GPSLatitude 52.3731 secret-serial-0042";

/// A kernel with fast AVIF encoding (tests check shapes, not compression).
async fn media_app(backend: Backend) -> TestApp {
    media_app_with(backend, |_| {}).await
}

async fn media_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut olivine::config::ServeConfig),
) -> TestApp {
    let app = TestApp::start_with(backend, |c| {
        c.media.media_avif_speed = 10;
        // The suite's other tests keep both cores busy: at nice 10 the variants could
        // wait out the tests' deadline (the priority is the benchmark's to show).
        c.media.media_nice = 0;
        adjust(c);
    })
    .await;
    basic_setup(&app).await;
    app
}

async fn product(app: &TestApp, slug: &str) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/products",
            &supplement(slug, &slug.to_uppercase()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().expect("product id")
}

/// A JPEG `w` x `h`: the left half red, the right half blue; with `orientation`, an EXIF
/// segment saying so, and always an XMP segment holding [`SECRET`].
fn jpeg(w: u32, h: u32, orientation: Option<u8>) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    });
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let mut out = plain[..2].to_vec();
    if let Some(o) = orientation {
        out.extend_from_slice(&olivine::media::strip::orientation_segment(o));
    }
    let xmp = format!("http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>{SECRET}</x:xmpmeta>");
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((xmp.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(xmp.as_bytes());
    out.extend_from_slice(&plain[2..]);
    out
}

/// An AVIF `w` x `h` (ravif, as the kernel's variants): the left half red, the right half
/// blue; with `alpha`, the right half transparent.
fn avif(w: usize, h: usize, alpha: bool) -> Vec<u8> {
    let pixels: Vec<ravif::RGBA8> = (0..w * h)
        .map(|i| {
            if i % w < w / 2 {
                ravif::RGBA8::new(220, 20, 20, 255)
            } else {
                ravif::RGBA8::new(20, 20, 220, if alpha { 0 } else { 255 })
            }
        })
        .collect();
    let encoder = ravif::Encoder::new().with_speed(10).with_quality(90.0);
    let encoded = if alpha {
        encoder.encode_rgba(ravif::Img::new(&pixels[..], w, h))
    } else {
        let rgb: Vec<ravif::RGB8> = pixels.iter().map(|p| p.rgb()).collect();
        encoder.encode_rgb(ravif::Img::new(&rgb[..], w, h))
    };
    encoded.expect("an AVIF").avif_file
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    encode_png(&img)
}

/// A PNG of noise: it does not compress, so it is about `w * h * 3` bytes.
fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    let mut seed: u32 = 0x2545_f491;
    let img = RgbImage::from_fn(w, h, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let [a, b, c, _] = seed.to_le_bytes();
        Rgb([a, b, c])
    });
    encode_png(&img)
}

fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// A multipart body with the parts `(name, content type, bytes)`.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match content_type {
            Some(ct) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload_as(
    app: &TestApp,
    token: &str,
    product_id: i64,
    parts: &[(&str, Option<&str>, &[u8])],
) -> TestResponse {
    app.request(
        Method::POST,
        &format!("/api/v1/admin/products/{product_id}/images"),
        Some(token),
        Some(Body::from(multipart(parts))),
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
    )
    .await
}

async fn upload(
    app: &TestApp,
    product_id: i64,
    parts: &[(&str, Option<&str>, &[u8])],
) -> TestResponse {
    upload_as(app, ADMIN_TOKEN, product_id, parts).await
}

async fn images(app: &TestApp, product_id: i64) -> Vec<Value> {
    let r = app
        .admin_get(&format!("/api/v1/admin/products/{product_id}/images"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json().as_array().expect("a list").clone()
}

/// Runs the job workers until every image of the product is out of `processing`.
async fn variants_made(app: &TestApp, product_id: i64) -> Vec<Value> {
    wait_until("the variants made", async || {
        app.kernel.state.bus.notify_jobs();
        images(app, product_id)
            .await
            .iter()
            .all(|i| i["status"] != "processing")
    })
    .await;
    app.settle().await;
    images(app, product_id).await
}

async fn get_with(app: &TestApp, path: &str, etag: Option<&str>) -> TestResponse {
    let mut request = Request::builder().uri(path);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    app.send(request.body(Body::empty()).expect("request"))
        .await
}

fn media_dir(app: &TestApp) -> std::path::PathBuf {
    app.kernel.state.config.media_dir()
}

fn header(r: &TestResponse, name: header::HeaderName) -> &str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Width and height from an AVIF's `ispe` box.
fn avif_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[4..12], b"ftypavif", "an AVIF file");
    let at = bytes
        .windows(4)
        .position(|w| w == b"ispe")
        .expect("an ispe box");
    let num = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (num(at + 8), num(at + 12))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

both_backends! {
    async fn an_upload_is_resized_upright_into_every_format_and_served_immutable(backend: Backend) {
        let app = media_app(backend).await;
        let id = product(&app, "media-magnesium").await;
        // 900 x 600 stored, displayed 600 x 900 (EXIF orientation 6: turn 90° clockwise).
        let original = jpeg(900, 600, Some(6));
        let r = upload(&app, id, &[
            ("file", Some("image/jpeg"), &original),
            ("alt", None, b"A jar of magnesium capsules"),
        ]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let image = r.json();
        assert_eq!(image["status"], "processing", "the upload does not wait for variants");
        assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(600), Some(900)));
        assert_eq!(image["alt"], "A jar of magnesium capsules");
        let hash = image["hash"].as_str().unwrap().to_owned();
        assert_eq!(hash.len(), 64);
        assert_eq!(
            std::fs::read(media_dir(&app).join("originals").join(&hash)).expect("original stored"),
            original,
            "the original is stored as uploaded"
        );

        let images = variants_made(&app, id).await;
        assert_eq!(images[0]["status"], "ready", "{}", images[0]);
        let variants = images[0]["variants"].as_array().unwrap();
        // 320 and the original's own 600 (never upscaled to 640), in three formats.
        assert_eq!(variants.len(), 6, "{variants:?}");
        assert!(variants.iter().all(|v| v["ready"] == true));
        let widths: std::collections::BTreeSet<u64> =
            variants.iter().map(|v| v["width"].as_u64().unwrap()).collect();
        assert_eq!(widths.into_iter().collect::<Vec<_>>(), vec![320, 600]);

        // WebP: right size, upright (the red left half of the stored image is on top).
        let r = app.get(&format!("/media/{hash}/320.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "image/webp");
        assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        let etag = header(&r, header::ETAG).to_owned();
        assert!(etag.starts_with('"'), "{etag}");
        let webp = image::load_from_memory(&r.body).expect("decodes").to_rgb8();
        assert_eq!(webp.dimensions(), (320, 480));
        let top = webp.get_pixel(160, 20);
        let bottom = webp.get_pixel(160, 460);
        assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
        assert!(bottom[2] > 150 && bottom[0] < 100, "bottom is blue: {bottom:?}");
        assert!(!contains(&r.body, SECRET));
        // The validator: 304 with no body.
        let again = get_with(&app, &format!("/media/{hash}/320.webp"), Some(&etag)).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
        assert_eq!(header(&again, header::ETAG), etag);

        // JPEG: right size, upright, no metadata left (no EXIF, no XMP).
        let r = app.get(&format!("/media/{hash}/600.jpg")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "image/jpeg");
        let mut decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&r.body)).unwrap();
        assert_eq!(decoder.exif_metadata().unwrap(), None, "EXIF stripped");
        assert_eq!(decoder.dimensions(), (600, 900));
        assert!(!contains(&r.body, SECRET), "XMP stripped");
        let jpg = image::load_from_memory(&r.body).unwrap().to_rgb8();
        assert!(jpg.get_pixel(300, 30)[0] > 150, "upright");

        // AVIF: an AVIF of the right size.
        let r = app.get(&format!("/media/{hash}/320.avif")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "image/avif");
        assert_eq!(avif_size(&r.body), (320, 480));

        // The product JSON lists the images and their variants.
        let r = app.get("/api/v1/products/media-magnesium").await;
        assert_eq!(r.status, StatusCode::OK);
        let listed = &r.json()["images"];
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["status"], "ready");
        assert_eq!(listed[0]["variants"].as_array().unwrap().len(), 6);
        assert!(listed[0]["variants"].as_array().unwrap().iter().any(|v|
            v["url"] == format!("/media/{hash}/320.avif") && v["format"] == "avif" && v["height"] == 480));

        // The product page: <picture> with srcset, sizes, width and height.
        let page = app.get("/p/media-magnesium").await.text();
        assert!(page.contains("<picture>"), "{page}");
        assert!(page.contains(&format!("/media/{hash}/320.avif 320w, /media/{hash}/600.avif 600w")), "{page}");
        assert!(page.contains(r#"type="image/webp""#));
        assert!(page.contains(r#"width="600" height="900""#), "{page}");
        assert!(page.contains("sizes=\""));
        assert!(page.contains(r#"alt="A jar of magnesium capsules""#));

        // Unknown files are 404s.
        assert_eq!(app.get(&format!("/media/{hash}/320.gif")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/media/not-a-hash/320.webp").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("/media/{}/320.webp", "0".repeat(64))).await.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn a_variant_not_made_yet_falls_back_to_another_size_then_the_stripped_original(backend: Backend) {
        let app = media_app(backend).await;
        let id = product(&app, "media-fallback").await;
        let original = jpeg(900, 600, Some(6));
        let r = upload(&app, id, &[("file", Some("image/jpeg"), &original)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let hash = r.json()["hash"].as_str().unwrap().to_owned();
        variants_made(&app, id).await;
        // As if the job had made only some: the 600 px WebP is not there.
        let variants = media_dir(&app).join("variants").join(&hash);
        std::fs::remove_file(variants.join("600.webp")).unwrap();
        let r = app.get(&format!("/media/{hash}/600.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=60", "a stand-in is not immutable");
        assert_eq!(image::load_from_memory(&r.body).unwrap().width(), 320, "the next size available");
        // A width between two: the next wider one.
        let r = app.get(&format!("/media/{hash}/400.jpg")).await;
        assert_eq!(image::load_from_memory(&r.body).unwrap().width(), 600);
        // No variant at all: the original, metadata stripped but still upright.
        std::fs::remove_dir_all(&variants).unwrap();
        let r = app.get(&format!("/media/{hash}/320.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "image/jpeg");
        assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=60");
        assert!(!contains(&r.body, SECRET), "the original's metadata is not served");
        let mut decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&r.body)).unwrap();
        assert_eq!(decoder.orientation().unwrap().to_exif(), 6, "the orientation is kept");
        let etag = header(&r, header::ETAG).to_owned();
        assert_eq!(get_with(&app, &format!("/media/{hash}/320.webp"), Some(&etag)).await.status, StatusCode::NOT_MODIFIED);
        app.stop().await;
    }

    async fn bad_uploads_are_refused_naming_the_field_and_nothing_is_stored(backend: Backend) {
        let app = media_app_with(backend, |c| c.media.media_max_upload_bytes = 200_000).await;
        let id = product(&app, "media-bad").await;
        let good = jpeg(400, 300, None);

        // Not an image at all.
        upload(&app, id, &[("file", Some("image/png"), b"hello, I am text")]).await.assert_field_error(422, "file");
        // Truncated.
        let truncated = &good[..good.len() / 2];
        let r = upload(&app, id, &[("file", Some("image/jpeg"), truncated)]).await;
        r.assert_field_error(422, "file");
        // A decompression bomb: a small JPEG declaring 50,000 x 50,000 pixels.
        let mut bomb = good.clone();
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
        bomb[sof + 5..sof + 9].copy_from_slice(&[0xC3, 0x50, 0xC3, 0x50]);
        let r = upload(&app, id, &[("file", Some("image/jpeg"), &bomb)]).await;
        r.assert_field_error(422, "file");
        assert!(r.text().contains("50000 x 50000"), "{}", r.text());
        // A PNG declared as a JPEG, and a type that is no image.
        upload(&app, id, &[("file", Some("image/jpeg"), &png(64, 64))]).await.assert_field_error(415, "file");
        upload(&app, id, &[("file", Some("text/plain"), &good)]).await.assert_field_error(415, "file");
        // Over the upload limit.
        let big = noisy_png(300, 300);
        assert!(big.len() > 200_000, "{}", big.len());
        upload(&app, id, &[("file", Some("image/png"), &big)]).await.assert_field_error(413, "file");
        // Not multipart at all; no file part; an unknown part; a bad variant id.
        let r = app.admin_post(&format!("/api/v1/admin/products/{id}/images"), &json!({"file": "x"})).await;
        r.assert_field_error(415, "body");
        upload(&app, id, &[("alt", None, b"no file")]).await.assert_field_error(422, "file");
        upload(&app, id, &[("file", Some("image/jpeg"), &good), ("colour", None, b"red")]).await.assert_field_error(422, "colour");
        upload(&app, id, &[("file", Some("image/jpeg"), &good), ("variant_id", None, b"999999")]).await.assert_field_error(422, "variant_id");
        let long_alt = "a".repeat(501);
        upload(&app, id, &[("file", Some("image/jpeg"), &good), ("alt", None, long_alt.as_bytes())]).await.assert_field_error(422, "alt");
        // An unknown product.
        assert_eq!(upload(&app, 999_999, &[("file", Some("image/jpeg"), &good)]).await.status, StatusCode::NOT_FOUND);

        assert_eq!(app.count("product_images").await, 0);
        assert_eq!(app.count("jobs WHERE kind = 'media.variants'").await, 0);
        let originals = media_dir(&app).join("originals");
        assert!(!originals.exists() || std::fs::read_dir(&originals).unwrap().next().is_none(), "nothing stored");
        app.stop().await;
    }

    async fn an_avif_upload_is_decoded_and_made_into_every_format(backend: Backend) {
        let app = media_app(backend).await;
        let id = product(&app, "media-avif").await;
        // Small: the job encodes AVIF too, and the suite keeps both cores busy.
        let original = avif(500, 360, false);
        let r = upload(&app, id, &[("file", Some("image/avif"), &original)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let image = r.json();
        assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(500), Some(360)));
        let hash = image["hash"].as_str().unwrap().to_owned();
        // With alpha: an AVIF's alpha item is applied.
        let r = upload(&app, id, &[("file", Some("image/avif"), &avif(120, 60, true))]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let transparent = r.json()["hash"].as_str().unwrap().to_owned();

        let images = variants_made(&app, id).await;
        assert!(images.iter().all(|i| i["status"] == "ready"), "{images:?}");
        let variants = images[0]["variants"].as_array().unwrap();
        // 320 and the original's own 500, in three formats.
        assert_eq!(variants.len(), 6, "{variants:?}");
        let widths: std::collections::BTreeSet<u64> =
            variants.iter().map(|v| v["width"].as_u64().unwrap()).collect();
        assert_eq!(widths.into_iter().collect::<Vec<_>>(), vec![320, 500]);

        let r = app.get(&format!("/media/{hash}/320.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        let webp = image::load_from_memory(&r.body).expect("decodes").to_rgb8();
        assert_eq!(webp.dimensions(), (320, 230));
        let (left, right) = (webp.get_pixel(20, 100), webp.get_pixel(300, 100));
        assert!(left[0] > 150 && left[2] < 100, "left is red: {left:?}");
        assert!(right[2] > 150 && right[0] < 100, "right is blue: {right:?}");
        let r = app.get(&format!("/media/{hash}/500.jpg")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(image::load_from_memory(&r.body).unwrap().to_rgb8().dimensions(), (500, 360));
        let r = app.get(&format!("/media/{hash}/320.avif")).await;
        assert_eq!(header(&r, header::CONTENT_TYPE), "image/avif");
        assert_eq!(avif_size(&r.body), (320, 230));

        let r = app.get(&format!("/media/{transparent}/120.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        let webp = image::load_from_memory(&r.body).expect("decodes").to_rgba8();
        assert_eq!(webp.dimensions(), (120, 60));
        assert!(webp.get_pixel(10, 30)[3] > 245, "{:?}", webp.get_pixel(10, 30));
        assert!(webp.get_pixel(110, 30)[3] < 10, "{:?}", webp.get_pixel(110, 30));
        app.stop().await;
    }

    async fn bad_avif_uploads_are_refused_naming_the_file(backend: Backend) {
        // A low pixel limit: a 200 x 100 AVIF is over it, a 90 x 60 one is not.
        let app = media_app_with(backend, |c| c.media.media_max_pixels = 10_000).await;
        let id = product(&app, "media-bad-avif").await;
        let good = avif(90, 60, false);
        // An AVIF declared as a PNG, and a PNG declared as an AVIF.
        let r = upload(&app, id, &[("file", Some("image/png"), &good)]).await;
        r.assert_field_error(415, "file");
        assert!(r.text().contains("AVIF"), "{}", r.text());
        upload(&app, id, &[("file", Some("image/avif"), &png(64, 64))]).await.assert_field_error(415, "file");
        // Truncated.
        let r = upload(&app, id, &[("file", Some("image/avif"), &good[..good.len() / 2])]).await;
        r.assert_field_error(422, "file");
        assert!(r.text().contains("truncated or corrupt"), "{}", r.text());
        let r = upload(&app, id, &[("file", Some("image/avif"), &good[..good.len() - 10])]).await;
        r.assert_field_error(422, "file");
        // Over the pixel limit: refused from the AV1 sequence header, as a bomb is.
        let r = upload(&app, id, &[("file", Some("image/avif"), &avif(200, 100, false))]).await;
        r.assert_field_error(422, "file");
        assert!(r.text().contains("200 x 100"), "{}", r.text());

        assert_eq!(app.count("product_images").await, 0);
        assert_eq!(app.count("jobs WHERE kind = 'media.variants'").await, 0);
        let originals = media_dir(&app).join("originals");
        assert!(!originals.exists() || std::fs::read_dir(&originals).unwrap().next().is_none(), "nothing stored");
        // Within the limit, it is taken.
        let r = upload(&app, id, &[("file", Some("image/avif"), &good)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.stop().await;
    }

    async fn staff_reorder_retitle_replace_and_delete_images_audited_and_files_go(backend: Backend) {
        let app = media_app(backend).await;
        let id = product(&app, "media-manage").await;
        // Without catalog.write: 403.
        let support = app.staff_token("support").await;
        let small = png(200, 100);
        assert_eq!(upload_as(&app, &support, id, &[("file", Some("image/png"), &small)]).await.status, StatusCode::FORBIDDEN);

        let catalog = app.staff_token("catalog").await;
        let first = upload_as(&app, &catalog, id, &[("file", Some("image/png"), &small), ("alt", None, b"first")]).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
        let first = first.json();
        let second = upload(&app, id, &[("file", Some("image/jpeg"), &jpeg(500, 400, None))]).await.json();
        assert_eq!((first["position"].as_i64(), second["position"].as_i64()), (Some(0), Some(1)));
        let (a, b) = (first["id"].as_i64().unwrap(), second["id"].as_i64().unwrap());
        variants_made(&app, id).await;

        // Reorder: every image once, or 422.
        let path = format!("/api/v1/admin/products/{id}/images/order");
        app.admin_send(Method::PUT, &path, &json!({"image_ids": [b]})).await.assert_field_error(422, "image_ids");
        app.admin_send(Method::PUT, &path, &json!({"image_ids": [b, a, a]})).await.assert_field_error(422, "image_ids");
        let r = app.admin_send(Method::PUT, &path, &json!({"image_ids": [b, a]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let ids: Vec<i64> = r.json().as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![b, a]);

        // Alt text.
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}/images/{a}"), &json!({"alt": "Side view"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["alt"], "Side view");
        app.admin_patch(&format!("/api/v1/admin/products/{id}/images/{a}"), &json!({"alt": "x".repeat(501)})).await.assert_field_error(422, "alt");
        app.settle().await;
        let shown = app.get("/api/v1/products/media-manage").await.json();
        assert_eq!(shown["images"][0]["id"], b);
        assert_eq!(shown["images"][1]["alt"], "Side view");
        // The second image on the page loads lazily, the first does not.
        let page = app.get("/p/media-manage").await.text();
        assert_eq!(page.matches("loading=\"lazy\"").count(), 1, "{page}");
        assert!(page.contains("fetchpriority=\"high\""));

        // Replace b's file: its place and alt text stay, the old file's variants go, the
        // new one's are made.
        let old_hash = second["hash"].as_str().unwrap().to_owned();
        let replacement = jpeg(300, 600, None);
        let r = app
            .request(
                Method::PUT,
                &format!("/api/v1/admin/products/{id}/images/{b}/file"),
                Some(ADMIN_TOKEN),
                Some(Body::from(multipart(&[("file", Some("image/jpeg"), &replacement)]))),
                Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let replaced = r.json();
        assert_ne!(replaced["hash"], old_hash.as_str());
        assert_eq!((replaced["position"].as_i64(), replaced["width"].as_u64(), replaced["height"].as_u64()), (Some(0), Some(300), Some(600)));
        assert_eq!(replaced["status"], "processing");
        let made = variants_made(&app, id).await;
        assert!(made.iter().all(|i| i["status"] == "ready"), "{made:?}");
        assert!(!media_dir(&app).join("variants").join(&old_hash).exists(), "the old file's variants deleted");
        assert!(!media_dir(&app).join("originals").join(&old_hash).exists(), "the old original deleted");
        let new_hash = replaced["hash"].as_str().unwrap();
        assert_eq!(app.get(&format!("/media/{new_hash}/300.webp")).await.status, StatusCode::OK);
        let r = app
            .request(
                Method::PUT,
                &format!("/api/v1/admin/products/{id}/images/{b}/file"),
                Some(ADMIN_TOKEN),
                Some(Body::from(multipart(&[("file", Some("image/jpeg"), b"not a jpeg")]))),
                Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
            )
            .await;
        r.assert_field_error(422, "file");

        // Delete: the row, its variants' records and every file go.
        let hash = first["hash"].as_str().unwrap();
        let dir = media_dir(&app);
        assert!(dir.join("variants").join(hash).join("200.webp").exists());
        let r = app.request(Method::DELETE, &format!("/api/v1/admin/products/{id}/images/{a}"), Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert!(!dir.join("variants").join(hash).exists(), "variants deleted");
        assert!(!dir.join("originals").join(hash).exists(), "original deleted");
        assert_eq!(app.get(&format!("/media/{hash}/200.webp")).await.status, StatusCode::NOT_FOUND);
        let remaining = images(&app, id).await;
        assert_eq!(remaining.len(), 1);
        assert_eq!(remaining[0]["position"], 0);
        let r = app.request(Method::DELETE, &format!("/api/v1/admin/products/{id}/images/{a}"), Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        app.settle().await;
        assert_eq!(app.get("/api/v1/products/media-manage").await.json()["images"].as_array().unwrap().len(), 1);

        // Every change is in the audit log, by its actor.
        let audit = app.admin_get("/api/v1/admin/audit?target_type=product_image").await;
        assert_eq!(audit.status, StatusCode::OK, "{}", audit.text());
        let text = audit.text();
        for action in ["product.image_added", "product.image_updated", "product.image_replaced", "product.image_deleted"] {
            assert!(text.contains(action), "{action}: {text}");
        }
        assert!(app.admin_get("/api/v1/admin/audit").await.text().contains("product.images_reordered"));
        app.stop().await;
    }

    async fn a_file_uploaded_again_while_its_last_image_is_deleted_keeps_its_original(backend: Backend) {
        let app = media_app(backend).await;
        let (a, b) = (product(&app, "media-race-a").await, product(&app, "media-race-b").await);
        let file = png(40, 30);
        let originals = media_dir(&app).join("originals");
        // The deletion decides "no image shows this file any more" and removes it; the
        // upload decides "the file is stored already" and commits. Interleaved without
        // the files lock, some rounds commit an image whose original is gone.
        for round in 0..25 {
            let shown = upload(&app, a, &[("file", Some("image/png"), &file)]).await;
            assert_eq!(shown.status, StatusCode::CREATED, "{}", shown.text());
            let (image, hash) = (shown.json()["id"].as_i64().unwrap(), shown.json()["hash"].as_str().unwrap().to_owned());
            let (path, parts) = (format!("/api/v1/admin/products/{a}/images/{image}"), [("file", Some("image/png"), &file[..])]);
            let (deleted, again) = tokio::join!(
                app.request(Method::DELETE, &path, Some(ADMIN_TOKEN), None, None),
                upload(&app, b, &parts),
            );
            assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
            assert_eq!(again.status, StatusCode::CREATED, "{}", again.text());
            assert!(originals.join(&hash).exists(), "round {round}: the image on B has no original");
            // B's image goes too, and with it the file: the next round starts bare.
            let id = again.json()["id"].as_i64().unwrap();
            let r = app.request(Method::DELETE, &format!("/api/v1/admin/products/{b}/images/{id}"), Some(ADMIN_TOKEN), None, None).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
            assert!(!originals.join(&hash).exists(), "round {round}: an original no image shows");
        }
        app.stop().await;
    }

    async fn an_original_that_does_not_decode_fails_its_image_and_the_worker_goes_on(backend: Backend) {
        let app = media_app(backend).await;
        let id = product(&app, "media-broken").await;
        let good = jpeg(400, 300, None);
        let r = upload(&app, id, &[("file", Some("image/jpeg"), &good)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let hash = r.json()["hash"].as_str().unwrap().to_owned();
        variants_made(&app, id).await;
        // The stored original is damaged (a disk fault, a bad copy), and made again.
        let original = media_dir(&app).join("originals").join(&hash);
        std::fs::write(&original, &good[..good.len() / 3]).unwrap();
        {
            let mut tx = app.kernel.state.db.begin().await.unwrap();
            sqlx::query("UPDATE product_images SET status = 'processing'").execute(&mut *tx).await.unwrap();
            olivine::jobs::enqueue(&mut tx, &olivine::media::variants_job_for(&hash), app.kernel.state.clock.now()).await.unwrap();
            tx.commit().await.unwrap();
        }
        let images = variants_made(&app, id).await;
        assert_eq!(images[0]["status"], "failed", "{}", images[0]);
        assert!(images[0]["error"].as_str().unwrap().contains("truncated or corrupt"), "{}", images[0]);
        assert_eq!(app.count("jobs WHERE kind = 'media.variants'").await, 0, "ended, not retried");
        // The workers still work.
        let r = upload(&app, id, &[("file", Some("image/png"), &png(100, 80))]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let images = variants_made(&app, id).await;
        assert_eq!(images[1]["status"], "ready", "{}", images[1]);
        app.stop().await;
    }
}

/// A local S3 server (moto, installed by scripts/moto-server on first use) with a bucket.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    fn start(bucket: &str) -> Moto {
        let port = crate::common::process::free_port();
        let child = std::process::Command::new(repo_root().join("scripts/moto-server"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("scripts/moto-server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        // The first run installs moto: give it a few minutes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            match ureq::put(&format!("{endpoint}/{bucket}")).send_empty() {
                Ok(_) => break,
                Err(err) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "moto did not start: {err}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
        Moto { child, endpoint }
    }
}

/// The keys in a bucket of the S3 server at `endpoint`.
fn bucket_keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let listing = ureq::get(&format!("{endpoint}/{bucket}?list-type=2"))
        .call()
        .expect("list")
        .into_body()
        .read_to_string()
        .expect("listing");
    listing
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next().map(str::to_owned))
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_backends! {
    async fn media_in_an_s3_bucket_is_served_at_the_same_urls_and_deleted_with_the_image(backend: Backend) {
        let bucket = format!("olivine-media-{}", if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
        let moto = tokio::task::spawn_blocking({
            let bucket = bucket.clone();
            move || Moto::start(&bucket)
        })
        .await
        .unwrap();
        let app = media_app_with(backend, |c| {
            c.media.media_s3_bucket = Some(bucket.clone());
            c.media.media_s3_endpoint = Some(moto.endpoint.clone());
            c.media.media_s3_access_key_id = Some("test".to_owned());
            c.media.media_s3_secret_access_key = Some("test".to_owned());
        })
        .await;
        let id = product(&app, "media-s3").await;
        let r = upload(&app, id, &[("file", Some("image/jpeg"), &jpeg(700, 500, Some(6)))]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let hash = r.json()["hash"].as_str().unwrap().to_owned();
        let images = variants_made(&app, id).await;
        assert_eq!(images[0]["status"], "ready", "{}", images[0]);
        assert!(!media_dir(&app).exists(), "nothing on local disk");
        let keys = tokio::task::spawn_blocking({
            let (endpoint, bucket) = (moto.endpoint.clone(), bucket.clone());
            move || bucket_keys(&endpoint, &bucket)
        })
        .await
        .unwrap();
        assert!(keys.contains(&format!("originals/{hash}")), "{keys:?}");
        // 500 x 700 displayed: 320 and 500, three formats each.
        assert_eq!(keys.iter().filter(|k| k.starts_with(&format!("variants/{hash}/"))).count(), 6, "{keys:?}");

        let r = app.get(&format!("/media/{hash}/320.webp")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert_eq!(image::load_from_memory(&r.body).unwrap().to_rgb8().dimensions(), (320, 448));
        let r = app.get(&format!("/media/{hash}/1600.avif")).await;
        assert_eq!(r.status, StatusCode::OK, "a stand-in: the widest AVIF");
        assert_eq!(avif_size(&r.body), (500, 700));

        let image_id = images[0]["id"].as_i64().unwrap();
        let r = app.request(Method::DELETE, &format!("/api/v1/admin/products/{id}/images/{image_id}"), Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let keys = tokio::task::spawn_blocking({
            let (endpoint, bucket) = (moto.endpoint.clone(), bucket.clone());
            move || bucket_keys(&endpoint, &bucket)
        })
        .await
        .unwrap();
        assert!(keys.is_empty(), "every file deleted: {keys:?}");
        assert_eq!(app.get(&format!("/media/{hash}/320.webp")).await.status, StatusCode::NOT_FOUND);
        app.stop().await;
        tokio::task::spawn_blocking(move || drop(moto)).await.unwrap();
    }
}
