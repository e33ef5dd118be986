//! What an import found: every problem with its row and field, every repair it made.
//! Written as a JSON file for the operator, answered by the admin API, and kept with the
//! run ([`Kept`], `import_runs.report`) for the admin API and the admin's run page.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A row that cannot be imported as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// The row in the file: the CSV line (the header is line 1), or the position in a
    /// JSON array counted from 1.
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    pub field: String,
    pub message: String,
}

/// A value the import corrected on its way in (trimmed, lower-cased, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Repair {
    pub row: usize,
    pub field: String,
    /// What was done, e.g. `trimmed whitespace` (borrowed while importing: a repair a
    /// row of a large file costs no copy of its name; owned when read back).
    #[schema(value_type = String)]
    pub repair: Cow<'static, str>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub repairs: Vec<Repair>,
}

impl Report {
    pub fn problem(
        &mut self,
        row: usize,
        legacy_id: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            row,
            legacy_id: legacy_id.map(str::to_owned),
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn repair(
        &mut self,
        row: usize,
        field: impl Into<String>,
        repair: &'static str,
        from: &str,
        to: &str,
    ) {
        self.repairs.push(Repair {
            row,
            field: field.into(),
            repair: Cow::Borrowed(repair),
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }

    /// Files the field errors of a check as problems of `row`, each field under
    /// `prefix`; an internal error is passed back up (it says nothing about the row).
    pub fn problems_from(
        &mut self,
        row: usize,
        legacy_id: Option<&str>,
        prefix: &str,
        err: Error,
    ) -> Result<()> {
        let with_prefix = |field: &str| {
            if prefix.is_empty() {
                field.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match err {
            Error::Validation(fields) | Error::BadRequest { fields, .. } if !fields.is_empty() => {
                for f in fields {
                    self.problem(row, legacy_id, with_prefix(&f.field), f.message);
                }
            }
            Error::Conflict { message, field } => {
                let field = field.unwrap_or_else(|| "row".to_owned());
                self.problem(row, legacy_id, with_prefix(&field), message);
            }
            Error::Internal(err) => return Err(Error::Internal(err)),
            other => {
                let message = other.body().message;
                self.problem(row, legacy_id, with_prefix("row"), message);
            }
        }
        Ok(())
    }

    pub fn has_problem(&self, row: usize) -> bool {
        self.problems.iter().any(|p| p.row == row)
    }

    /// The report as a run keeps it ([`Kept`]), as JSON.
    pub fn kept_json(kind: super::Kind, report: &Report) -> Result<String> {
        Ok(serde_json::to_string(&Kept::of(kind, report)).map_err(anyhow::Error::from)?)
    }

    /// How many rows have at least one problem.
    pub fn invalid_rows(&self) -> usize {
        self.problems
            .iter()
            .map(|p| p.row)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Entries of each list a run keeps: enough to fix a file by; the CLI's report file and
/// the admin API's answer to the run itself have every one.
pub const KEPT_ENTRIES: usize = 1000;

/// A run's report as the run keeps it (`import_runs.report`): the first [`KEPT_ENTRIES`]
/// problems and repairs, how many were left off, and without the values of personal or
/// secret fields (a customer's email, name, phone and password hash, an order's email and
/// address, a subscription's payment method): the store keeps those encrypted, and a kept
/// report is not erased with the customer.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Kept {
    pub problems: Vec<Problem>,
    pub repairs: Vec<Repair>,
    /// Problems past the first [`KEPT_ENTRIES`], not kept.
    pub problems_left_off: usize,
    /// Repairs past the first [`KEPT_ENTRIES`], not kept.
    pub repairs_left_off: usize,
}

/// What a kept report shows instead of a personal or secret value.
pub const NOT_KEPT: &str = "(not kept)";

impl Kept {
    pub fn of(kind: super::Kind, report: &Report) -> Kept {
        let problems = report
            .problems
            .iter()
            .take(KEPT_ENTRIES)
            .map(|p| {
                let personal = personal(kind, &p.field);
                Problem {
                    row: p.row,
                    // A customer without a legacy id goes by their email.
                    legacy_id: p
                        .legacy_id
                        .clone()
                        .filter(|id| !(kind == super::Kind::Customers && id.contains('@'))),
                    field: p.field.clone(),
                    message: if personal {
                        without_quoted_values(&p.message)
                    } else {
                        p.message.clone()
                    },
                }
            })
            .collect();
        let repairs = report
            .repairs
            .iter()
            .take(KEPT_ENTRIES)
            .map(|r| {
                let mut r = r.clone();
                if personal(kind, &r.field) {
                    r.from = NOT_KEPT.to_owned();
                    r.to = NOT_KEPT.to_owned();
                }
                r
            })
            .collect();
        Kept {
            problems,
            repairs,
            problems_left_off: report.problems.len().saturating_sub(KEPT_ENTRIES),
            repairs_left_off: report.repairs.len().saturating_sub(KEPT_ENTRIES),
        }
    }
}

/// Whether `field` of a record of `kind` holds a person's data or a secret.
fn personal(kind: super::Kind, field: &str) -> bool {
    let top = field.split(['.', '[']).next().unwrap_or(field);
    match kind {
        super::Kind::Customers => matches!(
            top,
            "email" | "name" | "first_name" | "last_name" | "phone" | "password_hash"
        ),
        super::Kind::Orders => matches!(top, "email" | "shipping_address"),
        super::Kind::Subscriptions => top == "payment_method",
        super::Kind::Products | super::Kind::Lots => false,
    }
}

/// A message with the values it quotes (`` `call me` is not a phone number``) left out.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "`…`" } else { part });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imports::Kind;

    #[test]
    fn a_kept_report_leaves_out_personal_values_and_long_tails() {
        let mut report = Report::default();
        report.problem(
            2,
            Some("ana@example.com"),
            "phone",
            "`call me` is not a phone number",
        );
        report.problem(3, Some("p-1"), "variants[0].sku", "no variant has SKU `X`");
        report.repair(
            2,
            "email",
            "lower-cased email",
            "Ana@Example.com",
            "ana@example.com",
        );
        let kept = Kept::of(Kind::Customers, &report);
        assert_eq!(kept.problems[0].message, "`…` is not a phone number");
        assert_eq!(kept.problems[0].legacy_id, None);
        assert_eq!(kept.repairs[0].from, NOT_KEPT);
        assert_eq!(kept.repairs[0].repair, "lower-cased email");
        let kept = Kept::of(Kind::Products, &report);
        assert_eq!(kept.problems[1].message, "no variant has SKU `X`");
        for row in 0..KEPT_ENTRIES + 5 {
            report.repair(row, "name", "trimmed whitespace", " a", "a");
        }
        let kept = Kept::of(Kind::Lots, &report);
        assert_eq!(
            (kept.repairs.len(), kept.repairs_left_off),
            (KEPT_ENTRIES, 6)
        );
    }
}
