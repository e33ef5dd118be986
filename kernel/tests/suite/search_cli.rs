//! The synthetic benchmark catalog and `olivine search reindex`: the catalog is valid,
//! the same for the same size and loaded only into an empty store; the bulk index build
//! makes the documents the per-product path makes; reindex refuses an index a node holds.

use std::collections::BTreeSet;
use std::process::Command;

use olivine::search::SearchIndex;
use olivine::search::query::{SearchRequest, search};
use sqlx::Row;
use tantivy::schema::Value as _;
use tantivy::{DocAddress, TantivyDocument};

use crate::common::*;

fn olivine(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_olivine"))
        .args(args)
        .env("OLIVINE_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every product's slug, name, type, status, tags and variants, in id order.
async fn catalog(db: &olivine::store::Db) -> Vec<String> {
    sqlx::query(
        "SELECT p.slug || '|' || p.name || '|' || p.product_type || '|' || p.status || '|' ||
                (SELECT COUNT(*) FROM variants v WHERE v.product_id = p.id) || '|' ||
                (SELECT COALESCE(SUM(v.price_minor), 0) FROM variants v WHERE v.product_id = p.id)
         FROM products p ORDER BY p.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get(0).unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_catalog_and_reindex_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = olivine(dir.path(), &["seed", "--synthetic", "600"]);
    assert!(ok, "{out}");
    assert!(out.contains("600 variant(s)"), "{out}");
    // Into an empty catalog only: exit 1, saying why, and nothing changes.
    let (ok, out) = olivine(dir.path(), &["seed", "--synthetic", "600"]);
    assert!(!ok && out.contains("already has"), "{out}");

    let url = olivine::config::StoreConfig::embedded(dir.path())
        .database_url()
        .unwrap();
    let db = olivine::store::Db::connect(&url, 2).await.unwrap();
    assert_eq!(
        scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM variants").await,
        600
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT product_id FROM variants
             GROUP BY product_id HAVING COUNT(*) NOT BETWEEN 1 AND 4) t"
        )
        .await,
        0
    );
    // The attributes have the shapes of their product types.
    for row in sqlx::query("SELECT product_type, attributes FROM products")
        .fetch_all(&db.pool)
        .await
        .unwrap()
    {
        let product_type: String = row.try_get(0).unwrap();
        let attributes: String = row.try_get(1).unwrap();
        let parsed = olivine::catalog::model::ProductType::parse(&product_type).unwrap();
        olivine::catalog::model::validate_attributes(
            parsed,
            &serde_json::from_str(&attributes).unwrap(),
        )
        .unwrap();
    }
    assert!(
        scalar(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM product_tags WHERE tag = 'vegan'"
        )
        .await
            > 0
    );
    assert!(
        scalar(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM variants v
         WHERE NOT EXISTS (SELECT 1 FROM lots l WHERE l.variant_id = v.id)"
        )
        .await
            > 0
    );
    // The same size gives the same catalog.
    let other = tempfile::tempdir().unwrap();
    let (ok, out) = olivine(other.path(), &["seed", "--synthetic", "600"]);
    assert!(ok, "{out}");
    let other_url = olivine::config::StoreConfig::embedded(other.path())
        .database_url()
        .unwrap();
    let other_db = olivine::store::Db::connect(&other_url, 2).await.unwrap();
    assert_eq!(catalog(&db).await, catalog(&other_db).await);
    other_db.close().await;

    let active = scalar(
        &db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM products WHERE status = 'active'",
    )
    .await;
    let (ok, out) = olivine(dir.path(), &["search", "reindex"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("search index rebuilt: {active} product(s)")),
        "{out}"
    );

    // A node holding the index (here: this process) makes it refuse, with exit 1.
    let held = SearchIndex::open(&dir.path().join("search"), db.clone()).unwrap();
    assert!(held.location.is_some());
    let (ok, out) = olivine(dir.path(), &["search", "reindex"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("in use by a running node")
            && out.contains("rebuilds its index when it starts"),
        "{out}"
    );
    drop(held);
    db.close().await;
}

/// Each document's stored summary (slug, name, type, price, stock, categories).
fn summaries(index: &SearchIndex) -> BTreeSet<String> {
    let searcher = index.reader().searcher();
    let mut all = BTreeSet::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        for doc in segment.doc_ids_alive() {
            let doc: TantivyDocument = searcher.doc(DocAddress::new(ord as u32, doc)).unwrap();
            let summary = doc.get_first(index.fields.summary).and_then(|v| v.as_str());
            all.insert(summary.unwrap().to_owned());
        }
    }
    all
}

/// Totals and facet counts of a few searches (scores and so orders depend on segments).
fn answers(index: &SearchIndex) -> Vec<serde_json::Value> {
    let queries = [
        "",
        "q=magnesium",
        "q=serum&skin_type=oily",
        "q=vitamn",
        "category=minerals&vegan=true&free_from=gluten",
        "q=cleans&in_stock=true",
        "size=60ml",
        "benefit=sleep&price=1000-2000",
    ];
    queries
        .iter()
        .map(|q| {
            let request = SearchRequest::from_query(Some(q)).unwrap();
            let found =
                serde_json::to_value(search(index, &request, &Vec::new()).unwrap()).unwrap();
            serde_json::json!({"q": q, "total": found["total"], "facets": found["facets"]})
        })
        .collect()
}

both_backends! {
    async fn the_bulk_build_makes_the_documents_of_the_per_product_path(backend: Backend) {
        let test_db = TestDb::new(backend).await;
        let db = test_db.connect().await;
        olivine::store::migrate(&db).await.unwrap();
        let report = olivine::seed_synthetic::seed_synthetic(&db, 1500, 7, &|_, _| {}).await.unwrap();
        assert_eq!(report.variants, 1500);
        // The demo adds bundles (stock from their components), archived products and
        // categories of its own order.
        olivine::seed::seed_demo(&db, &olivine::seed::Progress::Quiet).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let index = SearchIndex::open(dir.path(), db.clone()).unwrap();
        let built = index.build().await.unwrap();
        let active = scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM products WHERE status = 'active'").await;
        assert_eq!(built as i64, active);
        let (bulk, bulk_answers) = (summaries(&index), answers(&index));
        assert_eq!(bulk.len() as i64, active);

        let slugs: BTreeSet<String> = sqlx::query("SELECT slug FROM products")
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get(0).unwrap())
            .collect();
        index.reindex(&slugs).await.unwrap();
        assert_eq!(summaries(&index), bulk);
        assert_eq!(answers(&index), bulk_answers);
        drop(index);
        db.close().await;
        test_db.drop().await;
    }
}
