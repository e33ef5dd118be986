//! Named JSON Schemas for the string rules that several request fields share: a SKU, a
//! slug, a country code, an email address, single-line text… Each states exactly what
//! the check function it names accepts, so the OpenAPI document alone tells a valid
//! request from an invalid one. The handlers keep checking: these document the rules,
//! they do not replace them. A field points at one with `#[schema(value_type = …)]`.
//!
//! The patterns are ECMA-262 regular expressions spelled with explicit character
//! classes (no `\s`, `\d` or `\w`, which the engines read differently):
//!
//! - "whitespace" is what `str::trim` removes (Unicode White_Space);
//! - "control characters" are what `char::is_control` is true for (U+0000–U+001F and
//!   U+007F–U+009F).
//!
//! Where a handler trims a value before checking it, the pattern allows the same
//! whitespace around it, and a length limit counts the value as sent.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AllOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};

/// Whitespace as `str::trim` sees it, as the body of a character class.
macro_rules! ws {
    () => {
        r"\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// Whitespace and control characters together, as the body of a character class.
macro_rules! ws_or_control {
    () => {
        r"\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// Control characters, as the body of a character class.
macro_rules! control {
    () => {
        r"\x00-\x1F\x7F-\x9F"
    };
}

/// Holds a character other than whitespace (`catalog::model::check_text`).
pub const NON_BLANK: &str = concat!("[^", ws!(), "]");

/// Not blank once trimmed, and no control character inside (surrounding whitespace is
/// trimmed away, so it may hold any).
pub const SINGLE_LINE: &str = concat!(
    "^[",
    ws!(),
    "]*[^",
    ws_or_control!(),
    "](?:[^",
    control!(),
    "]*[^",
    ws_or_control!(),
    "])?[",
    ws!(),
    "]*$"
);

/// [`SINGLE_LINE`], or only whitespace (which counts as absent).
pub const SINGLE_LINE_OR_BLANK: &str = concat!(
    "^[",
    ws!(),
    "]*(?:[^",
    ws_or_control!(),
    "](?:[^",
    control!(),
    "]*[^",
    ws_or_control!(),
    "])?[",
    ws!(),
    "]*)?$"
);

/// Not blank, and no control character anywhere.
pub const NON_BLANK_WITHOUT_CONTROLS: &str = concat!(
    "^[^",
    control!(),
    "]*[^",
    ws_or_control!(),
    "][^",
    control!(),
    "]*$"
);

/// `catalog::model::check_sku`: 1 to 64 letters, digits, `-`, `_` or `.`.
pub const SKU: &str = "^[A-Za-z0-9._-]{1,64}$";

/// `catalog::model::check_slug`: 1 to 100 lower-case letters, digits and hyphens, not
/// starting or ending with a hyphen.
pub const SLUG: &str = "^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$";

/// `accounts::check_email`, trimmed: one `@`, something before it, a domain of at least
/// two non-empty dot-separated labels, no whitespace or control character inside.
pub const EMAIL: &str = concat!(
    "^[",
    ws!(),
    "]*[^@",
    ws_or_control!(),
    "]+@[^@.",
    ws_or_control!(),
    "]+(?:\\.[^@.",
    ws_or_control!(),
    "]+)+[",
    ws!(),
    "]*$"
);

/// A string schema with a pattern, its lengths and an example.
fn string(
    description: &str,
    pattern: &str,
    lengths: (Option<usize>, Option<usize>),
    example: &str,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(lengths.0)
        .max_length(lengths.1)
        .examples([example])
}

/// Declares a schema-only type: `name => expression building its schema`.
macro_rules! schema_type {
    ($($(#[doc = $doc:literal])+ $name:ident => $schema:expr;)+) => {
        $(
            $(#[doc = $doc])+
            pub struct $name;

            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $schema.into()
                }
            }

            impl utoipa::ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }
            }
        )+
    };
}

/// Free text, not blank, of up to `max` characters (`catalog::model::check_text`).
fn non_blank(max: Option<usize>) -> ObjectBuilder {
    let description = match max {
        Some(max) => format!("Text of 1 to {max} characters, not only whitespace."),
        None => "Text, not only whitespace.".to_owned(),
    };
    string(&description, NON_BLANK, (Some(1), max), "Vitamin D3")
}

/// One line of text of up to `max` characters: not blank, no control characters
/// inside; surrounding whitespace is trimmed.
fn single_line(max: usize, example: &str) -> ObjectBuilder {
    string(
        &format!(
            "One line of up to {max} characters: not blank, no control characters \
             (surrounding whitespace is trimmed)."
        ),
        SINGLE_LINE,
        (Some(1), Some(max)),
        example,
    )
}

/// [`single_line`], where only whitespace means "none".
fn single_line_or_blank(max: usize, example: &str) -> ObjectBuilder {
    string(
        &format!(
            "One line of up to {max} characters without control characters (surrounding \
             whitespace is trimmed); blank means none."
        ),
        SINGLE_LINE_OR_BLANK,
        (None, Some(max)),
        example,
    )
}

/// An ISO 3166-1 alpha-2 code from the assigned ones, upper case.
fn country_codes() -> impl Iterator<Item = &'static str> {
    crate::countries::COUNTRIES.iter().map(|(code, _)| *code)
}

schema_type! {
    /// A SKU (`catalog::model::check_sku`).
    Sku => string(
        "A SKU: 1 to 64 letters, digits, `-`, `_` or `.`.",
        SKU,
        (Some(1), Some(64)),
        "MAG-GLY-60",
    );
    /// A SKU, or blank for one the taxonomy plugin derives (`NewVariant.sku`).
    SkuOrBlank => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A SKU (1 to 64 letters, digits, `-`, `_` or `.`), or blank: the active taxonomy \
             plugin of the product's type derives one (without one, a SKU is required).",
        ))
        .pattern(Some(concat!("^(?:[A-Za-z0-9._-]{1,64}|[", ws!(), "]*)$")))
        .examples(["MAG-GLY-60"]);
    /// A location code (`catalog::model::check_sku`, as `NewLocation.code`).
    LocationCode => string(
        "A location code: 1 to 64 letters, digits, `-`, `_` or `.`.",
        SKU,
        (Some(1), Some(64)),
        "AMS-1",
    );
    /// A product or category slug (`catalog::model::check_slug`).
    Slug => string(
        "A slug: 1 to 100 lower-case letters, digits and hyphens, not starting or ending \
         with a hyphen.",
        SLUG,
        (Some(1), Some(100)),
        "magnesium-glycinate",
    );
    /// A product tag (`catalog::model::check_tags`).
    Tag => string(
        "A tag: 1 to 50 lower-case letters, digits and hyphens.",
        "^[a-z0-9-]{1,50}$",
        (Some(1), Some(50)),
        "vegan",
    );
    /// An ISO 4217 currency code (`catalog::model::check_currency`).
    CurrencyCode => string(
        "An ISO 4217 currency code: three capital letters.",
        "^[A-Z]{3}$",
        (Some(3), Some(3)),
        "EUR",
    );
    /// An assigned ISO 3166-1 alpha-2 country code (`accounts::addresses::is_country_code`).
    CountryCode => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "An assigned ISO 3166-1 alpha-2 country code, upper case (the API also takes \
             it in lower case, with surrounding whitespace).",
        ))
        .enum_values(Some(country_codes()))
        .examples(["NL"]);
    /// A country of a rate table: an assigned ISO 3166-1 alpha-2 code, or `*` for every
    /// other country.
    CountryOrAny => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "An assigned ISO 3166-1 alpha-2 country code, upper case, or `*`: every country \
             without a rate of its own.",
        ))
        .enum_values(Some(std::iter::once("*").chain(country_codes())))
        .examples(["NL"]);
    /// An IANA time zone name this server knows (`notify::quiet`).
    TimeZone => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("An IANA time zone name, such as `Europe/Berlin`."))
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
        .examples(["Europe/Berlin"]);
    /// An email address (`accounts::check_email`).
    Email => string(
        "An email address of up to 254 characters: one `@` with something before it, a \
         domain of at least two dot-separated labels, no whitespace or control characters \
         inside (surrounding whitespace is trimmed).",
        EMAIL,
        (Some(5), Some(254)),
        "name@example.com",
    );
    /// A new password (`accounts::check_password`).
    Password => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .description(Some("A password of 10 to 256 characters."))
        .min_length(Some(crate::accounts::PASSWORD_MIN_CHARS))
        .max_length(Some(crate::accounts::PASSWORD_MAX_CHARS));
    /// A consent purpose (`accounts::consents::check`).
    ConsentPurpose => string(
        "A purpose: a lower-case letter, then up to 47 lower-case letters, digits and `_`.",
        "^[a-z][a-z0-9_]{0,47}$",
        (Some(1), Some(48)),
        "marketing_email",
    );
    /// The version of a consent's wording (`accounts::consents::check`).
    WordingVersion => string(
        "The version of the wording shown: 1 to 32 letters, digits, `.`, `-` or `_`.",
        "^[A-Za-z0-9._-]{1,32}$",
        (Some(1), Some(32)),
        "2025-01",
    );
    /// How often a subscription is delivered (`subscriptions::Interval::parse`).
    SubscriptionInterval => string(
        "Every N days (`30d`), weeks (`2w`) or months (`1m`): 1 to 366 days, 52 weeks or 12 \
         months.",
        "^[1-9][0-9]{0,2}[dwm]$",
        (Some(2), Some(4)),
        "30d",
    );
    /// The code of a shipping method (`PUT /api/v1/admin/shipping-rates`).
    ShippingMethodCode => string(
        "A shipping method's code: 1 to 64 letters, digits, `-` or `_`.",
        "^[A-Za-z0-9_-]{1,64}$",
        (Some(1), Some(64)),
        "standard",
    );
    /// A calendar date, `YYYY-MM-DD` (`time::parse_date`).
    IsoDate => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .description(Some("A date, `YYYY-MM-DD`."))
        .examples(["2025-01-31"]);
    /// Text, not blank, of any length.
    NonBlankText => non_blank(None);
    /// Text, not blank, of up to 64 characters.
    NonBlankText64 => non_blank(Some(64));
    /// Text, not blank, of up to 100 characters.
    NonBlankText100 => non_blank(Some(100));
    /// Text, not blank, of up to 200 characters.
    NonBlankText200 => non_blank(Some(200));
    /// Text, not blank, of up to 5000 characters.
    NonBlankText5000 => non_blank(Some(5000));
    /// One line of up to 64 characters.
    SingleLine64 => single_line(64, "3SABC1234567");
    /// One line of up to 100 characters.
    SingleLine100 => single_line(100, "Amsterdam");
    /// One line of up to 200 characters.
    SingleLine200 => single_line(200, "Ada Lovelace");
    /// One line of up to 50 characters, or blank.
    SingleLineOrBlank50 => single_line_or_blank(50, "Home");
    /// One line of up to 100 characters, or blank.
    SingleLineOrBlank100 => single_line_or_blank(100, "Noord-Holland");
    /// One line of up to 200 characters, or blank.
    SingleLineOrBlank200 => single_line_or_blank(200, "2nd floor");
    /// A postal code (`orders::check_address`).
    PostalCode => string(
        "A postal code: up to 16 letters, digits, spaces or hyphens (surrounding \
         whitespace is trimmed).",
        concat!(
            "^[", ws!(), "]*[A-Za-z0-9-](?:[A-Za-z0-9 -]*[A-Za-z0-9-])?[", ws!(), "]*$"
        ),
        (Some(1), Some(16)),
        "1017 AB",
    );
    /// A postal code, or blank for none (`accounts::addresses`).
    OptionalPostalCode => string(
        "A postal code: up to 16 letters, digits, spaces or hyphens once trimmed, up to 64 \
         characters as sent; blank means none.",
        concat!(
            "^[", ws!(), "]*(?:[A-Za-z0-9-](?:[A-Za-z0-9 -]{0,14}[A-Za-z0-9-])?[", ws!(), "]*)?$"
        ),
        (None, Some(64)),
        "1017 AB",
    );
    /// A phone number, or blank for none (`accounts::addresses`): its digits and its
    /// length are two patterns, both of which hold.
    Phone => AllOfBuilder::new()
        .description(Some(
            "A phone number: 4 to 20 digits, optionally `+` first, spaces, `-`, `.`, `(`, \
             `)`, up to 32 characters once trimmed and 64 as sent; blank means none.",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(64))
                .pattern(Some(concat!(
                    "^[", ws!(), r"]*(?:\+?[ ().-]*(?:[0-9][ ().-]*){4,20})?[", ws!(), "]*$"
                ))),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(concat!(
            "^[", ws!(), r"]*(?:[0-9().+-](?:[0-9 ().+-]{0,30}[0-9().+-])?)?[", ws!(), "]*$"
        ))))
        .examples(["+31 20 123 4567"]);
    /// A payment processor's card token (`orders::check_payment_token`).
    PaymentToken => string(
        "The payment processor's token for the card: 1 to 200 letters, digits, `-`, `_`, \
         `.`, `:`, not only digits (never a card number).",
        "^[A-Za-z0-9._:-]*[A-Za-z._:-][A-Za-z0-9._:-]*$",
        (Some(1), Some(200)),
        "tok_4f9a2c",
    );
    /// A legacy password hash (`accounts::import_legacy`).
    LegacyPasswordHash => string(
        "A bcrypt hash (`$2a$`, `$2b$` or `$2y$`, 60 characters) or an argon2id PHC \
         string as argon2 writes it (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, standard \
         base64 without padding); surrounding whitespace is trimmed. (Other spellings of \
         an argon2id PHC string that parse are taken too.)",
        concat!(
            "^[", ws!(), "]*(?:",
            // bcrypt: version, two-character cost, 22 characters of salt and 31 of hash in
            // bcrypt's base64, whose last character leaves no bits over.
            r"\$2[aby]\$(?:[0-9]{2}|\+[0-9])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]",
            "|",
            // argon2id: version, the three parameters, a salt of 4 to 64 characters and a
            // hash of 10 to 64 bytes in canonical base64.
            r"\$argon2id(?:\$v=(?:16|19))?\$m=[0-9]{1,10},t=[0-9]{1,10},p=[0-9]{1,10}\$[A-Za-z0-9/+.-]{4,64}\$",
            r"(?:(?:[A-Za-z0-9+/]{4}){4,21}|(?:[A-Za-z0-9+/]{4}){3,21}[A-Za-z0-9+/][AQgw]",
            r"|(?:[A-Za-z0-9+/]{4}){3,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])",
            ")[", ws!(), "]*$"
        ),
        (None, None),
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$K7Zqo7yHkR5n0LhxJ7vW0m8y0mQ2vG7U5H0cP0QmWXU",
    );
    /// A WebAssembly component in standard base64 (`plugins::package::PackageUpload`).
    Base64 => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Standard base64 with padding, in canonical form (surrounding whitespace is \
             trimmed).",
        ))
        .content_encoding("base64")
        .pattern(Some(concat!(
            "^[", ws!(), "]*(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}",
            "[AEIMQUYcgkosw048]=)?[", ws!(), "]*$"
        )));
    /// A change of a lot's quantity (`inventory::api::adjust_lot`).
    StockDelta => OneOfBuilder::new()
        .description(Some(
            "Units to add (positive) or remove (negative): never zero, at most 10,000,000 \
             either way.",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(-10_000_000))
                .maximum(Some(-1)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(Some(10_000_000)),
        )
        .examples([24]);
    /// Days after a renewal's first decline to try again (`inventory::settings`).
    RetryDay => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("A day, 1 to 60, later than the one before it in the list."))
        .minimum(Some(1))
        .maximum(Some(60))
        .examples([3]);
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;
    use crate::error::Problems;

    fn example(schema: RefOr<Schema>) -> String {
        let value = serde_json::to_value(schema).unwrap();
        value["examples"][0].as_str().unwrap().to_owned()
    }

    fn passes(check: impl Fn(&mut Problems, &str)) -> bool {
        let mut problems = Problems::new();
        check(&mut problems, "field");
        problems.is_empty()
    }

    #[test]
    fn every_example_passes_the_check_it_documents() {
        use crate::catalog::model::{check_currency, check_slug, check_tags, check_text};
        let sku = example(Sku::schema());
        assert!(passes(|p, f| crate::catalog::model::check_sku(p, f, &sku)));
        let slug = example(Slug::schema());
        assert!(passes(|p, f| check_slug(p, f, &slug)));
        let tag = example(Tag::schema());
        assert!(passes(|p, f| check_tags(p, f, std::slice::from_ref(&tag))));
        let currency = example(CurrencyCode::schema());
        assert!(passes(|p, f| check_currency(p, f, &currency)));
        let text = example(NonBlankText200::schema());
        assert!(passes(|p, f| check_text(p, f, &text, 200)));
        let email = example(Email::schema());
        assert!(passes(|p, f| crate::accounts::check_email(p, f, &email)));
        assert!(crate::time::parse_date(&example(IsoDate::schema())).is_ok());
        let hash = example(LegacyPasswordHash::schema());
        let parsed = argon2::PasswordHash::new(&hash).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn the_patterns_written_out_in_attributes_are_these() {
        // `#[schema(pattern = …)]` takes only a literal: the literals must be these.
        let rate = serde_json::to_value(crate::orders::api::ShippingRate::schema()).unwrap();
        assert_eq!(
            rate["properties"]["name"]["pattern"],
            NON_BLANK_WITHOUT_CONTROLS
        );
        let quote = serde_json::to_value(crate::orders::totals::QuoteRequest::schema()).unwrap();
        assert_eq!(
            quote["properties"]["country"]["pattern"],
            concat!("^[", ws!(), "]*[A-Za-z]{2}[", ws!(), "]*$")
        );
    }

    #[test]
    fn country_codes_are_the_assigned_ones() {
        let value = serde_json::to_value(CountryCode::schema()).unwrap();
        let codes = value["enum"].as_array().unwrap();
        assert_eq!(codes.len(), 249);
        for code in codes {
            assert!(crate::accounts::addresses::is_country_code(
                code.as_str().unwrap()
            ));
        }
        let value = serde_json::to_value(CountryOrAny::schema()).unwrap();
        assert_eq!(value["enum"][0], "*");
    }

    #[test]
    fn the_patterns_spell_the_same_whitespace_as_trim() {
        // Every character `str::trim` removes is in the class `ws!()` spells, and no other
        // below U+3001 (the class is a list of ranges, checked here by decoding it).
        let class = ws!()
            .replace(r"\t", "\t")
            .replace(r"\r", "\r")
            .replace(r"\x85", "\u{85}")
            .replace(r"\xA0", "\u{A0}");
        let mut spelled = Vec::new();
        let mut rest = class.as_str();
        while let Some(c) = rest.chars().next() {
            let (start, len) = if let Some(hex) = rest.strip_prefix(r"\u") {
                (
                    char::from_u32(u32::from_str_radix(&hex[..4], 16).unwrap()).unwrap(),
                    6,
                )
            } else {
                (c, c.len_utf8())
            };
            rest = &rest[len..];
            if let Some(after) = rest.strip_prefix('-') {
                let (end, len) = if let Some(hex) = after.strip_prefix(r"\u") {
                    (
                        char::from_u32(u32::from_str_radix(&hex[..4], 16).unwrap()).unwrap(),
                        6,
                    )
                } else {
                    let e = after.chars().next().unwrap();
                    (e, e.len_utf8())
                };
                spelled.extend(start..=end);
                rest = &after[len..];
            } else {
                spelled.push(start);
            }
        }
        let trimmed: Vec<char> = (0..=0x3001)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        spelled.sort_unstable();
        assert_eq!(spelled, trimmed);
    }
}
