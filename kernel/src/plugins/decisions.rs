//! Every plugin decision is recorded — plugin, version, a hash of the input and of the
//! output, outcome, fuel and time — so a price can be explained later. Records are
//! written in batches by a background task, never on the shopper's request path; if the
//! writer falls far behind, records are dropped and counted rather than slowing sales.

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

/// Writes a batch in one transaction, 100 rows per INSERT (900 parameters, well inside
/// both databases' limits).
async fn write(db: &Db, batch: &[Decision]) -> Result<(), sqlx::Error> {
    let now = crate::time::now();
    let mut tx = db.begin().await?;
    for chunk in batch.chunks(100) {
        let sql = format!(
            "INSERT INTO plugin_decisions (plugin_id, version, call, input_hash, output_hash, outcome, fuel, duration_us, created_at)
             VALUES {}",
            crate::store::value_rows(chunk.len(), 9)
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
                .bind(&now);
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await
}
