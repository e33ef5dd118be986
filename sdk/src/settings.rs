//! The plugin's merchant-set settings, as declared in `plugin.toml`.
//!
//! The kernel checks settings against the manifest (types, required keys) and fills in
//! declared defaults before a call, so a plugin only has to check what the manifest
//! cannot express (ranges, formats, combinations). Values are strings; these helpers parse
//! them and turn problems into error strings that name the setting, ready to return from a
//! plugin function:
//!
//! ```
//! # olivine_sdk::testing::set_settings([("buy", "three")]);
//! use olivine_sdk::settings;
//!
//! fn config() -> Result<u32, String> {
//!     let buy = settings::get_parsed_or::<u32>("buy", 3)?;
//!     settings::ensure_range("buy", buy, 1..=1000)
//! }
//! assert_eq!(
//!     config().unwrap_err(),
//!     "setting `buy`: `three` is not a valid value (invalid digit found in string)"
//! );
//! ```
//!
//! A value that is empty or only whitespace counts as "not set" for the parsing helpers
//! ([`get`] returns it as it is).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

#[cfg(target_arch = "wasm32")]
fn host_get(key: &str) -> Option<String> {
    crate::common::olivine::plugin::settings::get(key)
}

#[cfg(target_arch = "wasm32")]
fn host_all() -> Vec<(String, String)> {
    crate::common::olivine::plugin::settings::all()
}

#[cfg(not(target_arch = "wasm32"))]
fn host_get(key: &str) -> Option<String> {
    crate::testing::setting(key)
}

#[cfg(not(target_arch = "wasm32"))]
fn host_all() -> Vec<(String, String)> {
    crate::testing::all_settings()
}

/// The raw value of a setting.
pub fn get(key: &str) -> Option<String> {
    host_get(key)
}

/// Every setting, as `(key, value)` pairs.
pub fn all() -> Vec<(String, String)> {
    host_all()
}

/// The raw value of a setting, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// A required setting's value (trimmed); an error naming the key when it is missing or
/// blank.
pub fn required(key: &str) -> Result<String, String> {
    required_value(key, get(key).as_deref())
}

/// A setting parsed with [`FromStr`]: `Ok(None)` when not set (or blank), an error naming
/// the key when the value does not parse.
pub fn get_parsed<T>(key: &str) -> Result<Option<T>, String>
where
    T: FromStr,
    T::Err: Display,
{
    parse_optional(key, get(key).as_deref())
}

/// A setting parsed with [`FromStr`], or `default` when not set (or blank).
pub fn get_parsed_or<T>(key: &str, default: T) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    Ok(get_parsed(key)?.unwrap_or(default))
}

/// A required setting parsed with [`FromStr`].
pub fn required_parsed<T>(key: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    parse_value(key, &required(key)?)
}

/// A boolean setting (`true`/`false`), or `default` when not set.
pub fn get_bool(key: &str, default: bool) -> Result<bool, String> {
    get_parsed_or(key, default)
}

/// A comma-separated list setting: items trimmed, empty items dropped. Not set = empty.
pub fn get_list(key: &str) -> Vec<String> {
    split_list(get(key).as_deref().unwrap_or(""))
}

/// Parses one setting value (trimmed); the error names the key and shows the value.
pub fn parse_value<T>(key: &str, raw: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    let text = raw.trim();
    text.parse::<T>()
        .map_err(|err| format!("setting `{key}`: `{text}` is not a valid value ({err})"))
}

/// Parses an optional setting value; blank counts as not set.
pub fn parse_optional<T>(key: &str, raw: Option<&str>) -> Result<Option<T>, String>
where
    T: FromStr,
    T::Err: Display,
{
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => parse_value(key, text).map(Some),
    }
}

fn required_value(key: &str, raw: Option<&str>) -> Result<String, String> {
    match raw.map(str::trim) {
        None | Some("") => Err(format!("setting `{key}` is required but not set")),
        Some(text) => Ok(text.to_owned()),
    }
}

/// Splits a comma-separated list: items trimmed, empty items dropped.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `value` if it lies in `range`, else an error naming the key and the range.
pub fn ensure_range<T>(key: &str, value: T, range: RangeInclusive<T>) -> Result<T, String>
where
    T: PartialOrd + Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "setting `{key}` must be between {} and {}, got {value}",
            range.start(),
            range.end()
        ))
    }
}

/// A fixed snapshot of settings, with the same helpers as the free functions. Useful to
/// read the host's settings once per call ([`Settings::from_host`]) and to test
/// configuration parsing with literal values ([`Settings::from_pairs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// All settings the host (or, off wasm, [`crate::testing`]) provides.
    pub fn from_host() -> Settings {
        Settings {
            values: all().into_iter().collect(),
        }
    }

    /// Settings from literal pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Settings {
        Settings {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of a setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The raw value of a setting, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// See [`required`].
    pub fn required(&self, key: &str) -> Result<String, String> {
        required_value(key, self.get(key))
    }

    /// See [`get_parsed`].
    pub fn get_parsed<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_optional(key, self.get(key))
    }

    /// See [`get_parsed_or`].
    pub fn get_parsed_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.get_parsed(key)?.unwrap_or(default))
    }

    /// See [`required_parsed`].
    pub fn required_parsed<T>(&self, key: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_value(key, &self.required(key)?)
    }

    /// See [`get_bool`].
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, String> {
        self.get_parsed_or(key, default)
    }

    /// See [`get_list`].
    pub fn get_list(&self, key: &str) -> Vec<String> {
        split_list(self.get(key).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_names_the_key() {
        let s = Settings::from_pairs([("buy", " 3 "), ("bad", "x"), ("blank", "  ")]);
        assert_eq!(s.get_parsed::<u32>("buy"), Ok(Some(3)));
        assert_eq!(s.get_parsed::<u32>("missing"), Ok(None));
        assert_eq!(s.get_parsed::<u32>("blank"), Ok(None));
        assert_eq!(s.get_parsed_or::<u32>("blank", 7), Ok(7));
        assert_eq!(
            s.get_parsed::<u32>("bad"),
            Err("setting `bad`: `x` is not a valid value (invalid digit found in string)".into())
        );
        assert_eq!(
            s.required("missing"),
            Err("setting `missing` is required but not set".into())
        );
        assert_eq!(s.required_parsed::<i64>("buy"), Ok(3));
        assert!(s.required_parsed::<i64>("blank").is_err());
    }

    #[test]
    fn lists_bools_and_ranges() {
        let s = Settings::from_pairs([("products", " a, ,b ,"), ("flag", "true")]);
        assert_eq!(s.get_list("products"), vec!["a", "b"]);
        assert!(s.get_list("nothing").is_empty());
        assert_eq!(s.get_bool("flag", false), Ok(true));
        assert_eq!(s.get_bool("other", false), Ok(false));
        assert_eq!(ensure_range("p", 10, 1..=100), Ok(10));
        assert_eq!(
            ensure_range("p", 150, 1..=100),
            Err("setting `p` must be between 1 and 100, got 150".into())
        );
    }

    #[test]
    fn free_functions_read_the_test_settings() {
        crate::testing::set_settings([("url", "https://example.com/hook")]);
        assert_eq!(required("url"), Ok("https://example.com/hook".into()));
        assert_eq!(get_or("other", "d"), "d");
        assert_eq!(
            Settings::from_host().get("url"),
            Some("https://example.com/hook")
        );
        crate::testing::clear();
        assert!(required("url").is_err());
    }
}
