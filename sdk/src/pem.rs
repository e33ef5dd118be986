//! Keys pasted into settings: the DER inside a PEM text, for channels and adapters that
//! sign (an APNs `.p8` key, a service account's RSA key).

use base64ct::{Base64, Encoding};

/// The label (`PRIVATE KEY`, `EC PRIVATE KEY`, ...) and the DER inside a PEM text.
/// Tolerates what pasting into a form does to a key: `\n` escapes (as in a service
/// account's JSON file), CRLF, lines joined with spaces or not wrapped at all.
///
/// ```
/// let (label, der) = olivine_sdk::pem::decode(
///     "-----BEGIN PRIVATE KEY-----\\nAAEC\\n-----END PRIVATE KEY-----",
/// )
/// .unwrap();
/// assert_eq!((label.as_str(), der), ("PRIVATE KEY", vec![0, 1, 2]));
/// ```
pub fn decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    let text = pem.trim().replace("\\n", "\n");
    let begin = text
        .find("-----BEGIN ")
        .ok_or("not a PEM key (no -----BEGIN line)")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest
        .find("-----")
        .ok_or("not a PEM key (broken BEGIN line)")?;
    let label = rest[..label_end].trim().to_owned();
    let body = &rest[label_end + 5..];
    let end = body
        .find("-----END ")
        .ok_or("not a PEM key (no -----END line)")?;
    let base64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = Base64::decode_vec(&base64).map_err(|_| "the PEM key's base64 is damaged")?;
    Ok((label, der))
}
