//! The common repairs of legacy data, each reported: whitespace around values, emails
//! in capitals, phone numbers written every which way, amounts with a decimal comma,
//! countries by name instead of by ISO code.

use serde_json::Value;

use super::report::Report;

/// Trims every string in `value` (a row in the API's JSON shape), reporting each one
/// changed under its path (`variants[0].title`).
pub fn trim_strings(value: &mut Value, path: &str, row: usize, report: &mut Report) {
    match value {
        Value::String(text) => {
            let trimmed = text.trim();
            if trimmed.len() != text.len() {
                let trimmed = trimmed.to_owned();
                report.repair(row, path, "trimmed whitespace", text, &trimmed);
                *text = trimmed;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                trim_strings(item, &format!("{path}[{i}]"), row, report);
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields.iter_mut() {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                trim_strings(item, &path, row, report);
            }
        }
        _ => {}
    }
}

/// Lower-cases the email at `field` of an object row.
pub fn lowercase_email(value: &mut Value, field: &str, row: usize, report: &mut Report) {
    if let Some(Value::String(email)) = value.get_mut(field) {
        let lower = email.to_lowercase();
        if lower != *email {
            report.repair(row, field, "lower-cased email", email, &lower);
            *email = lower;
        }
    }
}

/// Other names legacy shops write for a country, beyond the ISO short names.
const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("usa", "US"),
    ("united states", "US"),
    ("united states of america", "US"),
    ("uk", "GB"),
    ("great britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("holland", "NL"),
    ("the netherlands", "NL"),
    ("deutschland", "DE"),
    ("nederland", "NL"),
    ("españa", "ES"),
    ("espana", "ES"),
    ("italia", "IT"),
    ("österreich", "AT"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("belgië", "BE"),
    ("belgique", "BE"),
    ("czech republic", "CZ"),
    ("south korea", "KR"),
    ("russia", "RU"),
];

/// The ISO 3166-1 alpha-2 code of a country given by code (any case) or by name
/// (`Netherlands`, `Holland`, `United States`).
pub fn country_code(text: &str) -> Option<&'static str> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    if let Some((code, _)) = crate::countries::COUNTRIES
        .iter()
        .find(|(code, _)| *code == upper)
    {
        return Some(code);
    }
    let lower = text.to_lowercase();
    crate::countries::COUNTRIES
        .iter()
        .find(|(_, name)| name.to_lowercase() == lower)
        .map(|(code, _)| *code)
        .or_else(|| {
            COUNTRY_ALIASES
                .iter()
                .find(|(alias, _)| *alias == lower)
                .map(|(_, code)| *code)
        })
}

/// Replaces a country name (or a lower-case code) at `field` with its ISO code. A value
/// that names no country is left for validation to report.
pub fn country(value: &mut Value, field: &str, path: &str, row: usize, report: &mut Report) {
    if let Some(Value::String(text)) = value.get_mut(field)
        && let Some(code) = country_code(text)
        && code != text.as_str()
    {
        report.repair(row, path, "country name to ISO code", text, code);
        *text = code.to_owned();
    }
}

/// An amount written in major units (`12.50`, `12,50`, `1.234,56`, `1,234.56`, `-3`)
/// as minor units (two decimals); `true` when a decimal comma was read.
pub fn parse_amount(text: &str) -> Result<(i64, bool), String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && !"€$£".contains(*c))
        .collect();
    let bad = || format!("`{text}` is not an amount such as 12.50");
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    // The last separator is the decimal one when two or fewer digits follow it.
    let decimal_at = digits
        .rfind(['.', ','])
        .filter(|at| digits.len() - at - 1 <= 2);
    let comma = decimal_at.is_some_and(|at| digits.as_bytes()[at] == b',');
    let (whole, fraction) = match decimal_at {
        Some(at) => (&digits[..at], &digits[at + 1..]),
        None => (digits, ""),
    };
    // What separates thousands is dropped; it must group by three.
    let groups: Vec<&str> = whole.split(['.', ',']).collect();
    let grouped = groups.len() == 1
        || groups
            .iter()
            .skip(1)
            .all(|g| g.len() == 3 && !groups[0].is_empty());
    let whole: String = groups.concat();
    if (whole.is_empty() && fraction.is_empty())
        || !grouped
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let major: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let minor: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let amount = major
        .checked_mul(100)
        .and_then(|m| m.checked_add(minor))
        .ok_or_else(bad)?;
    Ok((if negative { -amount } else { amount }, comma))
}

/// A phone number in international form: separators dropped, `00` read as `+`.
/// Numbers without a country prefix keep their digits only.
pub fn normalise_phone(text: &str) -> Result<String, String> {
    // `+31 (0)6 …`: the trunk zero in brackets is dialled at home only.
    let kept: String = text
        .trim()
        .replace("(0)", "")
        .chars()
        .filter(|c| !" -./()".contains(*c))
        .collect();
    let international = match kept.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => kept,
    };
    let digits = international.strip_prefix('+').unwrap_or(&international);
    if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(international)
    } else {
        Err(format!("`{text}` is not a phone number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_with_either_separator() {
        assert_eq!(parse_amount("12.50"), Ok((1250, false)));
        assert_eq!(parse_amount("12,50"), Ok((1250, true)));
        assert_eq!(parse_amount("12,5"), Ok((1250, true)));
        assert_eq!(parse_amount("1.234,56"), Ok((123456, true)));
        assert_eq!(parse_amount("1,234.56"), Ok((123456, false)));
        assert_eq!(parse_amount("1,234"), Ok((123400, false)));
        assert_eq!(parse_amount(" €7 "), Ok((700, false)));
        assert_eq!(parse_amount("-3.10"), Ok((-310, false)));
        for bad in ["", "abc", "1.2.3,4.5", "12.34.5", "1e5", "--1"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_by_name_or_code() {
        assert_eq!(country_code("nl"), Some("NL"));
        assert_eq!(country_code("Netherlands"), Some("NL"));
        assert_eq!(country_code("germany"), Some("DE"));
        assert_eq!(country_code("USA"), Some("US"));
        assert_eq!(country_code("Atlantis"), None);
    }

    #[test]
    fn phones_in_international_form() {
        assert_eq!(
            normalise_phone("0031 (0)6-1234 5678").as_deref(),
            Ok("+31612345678")
        );
        assert_eq!(
            normalise_phone("+49 30 123456").as_deref(),
            Ok("+4930123456")
        );
        assert_eq!(normalise_phone("06 12345678").as_deref(), Ok("0612345678"));
        assert!(normalise_phone("call me").is_err());
    }
}
