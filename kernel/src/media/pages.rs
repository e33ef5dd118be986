//! Product images on storefront pages: `<picture>` with an AVIF and a WebP source and a
//! JPEG `<img>`, each with `srcset` of every width and `sizes`, and the image's `width`
//! and `height` so the browser reserves its box (no layout shift). The first image is
//! above the fold and loads at once; the rest load lazily.

use maud::{Markup, html};

use super::{Format, ProductImage};

/// How wide the product page shows its main image: half the page on wide screens.
const MAIN_SIZES: &str = "(min-width: 860px) 50vw, 100vw";
/// The smaller images below it.
const MORE_SIZES: &str = "(min-width: 860px) 12vw, 25vw";

fn srcset(image: &ProductImage, format: Format) -> String {
    image
        .of_format(format)
        .map(|v| format!("{} {}w", v.url, v.width))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One image as a `<picture>`. `eager`: above the fold (loads at once, first).
pub fn picture(image: &ProductImage, fallback_alt: &str, eager: bool, sizes: &str) -> Markup {
    let alt = if image.alt.is_empty() {
        fallback_alt
    } else {
        &image.alt
    };
    let src = image
        .of_format(Format::Jpeg)
        .find(|v| v.width >= 640)
        .or_else(|| image.of_format(Format::Jpeg).last())
        .map(|v| v.url.clone())
        .unwrap_or_else(|| image.url.clone());
    html! {
        picture {
            source type="image/avif" srcset=(srcset(image, Format::Avif)) sizes=(sizes);
            source type="image/webp" srcset=(srcset(image, Format::WebP)) sizes=(sizes);
            @if eager {
                img src=(src) srcset=(srcset(image, Format::Jpeg)) sizes=(sizes)
                    width=(image.width) height=(image.height) alt=(alt)
                    decoding="async" fetchpriority="high";
            } @else {
                img src=(src) srcset=(srcset(image, Format::Jpeg)) sizes=(sizes)
                    width=(image.width) height=(image.height) alt=(alt)
                    loading="lazy" decoding="async";
            }
        }
    }
}

/// A product's images for the product page: those of the chosen variant first, then
/// those of the whole product (other variants' images are left out).
pub fn gallery(images: &[ProductImage], product_name: &str, variant_id: Option<i64>) -> Markup {
    let mut shown: Vec<&ProductImage> = images
        .iter()
        .filter(|i| i.variant_id.is_some() && i.variant_id == variant_id)
        .collect();
    shown.extend(images.iter().filter(|i| i.variant_id.is_none()));
    if shown.is_empty() {
        shown = images.iter().take(1).collect();
    }
    html! {
        div.gallery {
            @for (i, image) in shown.iter().enumerate() {
                @if i == 0 {
                    div.gallery-main { (picture(image, product_name, true, MAIN_SIZES)) }
                } @else {
                    div.gallery-more { (picture(image, product_name, false, MORE_SIZES)) }
                }
            }
        }
    }
}
