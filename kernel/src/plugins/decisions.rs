//! Every plugin decision is recorded — plugin, version, a hash of the input and of the
//! output, outcome, fuel, time and a short summary of what the plugin answered ([`detail`])
//! — so a price can be explained later. Records are
//! written in batches by a background task, never on the shopper's request path; if the
//! writer falls far behind, records are dropped and counted rather than slowing sales.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::store::Db;

#[derive(Debug, Clone)]
pub struct Decision {
    pub plugin_id: String,
    pub version: String,
    pub call: &'static str,
    pub input_hash: String,
    pub output_hash: String,
    pub outcome: String,
    pub fuel: u64,
    pub duration_us: u64,
    /// What the plugin answered, as [`detail`] made it.
    pub detail: Option<String>,
}

pub struct DecisionLog {
    sender: mpsc::Sender<Decision>,
}

/// Hex SHA-256 of some bytes.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The most a decision's detail takes, in bytes of JSON.
pub const MAX_DETAIL_BYTES: usize = 8 * 1024;

/// A decision's detail: `summary` as compact JSON, within [`MAX_DETAIL_BYTES`]. A longer
/// one keeps as many of the items of its longest list as fit and says so in `cut`
/// (`{"kept": …, "of": …, "bytes": …}`); when even that does not fit, only
/// `{"cut": {"bytes": …}}` is kept. Always valid JSON. Callers put in it no card data,
/// tokens or personal data: decision records are not erased with a customer.
pub fn detail(summary: Value) -> Option<String> {
    let text = summary.to_string();
    if text.len() <= MAX_DETAIL_BYTES {
        return Some(text);
    }
    let bytes = text.len();
    if let Value::Object(map) = &summary
        && let Some((key, items)) = map
            .iter()
            .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
            .max_by_key(|(_, a)| a.len())
    {
        let with = |kept: usize| {
            let mut cut = map.clone();
            cut.insert(key.clone(), Value::Array(items[..kept].to_vec()));
            cut.insert(
                "cut".to_owned(),
                json!({"kept": kept, "of": items.len(), "bytes": bytes}),
            );
            Value::Object(cut).to_string()
        };
        // The most items that fit: `low` fits (if anything does), `high` does not.
        let (mut low, mut high) = (0, items.len());
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if with(mid).len() <= MAX_DETAIL_BYTES {
                low = mid;
            } else {
                high = mid;
            }
        }
        let kept = with(low);
        if kept.len() <= MAX_DETAIL_BYTES {
            return Some(kept);
        }
    }
    Some(json!({"cut": {"bytes": bytes}}).to_string())
}

impl DecisionLog {
    pub fn start(db: Db) -> DecisionLog {
        let (sender, mut receiver) = mpsc::channel::<Decision>(10_000);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while receiver.recv_many(&mut batch, 256).await > 0 {
                if let Err(err) = write(&db, &batch).await {
                    tracing::warn!(error = %err, count = batch.len(), "could not write plugin decisions");
                }
                batch.clear();
            }
        });
        DecisionLog { sender }
    }

    pub fn record(&self, decision: Decision) {
        if self.sender.try_send(decision).is_err() {
            metrics::counter!("olivine_plugin_decisions_dropped_total").increment(1);
        }
    }
}

/// Columns a decision row binds.
const COLUMNS: usize = 10;
/// Rows per INSERT: 90 × 10 = 900 parameters, inside even an old SQLite's 999 (and
/// PostgreSQL's 65,535).
const ROWS_PER_INSERT: usize = 900 / COLUMNS;

/// Writes a batch in one transaction, [`ROWS_PER_INSERT`] rows per INSERT.
async fn write(db: &Db, batch: &[Decision]) -> Result<(), sqlx::Error> {
    let now = crate::time::now();
    let mut tx = db.begin().await?;
    for chunk in batch.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO plugin_decisions (plugin_id, version, call, input_hash, output_hash, outcome, fuel, duration_us, detail, created_at)
             VALUES {}",
            crate::store::value_rows(chunk.len(), COLUMNS)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in chunk {
            insert = insert
                .bind(&d.plugin_id)
                .bind(&d.version)
                .bind(d.call)
                .bind(&d.input_hash)
                .bind(&d.output_hash)
                .bind(&d.outcome)
                .bind(i64::try_from(d.fuel).unwrap_or(i64::MAX))
                .bind(i64::try_from(d.duration_us).unwrap_or(i64::MAX))
                .bind(d.detail.as_deref())
                .bind(&now);
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_within_the_bound_is_kept_as_it_is() {
        let summary = json!({"currency": "EUR", "adjustments": [{"line_id": 1, "amount_minor": -250, "reason": "Buy 3, save 10%"}]});
        let kept = detail(summary.clone()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&kept).unwrap(), summary);
    }

    #[test]
    fn a_long_detail_keeps_what_fits_and_says_it_was_cut() {
        let adjustments: Vec<Value> = (0..500)
            .map(|i| json!({"line_id": i, "amount_minor": -1, "reason": "x".repeat(40)}))
            .collect();
        let kept = detail(json!({"currency": "EUR", "adjustments": adjustments})).unwrap();
        assert!(kept.len() <= MAX_DETAIL_BYTES, "{}", kept.len());
        let kept: Value = serde_json::from_str(&kept).unwrap();
        let n = kept["adjustments"].as_array().unwrap().len();
        assert!(n > 50 && n < 500, "{n}");
        assert_eq!(kept["cut"]["kept"], n);
        assert_eq!(kept["cut"]["of"], 500);
        assert_eq!(kept["currency"], "EUR");
        // One more would not have fitted.
        let one_more = serde_json::to_string(&kept["adjustments"][0])
            .unwrap()
            .len();
        assert!(serde_json::to_string(&kept).unwrap().len() + one_more > MAX_DETAIL_BYTES - 8);
    }

    #[test]
    fn a_detail_nothing_of_which_fits_is_only_a_note() {
        let kept = detail(json!({"status": "x".repeat(MAX_DETAIL_BYTES * 2)})).unwrap();
        let kept: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept, json!({"cut": {"bytes": MAX_DETAIL_BYTES * 2 + 13}}));
        let kept = detail(json!({"reasons": ["y".repeat(MAX_DETAIL_BYTES)]})).unwrap();
        let kept: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept["reasons"], json!([]), "{kept}");
        assert_eq!(kept["cut"]["kept"], 0);
    }
}
