//! What an import found: every problem with its row and field, every repair it made.
//! Written as a JSON file for the operator (and answered by the admin API later).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};

/// A row that cannot be imported as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Repair {
    pub row: usize,
    pub field: String,
    /// What was done, e.g. `trimmed whitespace`.
    #[schema(value_type = String)]
    pub repair: &'static str,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
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
            repair,
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

    /// How many rows have at least one problem.
    pub fn invalid_rows(&self) -> usize {
        self.problems
            .iter()
            .map(|p| p.row)
            .collect::<BTreeSet<_>>()
            .len()
    }
}
