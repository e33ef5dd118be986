//! Pages of admin lists by id: `?after_id=` and `?limit=`, and an optional name filter.

use crate::error::Problems;

/// The page size asked for: 1 to 500, 50 when unset; a wrong one goes into `problems`.
pub fn limit(problems: &mut Problems, limit: Option<i64>) -> i64 {
    let limit = limit.unwrap_or(50);
    problems.check(
        (1..=500).contains(&limit),
        "limit",
        "must be between 1 and 500",
    );
    limit
}

/// A filter by name (a consumer, a job kind): 1 to 100 characters when given.
pub fn check_name(problems: &mut Problems, field: &str, value: &Option<String>) {
    if let Some(value) = value {
        problems.check(
            !value.is_empty() && value.chars().count() <= 100,
            field,
            "must be 1 to 100 characters",
        );
    }
}

/// The page from rows read one past `limit`, and the cursor of the next page when there
/// is one (the last id of this page).
pub fn split<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more { items.last().map(id) } else { None };
    (items, next)
}
