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
//! The primary item's `irot` (rotation) and `imir` (mirror) properties are applied to the
//! decoded picture, in the order its `ipma` entry lists them, so it comes out upright.
//! avif-parse does not expose them: a small reader below finds them in the `meta` box. A
//! box it cannot read means no orientation, never an error. Not taken (415): grid (tiled)
//! and animated AVIFs, which avif-parse refuses.

use std::io::{Cursor, Read};

use image::metadata::Orientation;
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
    let mut image = to_rgb(
        &colour,
        alpha.as_ref(),
        data.premultiplied_alpha,
        max_pixels,
        max_side,
    )?;
    // A quarter turn swaps width and height: the limits checked above still hold (the
    // pixel count is the same, and `max_side` bounds both sides).
    for step in orientation(bytes) {
        image.apply_orientation(step);
    }
    Ok(image)
}

/// Property indices in `ipma` are 15 bits at most: no more properties are kept.
const MAX_PROPERTY_INDEX: usize = 0x7FFF;

/// How to turn the primary item upright: its `irot` and `imir` properties as steps, in the
/// order its `ipma` entry lists them (HEIF applies transformative properties in that
/// order). Only the first `irot` and the first `imir` count, as in libavif, so a file
/// cannot ask for hundreds of turns. Empty when the boxes do not parse: the picture is
/// then taken as stored.
fn orientation(file: &[u8]) -> Vec<Orientation> {
    boxes(file)
        .find(|(kind, _)| kind == b"meta")
        .and_then(|(_, meta)| meta_orientation(meta))
        .unwrap_or_default()
}

/// The steps read from the payload of a `meta` box.
fn meta_orientation(meta: &[u8]) -> Option<Vec<Orientation>> {
    // `meta` is a FullBox: its version and flags come before its children.
    let children = meta.get(4..)?;
    let (_, pitm) = boxes(children).find(|(kind, _)| kind == b"pitm")?;
    let primary = primary_item(pitm)?;
    let (_, iprp) = boxes(children).find(|(kind, _)| kind == b"iprp")?;
    let (_, ipco) = boxes(iprp).find(|(kind, _)| kind == b"ipco")?;
    let properties: Vec<([u8; 4], &[u8])> = boxes(ipco).take(MAX_PROPERTY_INDEX).collect();
    let indices = boxes(iprp)
        .filter(|(kind, _)| kind == b"ipma")
        .find_map(|(_, ipma)| associations(ipma, primary))?;
    let mut steps = Vec::new();
    let (mut rotated, mut mirrored) = (false, false);
    for index in indices {
        // Index 0 means no property; an index past the list is skipped, as avif-parse does.
        let Some((kind, payload)) = usize::from(index)
            .checked_sub(1)
            .and_then(|i| properties.get(i))
        else {
            continue;
        };
        match (kind, payload.first()) {
            // `irot`: the low 2 bits, in quarter turns anticlockwise (image's are clockwise).
            (b"irot", Some(angle)) if !rotated => {
                rotated = true;
                steps.push(match angle & 3 {
                    1 => Orientation::Rotate270,
                    2 => Orientation::Rotate180,
                    3 => Orientation::Rotate90,
                    _ => Orientation::NoTransforms,
                });
            }
            // `imir`: the low bit; 0 exchanges top and bottom, 1 left and right
            // (ISO/IEC 23008-12:2022 6.5.12, as libavif and libheif read it).
            (b"imir", Some(axis)) if !mirrored => {
                mirrored = true;
                steps.push(if axis & 1 == 0 {
                    Orientation::FlipVertical
                } else {
                    Orientation::FlipHorizontal
                });
            }
            _ => {}
        }
    }
    Some(steps)
}

/// The item id in a `pitm` payload: 16 bits in version 0, 32 in version 1.
fn primary_item(pitm: &[u8]) -> Option<u32> {
    let mut fields = Fields(pitm);
    let [version, ..] = fields.take::<4>()?;
    match version {
        0 => fields.u16().map(u32::from),
        1 => fields.u32(),
        _ => None,
    }
}

/// The property indices (1-based into `ipco`) an `ipma` payload lists for `item`, in order.
fn associations(ipma: &[u8], item: u32) -> Option<Vec<u16>> {
    let mut fields = Fields(ipma);
    let [version, _, _, flags] = fields.take::<4>()?;
    let entry_count = fields.u32()?;
    // Each entry reads at least 3 bytes: a large count runs out of data, not of time.
    for _ in 0..entry_count {
        let item_id = match version {
            0 => u32::from(fields.u16()?),
            1 => fields.u32()?,
            _ => return None,
        };
        let count = fields.u8()?;
        let mut indices = Vec::new();
        for _ in 0..count {
            // Flag 1: 15-bit indices, else 7-bit; the top bit says "essential".
            let index = if flags & 1 == 1 {
                fields.u16()? & 0x7FFF
            } else {
                u16::from(fields.u8()? & 0x7F)
            };
            if item_id == item {
                indices.push(index);
            }
        }
        if item_id == item {
            return Some(indices);
        }
    }
    None
}

/// The ISOBMFF boxes laid one after another in `data`, as (type, payload). The list stops
/// at the first box that does not fit: a truncated or garbled box ends it, never reads
/// past `data`.
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let mut fields = Fields(rest);
        let size = fields.u32()?;
        let kind = fields.take::<4>()?;
        let (header, size) = match size {
            // 0: the box runs to the end; 1: a 64-bit size follows the type.
            0 => (8, rest.len()),
            1 => (16, usize::try_from(fields.u64()?).ok()?),
            size => (8, usize::try_from(size).ok()?),
        };
        // `get` is None when the size is under the header's: each box moves on 8 bytes or more.
        let payload = rest.get(header..size)?;
        rest = rest.get(size..)?;
        Some((kind, payload))
    })
}

/// Big-endian fields read off the front of a slice: None past its end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
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

    const NO_STEPS: [Orientation; 0] = [];

    /// A box of type `kind` around `payload`.
    fn bmff(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = (8 + payload.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    /// A FullBox: the version and the 24-bit flags come before `payload`.
    fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![version];
        body.extend_from_slice(&flags.to_be_bytes()[1..]);
        body.extend_from_slice(payload);
        bmff(kind, &body)
    }

    fn irot(angle: u8) -> Vec<u8> {
        bmff(b"irot", &[angle])
    }

    fn imir(axis: u8) -> Vec<u8> {
        bmff(b"imir", &[axis])
    }

    /// A version 0 `ipma` (16-bit ids, 7-bit indices): (item, indices) entries.
    fn ipma(entries: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = (entries.len() as u32).to_be_bytes().to_vec();
        for (item, indices) in entries {
            body.extend_from_slice(&item.to_be_bytes());
            body.push(indices.len() as u8);
            body.extend_from_slice(indices);
        }
        full(b"ipma", 0, 0, &body)
    }

    /// A `meta` box: primary item 1, `properties` in `ipco`, then `ipma`.
    fn meta(properties: &[Vec<u8>], ipma: &[u8]) -> Vec<u8> {
        meta_with(&full(b"pitm", 0, 0, &1u16.to_be_bytes()), properties, ipma)
    }

    fn meta_with(pitm: &[u8], properties: &[Vec<u8>], ipma: &[u8]) -> Vec<u8> {
        let mut iprp = bmff(b"ipco", &properties.concat());
        iprp.extend_from_slice(ipma);
        let mut children = full(b"hdlr", 0, 0, &[0; 21]);
        children.extend_from_slice(pitm);
        children.extend_from_slice(&bmff(b"iprp", &iprp));
        full(b"meta", 0, 0, &children)
    }

    #[test]
    fn reads_the_primary_items_irot_and_imir_in_their_listed_order() {
        use Orientation::*;
        let ispe = full(b"ispe", 0, 0, &[0; 8]);
        // irot alone: quarter turns anticlockwise; the reserved bits are ignored.
        for (angle, step) in [
            (0, NoTransforms),
            (1, Rotate270),
            (2, Rotate180),
            (3, Rotate90),
            (0xFD, Rotate270),
        ] {
            let file = meta(&[ispe.clone(), irot(angle)], &ipma(&[(1, &[1, 0x82])]));
            assert_eq!(orientation(&file), [step], "angle {angle}");
        }
        // imir alone: axis 0 exchanges top and bottom, 1 left and right.
        let file = meta(&[imir(0)], &ipma(&[(1, &[0x81])]));
        assert_eq!(orientation(&file), [FlipVertical]);
        let file = meta(&[imir(1)], &ipma(&[(1, &[1])]));
        assert_eq!(orientation(&file), [FlipHorizontal]);
        // Both, in the order the entry lists them (not the order of `ipco`).
        let both = [irot(1), imir(1)];
        let file = meta(&both, &ipma(&[(1, &[0x81, 0x82])]));
        assert_eq!(orientation(&file), [Rotate270, FlipHorizontal]);
        let file = meta(&both, &ipma(&[(1, &[0x82, 0x81])]));
        assert_eq!(orientation(&file), [FlipHorizontal, Rotate270]);
        // Only the first of each counts.
        let file = meta(&[irot(1), irot(2), imir(0)], &ipma(&[(1, &[1, 2, 3, 2])]));
        assert_eq!(orientation(&file), [Rotate270, FlipVertical]);
        // Another item's associations are not the primary's.
        let file = meta(&both, &ipma(&[(2, &[1]), (1, &[2]), (3, &[1])]));
        assert_eq!(orientation(&file), [FlipHorizontal]);
        let file = meta(&both, &ipma(&[(2, &[1, 2])]));
        assert_eq!(orientation(&file), NO_STEPS);
        // Index 0 (no property) and indices past `ipco` are skipped.
        let file = meta(&both, &ipma(&[(1, &[0, 3, 0x7F, 1])]));
        assert_eq!(orientation(&file), [Rotate270]);
        // No `ipma`, or none of the two properties: nothing to do.
        assert_eq!(orientation(&meta(&both, &[])), NO_STEPS);
        assert_eq!(orientation(&meta(&[ispe], &ipma(&[(1, &[1])]))), NO_STEPS);
    }

    #[test]
    fn reads_version_1_pitm_and_ipma_with_32_bit_ids_and_15_bit_indices() {
        let item: u32 = 70_000;
        let pitm = full(b"pitm", 1, 0, &item.to_be_bytes());
        // 200 properties before these two: their indices need more than 7 bits.
        let mut properties = vec![bmff(b"free", &[]); 200];
        properties.push(imir(0));
        properties.push(irot(3));
        let ipma_v1 = |entries: &[(u32, &[u16])]| {
            let mut body = (entries.len() as u32).to_be_bytes().to_vec();
            for (item, indices) in entries {
                body.extend_from_slice(&item.to_be_bytes());
                body.push(indices.len() as u8);
                for index in *indices {
                    body.extend_from_slice(&index.to_be_bytes());
                }
            }
            full(b"ipma", 1, 1, &body)
        };
        let associations = ipma_v1(&[(1, &[201]), (item, &[0x8000 | 202, 201])]);
        assert_eq!(
            orientation(&meta_with(&pitm, &properties, &associations)),
            [Orientation::Rotate90, Orientation::FlipVertical]
        );
        // The same ids read as 16 bits (version 0) name no such item.
        let mut as_version_0 = associations.clone();
        as_version_0[8] = 0;
        assert_eq!(
            orientation(&meta_with(&pitm, &properties, &as_version_0)),
            NO_STEPS
        );
        // A version 2 `pitm` is not read.
        let pitm_v2 = full(b"pitm", 2, 0, &item.to_be_bytes());
        assert_eq!(
            orientation(&meta_with(&pitm_v2, &properties, &associations)),
            NO_STEPS
        );
    }

    #[test]
    fn damaged_boxes_mean_no_orientation_never_a_panic() {
        let file = meta(&[irot(1), imir(1)], &ipma(&[(2, &[1]), (1, &[1, 2])]));
        assert_eq!(orientation(&file).len(), 2);
        // Cut anywhere: the `meta` box no longer fits.
        for len in 0..file.len() {
            assert_eq!(orientation(&file[..len]), NO_STEPS, "cut at {len}");
        }
        // Each byte changed in turn, in several ways: any answer but a panic.
        for i in 0..file.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = file.clone();
                damaged[i] ^= flip;
                assert!(orientation(&damaged).len() <= 2, "byte {i} ^ {flip}");
            }
        }
        // Sizes under the header's, past the end, 64-bit ones, and "to the end".
        for head in [
            &[0, 0, 0, 4][..],
            &[0, 0, 0, 7],
            &[0xFF, 0xFF, 0xFF, 0xFF],
            &[0, 0, 0, 1],
        ] {
            let mut garbage = head.to_vec();
            garbage.extend_from_slice(b"meta");
            garbage.extend_from_slice(&[0xFF; 24]);
            assert_eq!(orientation(&garbage), NO_STEPS);
        }
        let mut huge = vec![0, 0, 0, 1];
        huge.extend_from_slice(b"meta");
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(orientation(&huge), NO_STEPS);
        // Size 0 (the box runs to the end) is read.
        let mut to_the_end = file.clone();
        to_the_end[..4].copy_from_slice(&[0; 4]);
        assert_eq!(orientation(&to_the_end).len(), 2);
        // An entry count far past the data runs out of data at once.
        let endless = full(b"ipma", 0, 0, &u32::MAX.to_be_bytes());
        assert_eq!(orientation(&meta(&[irot(1)], &endless)), NO_STEPS);
        // An `ipma` cut inside the primary's entry: nothing, not a part.
        let mut cut = ipma(&[(1, &[1, 2])]);
        cut.truncate(cut.len() - 1);
        cut[3] -= 1;
        assert_eq!(orientation(&meta(&[irot(1), imir(1)], &cut)), NO_STEPS);
        // An empty `irot` is skipped.
        let file = meta(&[bmff(b"irot", &[]), imir(1)], &ipma(&[(1, &[1, 2])]));
        assert_eq!(orientation(&file), [Orientation::FlipHorizontal]);
    }

    /// A `w` x `h` opaque picture, blue with a red top-left quarter.
    fn encode_red_corner(w: usize, h: usize) -> Vec<u8> {
        let pixels: Vec<ravif::RGB8> = (0..w * h)
            .map(|i| {
                if i % w < w / 2 && i / w < h / 2 {
                    ravif::RGB8::new(220, 20, 20)
                } else {
                    ravif::RGB8::new(20, 20, 220)
                }
            })
            .collect();
        ravif::Encoder::new()
            .with_speed(10)
            .with_quality(90.0)
            .encode_rgb(ravif::Img::new(&pixels[..], w, h))
            .expect("encodes")
            .avif_file
    }

    /// `avif` (as avif-serialize writes it: `ftyp`, `meta`, `mdat`, with primary item 1)
    /// with `properties` added at the end of `ipco` and of the item's `ipma` entry. The
    /// boxes around them grow, and so `mdat` moves: `iloc`'s extent offsets move with it.
    fn with_properties(avif: &[u8], properties: &[Vec<u8>]) -> Vec<u8> {
        let top: Vec<_> = boxes(avif).collect();
        let kinds: Vec<_> = top.iter().map(|(kind, _)| kind).collect();
        assert_eq!(kinds, [b"ftyp", b"meta", b"mdat"]);
        let (version_flags, children) = top[1].1.split_at(4);
        let added = properties.concat();
        let shift = (added.len() + properties.len()) as u32;
        let mut meta = version_flags.to_vec();
        for (kind, payload) in boxes(children) {
            let payload = match &kind {
                b"iloc" => {
                    // Version 0, 4-byte offsets and lengths, no base offset.
                    assert_eq!(&payload[..6], &[0, 0, 0, 0, 0x44, 0]);
                    let mut iloc = payload.to_vec();
                    let mut at = 8;
                    for _ in 0..u16::from_be_bytes([payload[6], payload[7]]) {
                        let extents = u16::from_be_bytes([iloc[at + 4], iloc[at + 5]]);
                        at += 6;
                        for _ in 0..extents {
                            let offset = u32::from_be_bytes(iloc[at..at + 4].try_into().unwrap());
                            iloc[at..at + 4].copy_from_slice(&(offset + shift).to_be_bytes());
                            at += 8;
                        }
                    }
                    iloc
                }
                b"iprp" => {
                    let mut iprp = Vec::new();
                    let (_, ipco) = boxes(payload).find(|(k, _)| k == b"ipco").unwrap();
                    let first = boxes(ipco).count() + 1;
                    iprp.extend(bmff(b"ipco", &[ipco, &added].concat()));
                    let (_, old) = boxes(payload).find(|(k, _)| k == b"ipma").unwrap();
                    // Version 0, 7-bit indices: entries of id, count, indices.
                    assert_eq!(&old[..4], &[0; 4]);
                    let mut ipma = old[..8].to_vec();
                    let mut at = 8;
                    while at < old.len() {
                        let item = u16::from_be_bytes([old[at], old[at + 1]]);
                        let count = usize::from(old[at + 2]);
                        let mut indices = old[at + 3..at + 3 + count].to_vec();
                        if item == 1 {
                            // Marked essential, as transformative properties are.
                            indices
                                .extend((first..first + properties.len()).map(|i| 0x80 | i as u8));
                        }
                        ipma.extend_from_slice(&old[at..at + 2]);
                        ipma.push(indices.len() as u8);
                        ipma.extend(indices);
                        at += 3 + count;
                    }
                    iprp.extend(bmff(b"ipma", &ipma));
                    iprp
                }
                _ => payload.to_vec(),
            };
            meta.extend(bmff(&kind, &payload));
        }
        let mut file = bmff(b"ftyp", top[0].1);
        file.extend(bmff(b"meta", &meta));
        file.extend(bmff(b"mdat", top[2].1));
        assert_eq!(file.len(), avif.len() + shift as usize);
        file
    }

    #[test]
    fn applies_irot_and_imir_to_the_decoded_picture() {
        let (w, h) = (64, 32);
        let stored = encode_red_corner(w, h);
        // The helper leaves a file alone when it adds nothing.
        assert_eq!(with_properties(&stored, &[]), stored);
        let red = [220, 20, 20];
        // Which corner is red: top-left, top-right, bottom-left, bottom-right.
        let red_corner = |bytes: &[u8]| {
            let image = decode(bytes, 1_000_000, 30_000).expect("decodes").to_rgb8();
            let (w, h) = image.dimensions();
            let corners = [(4, 4), (w - 5, 4), (4, h - 5), (w - 5, h - 5)];
            let reds: Vec<bool> = corners
                .iter()
                .map(|&(x, y)| near(&image.get_pixel(x, y).0, &red))
                .collect();
            assert_eq!(reds.iter().filter(|r| **r).count(), 1, "{reds:?}");
            ((w, h), reds.iter().position(|r| *r).unwrap())
        };
        let (top_left, top_right, bottom_left, bottom_right) = (0, 1, 2, 3);
        assert_eq!(red_corner(&stored), ((64, 32), top_left));
        for (properties, expected, name) in [
            // A quarter turn anticlockwise takes the top-left corner to the bottom-left.
            (vec![irot(1)], ((32, 64), bottom_left), "irot 90"),
            (vec![irot(2)], ((64, 32), bottom_right), "irot 180"),
            (vec![irot(3)], ((32, 64), top_right), "irot 270"),
            (vec![imir(0)], ((64, 32), bottom_left), "imir top-bottom"),
            (vec![imir(1)], ((64, 32), top_right), "imir left-right"),
            (
                vec![irot(1), imir(1)],
                ((32, 64), bottom_right),
                "irot then imir",
            ),
            (
                vec![imir(1), irot(1)],
                ((32, 64), top_left),
                "imir then irot",
            ),
        ] {
            let file = with_properties(&stored, &properties);
            assert_eq!(red_corner(&file), expected, "{name}");
        }
        // A turned picture is within the same limits: its pixel count and sides are the same.
        let turned = with_properties(&stored, &[irot(1)]);
        assert_eq!(
            decode(&turned, 64 * 32, 64).map(|i| (i.width(), i.height())),
            Ok((32, 64))
        );
        assert_eq!(
            decode(&turned, 64 * 32 - 1, 64).err(),
            Some(Rejection::TooManyPixels {
                width: 64,
                height: 32,
                limit: 64 * 32 - 1
            })
        );
        assert!(matches!(
            decode(&turned, 1_000_000, 63),
            Err(Rejection::TooManyPixels { .. })
        ));
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
