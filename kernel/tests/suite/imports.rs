//! Moving a store in (`olivine import`, `olivine::imports`): each kind from JSON and CSV,
//! Shopify's products export, every validation problem and repair, dry runs, re-runs
//! that change nothing, an incremental run (by content, and by time with `since`), and
//! an interrupted import resumed. Each test runs on SQLite and on PostgreSQL.

use crate::admin_pages::Part;
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use olivine::imports::{self, Format, Kind, Mode, Options, Summary};
use serde_json::{Value, json};

async fn import_with(app: &TestApp, kind: Kind, file: &str, options: &Options) -> Summary {
    let ctx = imports::Context::of(&app.kernel.state, "test");
    imports::run(
        &ctx,
        kind,
        "test-file",
        file.as_bytes(),
        options,
        &imports::Silent,
    )
    .await
    .unwrap_or_else(|e| panic!("import failed: {:?}", e.body()))
}

async fn import(app: &TestApp, kind: Kind, file: &str) -> Summary {
    import_with(app, kind, file, &Options::default()).await
}

fn counts(summary: &Summary) -> (u64, u64, u64, u64) {
    let c = summary.counts;
    (c.new, c.updated, c.unchanged, c.invalid)
}

/// Whether the report names a problem of `row` at `field`.
fn has_problem(summary: &Summary, row: usize, field: &str) -> bool {
    summary
        .report
        .problems
        .iter()
        .any(|p| p.row == row && p.field == field)
}

fn has_repair(summary: &Summary, row: usize, field: &str, repair: &str) -> bool {
    summary
        .report
        .repairs
        .iter()
        .any(|r| r.row == row && r.field == field && r.repair == repair)
}

fn products_json() -> String {
    let mut product = supplement("legacy-magnesium", "LEG-MAG");
    product["legacy_id"] = json!("p-1");
    json!([product]).to_string()
}

const PRODUCTS_CSV: &str = "\
legacy_id,slug,name,product_type,description,status,categories,tags,attributes,sku,variant_title,options,price,currency,weight_grams
p-2,zinc-plus,Zinc Plus,supplement,Daily zinc.,active,minerals|supplements,zinc,\"{\"\"form\"\":\"\"tablets\"\",\"\"ingredients\"\":[{\"\"name\"\":\"\"Zinc\"\",\"\"amount\"\":15,\"\"unit\"\":\"\"mg\"\"}],\"\"serving_size\"\":\"\"1 tablet\"\",\"\"servings_per_container\"\":60,\"\"usage\"\":\"\"Take 1 daily.\"\",\"\"disclaimer\"\":\"\"Not evaluated by the FDA.\"\"}\",ZN-60,60 tablets,count=60,\"9,95\",EUR,80
p-2,zinc-plus,,,,,,,,ZN-120,120 tablets,count=120,17.50,EUR,150
";

const CUSTOMERS_CSV_HEADER: &str = "legacy_id,email,name,password_hash,phone\n";

/// One legacy hash for every file: an export of the same customer is the same content.
static LEGACY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| bcrypt::hash("old-system-password", 4).expect("bcrypt"));

fn customers_csv(rows: &[(&str, &str, &str)]) -> String {
    let hash = &*LEGACY_HASH;
    let mut csv = CUSTOMERS_CSV_HEADER.to_owned();
    for (id, email, name) in rows {
        csv.push_str(&format!("{id},{email},{name},{hash},\n"));
    }
    csv
}

const ORDERS_CSV_HEADER: &str = "legacy_id,number,customer,email,status,currency,placed_at,subtotal,shipping,tax,total,prices_include_tax,tracking_number,ship_name,ship_line1,ship_city,ship_postal_code,ship_country,line_sku,line_quantity,line_unit_price,line_total\n";

fn orders_csv(status: &str) -> String {
    format!(
        "{ORDERS_CSV_HEADER}\
         1001,#1001,c-1,ana@example.com,{status},EUR,2024-03-01 10:00:00,\"39,98\",4.95,0,44.93,true,TRACK-1,Ana,Main St 1,Amsterdam,1011AA,Netherlands,LEG-MAG-60,2,19.99,39.98\n\
         1002,#1002,,guest@example.com,paid,EUR,2024-03-02,34.99,0,0,34.99,true,,Bo,Side St 2,Utrecht,3511AA,NL,LEG-MAG-120,1,34.99,34.99\n"
    )
}

/// Orders with an `updated_at` column, one line each: (legacy id, status, updated_at,
/// total). A total other than 19.99 makes the row invalid.
fn timed_orders_csv(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut csv = "legacy_id,customer,email,status,currency,placed_at,updated_at,subtotal,total,\
        prices_include_tax,ship_name,ship_line1,ship_city,ship_postal_code,ship_country,line_sku,\
        line_quantity,line_unit_price,line_total\n"
        .to_owned();
    for (id, status, updated_at, total) in rows {
        csv.push_str(&format!(
            "{id},c-1,ana@example.com,{status},EUR,2024-03-01 10:00:00,{updated_at},19.99,{total},\
             true,Ana,Main St 1,Amsterdam,1011AA,NL,LEG-MAG-60,1,19.99,19.99\n"
        ));
    }
    csv
}

fn since(text: &str) -> Options {
    Options {
        since: Some(imports::parse_since(text).expect("a time")),
        ..Options::default()
    }
}

/// Customers as JSON with their updated times.
fn timed_customers_json(rows: &[(&str, &str, &str)]) -> String {
    let customers: Vec<Value> = rows
        .iter()
        .map(|(id, email, updated_at)| {
            json!({"legacy_id": id, "email": email, "name": id,
            "password_hash": &*LEGACY_HASH, "updated_at": updated_at})
        })
        .collect();
    json!({"customers": customers}).to_string()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> TestResponse {
    let body = json!({"email": email, "password": password}).to_string();
    app.request(
        Method::POST,
        "/api/v1/account/sign-in",
        None,
        Some(Body::from(body)),
        Some("application/json"),
    )
    .await
}

async fn order(app: &TestApp, number: &str) -> Value {
    let path = format!("/api/v1/admin/orders/{}", number.replace('#', "%23"));
    let r = app.admin_get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// `olivine import <args>` against `db`, without a terminal (its output is piped): the
/// exit code, stdout and stderr.
fn olivine_import(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_olivine"));
    command.arg("import").args(args).env("RUST_LOG", "warn");
    for (key, value) in db.env() {
        command.env(key, value);
    }
    let output = command.output().expect("olivine import runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

both_backends! {
    async fn products_from_json_and_csv(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let summary = import(&app, Kind::Products, &products_json()).await;
        assert_eq!(counts(&summary), (1, 0, 0, 0), "{:?}", summary.report);
        let r = app.get("/api/v1/products/legacy-magnesium").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["variants"].as_array().map(Vec::len), Some(2));

        // CSV: one line a variant; a decimal comma and an unknown category repaired.
        let summary = import(&app, Kind::Products, PRODUCTS_CSV).await;
        assert_eq!(counts(&summary), (1, 0, 0, 0), "{:?}", summary.report);
        assert!(has_repair(&summary, 2, "variants[0].price_minor", "decimal comma"));
        assert!(has_repair(&summary, 2, "categories[0]", "new category"));
        let product = app.get("/api/v1/products/zinc-plus").await.json();
        assert_eq!(product["variants"][0]["price"]["amount_minor"], 995);
        assert_eq!(product["variants"][1]["options"]["count"], "120");
        assert_eq!(product["categories"].as_array().map(Vec::len), Some(2));

        // The same files again change nothing.
        let before = app.count("audit_log").await;
        assert_eq!(counts(&import(&app, Kind::Products, &products_json()).await), (0, 0, 1, 0));
        assert_eq!(counts(&import(&app, Kind::Products, PRODUCTS_CSV).await), (0, 0, 1, 0));
        assert_eq!(app.count("audit_log").await, before, "a re-run writes nothing");

        // A newer export: one price changed, one variant added.
        let newer = PRODUCTS_CSV.replace("17.50", "16.00")
            + "p-2,zinc-plus,,,,,,,,ZN-180,180 tablets,count=180,22.00,EUR,200\n";
        assert_eq!(counts(&import(&app, Kind::Products, &newer).await), (0, 1, 0, 0));
        let product = app.admin_get(&format!("/api/v1/admin/products/{}", product["id"])).await.json();
        assert_eq!(product["variants"][1]["price"]["amount_minor"], 1600);
        assert_eq!(product["variants"].as_array().map(Vec::len), Some(3));
        app.stop().await;
    }

    async fn products_are_checked_by_the_taxonomy_plugins(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        basic_setup(&app).await;
        let mut derived = supplement("test-magnesium", "unused");
        derived["variants"][0]["sku"] = json!("");
        derived["variants"][1]["sku"] = json!("");
        let mut bad = supplement("bad-options", "BAD");
        bad["variants"][0]["options"] = json!({"colour": "red"});
        let file = json!([derived, bad]).to_string();
        let options = Options { mode: Mode::ValidRows, ..Options::default() };
        let summary = import_with(&app, Kind::Products, &file, &options).await;
        assert_eq!(counts(&summary), (1, 0, 0, 1), "{:?}", summary.report);
        assert!(has_problem(&summary, 2, "variants[0].options.colour"), "{:?}", summary.report);
        let product = app.get("/api/v1/products/test-magnesium").await.json();
        assert_eq!(product["variants"][0]["sku"], "TM-60", "the taxonomy derived the SKU");
        // The derived SKUs are this product's on the next run.
        assert_eq!(counts(&import_with(&app, Kind::Products, &file, &options).await), (0, 0, 1, 1));
        app.stop().await;
    }

    async fn shopify_products_export(backend: Backend) {
        let app = TestApp::start(backend).await;
        let attributes = json!({"skin_types": ["dry"], "volume_ml": 30, "routine_step": "serum",
            "application": "Apply at night."}).to_string().replace('"', "\"\"");
        let csv = format!(
            "Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,Option1 Value,Variant SKU,Variant Grams,Variant Price,Image Src,Status,Attributes (product.metafields.olivine.attributes)\n\
             glow-serum,Glow Serum,<p>A <b>serum</b></p>,Acme,Health & Beauty > Skin Care,Skincare,\"Gift, Best Seller\",true,Size,30 ml,GLOW-30,45.0,\"24,00\",,active,\"{attributes}\"\n\
             glow-serum,,,,,,,,Size,50 ml,GLOW-50,70,32.00,,,\n\
             glow-serum,,,,,,,,,,,,,https://cdn.example/glow.jpg,,\n\
             lonely,Lonely,,Acme,,Candles,,true,Title,Default Title,L-1,100,5.00,,active,\n"
        );
        let options = Options { format: Some(Format::Shopify), mode: Mode::ValidRows, ..Options::default() };
        let summary = import_with(&app, Kind::Products, &csv, &options).await;
        assert_eq!(counts(&summary), (1, 0, 0, 1), "{:?}", summary.report);
        assert!(has_problem(&summary, 5, "product_type"), "{:?}", summary.report);
        assert!(has_problem(&summary, 5, "attributes"), "{:?}", summary.report);
        assert!(has_repair(&summary, 2, "description", "HTML to plain text"), "{:?}", summary.report);
        assert!(has_repair(&summary, 2, "tags", "tag as a slug"), "{:?}", summary.report);
        let product = app.get("/api/v1/products/glow-serum").await.json();
        assert_eq!(product["description"], "A serum");
        assert_eq!(product["tags"], json!(["best-seller", "gift"]));
        assert_eq!(product["categories"][0]["slug"], "skin-care");
        assert_eq!(product["variants"].as_array().map(Vec::len), Some(2), "image lines are no variants");
        assert_eq!(product["variants"][0]["options"], json!({"size": "30 ml"}));
        assert_eq!(product["variants"][0]["price"], json!({"amount_minor": 2400, "currency": "EUR"}));
        assert_eq!(product["variants"][1]["weight_grams"], 70);
        app.stop().await;
    }

    async fn lots_and_count_corrections(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        import(&app, Kind::Products, &products_json()).await;
        let csv = |quantity: i64| format!(
            "legacy_id,sku,location,batch,manufactured_on,expires_on,quantity,note\n\
             lot-1,LEG-MAG-60,AMS-1,B-1,{},{},{quantity},from the old shop\n",
            date_in(-30), date_in(300)
        );
        assert_eq!(counts(&import(&app, Kind::Lots, &csv(40)).await), (1, 0, 0, 0));
        assert_eq!(counts(&import(&app, Kind::Lots, &csv(40)).await), (0, 0, 1, 0));
        assert_eq!(counts(&import(&app, Kind::Lots, &csv(35)).await), (0, 1, 0, 0));
        let lots = app.admin_get("/api/v1/admin/lots?sku=LEG-MAG-60").await.json();
        assert_eq!(lots[0]["quantity"], 35, "{lots}");
        let ledger = app.admin_get("/api/v1/admin/stock-ledger?sku=LEG-MAG-60").await.json();
        assert!(ledger.to_string().contains("count_correction"), "{ledger}");
        app.stop().await;
    }

    async fn customers_once_each_and_sign_in_with_their_old_password(backend: Backend) {
        let app = TestApp::start(backend).await;
        let csv = customers_csv(&[("c-1", " Ana@Example.com ", "Ana"), ("c-2", "bo@example.com", "Bo")]);
        let summary = import(&app, Kind::Customers, &csv).await;
        assert_eq!(counts(&summary), (2, 0, 0, 0), "{:?}", summary.report);
        assert!(has_repair(&summary, 2, "email", "trimmed whitespace"));
        assert!(has_repair(&summary, 2, "email", "lower-cased email"));
        assert_eq!(counts(&import(&app, Kind::Customers, &csv).await), (0, 0, 2, 0));
        assert_eq!(app.count("customers").await, 2, "a customer imported twice is one account");
        let r = sign_in(&app, "ana@example.com", "old-system-password").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // A new name is an update, of the same account.
        let renamed = customers_csv(&[("c-1", "ana@example.com", "Ana Silva"), ("c-2", "bo@example.com", "Bo")]);
        assert_eq!(counts(&import(&app, Kind::Customers, &renamed).await), (0, 1, 1, 0));
        assert_eq!(app.count("customers").await, 2);
        app.stop().await;
    }

    async fn historical_orders_are_neither_priced_nor_charged_and_sync(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        import(&app, Kind::Products, &products_json()).await;
        import(&app, Kind::Customers, &customers_csv(&[("c-1", "ana@example.com", "Ana")])).await;
        let events = app.count("outbox").await;
        let summary = import(&app, Kind::Orders, &orders_csv("fulfilled")).await;
        assert_eq!(counts(&summary), (2, 0, 0, 0), "{:?}", summary.report);
        assert!(has_repair(&summary, 2, "shipping_address.country", "country name to ISO code"));
        let first = order(&app, "#1001").await;
        assert_eq!(first["status"], "fulfilled");
        assert_eq!(first["total_minor"], 4493);
        assert_eq!(first["tracking_number"], "TRACK-1");
        assert_eq!(first["lines"][0]["quantity"], 2);
        assert_eq!(first["shipping_address"]["country"], "NL");
        assert_eq!(app.count("order_allocations").await, 0, "no stock taken");
        assert_eq!(app.count("outbox").await, events, "no order events: no mails, no points");

        // Again: nothing changes. Newer: one status changed.
        assert_eq!(counts(&import(&app, Kind::Orders, &orders_csv("fulfilled")).await), (0, 0, 2, 0));
        assert_eq!(counts(&import(&app, Kind::Orders, &orders_csv("delivered")).await), (0, 1, 1, 0));
        assert_eq!(order(&app, "#1001").await["status"], "delivered");
        assert_eq!(app.count("orders").await, 2, "an order imported twice is one order");
        app.stop().await;
    }

    async fn subscriptions_keep_their_saved_payment_method_and_sync(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        import(&app, Kind::Products, &products_json()).await;
        import(&app, Kind::Customers, &customers_csv(&[("c-1", "ana@example.com", "Ana")])).await;
        import(&app, Kind::Orders, &orders_csv("delivered")).await;
        let file = |status: &str| format!(
            "legacy_id,customer,origin_order,status,interval,next_renewal_at,payment_method,sku,quantity\n\
             s-1,c-1,1001,{status},30d,{},pm_card_visa,LEG-MAG-60,2\n\
             s-1,c-1,1001,{status},30d,{},pm_card_visa,LEG-MAG-120,1\n\
             s-2,c-1,1002,active,30d,{},pm_card_visa,LEG-MAG-60,1\n\
             s-3,c-404,1001,active,5y,2020-01-01,,NOPE,0\n",
            date_in(10), date_in(10), date_in(10)
        );
        let options = Options { mode: Mode::ValidRows, ..Options::default() };
        let summary = import_with(&app, Kind::Subscriptions, &file("Active"), &options).await;
        assert_eq!(counts(&summary), (1, 0, 0, 2), "{:?}", summary.report);
        assert!(has_problem(&summary, 4, "origin_order"), "{:?}", summary.report.problems);
        for field in ["customer", "interval", "next_renewal_at", "payment_method", "items[0].sku", "items[0].quantity"] {
            assert!(has_problem(&summary, 5, field), "{field}: {:?}", summary.report.problems);
        }
        let db = &app.kernel.state.db;
        assert_eq!(scalar(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM subscription_items").await, 2);
        assert_eq!(scalar(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM subscriptions WHERE status = 'active' AND interval_count = 30").await, 1);
        // Renewals charge the processor's saved method, as the renewal reads it back.
        let (number, method_enc): (String, String) =
            sqlx::query_as("SELECT number, payment_method_enc FROM subscriptions")
                .fetch_one(&db.pool).await.expect("the subscription");
        let method = app.kernel.state.keys.decrypt_field("subscriptions.payment_method", &method_enc)
            .expect("the payment method decrypts");
        assert_eq!(olivine::orders::Charge::decode(&method), olivine::orders::Charge::Saved("pm_card_visa".to_owned()));
        let subscription = app.admin_get(&format!("/api/v1/admin/subscriptions/{number}")).await;
        assert_eq!(subscription.status, StatusCode::OK, "{}", subscription.text());
        let subscription = subscription.json();
        assert_eq!(subscription["next_renewal_at"], format!("{}T00:00:00.000Z", date_in(10)), "{subscription}");
        assert_eq!(subscription["interval"], "30d", "{subscription}");
        assert_eq!(subscription["items"].as_array().map(Vec::len), Some(2), "{subscription}");
        assert_eq!(counts(&import_with(&app, Kind::Subscriptions, &file("Active"), &options).await), (0, 0, 1, 2));
        assert_eq!(counts(&import_with(&app, Kind::Subscriptions, &file("Paused"), &options).await), (0, 1, 0, 2));
        assert_eq!(scalar(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM subscriptions WHERE status = 'paused'").await, 1);
        assert_eq!(app.count("subscriptions").await, 1);
        app.stop().await;
    }

    async fn every_problem_is_reported_and_all_or_nothing_writes_nothing(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        import(&app, Kind::Products, &products_json()).await;
        let hash = &*LEGACY_HASH;
        let customers = format!(
            "{CUSTOMERS_CSV_HEADER}\
             c-1,ok@example.com,Ok,{hash},+31 6 1234 5678\n\
             c-2,not-an-email,Bad,{hash},\n\
             c-3,md5@example.com,Md5,5f4dcc3b5aa765d61d8327deb882cf99,\n\
             c-1,again@example.com,Again,{hash},\n\
             c-5,phone@example.com,Phone,{hash},call me\n\
             c-6,,,\n\
             c-7,OK@Example.com,Twice,{hash},\n"
        );
        let summary = import(&app, Kind::Customers, &customers).await;
        for (row, field) in [(3, "email"), (4, "password_hash"), (5, "legacy_id"), (6, "phone"), (7, "email"), (8, "email")] {
            assert!(has_problem(&summary, row, field), "row {row} {field}: {:?}", summary.report.problems);
        }
        assert!(has_repair(&summary, 2, "phone", "normalised phone number"));
        assert_eq!(counts(&summary), (1, 0, 0, 6));
        assert!(!summary.written);
        assert_eq!(app.count("customers").await, 0, "all or nothing");

        let orders = format!(
            "{ORDERS_CSV_HEADER}\
             o-1,,,a@example.com,shipped,EUR,2024-03-01,10.00,0,0,10.00,true,,A,L1,C,1011AA,NL,NOPE-1,1,10.00,10.00\n\
             o-2,,c-404,b@example.com,paid,EUR,yesterday,10.00,0,0,12.00,true,,B,L1,C,1011AA,Atlantis,LEG-MAG-60,1,10.00,10.00\n\
             o-3,,,c@example.com,paid,EUR,2024-03-01,12.3.4,0,0,10.00,true,,C,L1,C,1011AA,NL,LEG-MAG-60,0,10.00,10.00\n"
        );
        let summary = import(&app, Kind::Orders, &orders).await;
        for (row, field) in [
            (2, "status"), (3, "customer"), (3, "placed_at"), (3, "total_minor"),
            (3, "shipping_address.country"), (4, "subtotal_minor"),
        ] {
            assert!(has_problem(&summary, row, field), "row {row} {field}: {:?}", summary.report.problems);
        }
        assert_eq!(summary.counts.invalid, 3);
        // Unknown SKU and zero quantity are named once the row parses.
        let fixed = orders.replace("shipped", "paid").replace(",12.3.4,", ",10.00,");
        let summary = import(&app, Kind::Orders, &fixed).await;
        assert!(has_problem(&summary, 2, "lines[0].sku"), "{:?}", summary.report.problems);
        assert!(has_problem(&summary, 4, "lines[0].quantity"), "{:?}", summary.report.problems);

        // A file that is not JSON at all, or a CSV without a header, is refused whole.
        let ctx = imports::Context::of(&app.kernel.state, "test");
        let options = Options { format: Some(Format::Json), ..Options::default() };
        let err = imports::run(&ctx, Kind::Orders, "x", b"{not json", &options, &imports::Silent).await;
        assert!(err.is_err());

        // With --valid-rows the valid ones go in.
        let options = Options { mode: Mode::ValidRows, ..Options::default() };
        let summary = import_with(&app, Kind::Customers, &customers, &options).await;
        assert!(summary.written);
        assert_eq!(counts(&summary), (1, 0, 0, 6));
        assert_eq!(app.count("customers").await, 1);

        // Lots: an unknown SKU, an unknown location, a batch already at the location.
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "LEG-MAG-60", "location": "AMS-1",
            "batch": "B-TAKEN", "manufactured_on": date_in(-30), "expires_on": date_in(300), "quantity": 5})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let (made, expires) = (date_in(-30), date_in(300));
        let lots = format!(
            "legacy_id,sku,location,batch,manufactured_on,expires_on,quantity,note\n\
             l-1,NOPE-60,AMS-1,B-1,{made},{expires},5,\n\
             l-2,LEG-MAG-60,NOWHERE-9,B-1,{made},{expires},5,\n\
             l-3,LEG-MAG-60,AMS-1,B-TAKEN,{made},{expires},5,\n\
             l-4,LEG-MAG-60,AMS-1,B-NEW,{made},{expires},5,\n"
        );
        let summary = import(&app, Kind::Lots, &lots).await;
        for (row, field) in [(2, "sku"), (3, "location"), (4, "batch")] {
            assert!(has_problem(&summary, row, field), "row {row} {field}: {:?}", summary.report.problems);
        }
        assert_eq!(counts(&summary), (1, 0, 0, 3), "{:?}", summary.report.problems);
        assert_eq!(app.count("lots").await, 1, "all or nothing: only the lot received before");

        // Products: an SKU of another product, and one SKU twice in the file (rows are
        // positions in the JSON array).
        let mut other = supplement("other-magnesium", "LEG-MAG");
        other["legacy_id"] = json!("p-other");
        let mut twin = supplement("twin-one", "TWIN");
        twin["legacy_id"] = json!("p-twin-1");
        let mut again = supplement("twin-two", "TWIN");
        again["legacy_id"] = json!("p-twin-2");
        let summary = import(&app, Kind::Products, &json!([other, twin, again]).to_string()).await;
        for (row, field) in [(1, "variants[0].sku"), (1, "variants[1].sku"), (3, "variants[0].sku"), (3, "variants[1].sku")] {
            assert!(has_problem(&summary, row, field), "row {row} {field}: {:?}", summary.report.problems);
        }
        assert!(!has_problem(&summary, 2, "variants[0].sku"), "the first of the twins is fine");
        assert_eq!(counts(&summary), (1, 0, 0, 2), "{:?}", summary.report.problems);

        // Orders: a number another order has, a time in the future; a legacy id twice.
        let order_line = |id: &str, number: &str, placed_at: &str| format!(
            "{id},{number},,a@example.com,paid,EUR,{placed_at},10.00,0,0,10.00,true,,A,L1,C,1011AA,NL,LEG-MAG-60,1,10.00,10.00\n"
        );
        let taken = format!("{ORDERS_CSV_HEADER}{}", order_line("o-9", "#9", "2024-03-01"));
        assert_eq!(counts(&import(&app, Kind::Orders, &taken).await), (1, 0, 0, 0));
        let orders = format!(
            "{ORDERS_CSV_HEADER}{}{}{}",
            order_line("o-10", "#9", "2024-03-01"),
            order_line("o-11", "#11", &format!("{} 10:00:00", date_in(5))),
            order_line("o-12", "#12", "2024-03-01"),
        );
        let summary = import(&app, Kind::Orders, &orders).await;
        for (row, field) in [(2, "number"), (3, "placed_at")] {
            assert!(has_problem(&summary, row, field), "row {row} {field}: {:?}", summary.report.problems);
        }
        assert_eq!(counts(&summary), (1, 0, 0, 2), "{:?}", summary.report.problems);
        let order = |id: &str| json!({"legacy_id": id, "email": "a@example.com", "status": "paid",
            "currency": "EUR", "placed_at": "2024-03-01", "subtotal_minor": 1000, "total_minor": 1000,
            "prices_include_tax": true, "shipping_address": {"name": "A", "line1": "L1", "city": "C",
            "postal_code": "1011AA", "country": "NL"}, "lines": [{"sku": "LEG-MAG-60", "quantity": 1,
            "unit_price_minor": 1000, "total_minor": 1000}]});
        let twice = json!({"orders": [order("o-20"), order("o-21"), order("o-20")]}).to_string();
        let summary = import(&app, Kind::Orders, &twice).await;
        assert!(has_problem(&summary, 3, "legacy_id"), "{:?}", summary.report.problems);
        assert_eq!(counts(&summary), (2, 0, 0, 1), "{:?}", summary.report.problems);
        assert_eq!(app.count("orders").await, 1, "all or nothing: only the order imported before");
        app.stop().await;
    }

    async fn the_admin_api_checks_then_runs_and_lists_runs(backend: Backend) {
        let app = TestApp::start(backend).await;
        let csv = customers_csv(&[("c-1", "ana@example.com", "Ana"), ("c-2", "nope", "Bo")]);
        let r = app.admin_post("/api/v1/admin/imports/customers", &json!({"content": csv, "dry_run": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let summary = r.json();
        assert_eq!(summary["counts"], json!({"new": 1, "updated": 0, "unchanged": 0, "invalid": 1,
            "skipped_not_changed_since": 0}));
        assert_eq!(summary["written"], false);
        assert_eq!(summary["report"]["problems"][0]["row"], 3);
        assert_eq!(summary["report"]["problems"][0]["field"], "email");
        let r = app.admin_post("/api/v1/admin/imports/customers",
            &json!({"content": csv, "valid_rows": true, "source": "customers.csv"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["written"], true);
        assert_eq!(app.count("customers").await, 1);
        let runs = app.admin_get("/api/v1/admin/imports").await.json();
        assert_eq!(runs[0]["source"], "customers.csv", "{runs}");
        assert_eq!(runs[0]["status"], "finished");
        assert_eq!(runs[0]["created"], 1);
        // The run kept its summary and report: the problem by row and field, the repair
        // without the personal values.
        let id = runs[0]["id"].as_i64().expect("a run id");
        let r = app.admin_get(&format!("/api/v1/admin/imports/runs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let run = r.json();
        assert_eq!(run["summary"]["id"], id, "{run}");
        assert_eq!((run["summary"]["created"].clone(), run["summary"]["invalid"].clone()), (json!(1), json!(1)), "{run}");
        assert_eq!(run["summary"]["skipped_not_changed_since"], 0, "{run}");
        let problems = run["report"]["problems"].as_array().expect("problems").clone();
        assert_eq!(problems.len(), 1, "{run}");
        assert_eq!((problems[0]["row"].clone(), problems[0]["legacy_id"].clone(), problems[0]["field"].clone()),
            (json!(3), json!("c-2"), json!("email")), "{run}");
        assert_eq!(run["report"]["problems_left_off"], 0, "{run}");
        let upper = customers_csv(&[("c-9", " Cy@Example.com", "Cy")]);
        let r = app.admin_post("/api/v1/admin/imports/customers", &json!({"content": upper})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let answer = r.json();
        assert_eq!(answer["report"]["repairs"][1]["from"], "Cy@Example.com", "the answer has every value: {answer}");
        let kept = app.admin_get(&format!("/api/v1/admin/imports/runs/{}", answer["run_id"])).await.json();
        let repairs = kept["report"]["repairs"].as_array().expect("repairs").clone();
        assert!(repairs.iter().any(|r| r["field"] == "email" && r["repair"] == "lower-cased email"), "{kept}");
        assert!(repairs.iter().all(|r| r["from"] == "(not kept)" && r["to"] == "(not kept)"), "{kept}");
        assert!(!kept.to_string().contains("xample.com"), "no email is kept: {kept}");
        let r = app.admin_get("/api/v1/admin/imports/runs/987654").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert!(r.json()["message"].as_str().is_some_and(|m| m.contains("import run 987654")), "{}", r.text());
        // Only roles with the imports' permission read runs.
        let catalog = app.staff_token("catalog").await;
        let r = app.request(Method::GET, &format!("/api/v1/admin/imports/runs/{id}"), Some(&catalog), None, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/imports/pets", &json!({"content": "[]"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        app.admin_post("/api/v1/admin/imports/orders", &json!({"content": "{not json"})).await
            .assert_field_error(400, "file");
        app.stop().await;
    }

    async fn a_dry_run_says_what_would_happen_and_writes_nothing(backend: Backend) {
        let app = TestApp::start(backend).await;
        let csv = customers_csv(&[("c-1", "ana@example.com", "Ana"), ("c-2", "bo@example.com", "Bo")]);
        import(&app, Kind::Customers, &customers_csv(&[("c-1", "ana@example.com", "Ana")])).await;
        let options = Options { dry_run: true, ..Options::default() };
        let changed = csv.replace(",Ana,", ",Ana B,");
        let summary = import_with(&app, Kind::Customers, &changed, &options).await;
        assert_eq!(counts(&summary), (1, 1, 0, 0));
        assert!(!summary.written);
        assert_eq!(app.count("customers").await, 1);
        app.stop().await;
    }

    async fn an_interrupted_import_resumed_ends_as_one_run(backend: Backend) {
        use std::process::Command;
        let rows: Vec<(String, String, String)> = (1..=5)
            .map(|i| (format!("c-{i}"), format!("u{i}@example.com"), format!("User {i}")))
            .collect();
        let borrowed: Vec<(&str, &str, &str)> =
            rows.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
        let csv = customers_csv(&borrowed);
        let run = |db: &TestDb, failpoints: &str| {
            let file = db.dir.path().join("customers.csv");
            std::fs::write(&file, &csv).expect("write the file");
            let mut command = Command::new(env!("CARGO_BIN_EXE_olivine"));
            command
                .args(["import", "customers"])
                .arg(&file)
                .args(["--batch-size", "2"])
                .env("OLIVINE_FAILPOINTS", failpoints)
                .env("RUST_LOG", "warn");
            for (key, value) in db.env() {
                command.env(key, value);
            }
            let output = command.output().expect("olivine import runs");
            (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let interrupted = TestDb::new(backend).await;
        let (ok, _) = run(&interrupted, "imports.after_batch");
        assert!(!ok, "the failpoint aborts after the first batch");
        let db = interrupted.connect().await;
        assert_eq!(scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customers").await, 2);
        let (ok, resumed) = run(&interrupted, "");
        assert!(ok, "{resumed}");
        assert!(resumed.contains("resuming import run"), "{resumed}");
        assert_eq!(scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customers").await, 5);
        db.close().await;

        let once = TestDb::new(backend).await;
        let (ok, single) = run(&once, "");
        assert!(ok, "{single}");
        let line = |out: &str| out.lines().find(|l| l.starts_with("customers:")).map(str::to_owned);
        assert_eq!(line(&resumed), line(&single));
        assert_eq!(line(&single).as_deref(), Some("customers: 5 row(s): 5 new, 0 updated, 0 unchanged, 0 invalid"));
        let (ok, again) = run(&once, "");
        assert!(ok && again.contains("nothing changed"), "{again}");
        interrupted.drop().await;
        once.drop().await;
    }
    async fn a_nightly_sync_by_time_reads_only_what_changed_since(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        import(&app, Kind::Products, &products_json()).await;
        import(&app, Kind::Customers, &customers_csv(&[("c-1", "ana@example.com", "Ana")])).await;
        // Night 1: everything. n-3 has no updated time.
        let night1 = timed_orders_csv(&[
            ("n-1", "paid", "2024-03-01 10:00:00", "19.99"),
            ("n-2", "paid", "2024-03-02T10:30:00+01:00", "19.99"),
            ("n-3", "paid", "", "19.99"),
        ]);
        let first = import(&app, Kind::Orders, &night1).await;
        assert_eq!(counts(&first), (3, 0, 0, 0), "{:?}", first.report);
        assert_eq!(first.since, None);
        assert_eq!(first.newest_updated_at.as_deref(), Some("2024-03-02T09:30:00.000Z"));

        // Night 2, from night 1's newest time: the old shop shipped n-2. n-1's line is
        // broken in this export (its total does not read) but older than `since`: it is
        // skipped before it is checked, so it is neither a problem nor written. n-3, with
        // no updated time, is read (and unchanged).
        let night2 = timed_orders_csv(&[
            ("n-1", "paid", "2024-03-01 10:00:00", "12.3.4"),
            ("n-2", "fulfilled", "2024-03-03 08:00:00", "19.99"),
            ("n-3", "paid", "", "19.99"),
        ]);
        let newest = first.newest_updated_at.clone().expect("night 1's newest time");
        let before = app.count("audit_log").await;
        let second = import_with(&app, Kind::Orders, &night2, &since(&newest)).await;
        assert_eq!(counts(&second), (0, 1, 1, 0), "{:?}", second.report);
        assert_eq!(second.counts.skipped_not_changed_since, 1);
        assert!(second.written);
        assert!(second.report.problems.is_empty(), "{:?}", second.report.problems);
        assert_eq!(second.since.as_deref(), Some("2024-03-02T09:30:00.000Z"));
        assert_eq!(second.newest_updated_at.as_deref(), Some("2024-03-03T08:00:00.000Z"));
        assert_eq!(order(&app, "n-2").await["status"], "fulfilled");
        let n1 = order(&app, "n-1").await;
        assert_eq!((n1["status"].clone(), n1["total_minor"].clone()), (json!("paid"), json!(1999)));
        assert_eq!(app.count("orders").await, 3);
        assert_eq!(app.count("audit_log").await, before + 1, "one batch changed something");
        let runs = app.admin_get("/api/v1/admin/imports").await.json();
        assert_eq!((runs[0]["updated"].clone(), runs[0]["unchanged"].clone()), (json!(1), json!(1)));
        assert_eq!(runs[0]["skipped_not_changed_since"], 1, "the run keeps what it skipped: {runs}");
        assert_eq!(runs[0]["since"], "2024-03-02T09:30:00.000Z", "{runs}");
        assert_eq!(runs[0]["newest_updated_at"], "2024-03-03T08:00:00.000Z", "{runs}");

        // The same export from its own newest time: a record updated at exactly `since`
        // is read again (unchanged); a plain date is its midnight UTC.
        let again = import_with(&app, Kind::Orders, &night2, &since("2024-03-03T08:00:00Z")).await;
        assert_eq!(counts(&again), (0, 0, 2, 0), "{:?}", again.report);
        assert_eq!(again.counts.skipped_not_changed_since, 1);
        let dry = Options { dry_run: true, ..since("2024-03-04") };
        let later = import_with(&app, Kind::Orders, &night2, &dry).await;
        assert_eq!(counts(&later), (0, 0, 1, 0));
        assert_eq!(later.counts.skipped_not_changed_since, 2);

        // The admin API takes the same `since`, and names it when it is not a time.
        let r = app.admin_post("/api/v1/admin/imports/orders",
            &json!({"content": night2, "since": "2024-03-02", "dry_run": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let summary = r.json();
        assert_eq!(summary["counts"]["skipped_not_changed_since"], 1, "{summary}");
        assert_eq!(summary["counts"]["unchanged"], 2, "{summary}");
        assert_eq!(summary["since"], "2024-03-02T00:00:00.000Z");
        assert_eq!(summary["newest_updated_at"], "2024-03-03T08:00:00.000Z");
        for bad in ["last tuesday", "2024-13-01", "03/01/2024", ""] {
            let r = app.admin_post("/api/v1/admin/imports/orders",
                &json!({"content": night2, "since": bad})).await;
            r.assert_field_error(422, "since");
            assert!(r.json()["message"].as_str().is_some_and(|m| m.contains("RFC 3339")), "{}", r.text());
        }
        assert!(imports::parse_since("yesterday").is_err());
        app.stop().await;
    }

    async fn every_kind_takes_an_updated_time(backend: Backend) {
        let app = TestApp::start(backend).await;
        let file = timed_customers_json(&[
            ("c-1", "ana@example.com", "2024-01-01"),
            ("c-2", "bo@example.com", "2024-03-05T12:00:00+01:00"),
            ("c-3", "cy@example.com", "soon"),
        ]);
        let options = Options { mode: Mode::ValidRows, ..since("2024-03-02") };
        let summary = import_with(&app, Kind::Customers, &file, &options).await;
        assert_eq!(counts(&summary), (1, 0, 0, 1), "{:?}", summary.report);
        assert_eq!(summary.counts.skipped_not_changed_since, 1);
        assert!(has_problem(&summary, 3, "updated_at"), "{:?}", summary.report.problems);
        assert_eq!(summary.newest_updated_at.as_deref(), Some("2024-03-05T11:00:00.000Z"));
        assert_eq!(app.count("customers").await, 1);
        // Without `since` every record is read; the updated time is no part of what a
        // customer is, so a newer time alone changes nothing.
        let file = timed_customers_json(&[
            ("c-1", "ana@example.com", "2024-01-01"),
            ("c-2", "bo@example.com", "2024-03-06"),
        ]);
        assert_eq!(counts(&import(&app, Kind::Customers, &file).await), (1, 0, 1, 0));
        app.stop().await;
    }

    async fn the_command_syncs_by_time_and_names_a_bad_since(backend: Backend) {
        use std::process::Command;
        let db = TestDb::new(backend).await;
        let file = db.dir.path().join("customers.json");
        std::fs::write(&file, timed_customers_json(&[
            ("c-1", "ana@example.com", "2024-01-01"),
            ("c-2", "bo@example.com", "2024-03-05 12:00:00"),
            ("c-3", "cy@example.com", ""),
        ])).expect("write the file");
        let run = |since: &str| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_olivine"));
            command.args(["import", "customers"]).arg(&file).args(["--since", since])
                .env("RUST_LOG", "warn");
            for (key, value) in db.env() {
                command.env(key, value);
            }
            let output = command.output().expect("olivine import runs");
            (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned())
        };
        let (ok, out, err) = run("2024-03-01");
        assert!(ok, "{out}{err}");
        assert!(out.contains("customers: 3 row(s): 2 new, 0 updated, 0 unchanged, 0 invalid, 1 skipped"), "{out}");
        assert!(out.contains("newest updated time in the file: 2024-03-05T12:00:00.000Z"), "{out}");
        assert!(out.contains("next incremental run: --since 2024-03-05T12:00:00.000Z"), "{out}");
        let report = std::fs::read_to_string(db.dir.path().join("customers.json.report.json"))
            .expect("the report");
        let report: Value = serde_json::from_str(&report).expect("JSON");
        assert_eq!(report["counts"]["skipped_not_changed_since"], 1, "{report}");
        assert_eq!(report["newest_updated_at"], "2024-03-05T12:00:00.000Z");
        let (ok, out, err) = run("the day before yesterday");
        assert!(!ok, "{out}");
        assert!(err.contains("--since") && err.contains("the day before yesterday")
            && err.contains("RFC 3339"), "{err}");
        db.drop().await;
    }

    async fn the_command_says_what_a_dry_run_would_do_and_refuses_invalid_files(backend: Backend) {
        let db = TestDb::new(backend).await;
        let file = db.dir.path().join("customers.csv");
        let file_arg = file.display().to_string();
        std::fs::write(&file, customers_csv(&[("c-1", "ana@example.com", "Ana"), ("c-2", "bo@example.com", "Bo")]))
            .expect("write the file");
        let (code, out, err) = olivine_import(&db, &["customers", &file_arg, "--dry-run"]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("customers: 2 row(s): 2 would be new, 0 would be updated, 0 unchanged, 0 invalid"), "{out}");
        assert!(out.contains("dry run: nothing was written"), "{out}");
        let store = db.connect().await;
        let written = async |store: &olivine::store::Db| (
            scalar(store, "SELECT CAST(COUNT(*) AS BIGINT) FROM customers").await,
            scalar(store, "SELECT CAST(COUNT(*) AS BIGINT) FROM import_runs").await,
            scalar(store, "SELECT CAST(COUNT(*) AS BIGINT) FROM import_records").await,
        );
        assert_eq!(written(&store).await, (0, 0, 0), "a dry run writes nothing");

        // All or nothing (the default): one invalid row and nothing is written, exit 1.
        std::fs::write(&file, customers_csv(&[("c-1", "ana@example.com", "Ana"), ("c-2", "not-an-email", "Bo")]))
            .expect("write the file");
        let (code, out, err) = olivine_import(&db, &["customers", &file_arg]);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(out.contains("customers: 2 row(s): 1 would be new, 0 would be updated, 0 unchanged, 1 invalid"), "{out}");
        assert!(out.contains("  row 3: email: "), "{out}");
        assert!(out.contains("nothing was written: fix the invalid rows"), "{out}");
        assert_eq!(written(&store).await, (0, 0, 0), "all or nothing");
        let report = std::fs::read_to_string(db.dir.path().join("customers.csv.report.json")).expect("the report");
        let report: Value = serde_json::from_str(&report).expect("JSON");
        assert_eq!((report["report"]["problems"][0]["row"].clone(), report["report"]["problems"][0]["field"].clone()),
            (json!(3), json!("email")), "{report}");
        assert_eq!(report["written"], false);
        store.close().await;
        db.drop().await;
    }

    async fn the_command_without_a_terminal_prints_progress_lines_while_checking_and_importing(backend: Backend) {
        let db = TestDb::new(backend).await;
        let rows: Vec<(String, String)> =
            (1..=120).map(|i| (format!("c-{i}"), format!("u{i}@example.com"))).collect();
        let borrowed: Vec<(&str, &str, &str)> = rows.iter().map(|(id, email)| (id.as_str(), email.as_str(), "User")).collect();
        let file = db.dir.path().join("customers.csv");
        std::fs::write(&file, customers_csv(&borrowed)).expect("write the file");
        // A line at every step instead of every 5 seconds: no waiting in a test.
        let (code, out, err) = olivine_import(&db, &["customers", &file.display().to_string(),
            "--batch-size", "50", "--progress-every", "0"]);
        assert_eq!(code, Some(0), "{out}{err}");
        let lines: Vec<&str> = out.lines().collect();
        let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}…` in:\n{out}"));
        // Checking moves every 50 rows (it used to jump from 0 to the end), then each batch.
        let order = [
            at("checking customers: 120 record(s)"),
            at("checking customers: 50/120 record(s), "),
            at("checking customers: 100/120 record(s), "),
            at("checking customers: 120/120 record(s), "),
            at("importing customers: 120 record(s)"),
            at("importing customers: 50/120 record(s), "),
            at("importing customers: 100/120 record(s), "),
            at("importing customers: 120/120 record(s), "),
            at("customers: 120 row(s): 120 new"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert!(lines.iter().any(|l| l.starts_with("checking customers: 50/120") && l.ends_with("/s")), "{out}");
        // Every 5 seconds by default, and always each phase's last step.
        let again = db.dir.path().join("again.csv");
        std::fs::write(&again, customers_csv(&borrowed[..60])).expect("write the file");
        let (code, out, err) = olivine_import(&db, &["customers", &again.display().to_string()]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("checking customers: 60/60 record(s)"), "{out}");
        assert!(out.contains("importing customers: 60/60 record(s)"), "{out}");
        db.drop().await;
    }

    async fn the_admin_imports_page_checks_then_imports_and_shows_the_runs(backend: Backend) {
        use crate::common::browser::*;
        let app = TestApp::start(backend).await;
        let mut admin = crate::admin_ui::signed_in_as(&app, "admin").await;
        let page = get(&app, &mut admin, "/admin/imports").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains(r#"href="/admin/imports" aria-current="page""#), "in the navigation");
        assert!(page.text().contains("Nothing was imported yet."));
        let csrf = csrf_of(&page);

        // Check an uploaded CSV with a problem: the page names its row and field, and
        // nothing is written.
        let bad = customers_csv(&[("c-1", " Ana@Example.com", "Ana"), ("c-2", "nope", "Bo")]);
        let r = crate::admin_pages::upload_parts(&app, &mut admin, "/admin/imports", &csrf, &[
            Part::Text("kind", "customers"), Part::Text("format", ""), Part::Text("mode", "all_or_nothing"),
            Part::Text("currency", "EUR"), Part::Text("action", "check"),
            Part::File("file", "customers.csv", "text/csv", bad.as_bytes())]).await;
        assert_html(&r, StatusCode::OK);
        let html = r.text();
        assert!(html.contains("A check: nothing was written."), "{html}");
        assert!(html.contains(r#"data-row="3" data-field="email""#), "{html}");
        assert!(html.contains(r#"data-row="2" data-field="email""#), "the repairs: {html}");
        assert!(html.contains(r#"<li id="count-new"><strong>1</strong> would be new</li>"#), "{html}");
        assert!(html.contains(r#"name="source" value="customers.csv""#), "the file's name is kept: {html}");
        assert_eq!(app.count("customers").await, 0);
        assert_eq!(app.count("import_runs").await, 0);

        // Importing it all or nothing is refused, with the report.
        let r = post_form(&app, &mut admin, "/admin/imports", &[("csrf", &csrf), ("kind", "customers"),
            ("content", &bad), ("source", "customers.csv"), ("mode", "all_or_nothing"), ("action", "import")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Nothing was imported"), "{}", r.text());
        assert_eq!(app.count("customers").await, 0);

        // A form without a kind or a file names them beside their fields.
        let r = post_form(&app, &mut admin, "/admin/imports", &[("csrf", &csrf), ("kind", ""),
            ("content", ""), ("action", "check")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text();
        assert!(html.contains(r#"id="f-kind-error">Choose what the file holds.</p>"#), "{html}");
        assert!(html.contains(r#"id="f-file-error">Choose a file, or paste its content.</p>"#), "{html}");
        // A file that does not read is said beside the file.
        let r = post_form(&app, &mut admin, "/admin/imports", &[("csrf", &csrf), ("kind", "orders"),
            ("content", "{not json"), ("action", "check")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains(r#"id="f-file-error""#), "{}", r.text());

        // A valid file, pasted: imported, then its run's page with the report it kept.
        let good = customers_csv(&[("c-1", " Ana@Example.com", "Ana"), ("c-2", "bo@example.com", "Bo")]);
        let r = post_form(&app, &mut admin, "/admin/imports", &[("csrf", &csrf), ("kind", "customers"),
            ("content", &good), ("source", "good.csv"), ("mode", "all_or_nothing"), ("action", "import")]).await;
        let to = location(&r);
        let run: i64 = scalar(&app.kernel.state.db, "SELECT MAX(id) FROM import_runs").await;
        assert_eq!(to, format!("/admin/imports/{run}?done=imported"));
        assert_eq!(app.count("customers").await, 2);
        let page = get(&app, &mut admin, &to).await;
        assert_html(&page, StatusCode::OK);
        let html = page.text();
        assert!(html.contains("Imported. The counts and the report the run kept are below."), "{html}");
        assert!(html.contains(&format!("Import run #{run}: customers")), "{html}");
        assert!(html.contains(r#"<li id="count-new"><strong>2</strong> new</li>"#), "{html}");
        assert!(html.contains(r#"data-row="2" data-field="email""#), "the kept repairs: {html}");
        assert!(!html.contains("Ana@Example.com"), "no personal value is kept: {html}");
        let list = get(&app, &mut admin, "/admin/imports").await.text();
        assert!(list.contains(&format!(r#"<tr id="run-{run}">"#)), "{list}");
        assert!(list.contains("good.csv"), "{list}");
        let r = get(&app, &mut admin, "/admin/imports/987654").await;
        assert_html(&r, StatusCode::NOT_FOUND);

        // Roles without the imports' permissions: the 403 page, no link.
        for role in ["catalog", "support"] {
            let mut other = crate::admin_ui::signed_in_as(&app, role).await;
            let home = get(&app, &mut other, "/admin").await;
            assert!(!home.text().contains(r#"href="/admin/imports""#), "{role}");
            let other_csrf = csrf_of(&home);
            for r in [
                get(&app, &mut other, "/admin/imports").await,
                get(&app, &mut other, &format!("/admin/imports/{run}")).await,
                post_form(&app, &mut other, "/admin/imports", &[("csrf", &other_csrf), ("kind", "customers"),
                    ("content", &good), ("action", "import")]).await,
            ] {
                assert_html(&r, StatusCode::FORBIDDEN);
                assert!(r.text().contains("Not open to your role"), "{role}");
            }
        }
        assert_eq!(app.count("import_runs").await, 1);
        app.stop().await;
    }
}
