//! AVIF uploads, decoded in pure Rust: `avif-parse` takes the primary item's AV1 data (and
//! its alpha item's) out of the ISOBMFF container, `re_rav1d` (the rav1d port of dav1d)
//! decodes them, and the YUV planes become RGB(A) here.
//!
//! The size the AV1 sequence header declares is checked against the pixel limit before
//! the decoder is even made, and the decoder's own frame size limit is set too, so a
//! decompression bomb is refused without allocating for it. Nothing from the file is
//! `unwrap`ped, and the parser and decoder run under `catch_unwind`: a file that makes them
//! panic is a corrupt file, never a crashed worker or a 500.
//!
//! The YUV to RGB conversion is written out below (BT.601, BT.709 and BT.2020 matrices,
//! identity for GBR; limited or full range; 4:2:0, 4:2:2, 4:4:4 and monochrome; 8, 10 and
//! 12 bits) rather than taken from the `yuv` crate: a few lines of arithmetic, run once
//! per upload off the request path, against a large crate of SIMD code.
//!
//! Not applied: the container's `irot`/`imir` (rotation and mirror) properties, which
//! avif-parse does not expose: an AVIF is taken as its pixels are stored. Not taken (415):
//! grid (tiled) and animated AVIFs, which avif-parse refuses.

use std::io::{Cursor, Read};

use image::{DynamicImage, RgbImage, RgbaImage};
use re_rav1d::dav1d::pixel::{MatrixCoefficients, YUVRange};
use re_rav1d::dav1d::{
    Decoder, Error as DecodeError, Picture, PixelLayout, PlanarImageComponent, Settings,
};

use super::variants::Rejection;

/// Whether `bytes` start with an AVIF `ftyp` box: brand `avif` or `avis`, major or
/// compatible (a `mif1` file with an `avif` compatible brand is one; HEIC is not).
pub fn is_avif(bytes: &[u8]) -> bool {
    if bytes.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let Some(size) = bytes.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return false;
    };
    let size = usize::try_from(u32::from_be_bytes(size)).unwrap_or(0);
    let avif = |brand: &[u8]| brand == b"avif" || brand == b"avis";
    if bytes.get(8..12).is_some_and(avif) {
        return true;
    }
    // The compatible brands follow the major brand and the minor version.
    let end = size.min(bytes.len()).min(4096);
    bytes
        .get(16..end)
        .is_some_and(|b| b.chunks_exact(4).any(avif))
}

/// Decodes an AVIF (its primary item, with its alpha item applied) within the limits.
pub fn decode(bytes: &[u8], max_pixels: u64, max_side: u32) -> Result<DynamicImage, Rejection> {
    // The parser and the decoder assert things of the file as they go (the parser's
    // assertions are debug ones): any panic in them is the file's fault.
    std::panic::catch_unwind(|| decode_unguarded(bytes, max_pixels, max_side)).unwrap_or_else(
        |_| {
            Err(Rejection::Corrupt(
                "the AVIF does not parse or its AV1 data does not decode".to_owned(),
            ))
        },
    )
}

fn decode_unguarded(
    bytes: &[u8],
    max_pixels: u64,
    max_side: u32,
) -> Result<DynamicImage, Rejection> {
    // avif-parse wants the major brand `avif`: a `mif1` (or other) file that names `avif`
    // among its compatible brands (what `is_avif` takes) is read as if it were.
    let head: [u8; 12] = match bytes.get(..12).and_then(|b| <[u8; 12]>::try_from(b).ok()) {
        Some(mut head) if is_avif(bytes) && !matches!(&head[8..12], b"avif" | b"avis") => {
            head[8..12].copy_from_slice(b"avif");
            head
        }
        _ => [0; 12],
    };
    let parsed = if head[8..12] == *b"avif" {
        avif_parse::read_avif(&mut Cursor::new(head).chain(bytes.get(12..).unwrap_or_default()))
    } else {
        avif_parse::read_avif(&mut Cursor::new(bytes))
    };
    let data = parsed.map_err(|err| match err {
        avif_parse::Error::Unsupported(why) => {
            Rejection::Unsupported(format!("is an AVIF this build cannot decode: {why}"))
        }
        err => Rejection::Corrupt(format!("the AVIF container: {err}")),
    })?;
    let declared = data
        .primary_item_metadata()
        .map_err(|err| Rejection::Corrupt(format!("the AV1 sequence header: {err}")))?;
    let (width, height) = (
        declared.max_frame_width.get(),
        declared.max_frame_height.get(),
    );
    check_size(width, height, max_pixels, max_side)?;
    if let Some(alpha) = data
        .alpha_item_metadata()
        .map_err(|err| Rejection::Corrupt(format!("the alpha's AV1 sequence header: {err}")))?
    {
        check_size(
            alpha.max_frame_width.get(),
            alpha.max_frame_height.get(),
            max_pixels,
            max_side,
        )?;
    }
    let limit = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let colour = picture(data.primary_item.to_vec(), limit)?;
    let alpha = match &data.alpha_item {
        Some(item) => Some(picture(item.to_vec(), limit)?),
        None => None,
    };
    to_rgb(
        &colour,
        alpha.as_ref(),
        data.premultiplied_alpha,
        max_pixels,
        max_side,
    )
}

fn check_size(width: u32, height: u32, max_pixels: u64, max_side: u32) -> Result<(), Rejection> {
    if u64::from(width) * u64::from(height) > max_pixels || width > max_side || height > max_side {
        return Err(Rejection::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}

fn corrupt(err: DecodeError) -> Rejection {
    Rejection::Corrupt(format!("the AV1 data: {err}"))
}

/// Decodes one AV1 still picture (one thread: the media thread's priority holds).
fn picture(av1: Vec<u8>, frame_size_limit: u32) -> Result<Picture, Rejection> {
    let mut settings = Settings::new();
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_frame_size_limit(frame_size_limit);
    settings.set_all_layers(false);
    let mut decoder = Decoder::with_settings(&settings).map_err(corrupt)?;
    let mut pending = match decoder.send_data(av1, None, None, None) {
        Ok(()) => false,
        Err(DecodeError::Again) => true,
        Err(err) => return Err(corrupt(err)),
    };
    // Each round either takes the picture, or feeds the rest of the data: bounded.
    for _ in 0..64 {
        match decoder.get_picture() {
            Ok(picture) => return Ok(picture),
            Err(DecodeError::Again) if pending => match decoder.send_pending_data() {
                Ok(()) => pending = false,
                Err(DecodeError::Again) => {}
                Err(err) => return Err(corrupt(err)),
            },
            Err(DecodeError::Again) => break,
            Err(err) => return Err(corrupt(err)),
        }
    }
    Err(Rejection::Corrupt(
        "the AV1 data holds no whole picture".to_owned(),
    ))
}

/// One plane's samples, 8 bits or 16 (in native byte order, as the decoder wrote them).
struct Samples {
    /// Copied out once: each access through the decoder's `Plane` finds the plane in the
    /// picture again.
    plane: Vec<u8>,
    stride: usize,
    wide: bool,
    rows: usize,
}

impl Samples {
    fn of(picture: &Picture, component: PlanarImageComponent) -> Samples {
        // The stride is in bytes.
        let (stride, rows) = picture.plane_data_geometry(component);
        Samples {
            plane: picture.plane(component).as_ref().to_vec(),
            stride: usize::try_from(stride).unwrap_or(0),
            wide: picture.bit_depth() > 8,
            rows: usize::try_from(rows).unwrap_or(0),
        }
    }

    /// The sample at column `x`, row `y` (0 past the plane's end: never out of bounds).
    fn at(&self, x: usize, y: usize) -> f32 {
        let y = y.min(self.rows.saturating_sub(1));
        if self.wide {
            let i = y * self.stride + 2 * x;
            match self.plane.get(i..i + 2) {
                Some(&[lo, hi]) => f32::from(u16::from_ne_bytes([lo, hi])),
                _ => 0.0,
            }
        } else {
            self.plane
                .get(y * self.stride + x)
                .copied()
                .map_or(0.0, f32::from)
        }
    }
}

/// How samples of `bits` bits map to 0..1 (luma, alpha, GBR) and -0.5..0.5 (chroma).
#[derive(Clone, Copy)]
struct Levels {
    full: bool,
    /// 2^(bits - 8): limited range's 16, 219 and 224 scale with it.
    scale: f32,
    max: f32,
}

impl Levels {
    fn of(picture: &Picture) -> Levels {
        let bits = u32::try_from(picture.bit_depth()).unwrap_or(8).clamp(8, 16);
        Levels {
            full: picture.color_range() == YUVRange::Full,
            scale: (1u32 << (bits - 8)) as f32,
            max: ((1u32 << bits) - 1) as f32,
        }
    }

    fn luma(self, v: f32) -> f32 {
        if self.full {
            v / self.max
        } else {
            (v - 16.0 * self.scale) / (219.0 * self.scale)
        }
    }

    fn chroma(self, v: f32) -> f32 {
        if self.full {
            (v - 128.0 * self.scale) / self.max
        } else {
            (v - 128.0 * self.scale) / (224.0 * self.scale)
        }
    }
}

/// The decoded planes as RGB (or RGBA with `alpha`), 8 bits a channel.
fn to_rgb(
    colour: &Picture,
    alpha: Option<&Picture>,
    premultiplied: bool,
    max_pixels: u64,
    max_side: u32,
) -> Result<DynamicImage, Rejection> {
    let (width, height) = (colour.width(), colour.height());
    check_size(width, height, max_pixels, max_side)?;
    if width == 0 || height == 0 {
        return Err(Rejection::Corrupt("the AV1 picture is empty".to_owned()));
    }
    if let Some(a) = alpha
        && (a.width(), a.height()) != (width, height)
    {
        return Err(Rejection::Corrupt(format!(
            "the alpha is {} x {}, the picture {width} x {height}",
            a.width(),
            a.height()
        )));
    }
    let layout = colour.pixel_layout();
    let (shift_x, shift_y) = match layout {
        PixelLayout::I420 => (1, 1),
        PixelLayout::I422 => (1, 0),
        PixelLayout::I444 | PixelLayout::I400 => (0, 0),
    };
    let luma = Samples::of(colour, PlanarImageComponent::Y);
    let chroma = (layout != PixelLayout::I400).then(|| {
        (
            Samples::of(colour, PlanarImageComponent::U),
            Samples::of(colour, PlanarImageComponent::V),
        )
    });
    let levels = Levels::of(colour);
    // Kr and Kb of the matrix (BT.601 when unspecified, as libavif does); None: identity (GBR).
    let matrix = match colour.matrix_coefficients() {
        MatrixCoefficients::Identity => None,
        MatrixCoefficients::BT709 => Some((0.2126, 0.0722)),
        MatrixCoefficients::BT2020NonConstantLuminance
        | MatrixCoefficients::BT2020ConstantLuminance => Some((0.2627, 0.0593)),
        MatrixCoefficients::ST240M => Some((0.212, 0.087)),
        MatrixCoefficients::BT470M => Some((0.30, 0.11)),
        _ => Some((0.299, 0.114)),
    };
    let alpha = alpha.map(|a| (Samples::of(a, PlanarImageComponent::Y), Levels::of(a)));
    let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let (w, h) = (width as usize, height as usize);
    let channels = if alpha.is_some() { 4 } else { 3 };
    let mut out = Vec::with_capacity(w * h * channels);
    for y in 0..h {
        for x in 0..w {
            let y_raw = luma.at(x, y);
            let (u_raw, v_raw) = match &chroma {
                Some((u, v)) => (
                    u.at(x >> shift_x, y >> shift_y),
                    v.at(x >> shift_x, y >> shift_y),
                ),
                None => (128.0 * levels.scale, 128.0 * levels.scale),
            };
            let (mut r, mut g, mut b) = match matrix {
                // GBR: Y holds green, U blue, V red.
                None => (levels.luma(v_raw), levels.luma(y_raw), levels.luma(u_raw)),
                Some((kr, kb)) => {
                    let (l, cb, cr) = (
                        levels.luma(y_raw),
                        levels.chroma(u_raw),
                        levels.chroma(v_raw),
                    );
                    let r = l + 2.0 * (1.0 - kr) * cr;
                    let b = l + 2.0 * (1.0 - kb) * cb;
                    let g = (l - kr * r - kb * b) / (1.0 - kr - kb);
                    (r, g, b)
                }
            };
            match &alpha {
                Some((plane, levels)) => {
                    let a = levels.luma(plane.at(x, y)).clamp(0.0, 1.0);
                    if premultiplied && a > 0.0 {
                        (r, g, b) = (r / a, g / a, b / a);
                    }
                    out.extend_from_slice(&[to8(r), to8(g), to8(b), to8(a)]);
                }
                None => out.extend_from_slice(&[to8(r), to8(g), to8(b)]),
            }
        }
    }
    let image = if alpha.is_some() {
        RgbaImage::from_raw(width, height, out).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, out).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| Rejection::Corrupt("the AV1 picture's size".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` picture: the left half red, the right half blue; with `alpha`, the
    /// right half transparent.
    fn encode(w: usize, h: usize, encoder: ravif::Encoder, alpha: bool) -> Vec<u8> {
        let pixels: Vec<ravif::RGBA8> = (0..w * h)
            .map(|i| {
                if i % w < w / 2 {
                    ravif::RGBA8::new(220, 20, 20, 255)
                } else {
                    ravif::RGBA8::new(20, 20, 220, if alpha { 0 } else { 255 })
                }
            })
            .collect();
        let encoder = encoder.with_speed(10).with_quality(90.0);
        let encoded = if alpha {
            encoder.encode_rgba(ravif::Img::new(&pixels[..], w, h))
        } else {
            let rgb: Vec<ravif::RGB8> = pixels.iter().map(|p| p.rgb()).collect();
            encoder.encode_rgb(ravif::Img::new(&rgb[..], w, h))
        };
        encoded.expect("encodes").avif_file
    }

    fn near(actual: &[u8], expected: &[u8]) -> bool {
        actual
            .iter()
            .zip(expected)
            .all(|(a, e)| a.abs_diff(*e) <= 12)
    }

    #[test]
    fn decodes_8_and_10_bit_ycbcr_and_gbr_with_and_without_alpha() {
        use ravif::{BitDepth, ColorModel, Encoder};
        for (name, encoder) in [
            ("8-bit", Encoder::new().with_bit_depth(BitDepth::Eight)),
            ("10-bit", Encoder::new().with_bit_depth(BitDepth::Ten)),
            (
                "GBR",
                Encoder::new()
                    .with_bit_depth(BitDepth::Eight)
                    .with_internal_color_model(ColorModel::RGB),
            ),
        ] {
            let bytes = encode(64, 48, encoder, false);
            assert!(is_avif(&bytes), "{name}");
            let image = decode(&bytes, 1_000_000, 30_000).expect(name);
            let DynamicImage::ImageRgb8(rgb) = image else {
                panic!("{name}: RGB expected");
            };
            assert_eq!(rgb.dimensions(), (64, 48), "{name}");
            assert!(
                near(&rgb.get_pixel(5, 20).0, &[220, 20, 20]),
                "{name}: {:?}",
                rgb.get_pixel(5, 20)
            );
            assert!(
                near(&rgb.get_pixel(60, 20).0, &[20, 20, 220]),
                "{name}: {:?}",
                rgb.get_pixel(60, 20)
            );
        }
        let bytes = encode(64, 48, Encoder::new(), true);
        let DynamicImage::ImageRgba8(rgba) = decode(&bytes, 1_000_000, 30_000).expect("alpha")
        else {
            panic!("RGBA expected");
        };
        assert!(
            near(&rgba.get_pixel(5, 20).0, &[220, 20, 20, 255]),
            "{:?}",
            rgba.get_pixel(5, 20)
        );
        assert!(
            rgba.get_pixel(60, 20).0[3] < 10,
            "{:?}",
            rgba.get_pixel(60, 20)
        );
    }

    #[test]
    fn the_declared_size_is_checked_and_damage_is_an_error_never_a_panic() {
        let bytes = encode(64, 48, ravif::Encoder::new(), true);
        assert_eq!(
            decode(&bytes, 1000, 30_000).err(),
            Some(Rejection::TooManyPixels {
                width: 64,
                height: 48,
                limit: 1000
            })
        );
        assert!(matches!(
            decode(&bytes, 1_000_000, 40),
            Err(Rejection::TooManyPixels { .. })
        ));
        // Cut anywhere (every byte of the container, then every 7th of the AV1 data).
        for len in (0..bytes.len()).filter(|n| *n < 400 || n % 7 == 0) {
            assert!(
                decode(&bytes[..len], 1_000_000, 30_000).is_err(),
                "cut at {len}"
            );
        }
        // Bytes changed in turn: an error or a picture, never a panic or a hang.
        let mut damaged = bytes.clone();
        for i in (0..damaged.len()).step_by(5) {
            damaged[i] ^= 0x5A;
            let _ = decode(&damaged, 1_000_000, 30_000);
            damaged[i] ^= 0x5A;
        }
    }

    #[test]
    fn sniffs_avif_brands_only() {
        let ftyp = |major: &[u8], compatible: &[&[u8]]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(16 + 4 * compatible.len() as u32).to_be_bytes());
            b.extend_from_slice(b"ftyp");
            b.extend_from_slice(major);
            b.extend_from_slice(&[0; 4]);
            for c in compatible {
                b.extend_from_slice(c);
            }
            b
        };
        assert!(is_avif(&ftyp(b"avif", &[b"mif1"])));
        assert!(is_avif(&ftyp(b"avis", &[])));
        assert!(is_avif(&ftyp(b"mif1", &[b"miaf", b"avif"])));
        assert!(!is_avif(&ftyp(b"mif1", &[b"heic"])));
        // A `mif1` file with an `avif` compatible brand decodes as an AVIF.
        let mut mif1 = encode(16, 8, ravif::Encoder::new(), false);
        assert_eq!(&mif1[8..12], b"avif");
        let at = mif1[..32]
            .windows(4)
            .position(|w| w == b"mif1")
            .expect("mif1 compatible");
        mif1[at..at + 4].copy_from_slice(b"avif");
        mif1[8..12].copy_from_slice(b"mif1");
        assert!(is_avif(&mif1));
        assert_eq!(decode(&mif1, 1000, 100).map(|i| i.width()), Ok(16));
        assert!(!is_avif(&ftyp(b"heic", &[b"mif1"])));
        assert!(!is_avif(b"\0\0\0\x0cftypavi"));
        assert!(!is_avif(b"not an image"));
    }
}
