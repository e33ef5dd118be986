//! The storefront's quality, measured by Lighthouse (the `lighthouse` npm package driving
//! Debian's headless Chromium) with its default mobile profile: the home page, a category,
//! a product, the cart with an item and the checkout page of the demo store that
//! `olivine serve` seeds, served by the kernel's router on a real TCP port. Each page must
//! score at least [`MIN_POINTS`] in performance, accessibility, best practices and SEO.
//!
//! Lighthouse comes from `scripts/install-lighthouse` (pinned in
//! `scripts/lighthouse/package-lock.json`, installed into `target/lighthouse/`), which
//! `scripts/test` runs first; the test runs it itself too (it does nothing when the install
//! is there), and fails, never skips, when it cannot install. The JSON reports are kept
//! under `target/tmp/lighthouse/`; a failure prints the audits that cost points.
//!
//! The scores are recorded in docs/PERFORMANCE.md ("Lighthouse (mobile)").

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::served::{ServedShop, serve_with_card_payments};
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use olivine::storefront::cart::{CART_COOKIE, CART_ITEMS_COOKIE};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The categories scored, as Lighthouse names them.
const CATEGORIES: [&str; 4] = ["performance", "accessibility", "best-practices", "seo"];
/// What every page must reach in every category, in the points Lighthouse shows (its
/// score from 0 to 1, times 100, rounded).
const MIN_POINTS: u32 = 95;
/// Chromium here: root in a container (no sandbox), no GPU, and nothing reachable but
/// this machine, so none of its calls home (without the background-networking flags it
/// stalls on refused connections).
const CHROME_FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync";
/// One Lighthouse run: Chromium's start, the page's load (Lighthouse waits up to 45 s for
/// it) and the audits. Far more than a run takes on a busy machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// A demo product with a description, variants and stock (examples/demo/catalog.json).
const PRODUCT: &str = "magnesium-glycinate";
/// Its 60 capsules, which the cart holds.
const SKU: &str = "MAG-GLY-60";
const CATEGORY: &str = "supplements";

// ---- Lighthouse --------------------------------------------------------------------------

/// `target/lighthouse/node_modules/lighthouse/cli/index.js`.
fn lighthouse_cli() -> PathBuf {
    repo_root()
        .join("target")
        .join("lighthouse")
        .join("node_modules")
        .join("lighthouse")
        .join("cli")
        .join("index.js")
}

/// Runs `scripts/install-lighthouse` (once per test binary): Lighthouse, Node.js when the
/// machine has none, and Chromium. Panics when that fails.
fn ensure_lighthouse_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let script = repo_root().join("scripts").join("install-lighthouse");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !status.success() {
            return Err(format!("{} failed ({status})", script.display()));
        }
        for needed in [lighthouse_cli(), PathBuf::from(CHROMIUM)] {
            if !needed.exists() {
                return Err(format!(
                    "{} ran, but {} is missing",
                    script.display(),
                    needed.display()
                ));
            }
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!(
            "the Lighthouse test needs the lighthouse npm package (Node.js) and Chromium, and \
             installing them failed: {message}"
        );
    }
}

/// Where the JSON reports are kept: `target/tmp/lighthouse/`.
fn reports_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lighthouse");
    std::fs::create_dir_all(&dir).expect("the reports directory");
    dir
}

/// How a page is audited: the storefront on a phone in the four categories, the admin
/// on a desktop for accessibility.
#[derive(Clone, Copy)]
struct Audit {
    categories: &'static [&'static str],
    desktop: bool,
}

const STOREFRONT: Audit = Audit {
    categories: &CATEGORIES,
    desktop: false,
};
const ADMIN: Audit = Audit {
    categories: &["accessibility"],
    desktop: true,
};

/// One Lighthouse run on `url`, its JSON report written to `report`; `cookie` is sent
/// with every request of the page.
async fn lighthouse(url: &str, cookie: Option<&str>, report: &Path, audit: Audit) -> Value {
    let _ = std::fs::remove_file(report);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(lighthouse_cli())
        .arg(url)
        .arg("--output=json")
        .arg(format!("--output-path={}", report.display()))
        .arg(format!("--only-categories={}", audit.categories.join(",")))
        .arg(format!("--chrome-flags={CHROME_FLAGS}"))
        .arg("--quiet")
        .env("CHROME_PATH", CHROMIUM)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if audit.desktop {
        command.arg("--preset=desktop");
    }
    if let Some(cookie) = cookie {
        command.arg(format!("--extra-headers={}", json!({ "Cookie": cookie })));
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("lighthouse on {url} took more than {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run node {}: {e}", lighthouse_cli().display()));
    assert!(
        output.status.success(),
        "lighthouse on {url} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", report.display()));
    let report_json: Value = serde_json::from_str(&text).expect("the report is JSON");
    if let Some(error) = report_json["runtimeError"]["code"].as_str() {
        panic!(
            "lighthouse could not load {url}: {error}: {}",
            report_json["runtimeError"]["message"]
        );
    }
    // "The page loaded too slowly to finish within the time limit" and the like: what
    // may explain a score.
    for warning in report_json["runWarnings"].as_array().into_iter().flatten() {
        eprintln!("lighthouse on {url}: {warning}");
    }
    report_json
}

/// A category's points as Lighthouse shows them, 0 when it could not score it (`null`).
fn points(report: &Value, category: &str) -> u32 {
    let score = report["categories"][category]["score"]
        .as_f64()
        .unwrap_or(0.0);
    (score * 100.0).round() as u32
}

/// The audits that cost `category` points: id, title, score, display value, and the
/// first few elements or resources each one names.
fn lost_points(report: &Value, category: &str) -> Vec<String> {
    let refs = report["categories"][category]["auditRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    refs.iter()
        .filter(|r| r["weight"].as_f64().unwrap_or(0.0) > 0.0)
        .filter_map(|r| {
            let id = r["id"].as_str()?;
            let audit = &report["audits"][id];
            let score = audit["score"].as_f64()?;
            (score < 1.0).then(|| {
                let mut lines = vec![format!(
                    "    {id} (weight {}): {} — score {score}{}",
                    r["weight"],
                    audit["title"].as_str().unwrap_or(""),
                    audit["displayValue"]
                        .as_str()
                        .map(|v| format!(", {v}"))
                        .unwrap_or_default()
                )];
                let items = audit["details"]["items"].as_array().cloned();
                for item in items.unwrap_or_default().iter().take(5) {
                    lines.push(format!("      {}", item_label(item)));
                }
                lines.join("\n")
            })
        })
        .collect()
}

/// What a detail of an audit is about: an element (its selector and markup), or a
/// resource (its URL and what was said of it).
fn item_label(item: &Value) -> String {
    let node = &item["node"];
    if let Some(selector) = node["selector"].as_str() {
        return format!(
            "{selector}: {} {}",
            node["snippet"].as_str().unwrap_or(""),
            node["explanation"]
                .as_str()
                .unwrap_or("")
                .replace('\n', " ")
        );
    }
    let url = item["url"]
        .as_str()
        .or(item["sourceLocation"]["url"].as_str())
        .unwrap_or("");
    format!("{url} {}", item["description"].as_str().unwrap_or_default())
}

// ---- the shop ------------------------------------------------------------------------------

/// The demo store on a real port, with card payments, as a merchant would run it.
struct Shop(ServedShop);

async fn demo_shop() -> Shop {
    let app = TestApp::with_demo(Backend::Sqlite).await;
    Shop(serve_with_card_payments(app, sandbox_processor::Config::default()).await)
}

impl Shop {
    fn url(&self, path: &str) -> String {
        self.0.url(path)
    }

    /// A guest's cart with two units of [`PRODUCT`] (made through the cart API, as the
    /// storefront's own pages call it): the `Cookie` header of that guest's browser.
    async fn guest_cart_cookie(&self) -> String {
        let json_body = |v: Value| Some(Body::from(v.to_string()));
        let r = self
            .0
            .app
            .request(
                Method::POST,
                "/api/v1/carts",
                None,
                None,
                Some("application/json"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let cart = r.json()["id"].as_str().expect("the cart's id").to_owned();
        let r = self
            .0
            .app
            .request(
                Method::POST,
                &format!("/api/v1/carts/{cart}/lines"),
                None,
                json_body(json!({"sku": SKU, "quantity": 2})),
                Some("application/json"),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text());
        let cookie = format!("{CART_COOKIE}={cart}; {CART_ITEMS_COOKIE}=2");
        // The browser with that cookie sees the line, and can check out.
        for path in ["/cart", "/checkout"] {
            let r = self
                .0
                .app
                .send(
                    Request::get(path)
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            assert!(
                r.text().contains("Magnesium Glycinate"),
                "{path}: {}",
                r.text()
            );
        }
        cookie
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

// ---- the test --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_scores_at_least_95_in_every_lighthouse_category_on_mobile() {
    tokio::task::spawn_blocking(ensure_lighthouse_installed)
        .await
        .expect("the install step");
    let shop = demo_shop().await;
    let cart_cookie = shop.guest_cart_cookie().await;
    let pages: [(&str, String, Option<&str>); 5] = [
        ("home", "/".to_owned(), None),
        ("category", format!("/c/{CATEGORY}"), None),
        ("product", format!("/p/{PRODUCT}"), None),
        ("cart", "/cart".to_owned(), Some(&cart_cookie)),
        ("checkout", "/checkout".to_owned(), Some(&cart_cookie)),
    ];
    let dir = reports_dir();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (name, path, cookie) in pages {
        let url = shop.url(&path);
        let started = Instant::now();
        let _ = std::fs::remove_file(dir.join(format!("{name}-2.json")));
        let mut report =
            lighthouse(&url, cookie, &dir.join(format!("{name}.json")), STOREFRONT).await;
        // Only performance varies from run to run: Lighthouse simulates a slow phone
        // from the main-thread tasks it observed, and on a 2-core machine running the
        // rest of the suite beside it those tasks take longer than they would alone. A
        // second run, the better one counting, keeps a page that is fast from failing
        // for a moment of load; a page that is slow fails both. The other categories
        // audit the markup, which is the same every run: no second chance. Measured, it
        // was not needed: every page scored 100 beside the browser tests and with four
        // busy processes on the two cores (docs/PERFORMANCE.md), so the test does not
        // wait for the browser tests either.
        if points(&report, "performance") < MIN_POINTS
            && CATEGORIES[1..]
                .iter()
                .all(|c| points(&report, c) >= MIN_POINTS)
        {
            let again = lighthouse(
                &url,
                cookie,
                &dir.join(format!("{name}-2.json")),
                STOREFRONT,
            )
            .await;
            eprintln!(
                "{name}: performance {} then {} on a second run",
                points(&report, "performance"),
                points(&again, "performance")
            );
            if points(&again, "performance") > points(&report, "performance") {
                report = again;
            }
        }
        let scores: Vec<u32> = CATEGORIES.iter().map(|c| points(&report, c)).collect();
        table.push(format!(
            "| {name} | `{path}` | {} | {:.0} s |",
            scores
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" | "),
            started.elapsed().as_secs_f64()
        ));
        for (category, value) in CATEGORIES.iter().zip(&scores) {
            if *value < MIN_POINTS {
                failures.push(format!(
                    "{name} ({path}): {category} {value} < {MIN_POINTS}; the audits that lost \
                     points:\n{}",
                    lost_points(&report, category).join("\n")
                ));
            }
        }
    }
    eprintln!(
        "Lighthouse (mobile), reports in {}:\n| page | path | performance | accessibility | best practices | SEO | run |\n{}",
        dir.display(),
        table.join("\n")
    );
    shop.stop().await;
    assert!(
        failures.is_empty(),
        "Lighthouse scores below {MIN_POINTS}:\n{}",
        failures.join("\n")
    );
}

/// Five admin pages, one of each kind, as the owner sees them with the demo store, audited for
/// accessibility by Lighthouse (axe-core's rules: labels and names, contrast, landmarks,
/// headings, keyboard focus order, ARIA), desktop profile: each at least [`MIN_POINTS`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_scores_at_least_95_in_lighthouse_accessibility() {
    tokio::task::spawn_blocking(ensure_lighthouse_installed)
        .await
        .expect("the install step");
    let shop = demo_shop().await;
    let app = &shop.0.app;
    let owner = crate::admin_ui::signed_in_as(app, "owner").await;
    let cookie = owner
        .header_for("/admin")
        .expect("the staff session cookie");
    let product = app.get(&format!("/api/v1/products/{PRODUCT}")).await.json()["id"]
        .as_i64()
        .expect("the demo product's id");
    // One page of each kind the admin is made of (about 12 s of Lighthouse each, on one
    // of CI's two cores): the panels, a list with filters and a pager, the form made
    // from the taxonomy, a record's page with its sub-forms, and the settings forms.
    // Orders, lots, plugins and the audit log are lists like the products' (each 100
    // when measured: docs/PERFORMANCE.md).
    let pages = [
        ("admin-dashboard", "/admin".to_owned()),
        ("admin-products", "/admin/products".to_owned()),
        (
            "admin-new-product",
            "/admin/products/new?type=skincare".to_owned(),
        ),
        ("admin-product", format!("/admin/products/{product}")),
        ("admin-settings", "/admin/settings".to_owned()),
    ];
    let dir = reports_dir();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (name, path) in pages {
        let report = lighthouse(
            &shop.url(&path),
            Some(&cookie),
            &dir.join(format!("{name}.json")),
            ADMIN,
        )
        .await;
        // Signed in, not sent to the sign-in form.
        let landed = report["finalDisplayedUrl"].as_str().unwrap_or_default();
        assert!(
            !landed.contains("/admin/sign-in"),
            "{path} sent Lighthouse to {landed}"
        );
        let score = points(&report, "accessibility");
        table.push(format!("| {name} | `{path}` | {score} |"));
        if score < MIN_POINTS {
            failures.push(format!(
                "{name} ({path}): accessibility {score} < {MIN_POINTS}; the audits that lost \
                 points:\n{}",
                lost_points(&report, "accessibility").join("\n")
            ));
        }
    }
    eprintln!(
        "Lighthouse accessibility of the admin (desktop), reports in {}:\n| page | path | accessibility |\n{}",
        dir.display(),
        table.join("\n")
    );
    shop.stop().await;
    assert!(
        failures.is_empty(),
        "admin pages below {MIN_POINTS} in accessibility:\n{}",
        failures.join("\n")
    );
}
