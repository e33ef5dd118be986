//! Metadata stripping of an original served in a variant's stead (before the job has made
//! the variants): no GPS position or camera serial leaves the shop.
//!
//! JPEG: every APPn segment but JFIF (APP0), the ICC profile (APP2) and Adobe's colour
//! transform (APP14) goes, and comments; an EXIF orientation other than upright comes
//! back as a minimal EXIF segment holding only it, so the picture still stands upright.
//! PNG: text, time and EXIF chunks go. WebP: the EXIF and XMP chunks go.

use bytes::Bytes;

use super::variants::SourceFormat;

/// `original` without its metadata; the original itself when it does not parse as
/// expected (it decoded at upload, so this does not happen for stored originals).
pub fn metadata(original: &Bytes, kind: SourceFormat) -> Bytes {
    let stripped = match kind {
        SourceFormat::Jpeg => jpeg(original),
        SourceFormat::Png => png(original),
        SourceFormat::WebP => webp(original),
        SourceFormat::Avif => None,
    };
    stripped
        .map(Bytes::from)
        .unwrap_or_else(|| original.clone())
}

fn jpeg(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let orientation = {
        use image::ImageDecoder;
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes))
            .ok()
            .and_then(|mut d| d.orientation().ok())
            .map(|o| o.to_exif())
            .unwrap_or(1)
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    if orientation != 1 {
        out.extend_from_slice(&orientation_segment(orientation));
    }
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            // Start of scan: the rest is image data.
            out.extend_from_slice(bytes.get(at..)?);
            return Some(out);
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(bytes.get(at..at + 2)?);
            at += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let end = at + 2 + len;
        let segment = bytes.get(at..end)?;
        let keep = !matches!(marker, 0xE1 | 0xE3..=0xED | 0xEF | 0xFE);
        if keep {
            out.extend_from_slice(segment);
        }
        at = end;
    }
}

/// An APP1 EXIF segment with only the orientation (big-endian TIFF, one IFD entry).
pub fn orientation_segment(orientation: u8) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // header, IFD at 8
    tiff.extend_from_slice(&[0, 1]); // one entry
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]); // no next IFD
    let mut segment = vec![0xFF, 0xE1];
    let len = u16::try_from(2 + 6 + tiff.len()).unwrap_or(u16::MAX);
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

fn png(bytes: &[u8]) -> Option<Vec<u8>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.get(..8)? != SIGNATURE {
        return None;
    }
    let mut out = SIGNATURE.to_vec();
    let mut at = 8;
    while at < bytes.len() {
        let len =
            usize::try_from(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?)).ok()?;
        let kind = bytes.get(at + 4..at + 8)?;
        let end = at.checked_add(12)?.checked_add(len)?;
        let chunk = bytes.get(at..end)?;
        if !matches!(kind, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME") {
            out.extend_from_slice(chunk);
        }
        at = end;
        if kind == b"IEND" {
            break;
        }
    }
    Some(out)
}

fn webp(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WEBP" {
        return None;
    }
    let mut body = Vec::with_capacity(bytes.len());
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let kind = bytes.get(at..at + 4)?;
        let len = usize::try_from(u32::from_le_bytes(
            bytes.get(at + 4..at + 8)?.try_into().ok()?,
        ))
        .ok()?;
        let end = at.checked_add(8)?.checked_add(len)?.checked_add(len % 2)?;
        let chunk = bytes.get(at..end.min(bytes.len()))?;
        match kind {
            b"EXIF" | b"XMP " => {}
            b"VP8X" if chunk.len() > 8 => {
                // Clear the EXIF (0x08) and XMP (0x04) flags of the extended header.
                let mut header = chunk.to_vec();
                header[8] &= !0x0C;
                body.extend_from_slice(&header);
            }
            _ => body.extend_from_slice(chunk),
        }
        at = end;
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len() + 4).ok()?.to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"GPSLatitude 52.3731 secret-serial-0042";

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_vec();
        out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    /// A lossless 8x6 WebP in the extended format, with EXIF and XMP chunks (an odd
    /// length, so the padding byte is exercised) holding [`SECRET`].
    fn webp_with_metadata() -> Vec<u8> {
        let picture = image::RgbaImage::from_pixel(8, 6, image::Rgba([200, 40, 40, 255]));
        let mut simple = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut simple)
            .encode(picture.as_raw(), 8, 6, image::ExtendedColorType::Rgba8)
            .expect("encodes");
        // The simple format is RIFF, size, WEBP, then the one VP8L chunk.
        let image_chunk = &simple[12..];
        // VP8X: flags (EXIF 0x08, XMP 0x04), three reserved bytes, width-1 and height-1
        // in 24 bits each.
        let mut vp8x = vec![0x0C, 0, 0, 0];
        vp8x.extend_from_slice(&[7, 0, 0, 5, 0, 0]);
        let mut body = chunk(b"VP8X", &vp8x);
        body.extend_from_slice(image_chunk);
        body.extend(chunk(b"EXIF", &[b"Exif\0\0".as_slice(), SECRET].concat()));
        body.extend(chunk(
            b"XMP ",
            &[b"<x:xmpmeta>".as_slice(), SECRET, b"!"].concat(),
        ));
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&u32::try_from(body.len() + 4).expect("small").to_le_bytes());
        file.extend_from_slice(b"WEBP");
        file.extend(body);
        file
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_webp_loses_its_exif_and_xmp_chunks_and_still_decodes() {
        let original = Bytes::from(webp_with_metadata());
        assert!(contains(&original, SECRET));
        assert!(
            image::load_from_memory(&original).is_ok(),
            "the fixture decodes"
        );

        let stripped = metadata(&original, SourceFormat::WebP);
        assert!(!contains(&stripped, SECRET), "metadata left in the WebP");
        assert!(!contains(&stripped, b"EXIF") && !contains(&stripped, b"XMP "));
        // The RIFF size is the file's, and the extended header no longer announces them.
        let riff_size = u32::from_le_bytes(stripped[4..8].try_into().expect("four bytes"));
        assert_eq!(
            usize::try_from(riff_size).expect("fits"),
            stripped.len() - 8
        );
        assert_eq!(&stripped[12..16], b"VP8X");
        assert_eq!(stripped[20] & 0x0C, 0);
        let picture = image::load_from_memory(&stripped).expect("still decodes");
        assert_eq!((picture.width(), picture.height()), (8, 6));
    }

    #[test]
    fn a_file_that_is_not_a_webp_comes_back_as_it_was() {
        let junk = Bytes::from_static(b"RIFX....WEBPnonsense");
        assert_eq!(metadata(&junk, SourceFormat::WebP), junk);
    }
}
