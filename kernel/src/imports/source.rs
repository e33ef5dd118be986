//! Reading an import file into rows of the API's JSON shape: JSON as the API takes it,
//! CSV by the documented column mapping of each kind, or a Shopify products export.

use std::collections::HashMap;

use serde_json::Value;

use super::report::Report;
use super::{Kind, Options};
use crate::error::{Error, FieldError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    /// The products CSV of Shopify's admin export (docs/IMPORTS.md).
    Shopify,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "shopify" => Some(Format::Shopify),
            _ => None,
        }
    }

    /// JSON when the content starts like JSON; a CSV whose header has Shopify's
    /// `Handle` and `Variant SKU` columns is Shopify's export; other CSV is ours.
    pub fn detect(bytes: &[u8]) -> Format {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
        let text = text.trim_start_matches('\u{feff}').trim_start();
        if text.starts_with('[') || text.starts_with('{') {
            return Format::Json;
        }
        let header = text.lines().next().unwrap_or("").to_lowercase();
        if header.contains("handle") && header.contains("variant sku") {
            Format::Shopify
        } else {
            Format::Csv
        }
    }
}

/// One record to import: where it is in the file, and its content in the API's shape.
#[derive(Debug, Clone)]
pub struct Row {
    pub row: usize,
    pub value: Value,
}

/// One CSV line: its line number and its cells by header (lower-cased, trimmed).
pub struct CsvRecord {
    pub line: usize,
    cells: HashMap<String, String>,
}

impl CsvRecord {
    /// The cell of `column`, as written (empty when the column or the cell is missing).
    pub fn get(&self, column: &str) -> &str {
        self.cells.get(column).map(String::as_str).unwrap_or("")
    }

    /// The header's column names (lower-cased).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.cells.keys().map(String::as_str)
    }

    /// The cell of `column` when it holds more than whitespace.
    pub fn opt(&self, column: &str) -> Option<&str> {
        Some(self.get(column)).filter(|v| !v.trim().is_empty())
    }

    /// The cell as a JSON string, or null when empty.
    pub fn text(&self, column: &str) -> Value {
        self.opt(column)
            .map(|v| Value::String(v.to_owned()))
            .unwrap_or(Value::Null)
    }

    /// An amount in major units as minor units (JSON number), reporting a decimal comma
    /// as a repair and anything unreadable as a problem of `field` in `row` (the record
    /// this line is part of); null when empty.
    pub fn amount(&self, column: &str, row: usize, field: &str, report: &mut Report) -> Value {
        let Some(text) = self.opt(column) else {
            return Value::Null;
        };
        match super::repair::parse_amount(text) {
            Ok((minor, comma)) => {
                if comma {
                    let to = format!("{}.{:02}", minor / 100, (minor % 100).abs());
                    report.repair(row, field, "decimal comma", text, &to);
                }
                Value::from(minor)
            }
            Err(message) => {
                report.problem(row, None, field, format!("{column}: {message}"));
                Value::Null
            }
        }
    }

    /// A whole number, reporting anything else as a problem of `field` in `row`; null
    /// when empty.
    pub fn integer(&self, column: &str, row: usize, field: &str, report: &mut Report) -> Value {
        let Some(text) = self.opt(column) else {
            return Value::Null;
        };
        match text.trim().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => {
                report.problem(
                    row,
                    None,
                    field,
                    format!("{column}: `{text}` is not a whole number"),
                );
                Value::Null
            }
        }
    }

    /// A `|`-separated list (`a|b|c`) as a JSON array of strings.
    pub fn list(&self, column: &str) -> Value {
        Value::Array(
            self.get(column)
                .split('|')
                .filter(|v| !v.trim().is_empty())
                .map(|v| Value::String(v.to_owned()))
                .collect(),
        )
    }
}

fn unreadable(message: String) -> Error {
    Error::BadRequest {
        fields: vec![FieldError::new("file", message.clone())],
        message,
    }
}

/// Reads the file into rows. An unreadable file (not JSON, no CSV header) is an error;
/// a bad line in an otherwise readable file is a problem of that row.
pub fn read(kind: Kind, bytes: &[u8], options: &Options, report: &mut Report) -> Result<Vec<Row>> {
    let format = options.format.unwrap_or_else(|| Format::detect(bytes));
    match format {
        Format::Json => read_json(kind, bytes),
        Format::Csv => {
            let records = read_csv(bytes, report)?;
            Ok(match kind {
                Kind::Products => super::products::from_csv(records, options, report),
                Kind::Lots => super::lots::from_csv(records),
                Kind::Customers => super::customers::from_csv(records),
                Kind::Orders => super::orders::from_csv(records, report),
                Kind::Subscriptions => super::subscriptions::from_csv(records, report),
            })
        }
        Format::Shopify if kind == Kind::Products => Ok(super::shopify::from_csv(
            read_csv(bytes, report)?,
            options,
            report,
        )),
        Format::Shopify => Err(unreadable(
            "the Shopify mapping is for products only".to_owned(),
        )),
    }
}

/// A JSON array of records, or an object holding it under the kind's name
/// (`{"customers": [...]}`, as the admin API's customer import takes).
fn read_json(kind: Kind, bytes: &[u8]) -> Result<Vec<Row>> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| unreadable(format!("the file is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut fields) => match fields.remove(kind.as_str()) {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(unreadable(format!(
                    "expected an array of {0}, or an object with `{0}`: [...]",
                    kind.as_str()
                )));
            }
        },
        _ => return Err(unreadable("expected a JSON array".to_owned())),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, value)| Row { row: i + 1, value })
        .collect())
}

/// The CSV's records by header. Lines that do not parse are problems of their line.
fn read_csv(bytes: &[u8], report: &mut Report) -> Result<Vec<CsvRecord>> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| unreadable(format!("the file has no CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(unreadable("the file has no CSV header".to_owned()));
    }
    let mut records = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                let cells = headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .collect();
                records.push(CsvRecord { line, cells });
            }
            Err(err) => {
                let line = err.position().map(|p| p.line() as usize).unwrap_or(0);
                report.problem(line, None, "row", format!("unreadable CSV line: {err}"));
            }
        }
    }
    Ok(records)
}

/// The `updated_at` of a record from its lines' `updated_at` column: the newest of
/// them (a record spanning lines changed when any of its lines did); a cell that is not
/// a time is passed on as written for the check to name; null when no line has one.
pub fn updated_at(lines: &[&CsvRecord]) -> Value {
    let mut newest: Option<(chrono::DateTime<chrono::Utc>, &str)> = None;
    for line in lines {
        let Some(text) = line.opt("updated_at") else {
            continue;
        };
        match super::parse_time(text) {
            Some(at) => {
                if newest.is_none_or(|(seen, _)| at > seen) {
                    newest = Some((at, text));
                }
            }
            None => return Value::String(text.to_owned()),
        }
    }
    newest
        .map(|(_, text)| Value::String(text.to_owned()))
        .unwrap_or(Value::Null)
}

/// Records that belong together (a product's variants, an order's lines) by the value
/// of `key`, in the order their first line comes; lines without a key stand alone.
pub fn group_by<'a>(records: &'a [CsvRecord], key: &str) -> Vec<Vec<&'a CsvRecord>> {
    let mut groups: Vec<Vec<&CsvRecord>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for record in records {
        let value = record.get(key).trim();
        match index.get(value) {
            Some(&i) if !value.is_empty() => groups[i].push(record),
            _ => {
                index.insert(value, groups.len());
                groups.push(vec![record]);
            }
        }
    }
    groups
}
