//! HTTP caching and compression of answers the kernel keeps ready: content negotiation
//! (`Accept-Encoding`), strong validators (`ETag`, `If-None-Match` → 304) and the
//! `Cache-Control` a mobile app's offline cache or a CDN can use.
//!
//! Other answers are compressed on the way out by tower-http's compression layer
//! ([`compression_layer`]); an answer that already carries `Content-Encoding` (a cached
//! product, compressed once) passes it untouched.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};

/// Bodies smaller than this go out as they are: compressing them saves less than the
/// encoding's own overhead and a round of work on both ends.
pub const MIN_COMPRESSED_BYTES: u64 = 1024;

/// Compresses (brotli or gzip, by `Accept-Encoding`) every answer over
/// [`MIN_COMPRESSED_BYTES`] that is not already compressed, an image or an event stream.
/// The router applies it through [`super::compress`], to the answers it changes only.
pub fn compression_layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .no_deflate()
        .no_zstd()
        .compress_when(compression_predicate())
}

/// Which answers [`compression_layer`] compresses (beside never compressing one that
/// already has a `Content-Encoding` or `Content-Range`).
pub fn compression_predicate() -> impl Predicate {
    SizeAbove::new(MIN_COMPRESSED_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
}

/// A content coding the kernel answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Brotli,
}

impl Coding {
    fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Brotli => Some("br"),
        }
    }

    /// What the client accepts best (brotli before gzip at equal weight); identity when
    /// it names neither with a weight above zero.
    pub fn preferred(headers: &HeaderMap) -> Coding {
        let mut best = (Coding::Identity, 0.0_f32);
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let weight = parts
                    .find_map(|p| p.trim().strip_prefix("q=").map(str::trim))
                    .map_or(Some(1.0), |q| q.parse::<f32>().ok())
                    .unwrap_or(0.0);
                let coding = match name.as_str() {
                    "br" => Coding::Brotli,
                    "gzip" | "x-gzip" => Coding::Gzip,
                    _ => continue,
                };
                let better = weight > best.1
                    || (weight == best.1 && weight > 0.0 && coding == Coding::Brotli);
                if weight > 0.0 && better {
                    best = (coding, weight);
                }
            }
        }
        best.0
    }
}

/// How hard a [`Prepared`] answer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effort {
    /// Kept in a cache and sent many times: compressed once, as small as is worth it.
    Kept,
    /// Made for one request (a listing, search results): compressed fast.
    Once,
}

/// An answer kept ready: its bytes, their strong validator, when they were made, and each
/// compressed form, made the first time a client asks for it.
pub struct Prepared {
    pub content_type: &'static str,
    pub identity: Bytes,
    /// The digest of `identity` (no quotes): the ETag of every coding of it, with a
    /// suffix per coding (a strong validator names one representation).
    pub digest: String,
    /// `Last-Modified`: when this content was read from the database and rendered, to
    /// the second. Content rebuilt unchanged gets a later time, which only costs a
    /// client one full answer; content is never older than its time, so a 304 by time
    /// never keeps a client on stale content.
    made_at: SystemTime,
    last_modified: HeaderValue,
    effort: Effort,
    /// `None` when compressing failed: that coding is then not offered.
    brotli: OnceLock<Option<Bytes>>,
    gzip: OnceLock<Option<Bytes>>,
    /// The `ETag` header of each coding (identity, gzip, brotli), made once.
    etags: [OnceLock<Option<HeaderValue>>; 3],
}

impl Prepared {
    /// An answer to keep in a cache (compressed hard, once per coding).
    pub fn new(content_type: &'static str, identity: Bytes) -> Prepared {
        Prepared::with_effort(content_type, identity, Effort::Kept)
    }

    /// An answer made for one request: the same validators, compressed fast.
    pub fn once(content_type: &'static str, identity: Bytes) -> Prepared {
        Prepared::with_effort(content_type, identity, Effort::Once)
    }

    fn with_effort(content_type: &'static str, identity: Bytes, effort: Effort) -> Prepared {
        let digest = crate::plugins::decisions::hash(&identity);
        let made_at = whole_seconds(SystemTime::now());
        Prepared {
            content_type,
            digest: digest[..32.min(digest.len())].to_owned(),
            identity,
            made_at,
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(made_at))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
            effort,
            brotli: OnceLock::new(),
            gzip: OnceLock::new(),
            etags: Default::default(),
        }
    }

    /// The content in `coding`, or `None` when it could not be compressed.
    fn body(&self, coding: Coding) -> Option<Bytes> {
        match coding {
            Coding::Identity => Some(self.identity.clone()),
            Coding::Brotli => self
                .brotli
                .get_or_init(|| compress(Coding::Brotli, self.effort, &self.identity))
                .clone(),
            Coding::Gzip => self
                .gzip
                .get_or_init(|| compress(Coding::Gzip, self.effort, &self.identity))
                .clone(),
        }
    }

    /// [`Prepared::etag`] as a header value, made the first time it is sent.
    fn etag_value(&self, coding: Coding) -> Option<HeaderValue> {
        let slot = match coding {
            Coding::Identity => 0,
            Coding::Gzip => 1,
            Coding::Brotli => 2,
        };
        self.etags[slot]
            .get_or_init(|| HeaderValue::from_str(&self.etag(coding)).ok())
            .clone()
    }

    fn etag(&self, coding: Coding) -> String {
        match coding.token() {
            Some(token) => format!("\"{}-{token}\"", self.digest),
            None => format!("\"{}\"", self.digest),
        }
    }

    /// Whether `If-None-Match` names this content in any coding (the weak comparison
    /// RFC 9110 asks for there; `*` matches anything).
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|tag| {
                tag == "*"
                    || tag
                        .strip_prefix(self.digest.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest == "-br" || rest == "-gzip")
            })
    }

    /// Whether the client holds this content: by `If-None-Match` when it sends one (RFC
    /// 9110 then ignores `If-Modified-Since`), else by `If-Modified-Since`.
    fn held_by(&self, headers: &HeaderMap) -> bool {
        if headers.contains_key(header::IF_NONE_MATCH) {
            return self.matches(headers);
        }
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| self.made_at <= since)
    }

    /// The answer to `headers`: 304 when the client holds this content, else the body in
    /// the best coding it accepts; `cache_control` either way.
    pub fn respond(&self, headers: &HeaderMap, cache_control: &'static str) -> Response {
        let small = (self.identity.len() as u64) < MIN_COMPRESSED_BYTES;
        let wanted = if small {
            Coding::Identity
        } else {
            Coding::preferred(headers)
        };
        let (coding, body) = match self.body(wanted) {
            Some(body) => (wanted, body),
            None => (Coding::Identity, self.identity.clone()),
        };
        let held = self.held_by(headers);
        let mut response = if held {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            Response::new(axum::body::Body::from(body))
        };
        // Room for these headers and the ones the caller and the security middleware add,
        // so the map is made once instead of grown (and rehashed) as they come.
        *response.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADERS);
        let out = response.headers_mut();
        if !held {
            // The content types are constants: a static value, not a copy per answer.
            out.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        if let Some(etag) = self.etag_value(coding) {
            out.insert(header::ETAG, etag);
        }
        out.insert(header::LAST_MODIFIED, self.last_modified.clone());
        out.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let (Some(token), false) = (
            coding.token(),
            response.status() == StatusCode::NOT_MODIFIED,
        ) {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        response
    }
}

/// `value` as JSON made for this request, with its validators: 304 when the client
/// holds it, else compressed by `Accept-Encoding`.
pub fn json_once<T: serde::Serialize>(
    headers: &HeaderMap,
    value: &T,
    cache_control: &'static str,
) -> crate::error::Result<Response> {
    let bytes = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    Ok(Prepared::once("application/json", Bytes::from(bytes)).respond(headers, cache_control))
}

/// Catalog answers change rarely but stock often: caches keep them a minute and may show
/// them while they revalidate for ten more (a 304 when nothing changed).
pub const CATALOG_CACHE_CONTROL: &str = "public, max-age=60, stale-while-revalidate=600";

/// `time` without its fraction of a second (HTTP dates have whole seconds).
fn whole_seconds(time: SystemTime) -> SystemTime {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Headers an answer of a [`Prepared`] ends up with: its own six, a purge tag under two
/// names, the security headers (five, six over HTTPS), `Content-Encoding`.
const RESPONSE_HEADERS: usize = 16;

/// `bytes` compressed with `coding`. A kept answer is compressed once and sent many
/// times, so brotli runs at quality 10 (a 2.3 KB product: 854 bytes in about 1.5 ms; quality
/// 4 makes 1,035 bytes in 63 µs, 5 to 9 are slower than 10 and larger, 11 saves 20 bytes
/// for twice the time), with a 64 KiB window: the answers are small. An answer made for
/// one request gets quality 4 and gzip's default level.
fn compress(coding: Coding, effort: Effort, bytes: &[u8]) -> Option<Bytes> {
    let (brotli_quality, gzip_level) = match effort {
        Effort::Kept => (10, flate2::Compression::best()),
        Effort::Once => (4, flate2::Compression::default()),
    };
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    let written = match coding {
        Coding::Identity => return Some(Bytes::copy_from_slice(bytes)),
        Coding::Brotli => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: brotli_quality,
                lgwin: 16,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).map(|_| ())
        }
        Coding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, gzip_level);
            encoder
                .write_all(bytes)
                .and_then(|()| encoder.finish().map(|_| ()))
        }
    };
    match written {
        Ok(()) => Some(Bytes::from(out)),
        // Writing into memory does not fail; should it, the answer goes out uncompressed.
        Err(err) => {
            tracing::error!(error = %err, "compressing a cached answer failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_best_accepted_coding_wins() {
        let pick = |v: &str| Coding::preferred(&headers(&[(header::ACCEPT_ENCODING, v)]));
        assert_eq!(pick("gzip, deflate, br"), Coding::Brotli);
        assert_eq!(pick("gzip"), Coding::Gzip);
        assert_eq!(pick("br;q=0, gzip"), Coding::Gzip);
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Coding::Gzip);
        assert_eq!(pick("identity"), Coding::Identity);
        assert_eq!(pick("gzip;q=0"), Coding::Identity);
        assert_eq!(pick("gzip;q=nonsense"), Coding::Identity);
        assert_eq!(Coding::preferred(&HeaderMap::new()), Coding::Identity);
    }

    #[test]
    fn a_validator_names_the_content_in_any_coding() {
        let prepared = Prepared::new("application/json", Bytes::from(vec![b'a'; 4000]));
        let tag = prepared.digest.clone();
        for sent in [
            format!("\"{tag}\""),
            format!("W/\"{tag}-br\""),
            format!("\"x\", \"{tag}-gzip\""),
            "*".to_owned(),
        ] {
            assert!(
                prepared.matches(&headers(&[(header::IF_NONE_MATCH, &sent)])),
                "{sent}"
            );
        }
        assert!(!prepared.matches(&headers(&[(header::IF_NONE_MATCH, "\"other\"")])));
        assert!(!prepared.matches(&headers(&[(header::IF_NONE_MATCH, &format!("\"{tag}x\""))])));
    }

    #[test]
    fn compressed_forms_decode_to_the_content() {
        use std::io::Read;
        let content = serde_json::to_vec(
            &serde_json::json!({"name": "Magnesium", "lines": vec!["capsule"; 300]}),
        )
        .unwrap();
        let prepared = Prepared::new("application/json", Bytes::from(content.clone()));
        let br = prepared.body(Coding::Brotli).unwrap();
        let gz = prepared.body(Coding::Gzip).unwrap();
        assert!(br.len() < content.len() / 3 && gz.len() < content.len() / 3);
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, content);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, content);
    }
}
