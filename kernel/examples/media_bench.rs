//! How long the `media.variants` job takes for one photo, format by format: decoding
//! (with the upload's check), then every width (320, 640, 1024, 1600) resized and encoded
//! in WebP, in AVIF and in JPEG, each timed alone. bench/media.sh runs it on a
//! 12-megapixel JPEG.
//!
//!   cargo run --release -p olivine-kernel --example media_bench -- photo.jpg [avif speed]
//!   cargo run --release -p olivine-kernel --example media_bench -- --make-photo out.jpg
//!
//! `--make-photo` writes a 4000 x 3000 JPEG (quality 90) of smooth gradients with fine
//! noise, about as hard to compress as a product shot, to benchmark with.

use std::time::Instant;

use olivine::media::Format;
use olivine::media::variants::{self, Encoding};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if let Some(out) = std::env::args()
        .nth(2)
        .filter(|_| std::env::args().nth(1).as_deref() == Some("--make-photo"))
    {
        return make_photo(&out);
    }
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: media_bench <photo.jpg> [avif speed]"))?;
    let defaults = olivine::config::MediaConfig::default();
    let speed = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(defaults.media_avif_speed);
    let original = std::fs::read(&path)?;
    let encoding = Encoding {
        webp_quality: defaults.media_webp_quality,
        avif_quality: defaults.media_avif_quality,
        avif_speed: speed,
        jpeg_quality: defaults.media_jpeg_quality,
        max_pixels: defaults.media_max_pixels,
    };
    let started = Instant::now();
    let inspected = variants::inspect(&original, encoding.max_pixels)
        .map_err(|why| anyhow::anyhow!("{path}: {why}"))?;
    println!(
        "original: {} x {} {} ({} KB); upload check (decode): {:.0} ms",
        inspected.width,
        inspected.height,
        inspected.format.name(),
        original.len() / 1024,
        started.elapsed().as_secs_f64() * 1000.0
    );
    for format in [Format::WebP, Format::Avif, Format::Jpeg] {
        let started = Instant::now();
        let mut made = Vec::new();
        variants::make_formats(&original, &encoding, &[format], |v| {
            made.push((v.width, v.bytes.len()));
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let sizes: Vec<String> = made
            .iter()
            .map(|(w, bytes)| format!("{w}: {} KB", bytes / 1024))
            .collect();
        println!(
            "{:<4} all widths (decode + resize + encode): {:>6.0} ms   [{}]",
            format.extension(),
            started.elapsed().as_secs_f64() * 1000.0,
            sizes.join(", ")
        );
    }
    Ok(())
}

fn make_photo(out: &str) -> anyhow::Result<()> {
    let (w, h) = (4000u32, 3000u32);
    let mut seed: u32 = 0x9e37_79b9;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (seed >> 24) as i32 / 16 - 8;
        let fx = x as f32 / w as f32;
        let fy = y as f32 / h as f32;
        let r = 60.0 + 150.0 * fx + 30.0 * (fy * 9.0).sin();
        let g = 90.0 + 100.0 * fy + 40.0 * (fx * 7.0).cos();
        let b = 140.0 + 80.0 * (1.0 - fx) * fy;
        let px = |v: f32| (v as i32 + noise).clamp(0, 255) as u8;
        image::Rgb([px(r), px(g), px(b)])
    });
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90).encode(
        img.as_raw(),
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(())
}
