//! Card numbers never belong in a request to the kernel: cards go from the shopper's
//! browser to the payment processor, and we only ever see its token. Any field that
//! holds something that looks like a card number — 13 to 19 digits, alone or grouped
//! with single spaces or dashes, passing the Luhn check — is refused before a handler
//! sees it, so no log, table or plugin ever holds one by mistake.
//!
//! A run of digits counts only as a whole word: digits glued to letters (`tok_ab12…`,
//! a hex digest) are not a card number.

use serde_json::Value;

/// What the refusal says about the field.
pub const MESSAGE: &str =
    "must not hold a card number: card details go to the payment processor, never to this shop";

/// Whether `text` holds something that looks like a card number.
pub fn contains_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        // A run: digits, with single spaces or dashes between groups.
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                j += 1;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
                && bytes[j - 1].is_ascii_digit()
            {
                j += 1;
            } else {
                break;
            }
            if digits.len() > 19 {
                break;
            }
        }
        let ends_word = j >= bytes.len() || !word(bytes[j]);
        if ends_word && (13..=19).contains(&digits.len()) && luhn(&digits) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

/// The Luhn checksum over decimal digits.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A cheap first look at a raw body: could any card number be in it at all?
pub fn might_contain_card_number(bytes: &[u8]) -> bool {
    let mut run = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            run += 1;
            if run >= 13 {
                return true;
            }
        } else if b != b' ' && b != b'-' {
            run = 0;
        }
    }
    false
}

/// The paths (as `a.b[0].c`) of every string, number or object key in `value` that
/// looks like a card number.
pub fn json_fields(value: &Value, path: String, found: &mut Vec<String>) {
    let name = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if contains_card_number(text) => found.push(name(&path)),
        Value::Number(number) if contains_card_number(&number.to_string()) => {
            found.push(name(&path))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_fields(item, format!("{path}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if contains_card_number(key) {
                    found.push(name(&path));
                    continue;
                }
                json_fields(item, child, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_and_their_spellings_are_found() {
        for text in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "5555555555554444",
            "378282246310005",  // Amex, 15 digits
            "6011111111111117", // Discover
            "4000000000000002", // a sandbox decline card
            "4222222222222",    // 13 digits
            "my card is 4242424242424242, thanks",
            "(4242424242424242)",
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn other_numbers_are_not() {
        for text in [
            "",
            "4242424242424241",     // fails Luhn
            "424242424242",         // 12 digits
            "42424242424242424242", // 20 digits
            "tok_4242424242424242", // glued to a word: a token
            "ab4242424242424242",   // glued to letters
            "4242424242424242ab",
            "4242  4242 4242 4242", // two spaces: not one number
            "+31 6 1234 5678",      // a phone number
            "2026-11-25T10:00:00Z",
            "OL-ABCDE-FGHJK",
            "3511 AB",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn json_fields_are_named() {
        let value: Value = serde_json::json!({
            "email": "a@example.com",
            "shipping_address": {"line2": "4242 4242 4242 4242", "city": "Utrecht"},
            "notes": ["fine", 4242424242424242u64],
            "amount": 1200
        });
        let mut found = Vec::new();
        json_fields(&value, String::new(), &mut found);
        found.sort();
        assert_eq!(found, vec!["notes[1]", "shipping_address.line2"]);
    }

    #[test]
    fn the_first_look_needs_thirteen_digits() {
        assert!(!might_contain_card_number(
            br#"{"quantity": 3, "sku": "MAG-60"}"#
        ));
        assert!(might_contain_card_number(
            br#"{"x": "4242 4242 4242 4242"}"#
        ));
        assert!(might_contain_card_number(br#"{"x": 4242424242424242}"#));
    }
}
