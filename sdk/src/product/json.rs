//! Field-by-field checks of attributes JSON (feature `json`). Unlike deserialising into a
//! struct, which stops at the first problem, these record every problem under its path
//! (`attributes.ingredients[0].amount`) and keep going.
//!
//! ```
//! use olivine_sdk::product::FieldErrors;
//! use olivine_sdk::product::json::{parse_attributes, Object};
//!
//! let mut errors = FieldErrors::new();
//! let value = parse_attributes(r#"{"volume_ml": 0, "colour": "red"}"#, &mut errors).unwrap();
//! let attrs = Object::new("attributes", &value, &mut errors).unwrap();
//! attrs.deny_unknown(&["volume_ml", "application"], &mut errors);
//! let volume = attrs.integer("volume_ml", 1..=100_000, &mut errors);
//! let application = attrs.string("application", &mut errors);
//! assert_eq!((volume, application), (None, None));
//! let fields: Vec<_> = errors.as_slice().iter().map(|e| e.field.as_str()).collect();
//! assert_eq!(fields, ["attributes.colour", "attributes.volume_ml", "attributes.application"]);
//! ```

use std::ops::RangeInclusive;

pub use serde_json::{self, Map, Value};

use super::FieldErrors;

/// Parses attributes JSON text; a syntax error is recorded under `attributes`.
pub fn parse_attributes(text: &str, errors: &mut FieldErrors) -> Option<Value> {
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(err) => {
            errors.add("attributes", format!("is not valid JSON: {err}"));
            None
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object at a field path.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// `value` as an object at `path`; records "must be a JSON object" otherwise.
    pub fn new(path: &'a str, value: &'a Value, errors: &mut FieldErrors) -> Option<Object<'a>> {
        match value {
            Value::Object(map) => Some(Object { path, map }),
            other => {
                errors.add(
                    path,
                    format!("must be a JSON object, not {}", kind_of(other)),
                );
                None
            }
        }
    }

    /// The path of one of this object's fields.
    pub fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The raw value of a field; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Records every field not in `known` as unknown.
    pub fn deny_unknown(&self, known: &[&str], errors: &mut FieldErrors) {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                errors.add(
                    self.field(key),
                    format!("is not a known field; expected one of {}", known.join(", ")),
                );
            }
        }
    }

    fn present(&self, key: &str, errors: &mut FieldErrors) -> Option<&'a Value> {
        let value = self.get(key);
        if value.is_none() {
            errors.add(self.field(key), "is required");
        }
        value
    }

    /// A required, non-blank string (trimmed).
    pub fn string(&self, key: &str, errors: &mut FieldErrors) -> Option<String> {
        let value = self.present(key, errors)?;
        text(&self.field(key), value, false, errors)
    }

    /// An optional string (trimmed); absent or `null` gives `""`.
    pub fn optional_string(&self, key: &str, errors: &mut FieldErrors) -> Option<String> {
        match self.get(key) {
            None => Some(String::new()),
            Some(value) => text(&self.field(key), value, true, errors),
        }
    }

    /// A required string that must be one of `allowed`.
    pub fn one_of(&self, key: &str, allowed: &[&str], errors: &mut FieldErrors) -> Option<String> {
        let value = self.string(key, errors)?;
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            errors.add(
                self.field(key),
                format!("`{value}` is not one of {}", allowed.join(", ")),
            );
            None
        }
    }

    /// A required whole number in `range`.
    pub fn integer(
        &self,
        key: &str,
        range: RangeInclusive<u64>,
        errors: &mut FieldErrors,
    ) -> Option<u64> {
        let value = self.present(key, errors)?;
        integer(&self.field(key), value, range, errors)
    }

    /// An optional whole number in `range`: `Some(None)` when absent or `null`.
    pub fn optional_integer(
        &self,
        key: &str,
        range: RangeInclusive<u64>,
        errors: &mut FieldErrors,
    ) -> Option<Option<u64>> {
        match self.get(key) {
            None => Some(None),
            Some(value) => integer(&self.field(key), value, range, errors).map(Some),
        }
    }

    /// A required finite number greater than zero.
    pub fn positive_number(&self, key: &str, errors: &mut FieldErrors) -> Option<f64> {
        let value = self.present(key, errors)?;
        match value.as_f64() {
            Some(n) if n.is_finite() && n > 0.0 => Some(n),
            Some(_) => {
                errors.add(self.field(key), "must be a positive number");
                None
            }
            None => {
                errors.add(
                    self.field(key),
                    format!("must be a positive number, not {}", kind_of(value)),
                );
                None
            }
        }
    }

    /// A required array.
    pub fn array(&self, key: &str, errors: &mut FieldErrors) -> Option<&'a Vec<Value>> {
        let value = self.present(key, errors)?;
        as_array(&self.field(key), value, errors)
    }

    /// A list of non-blank strings (trimmed). Absent or `null` gives an empty list unless
    /// `required`.
    pub fn string_list(
        &self,
        key: &str,
        required: bool,
        errors: &mut FieldErrors,
    ) -> Option<Vec<String>> {
        let value = if required {
            self.present(key, errors)?
        } else {
            match self.get(key) {
                None => return Some(Vec::new()),
                Some(value) => value,
            }
        };
        let field = self.field(key);
        let items = as_array(&field, value, errors)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match text(&format!("{field}[{i}]"), item, false, errors) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

fn text(field: &str, value: &Value, allow_blank: bool, errors: &mut FieldErrors) -> Option<String> {
    match value {
        Value::String(s) if allow_blank || !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::String(_) => {
            errors.add(field, "must not be empty");
            None
        }
        other => {
            errors.add(field, format!("must be a string, not {}", kind_of(other)));
            None
        }
    }
}

fn integer(
    field: &str,
    value: &Value,
    range: RangeInclusive<u64>,
    errors: &mut FieldErrors,
) -> Option<u64> {
    match value.as_u64() {
        Some(n) if range.contains(&n) => Some(n),
        _ if value.is_number() => {
            errors.add(
                field,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
        _ => {
            errors.add(
                field,
                format!("must be a whole number, not {}", kind_of(value)),
            );
            None
        }
    }
}

fn as_array<'v>(field: &str, value: &'v Value, errors: &mut FieldErrors) -> Option<&'v Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        other => {
            errors.add(field, format!("must be an array, not {}", kind_of(other)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: &FieldErrors) -> Vec<&str> {
        errors.as_slice().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn records_every_problem() {
        let mut errors = FieldErrors::new();
        let value = parse_attributes(
            r#"{"a": "", "b": 3, "c": -1, "d": 1.5, "e": ["x", 2], "f": "z", "g": 0, "h": null}"#,
            &mut errors,
        )
        .unwrap();
        let o = Object::new("attributes", &value, &mut errors).unwrap();
        assert_eq!(o.string("a", &mut errors), None);
        assert_eq!(o.string("b", &mut errors), None);
        assert_eq!(o.integer("c", 0..=10, &mut errors), None);
        assert_eq!(o.integer("d", 0..=10, &mut errors), None);
        assert_eq!(o.string_list("e", false, &mut errors), None);
        assert_eq!(o.one_of("f", &["x", "y"], &mut errors), None);
        assert_eq!(o.positive_number("g", &mut errors), None);
        assert_eq!(o.optional_integer("h", 1..=60, &mut errors), Some(None));
        assert_eq!(o.string("missing", &mut errors), None);
        assert_eq!(
            fields(&errors),
            [
                "attributes.a",
                "attributes.b",
                "attributes.c",
                "attributes.d",
                "attributes.e[1]",
                "attributes.f",
                "attributes.g",
                "attributes.missing"
            ]
        );
    }

    #[test]
    fn good_values_pass() {
        let mut errors = FieldErrors::new();
        let value = parse_attributes(
            r#"{"a": " x ", "n": 60, "l": [" p ", "q"], "p": 12.5, "o": ""}"#,
            &mut errors,
        )
        .unwrap();
        let o = Object::new("attributes", &value, &mut errors).unwrap();
        assert_eq!(o.string("a", &mut errors).as_deref(), Some("x"));
        assert_eq!(o.integer("n", 1..=1000, &mut errors), Some(60));
        assert_eq!(
            o.string_list("l", true, &mut errors),
            Some(vec!["p".into(), "q".into()])
        );
        assert_eq!(o.string_list("none", false, &mut errors), Some(vec![]));
        assert_eq!(o.positive_number("p", &mut errors), Some(12.5));
        assert_eq!(o.optional_string("o", &mut errors).as_deref(), Some(""));
        assert_eq!(o.optional_string("none", &mut errors).as_deref(), Some(""));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn not_json_or_not_an_object() {
        let mut errors = FieldErrors::new();
        assert!(parse_attributes("{", &mut errors).is_none());
        let value = parse_attributes("[1]", &mut errors).unwrap();
        assert!(Object::new("attributes", &value, &mut errors).is_none());
        assert_eq!(fields(&errors), ["attributes", "attributes"]);
    }
}
