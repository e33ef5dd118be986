//! Search over the demo catalog: typos, prefixes and the merchant's synonyms find
//! products; hostile queries get results or a 400 naming the parameter; each facet's
//! counts equal a count done in SQL (and a facet with a selection keeps its other
//! options); an admin edit is searchable on this node and another one; a rebuild equals
//! what the incremental updates made.

use crate::common::*;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

async fn search(app: &TestApp, query: &str) -> Value {
    let r = app.get(&format!("/api/v1/search?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text());
    r.json()
}

async fn slugs(app: &TestApp, query: &str) -> Vec<String> {
    search(app, query).await["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap().to_owned())
        .collect()
}

async fn ready(app: &TestApp) {
    wait_until("the search index is built", async || {
        app.get("/api/v1/search?q=x").await.status == StatusCode::OK
    })
    .await;
}

/// `name` → count, from a facet group of an answer.
fn facet(answer: &Value, name: &str) -> Vec<(String, i64)> {
    let group = answer["facets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no facet {name}: {answer}"));
    let mut values: Vec<(String, i64)> = group["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect();
    values.sort();
    values
}

async fn sql_counts(app: &TestApp, sql: &'static str) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = sqlx::query(sql)
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    rows.sort();
    rows
}

both_backends! {
    async fn typos_prefixes_and_synonyms_find_products_and_hostile_queries_do_not_break_it(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        ready(&app).await;
        let exact = slugs(&app, "q=magnesium").await;
        assert!(exact.contains(&"magnesium-glycinate".to_owned()), "{exact:?}");
        // Two typos in a nine-letter word, one in a six-letter one, accents folded.
        assert_eq!(slugs(&app, "q=magnesuim").await[0], exact[0]);
        assert_eq!(slugs(&app, "q=magnseium").await[0], exact[0]);
        assert!(slugs(&app, "q=ashwagandah").await.contains(&"ashwagandha-ksm66".to_owned()));
        assert_eq!(search(&app, "q=S%C3%A9rum").await["total"], search(&app, "q=serum").await["total"]);
        // Short words get no typos, but the shopper is told what was meant.
        let zinx = search(&app, "q=zinx").await;
        assert_eq!(zinx["total"], 0, "{zinx}");
        assert_eq!(zinx["did_you_mean"], "zinc", "{zinx}");
        // The last word is a prefix (autocomplete too, from one letter).
        assert!(slugs(&app, "q=ashwa").await.contains(&"ashwagandha-ksm66".to_owned()));
        let r = app.get("/api/v1/search/suggest?q=hyalu").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.json()["products"][0]["name"].as_str().unwrap().contains("Hyaluronic"), "{}", r.text());
        let r = app.get("/api/v1/search/suggest?q=seru").await;
        assert_eq!(r.json()["categories"][0]["slug"], "serums", "{}", r.text());
        // The merchant's synonyms.
        assert_eq!(search(&app, "q=zzz").await["total"], 0);
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"search_synonyms": "zzz = sleep; vit c = vitamin c"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let sleep = search(&app, "q=sleep").await["total"].as_i64().unwrap();
        assert!(sleep > 0);
        assert_eq!(search(&app, "q=zzz").await["total"], sleep);
        app.admin_patch("/api/v1/admin/settings", &json!({"search_synonyms": "lonely"})).await
            .assert_field_error(422, "search_synonyms");
        // Query syntax is only words; nonsense finds nothing or something, never a 500.
        for hostile in ["%22", "(", "AND", "vitamin%20AND%20(zinc", "*", "%5C", "title:x", "-", "%E2%9C%93", "%00",
            "a%22%20OR%201%3D1", "%F0%9F%92%8A"] {
            search(&app, &format!("q={hostile}")).await;
        }
        let r = app.get(&format!("/api/v1/search?q={}", "a".repeat(2000))).await;
        r.assert_field_error(400, "q");
        app.get("/api/v1/search?colour=red").await.assert_field_error(400, "colour");
        app.get("/api/v1/search?price_min=abc").await.assert_field_error(400, "price_min");
        app.get("/api/v1/search?price_min=900&price_max=100").await.assert_field_error(400, "price_max");
        app.get("/api/v1/search?sort=cheapest").await.assert_field_error(400, "sort");
        app.get("/api/v1/search/suggest").await.assert_field_error(400, "q");
        app.stop().await;
    }

    async fn facet_counts_match_sql_and_edits_are_searchable_on_every_node(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        ready(&app).await;
        let all = search(&app, "").await;
        let active = scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM products WHERE status = 'active'").await;
        assert_eq!(all["total"], active);
        assert_eq!(facet(&all, "category"), sql_counts(&app,
            "SELECT c.slug, CAST(COUNT(*) AS BIGINT) FROM product_categories pc
             JOIN categories c ON c.id = pc.category_id JOIN products p ON p.id = pc.product_id
             WHERE p.status = 'active' GROUP BY c.slug").await);
        assert_eq!(facet(&all, "type"), sql_counts(&app,
            "SELECT product_type, CAST(COUNT(*) AS BIGINT) FROM products WHERE status = 'active' GROUP BY product_type").await);
        assert_eq!(facet(&all, "vegan"), sql_counts(&app,
            "SELECT 'true', CAST(COUNT(*) AS BIGINT) FROM product_tags t JOIN products p ON p.id = t.product_id
             WHERE p.status = 'active' AND t.tag = 'vegan'").await);
        assert_eq!(facet(&all, "benefit"), sql_counts(&app,
            "SELECT t.tag, CAST(COUNT(*) AS BIGINT) FROM product_tags t JOIN products p ON p.id = t.product_id
             WHERE p.status = 'active' AND t.tag <> 'vegan' AND t.tag NOT LIKE '%-free' GROUP BY t.tag").await);
        assert_eq!(facet(&all, "free_from"), sql_counts(&app,
            "SELECT REPLACE(t.tag, '-free', ''), CAST(COUNT(*) AS BIGINT) FROM product_tags t
             JOIN products p ON p.id = t.product_id
             WHERE p.status = 'active' AND t.tag LIKE '%-free' GROUP BY t.tag").await);
        // Filters: AND across facets (checked against SQL), OR within one; a facet with a
        // selection still shows its other options with their counts.
        let vegan_skincare = search(&app, "type=skincare&vegan=true").await;
        assert_eq!(vegan_skincare["total"], scalar(&app.kernel.state.db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM products p JOIN product_tags t ON t.product_id = p.id
             WHERE p.status = 'active' AND p.product_type = 'skincare' AND t.tag = 'vegan'").await);
        let serums = search(&app, "category=serums").await;
        let both = search(&app, "category=serums&category=toners").await;
        let categories = facet(&all, "category");
        let count_of = |slug: &str| categories.iter().find(|(s, _)| s == slug).unwrap().1;
        assert_eq!(serums["total"], count_of("serums"));
        assert_eq!(both["total"], count_of("serums") + count_of("toners"));
        assert_eq!(facet(&serums, "category"), categories);
        let in_stock = facet(&all, "in_stock");
        assert_eq!(search(&app, "in_stock=true").await["total"], in_stock[0].1);
        // Price: the buckets cover everything; a range filters; sorting by price sorts.
        let buckets: i64 = facet(&all, "price").iter().map(|(_, n)| n).sum();
        assert_eq!(buckets, active);
        let cheap = search(&app, "price_max=1500&sort=price_asc&per_page=48").await;
        let prices: Vec<i64> = cheap["products"].as_array().unwrap().iter().map(|p| p["price_minor"].as_i64().unwrap()).collect();
        assert!(!prices.is_empty() && prices.windows(2).all(|w| w[0] <= w[1]) && prices.iter().all(|p| *p <= 1500), "{prices:?}");
        let page2 = search(&app, "per_page=10&page=2").await;
        assert_eq!(page2["products"].as_array().unwrap().len(), 10);

        // An admin edit is searchable here and on another node; archiving removes it.
        let other = app.another_node(|_| {}, Default::default()).await;
        ready(&other).await;
        let id = scalar(&app.kernel.state.db, "SELECT id FROM products WHERE slug = 'collagen-peptides'").await;
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"name": "Zebrafruit Collagen Peptides"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        for node in [&app, &other] {
            wait_until("the edit is searchable", async || slugs(node, "q=zebrafruit").await == ["collagen-peptides"]).await;
        }
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"status": "archived"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        for node in [&app, &other] {
            wait_until("the archived product leaves", async || search(node, "q=zebrafruit").await["total"] == 0).await;
        }
        // A rebuild from the database answers as the incremental updates did.
        let queries = ["q=vitamin", "q=serum&sort=price_desc", "category=supplements&vegan=true", "q=zebrafruit", ""];
        let mut before = Vec::new();
        for q in queries {
            before.push(search(&app, q).await);
        }
        app.kernel.state.search.build().await.unwrap();
        for (q, earlier) in queries.iter().zip(before) {
            assert_eq!(search(&app, q).await, earlier, "{q}");
        }
        other.stop().await;
        app.stop().await;
    }
}

both_backends! {
    async fn the_results_page_filters_without_javascript(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        ready(&app).await;
        // Every page has the search box, and the one script that enhances it.
        let home = app.get("/").await;
        assert!(home.text().contains(r#"<form class="site-search" role="search" action="/search" method="get">"#), "{}", home.text());
        let script = olivine::http::security::search_script();
        assert!(home.text().contains(&format!(r#"src="{}" integrity="{}""#, script.path, script.integrity)));
        assert_eq!(app.get(script.path).await.status, StatusCode::OK);
        // A typo still finds; the facets are checkboxes with counts; a ticked one stays ticked.
        let page = app.get("/search?q=vitamn").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let html = page.text();
        assert!(html.contains(r#"href="/p/vitamin-d3-k2""#), "{html}");
        assert!(html.contains(r#"type="checkbox" id="f-category-vitamins" name="category" value="vitamins""#), "{html}");
        let api = search(&app, "q=vitamn&category=vitamins&vegan=true").await;
        let page = app.get("/search?q=vitamn&category=vitamins&vegan=true&min=&max=").await;
        let html = page.text();
        assert!(html.contains(r#"name="category" value="vitamins" checked"#), "{html}");
        assert!(html.contains(&format!(r#"data-total="{}""#, api["total"])), "{html}");
        // Prices in the form are in euros.
        let cheap = search(&app, "price_max=1000").await["total"].clone();
        let html = app.get("/search?max=10").await.text();
        assert!(html.contains(&format!(r#"data-total="{cheap}""#)), "{html}");
        assert!(html.contains(r#"name="max" min="0" step="0.01" inputmode="decimal" value="10.00""#), "{html}");
        // Nothing found: the corrected query is offered.
        let html = app.get("/search?q=zinx").await.text();
        assert!(html.contains(r#"<a id="did-you-mean" href="/search?q=zinc">zinc</a>"#), "{html}");
        // A parameter the page cannot read is a 400 page that says which.
        let r = app.get("/search?price=cheap").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("<code>price</code>"), "{}", r.text());
        app.stop().await;
    }
}

both_backends! {
    async fn stock_that_runs_out_with_the_date_leaves_the_in_stock_filter_the_next_day(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 10})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        wait_until("in stock", async || {
            app.get("/api/v1/search?in_stock=true").await.json()["total"] == 1
        }).await;
        // Time passes and the lot enters the 60-day minimum shelf life: no event says so
        // (the lot's row is moved here as the calendar would move it).
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE lots SET expires_on = '{}'", date_in(30))))
            .execute(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!(search(&app, "in_stock=true").await["total"], 1, "the index has not been told");
        // The node rebuilds its index when the date changes.
        app.kernel.state.clock.advance(std::time::Duration::from_secs(24 * 3600));
        wait_until("out of stock the next day", async || {
            app.get("/api/v1/search?in_stock=true").await.json()["total"] == 0
        }).await;
        assert_eq!(search(&app, "q=mag").await["products"][0]["in_stock"], false);
        app.stop().await;
    }
}
