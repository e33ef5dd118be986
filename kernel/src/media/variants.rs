//! Image work: checking an upload (what it is, how big it says it is, whether it decodes),
//! and making the variants of an original. Blocking, CPU-bound code: callers run it on a
//! media thread at a lower priority (`media::at_media_priority`), and only the
//! `media.variants` job makes variants, never a request.
//!
//! Decoding always runs with limits (width, height and allocation), and the pixel count an
//! image declares is checked before its pixels are decoded, so a decompression bomb (a few
//! bytes declaring 50,000 x 50,000 pixels) is refused without allocating for it.

use std::io::Cursor;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::Format;

/// The widths made of every original (never wider than the original: one at the
/// original's own width stands in for those above it).
pub const WIDTHS: [u32; 4] = [320, 640, 1024, 1600];

/// The longest side any decoder is allowed to declare.
const MAX_SIDE: u32 = 30_000;

/// An uploaded file's kind, from its first bytes (never from its name or declared type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    WebP,
    Avif,
}

impl SourceFormat {
    pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
        // AVIF by its `ftyp` brands (`avif`, `avis`, or `mif1` with an AVIF compatible brand).
        if super::avif::is_avif(bytes) {
            return Some(SourceFormat::Avif);
        }
        match image::guess_format(bytes).ok()? {
            ImageFormat::Jpeg => Some(SourceFormat::Jpeg),
            ImageFormat::Png => Some(SourceFormat::Png),
            ImageFormat::WebP => Some(SourceFormat::WebP),
            _ => None,
        }
    }

    pub fn from_content_type(content_type: &str) -> Option<SourceFormat> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(SourceFormat::Jpeg),
            "image/png" => Some(SourceFormat::Png),
            "image/webp" => Some(SourceFormat::WebP),
            "image/avif" => Some(SourceFormat::Avif),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::WebP => "image/webp",
            SourceFormat::Avif => "image/avif",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "JPEG",
            SourceFormat::Png => "PNG",
            SourceFormat::WebP => "WebP",
            SourceFormat::Avif => "AVIF",
        }
    }

    /// The `image` crate's format, for the kinds it decodes (AVIF is `avif.rs`'s).
    fn image_format(self) -> Option<ImageFormat> {
        match self {
            SourceFormat::Jpeg => Some(ImageFormat::Jpeg),
            SourceFormat::Png => Some(ImageFormat::Png),
            SourceFormat::WebP => Some(ImageFormat::WebP),
            SourceFormat::Avif => None,
        }
    }
}

/// Why an upload is refused (the API names the `file` field with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JPEG, PNG, WebP or AVIF at all.
    NotAnImage,
    /// A kind this build cannot decode.
    Unsupported(String),
    /// Declares more pixels than allowed.
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// Truncated or corrupt: the pixels do not decode.
    Corrupt(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotAnImage => f.write_str("is not a JPEG, PNG, WebP or AVIF image"),
            Rejection::Unsupported(why) => f.write_str(why),
            Rejection::TooManyPixels {
                width,
                height,
                limit,
            } => write!(
                f,
                "declares {width} x {height} pixels: at most {limit} pixels and {MAX_SIDE} a side are taken"
            ),
            Rejection::Corrupt(why) => write!(f, "does not decode (truncated or corrupt): {why}"),
        }
    }
}

/// What an upload is: its kind and its size as displayed (EXIF orientation applied).
#[derive(Debug, Clone, Copy)]
pub struct Inspected {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
}

/// Decodes `bytes` with limits and answers the image turned upright (JPEG, PNG and WebP by
/// their EXIF orientation; an AVIF by its `irot`/`imir` properties, applied in avif.rs).
fn decode(bytes: &[u8], max_pixels: u64) -> Result<(SourceFormat, DynamicImage), Rejection> {
    let format = SourceFormat::sniff(bytes).ok_or(Rejection::NotAnImage)?;
    let Some(image_format) = format.image_format() else {
        // AVIF: the declared size is checked from the AV1 sequence header, as below.
        return Ok((format, super::avif::decode(bytes, max_pixels, MAX_SIDE)?));
    };
    // Making a decoder reads the headers only: the declared size is checked (and named)
    // before the limits go on and any pixel is decoded.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|err| classify(&err))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels
        || width > MAX_SIDE
        || height > MAX_SIDE
        || width == 0
        || height == 0
    {
        return Err(Rejection::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // The decoded pixels (up to 8 bytes each for 16-bit RGBA) and some room for the decoder.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(limits).map_err(|err| classify(&err))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|err| classify(&err))?;
    if format == SourceFormat::Jpeg && !ends_with_eoi(bytes) {
        // The JPEG decoder fills what is missing with grey rather than failing.
        return Err(Rejection::Corrupt(
            "the JPEG ends before its end-of-image marker".to_owned(),
        ));
    }
    image.apply_orientation(orientation);
    Ok((format, image))
}

fn classify(err: &image::ImageError) -> Rejection {
    match err {
        image::ImageError::Limits(_) => {
            Rejection::Corrupt(format!("over the decoding limits: {err}"))
        }
        image::ImageError::Unsupported(_) => {
            Rejection::Unsupported(format!("is not supported: {err}"))
        }
        _ => Rejection::Corrupt(err.to_string()),
    }
}

/// A whole JPEG ends with `FF D9` (some writers pad after it).
fn ends_with_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Checks an upload: an image of a supported kind, within the pixel limit, that decodes
/// whole. The decoded pixels are dropped: variants are the job's work.
pub fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspected, Rejection> {
    let (format, image) = decode(bytes, max_pixels)?;
    Ok(Inspected {
        format,
        width: image.width(),
        height: image.height(),
    })
}

/// The widths made of an original `width` wide: the standard ones below it, and the
/// original's own width when it is below the largest.
pub fn planned_widths(width: u32) -> Vec<u32> {
    let mut widths: Vec<u32> = WIDTHS.iter().copied().filter(|w| *w <= width).collect();
    let largest = WIDTHS[WIDTHS.len() - 1];
    if width < largest && !widths.contains(&width) && width > 0 {
        widths.push(width);
    }
    widths
}

/// The height of a variant `width` wide of an original `ow` x `oh`.
pub fn scaled_height(ow: u32, oh: u32, width: u32) -> u32 {
    if ow == 0 {
        return 0;
    }
    let h = (u64::from(oh) * u64::from(width) + u64::from(ow) / 2) / u64::from(ow);
    u32::try_from(h).unwrap_or(u32::MAX).max(1)
}

/// How variants are encoded.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    pub webp_quality: f32,
    pub avif_quality: f32,
    pub avif_speed: u8,
    pub jpeg_quality: u8,
    pub max_pixels: u64,
}

/// One variant made.
#[derive(Debug)]
pub struct Made {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub bytes: Vec<u8>,
}

/// Decodes an original once and makes every variant of it: each planned width in WebP,
/// AVIF and JPEG. Metadata is not carried over (the encoders get pixels only), so GPS
/// positions and the like are stripped; the orientation is applied to the pixels.
/// `each` gets every variant as soon as it is made.
pub fn make_all(
    original: &[u8],
    encoding: &Encoding,
    each: impl FnMut(Made) -> anyhow::Result<()>,
) -> Result<(), MakeError> {
    make_formats(
        original,
        encoding,
        &[Format::WebP, Format::Avif, Format::Jpeg],
        each,
    )
}

/// [`make_all`] for some formats only (the benchmark times each format alone).
pub fn make_formats(
    original: &[u8],
    encoding: &Encoding,
    formats: &[Format],
    mut each: impl FnMut(Made) -> anyhow::Result<()>,
) -> Result<(), MakeError> {
    let (_, image) = decode(original, encoding.max_pixels).map_err(MakeError::Rejected)?;
    let opaque = !image.color().has_alpha();
    let source = image.into_rgba8();
    let (ow, oh) = source.dimensions();
    let source = fr::images::Image::from_vec_u8(ow, oh, source.into_raw(), fr::PixelType::U8x4)
        .map_err(|e| MakeError::Failed(anyhow::anyhow!("resizer input: {e}")))?;
    let mut resizer = fr::Resizer::new();
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    for width in planned_widths(ow) {
        let height = scaled_height(ow, oh, width);
        let mut resized = fr::images::Image::new(width, height, fr::PixelType::U8x4);
        if width == ow && height == oh {
            resized = fr::images::Image::from_vec_u8(
                width,
                height,
                source.buffer().to_vec(),
                fr::PixelType::U8x4,
            )
            .map_err(|e| MakeError::Failed(anyhow::anyhow!("copy: {e}")))?;
        } else {
            resizer
                .resize(&source, &mut resized, &options)
                .map_err(|e| MakeError::Failed(anyhow::anyhow!("resizing to {width}: {e}")))?;
        }
        let rgba = resized.buffer();
        for &format in formats {
            let bytes =
                encode(rgba, width, height, opaque, format, encoding).map_err(MakeError::Failed)?;
            each(Made {
                width,
                height,
                format,
                bytes,
            })
            .map_err(MakeError::Failed)?;
        }
    }
    Ok(())
}

/// Why variants could not be made.
#[derive(Debug)]
pub enum MakeError {
    /// The original is not an image this build decodes (nothing a retry fixes).
    Rejected(Rejection),
    Failed(anyhow::Error),
}

fn encode(
    rgba: &[u8],
    width: u32,
    height: u32,
    opaque: bool,
    format: Format,
    encoding: &Encoding,
) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::WebP => {
            let encoder = if opaque {
                let rgb = to_rgb(rgba, None);
                webp::Encoder::from_rgb(&rgb, width, height)
                    .encode_simple(false, encoding.webp_quality.clamp(1.0, 100.0))
                    .map(|m| m.to_vec())
            } else {
                webp::Encoder::from_rgba(rgba, width, height)
                    .encode_simple(false, encoding.webp_quality.clamp(1.0, 100.0))
                    .map(|m| m.to_vec())
            };
            encoder.map_err(|e| anyhow::anyhow!("WebP encoding: {e:?}"))
        }
        Format::Avif => {
            let w = usize::try_from(width)?;
            let h = usize::try_from(height)?;
            let encoder = ravif::Encoder::new()
                .with_quality(encoding.avif_quality.clamp(1.0, 100.0))
                .with_alpha_quality(encoding.avif_quality.clamp(1.0, 100.0))
                .with_speed(encoding.avif_speed.clamp(1, 10));
            let encoded = if opaque {
                let pixels: Vec<ravif::RGB8> = rgba
                    .chunks_exact(4)
                    .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
                    .collect();
                encoder.encode_rgb(ravif::Img::new(&pixels[..], w, h))
            } else {
                let pixels: Vec<ravif::RGBA8> = rgba
                    .chunks_exact(4)
                    .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
                    .collect();
                encoder.encode_rgba(ravif::Img::new(&pixels[..], w, h))
            };
            Ok(encoded
                .map_err(|e| anyhow::anyhow!("AVIF encoding: {e}"))?
                .avif_file)
        }
        Format::Jpeg => {
            // No alpha in JPEG: transparent parts go on white.
            let rgb = to_rgb(rgba, if opaque { None } else { Some(255) });
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out,
                encoding.jpeg_quality.clamp(1, 100),
            )
            .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
            .map_err(|e| anyhow::anyhow!("JPEG encoding: {e}"))?;
            Ok(out)
        }
    }
}

/// RGBA to RGB; with `background`, composited over that grey level.
fn to_rgb(rgba: &[u8], background: Option<u8>) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        match background {
            None => rgb.extend_from_slice(&p[..3]),
            Some(bg) => {
                let a = u32::from(p[3]);
                for c in &p[..3] {
                    let v = (u32::from(*c) * a + u32::from(bg) * (255 - a) + 127) / 255;
                    rgb.push(u8::try_from(v).unwrap_or(255));
                }
            }
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_never_upscale() {
        assert_eq!(planned_widths(4000), vec![320, 640, 1024, 1600]);
        assert_eq!(planned_widths(1600), vec![320, 640, 1024, 1600]);
        assert_eq!(planned_widths(1200), vec![320, 640, 1024, 1200]);
        assert_eq!(planned_widths(640), vec![320, 640]);
        assert_eq!(planned_widths(100), vec![100]);
        assert_eq!(scaled_height(4000, 3000, 320), 240);
    }
}
