//! The storefront in a real browser: headless Chromium (Debian's), driven over the W3C
//! WebDriver protocol through chromedriver, against the kernel's router served on a real
//! TCP port and the sandbox card processor (examples/sandbox-processor) behind the
//! bundled payment adapter (plugins/sandbox-payments). The shopper registers, browses to a
//! product, adds it to the cart, checks out with a test card that the checkout page's
//! script tokenizes at the processor from the browser, reads the order in the account,
//! and sees the tracking number once the merchant ships; a declined card shows the reason
//! and places no order. A subscriber gives their subscription a new card on its page,
//! which the same script tokenizes at the processor.
//!
//! Chromium and chromedriver come from `scripts/install-browser`, which `scripts/test`
//! runs first; when chromedriver is still missing the test runs that script itself, and
//! fails (never skips) when it cannot. On a failure, a screenshot and the page's HTML
//! are written under `target/tmp/browser/`, beside chromedriver's log.
//!
//! The WebDriver client is the few calls below over `ureq` (already a dependency of the
//! kernel), not a WebDriver crate: `fantoccini` would add the ICU 1.x stack, http 0.2 and
//! turn on hyper's client, which recompiles axum and the kernel for the test profile.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::served::{ServedShop, serve_with_card_payments};
use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait for the page polls before it fails.
const WAIT: Duration = Duration::from_secs(10);
/// Placing an order: tokenization at the processor, the order, the authorization through
/// the plugin. More than a page load on a busy machine.
const WAIT_FOR_ORDER: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// The W3C name of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

const PASSWORD: &str = "correct horse battery";
const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";
const PRODUCT_NAME: &str = "Browser Magnesium";

// ---- Chromium and chromedriver --------------------------------------------------------

/// Installs Chromium and chromedriver when they are missing (once per test binary).
fn ensure_browser_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
            return Ok(());
        }
        let script = repo_root().join("scripts").join("install-browser");
        eprintln!("{CHROMEDRIVER} is missing: running {}", script.display());
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !status.success() {
            return Err(format!("{} failed ({status})", script.display()));
        }
        if !Path::new(CHROMEDRIVER).exists() {
            return Err(format!(
                "{} ran, but {CHROMEDRIVER} is missing",
                script.display()
            ));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!(
            "the browser test needs Chromium and chromedriver (Debian packages chromium and \
             chromium-driver), and installing them failed: {message}"
        );
    }
}

/// Where a failure's screenshot and page, and chromedriver's log, are kept:
/// `target/tmp/browser/`.
fn evidence_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts chromedriver on a free port and waits until it answers; another port when the
/// one picked was taken meanwhile. Answers the process and its base URL.
fn start_chromedriver(agent: &ureq::Agent, log: &Path) -> (Child, String) {
    for _ in 0..3 {
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        // chromedriver answers /status once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = blocking(|| {
                agent
                    .get(format!("{base}/status"))
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                    .is_some_and(|v| v["value"]["ready"] == true)
            });
            if ready {
                return (driver, base);
            }
            if let Ok(Some(status)) = driver.try_wait() {
                eprintln!("chromedriver exited at start on port {port} ({status})");
                break;
            }
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "chromedriver did not become ready on port {port}; see {}",
                    log.display()
                );
            }
            blocking(|| std::thread::sleep(POLL));
        }
    }
    panic!(
        "chromedriver exited at start three times; see {}",
        log.display()
    );
}

/// A blocking call (WebDriver over `ureq`, a wait between polls) that leaves the
/// runtime's workers free to serve the browser's requests.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A chromedriver process and the browser session it drives. Dropping it ends the
/// session (Chromium quits), then chromedriver; after a panic it first writes a
/// screenshot and the page's HTML.
struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver: Child,
    /// What a failure's files are named after.
    name: String,
    profile: tempfile::TempDir,
}

#[derive(Clone, Debug)]
struct Element(String);

/// A WebDriver error: its W3C code (`no such element`, ...) and message.
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl Browser {
    fn launch(name: &str) -> Browser {
        ensure_browser_installed();
        let profile = tempfile::tempdir().expect("temp dir");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        // A failure's files of an earlier run would mislead.
        for stale in ["failure.png", "failure.html"] {
            let _ = std::fs::remove_file(evidence_dir().join(format!("{name}-{stale}")));
        }
        let log = evidence_dir().join(format!("{name}-chromedriver.log"));
        let (driver, base) = start_chromedriver(&agent, &log);
        let mut browser = Browser {
            agent,
            session: String::new(),
            driver,
            name: name.to_owned(),
            profile,
        };
        let user_data_dir = browser.profile.path().join("chromium");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Root in a container: Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--user-data-dir={}", user_data_dir.display()),
                    "--window-size=1280,1000",
                    // Nothing but this machine is reachable: no calls home.
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                ],
            },
        }}});
        let created = browser
            .send(Method::POST, &format!("{base}/session"), Some(capabilities))
            .unwrap_or_else(|e| panic!("chromedriver cannot start Chromium: {e}"));
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver command; the answer's `value`.
    fn send(&self, method: Method, url: &str, body: Option<Value>) -> Result<Value, WdError> {
        let transport = |e: ureq::Error| WdError {
            error: "transport".to_owned(),
            message: format!("{method} {url}: {e}"),
        };
        let mut response = blocking(|| {
            if method == Method::GET {
                self.agent.get(url).call()
            } else if method == Method::DELETE {
                self.agent.delete(url).call()
            } else {
                self.agent
                    .post(url)
                    .send_json(body.unwrap_or_else(|| json!({})))
            }
        })
        .map_err(transport)?;
        let status = response.status();
        let body: Value = blocking(|| response.body_mut().read_json()).map_err(transport)?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown").to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// A command of this session (`path` after `/session/<id>`); panics on an error.
    #[track_caller]
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        self.send(method.clone(), &url, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn refresh(&self) {
        self.command(Method::POST, "/refresh", None);
    }

    fn current_url(&self) -> String {
        self.command(Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The path (and query) of the current URL.
    fn current_path(&self) -> String {
        let url = self.current_url();
        match url.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map_or("/".to_owned(), |i| rest[i..].to_owned()),
            None => url,
        }
    }

    fn try_find(&self, css: &str) -> Result<Option<Element>, WdError> {
        let url = format!("{}/element", self.session);
        match self.send(
            Method::POST,
            &url,
            Some(json!({"using": "css selector", "value": css})),
        ) {
            Ok(value) => Ok(value[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))),
            Err(e) if e.error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn find_all(&self, css: &str) -> Vec<Element> {
        self.command(
            Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned())))
        .collect()
    }

    /// Polls until `check` answers something, for up to `within`.
    #[track_caller]
    fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = check() {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {within:?} for {what}; the browser is at {}",
                    self.current_url()
                );
            }
            blocking(|| std::thread::sleep(POLL));
        }
    }

    /// The element `css`, once the page has one.
    #[track_caller]
    fn wait_for(&self, css: &str) -> Element {
        self.wait_until(WAIT, &format!("an element `{css}`"), || {
            // A page being replaced by the next one can answer with a stale or
            // detached document: poll again.
            self.try_find(css).ok().flatten()
        })
    }

    /// Waits until the browser is at `path` (exactly, or as a prefix with `*` at its end).
    #[track_caller]
    fn wait_for_path(&self, path: &str, within: Duration) -> String {
        self.wait_until(within, &format!("the page {path}"), || {
            let current = self.current_path();
            let matched = match path.strip_suffix('*') {
                Some(prefix) => current.starts_with(prefix),
                None => current == path,
            };
            matched.then_some(current)
        })
    }

    #[track_caller]
    fn click(&self, element: &Element) {
        self.command(Method::POST, &format!("/element/{}/click", element.0), None);
    }

    /// Replaces the field's value by typing `text`.
    #[track_caller]
    fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css);
        self.command(Method::POST, &format!("/element/{}/clear", field.0), None);
        if text.is_empty() {
            return;
        }
        self.command(
            Method::POST,
            &format!("/element/{}/value", field.0),
            Some(json!({ "text": text })),
        );
    }

    /// The element's rendered text.
    #[track_caller]
    fn text(&self, element: &Element) -> String {
        self.command(Method::GET, &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// A DOM property of the element (`value` of an input, `href` of a link).
    #[track_caller]
    fn property(&self, element: &Element, name: &str) -> Value {
        self.command(
            Method::GET,
            &format!("/element/{}/property/{name}", element.0),
            None,
        )
    }

    /// An HTML attribute of the element.
    #[track_caller]
    fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.command(
            Method::GET,
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )
        .as_str()
        .map(str::to_owned)
    }

    /// The text of `css` once it is non-empty.
    #[track_caller]
    fn wait_for_text(&self, css: &str) -> String {
        self.wait_for_text_within(css, WAIT)
    }

    /// [`Browser::wait_for_text`], waiting up to `within`.
    #[track_caller]
    fn wait_for_text_within(&self, css: &str, within: Duration) -> String {
        self.wait_until(within, &format!("text in `{css}`"), || {
            let element = self.try_find(css).ok().flatten()?;
            let url = format!("{}/element/{}/text", self.session, element.0);
            let text = self.send(Method::GET, &url, None).ok()?;
            let text = text.as_str()?.trim().to_owned();
            (!text.is_empty()).then_some(text)
        })
    }

    /// Writes a screenshot and the page's HTML, and says where.
    fn save_evidence(&self, label: &str) {
        let dir = evidence_dir();
        let png = dir.join(format!("{}-{label}.png", self.name));
        let html = dir.join(format!("{}-{label}.html", self.name));
        let url = format!("{}/screenshot", self.session);
        if let Ok(Value::String(data)) = self.send(Method::GET, &url, None) {
            use base64::Engine as _;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) {
                let _ = std::fs::write(&png, bytes);
                eprintln!("screenshot: {}", png.display());
            }
        }
        let url = format!("{}/source", self.session);
        if let Ok(Value::String(source)) = self.send(Method::GET, &url, None) {
            let _ = std::fs::write(&html, source);
            eprintln!("page HTML: {}", html.display());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if std::thread::panicking() {
                let url = format!("{}/url", self.session);
                if let Ok(Value::String(url)) = self.send(Method::GET, &url, None) {
                    eprintln!("the browser was at {url}");
                }
                self.save_evidence("failure");
            }
            let _ = self.send(Method::DELETE, &self.session.clone(), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---- the shop -------------------------------------------------------------------------

/// The kernel on a real port with card payments (common/served.rs), and the
/// merchant's set-up: a product with stock, shipping rates and VAT.
struct Shop {
    served: ServedShop,
    lot: i64,
}

impl std::ops::Deref for Shop {
    type Target = ServedShop;
    fn deref(&self) -> &ServedShop {
        &self.served
    }
}

async fn shop() -> Shop {
    let app = TestApp::start(Backend::Sqlite).await;
    basic_setup(&app).await;
    let mut product = supplement("mag", "MAG");
    product["name"] = json!(PRODUCT_NAME);
    let r = app.admin_post("/api/v1/admin/products", &product).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": "MAG-60", "location": "AMS-1", "batch": "B1",
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let lot = r.json()["id"].as_i64().expect("lot id");
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/shipping-rates",
            &json!([{"code": "standard", "name": "Standard", "country": "NL",
                "max_weight_grams": 5000, "price_minor": 495, "currency": "EUR"},
                {"code": "standard", "name": "Standard", "country": "*",
                "max_weight_grams": 5000, "price_minor": 995, "currency": "EUR"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // An EU shop: prices include VAT, at the destination's rate.
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}, {"country": "DE", "rate_bp": 1900}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .admin_patch(
            "/api/v1/admin/settings",
            &json!({"prices_include_tax": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let served = serve_with_card_payments(
        app,
        sandbox_processor::Config {
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    Shop { served, lot }
}

impl Shop {
    async fn lot_quantity(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT quantity FROM lots WHERE id = $1")
            .bind(self.lot)
            .fetch_one(&self.app.kernel.state.db.pool)
            .await
            .expect("lot")
            .get(0)
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

// ---- the shopper's steps ----------------------------------------------------------------

/// Registers through the form; the new customer lands on the account page, signed in.
fn register(browser: &Browser, shop: &Shop, name: &str, email: &str) {
    browser.goto(&shop.url("/account/register"));
    browser.fill("#f-name", name);
    browser.fill("#f-email", email);
    browser.fill("#f-password", PASSWORD);
    let submit = browser.wait_for("form[action='/account/register'] button[type=submit]");
    browser.click(&submit);
    browser.wait_for_path("/account", WAIT);
    let account = browser.wait_for_text("main");
    assert!(
        account.contains(email) || account.contains(name),
        "the account page shows who is signed in: {account}"
    );
    // The home page is the same for every visitor; its header script asks for the
    // shopper's own bits and turns "Sign in" into the account link.
    browser.goto(&shop.url("/"));
    let link = browser.wait_for("a.account-link[data-personal=account][href='/account']");
    assert_eq!(browser.text(&link), "Account");
}

/// From the home page through the category to the product page, then `quantity` into the
/// cart; ends on the cart page.
fn browse_and_add_to_cart(browser: &Browser, shop: &Shop, quantity: u32) {
    browser.goto(&shop.url("/"));
    let category = browser.wait_for(".category-card a[href='/c/supplements']");
    browser.click(&category);
    browser.wait_for_path("/c/supplements", WAIT);
    let card = browser.wait_for("a.card[href='/p/mag']");
    assert!(
        browser.text(&card).contains(PRODUCT_NAME),
        "the product card: {}",
        browser.text(&card)
    );
    browser.click(&card);
    browser.wait_for_path("/p/mag", WAIT);
    assert_eq!(browser.wait_for_text("h1"), PRODUCT_NAME);
    browser.fill(
        "form.add-to-cart input[name=quantity]",
        &quantity.to_string(),
    );
    let add = browser.wait_for("form.add-to-cart button[type=submit]");
    browser.click(&add);
    browser.wait_for_path("/cart", WAIT);
    let cart = browser.wait_for_text("main");
    assert!(cart.contains(PRODUCT_NAME), "the cart page: {cart}");
    let line_quantity = browser.wait_for("main input[name=quantity]");
    assert_eq!(
        browser.property(&line_quantity, "value"),
        json!(quantity.to_string()),
        "the cart line's quantity"
    );
}

/// From the cart page to the checkout form, filled in, paid with `card`.
fn check_out(browser: &Browser, email: &str, card: &str) {
    fill_address(browser, email);
    pay(browser, card);
}

/// From the cart page to the checkout form; fills in the address and shipping method.
fn fill_address(browser: &Browser, email: &str) {
    fill_address_in(browser, email, "NL");
}

/// [`fill_address`] to `country`.
fn fill_address_in(browser: &Browser, email: &str, country: &str) {
    let checkout = browser.wait_for("a#checkout-link");
    browser.click(&checkout);
    browser.wait_for_path("/checkout", WAIT);
    browser.wait_for("form#checkout-form");
    let email_field = browser.wait_for("form#checkout-form input[name=email]");
    assert_eq!(
        browser.property(&email_field, "value"),
        json!(email),
        "the signed-in shopper's email is filled in"
    );
    browser.fill("form#checkout-form input[name=name]", "Ada Lovelace");
    browser.fill("form#checkout-form input[name=line1]", "Oudegracht 1");
    browser.fill("form#checkout-form input[name=line2]", "");
    browser.fill("form#checkout-form input[name=city]", "Utrecht");
    browser.fill("form#checkout-form input[name=postal_code]", "3511 AB");
    // The method first: choosing a country makes the page's script rebuild the method
    // list (with that country's prices), which would leave a found option stale.
    let standard = browser.wait_for("select[name=shipping_method] option[value=standard]");
    browser.click(&standard);
    let option = browser.wait_for(&format!("select[name=country] option[value={country}]"));
    browser.click(&option);
}

/// Types the card into the checkout page's card fields and places the order.
fn pay(browser: &Browser, card: &str) {
    browser.fill("#card-number", card);
    browser.fill("#card-exp-month", "12");
    browser.fill("#card-exp-year", "2030");
    browser.fill("#card-cvc", "123");
    // The card fields are never posted to the kernel.
    for css in [
        "#card-number",
        "#card-exp-month",
        "#card-exp-year",
        "#card-cvc",
    ] {
        let field = browser.wait_for(css);
        let name = browser.property(&field, "name");
        assert!(
            name.as_str().is_none_or(str::is_empty),
            "{css} has no name, so the form never sends it: {name}"
        );
    }
    let place = browser.wait_for("#place-order");
    browser.click(&place);
}

/// No file of the kernel's data directory (the SQLite database and its journal, keys,
/// plugin state) holds `needle`.
fn assert_not_stored(dir: &Path, needle: &str) {
    for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_not_stored(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle}",
                path.display()
            );
        }
    }
}

// ---- the tests --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_pays_by_card_and_follows_the_order_in_the_account() {
    let shop = shop().await;
    let browser = Browser::launch("paid-order");
    let email = "ada@example.com";
    register(&browser, &shop, "Ada", email);
    browse_and_add_to_cart(&browser, &shop, 2);
    check_out(&browser, email, GOOD_CARD);

    // The confirmation page: the order's number, paid.
    let path = browser.wait_for_path("/checkout/confirmation/*", WAIT_FOR_ORDER);
    let number = browser.wait_for_text("#order-number");
    assert_eq!(path, format!("/checkout/confirmation/{number}"));
    assert_eq!(browser.wait_for_text("#order-status"), "paid");
    let orders = shop.app.admin_get("/api/v1/admin/orders").await.json();
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "{orders}");
    assert_eq!(orders[0]["number"], json!(number), "{orders}");
    assert_eq!(orders[0]["status"], "paid", "{orders}");
    let order = shop
        .app
        .admin_get(&format!("/api/v1/admin/orders/{number}"))
        .await
        .json();
    assert_eq!(order["email"], email, "{order}");
    assert_eq!(order["shipping_address"]["city"], "Utrecht", "{order}");
    assert_eq!(order["shipping_method"], "standard", "{order}");
    assert!(order["payment_reference"].is_string(), "{order}");
    assert_eq!(
        shop.lot_quantity().await,
        8,
        "two units went out of the lot"
    );
    // The card went from the browser to the processor, never to the kernel.
    assert_not_stored(shop.app.db.dir.path(), GOOD_CARD);

    // The account's orders: the order is there; open it.
    browser.goto(&shop.url("/account/orders"));
    let link = browser.wait_until(WAIT, "the order in the account's list", || {
        browser
            .find_all("a.order-link")
            .into_iter()
            .find(|link| browser.text(link) == number)
    });
    assert_eq!(browser.find_all("a.order-link").len(), 1, "one order");
    let row_status = browser.wait_for_text(&format!(
        "tr:has(a.order-link[href='/account/orders/{number}']) td:nth-child(3)"
    ));
    assert_eq!(row_status, "paid", "the list shows the order paid");
    browser.click(&link);
    browser.wait_for_path(&format!("/account/orders/{number}"), WAIT);
    assert_eq!(browser.wait_for_text("#order-number"), number);
    assert_eq!(browser.wait_for_text("#order-status"), "paid");
    assert!(
        browser
            .try_find("#tracking-number")
            .ok()
            .flatten()
            .is_none(),
        "no tracking number before it ships"
    );

    // The merchant ships it; the page, left open, shows the tracking number without a
    // reload (its live-updates script: /api/v1/live with the session cookie).
    let r = shop
        .app
        .admin_post(
            &format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-E2E-42"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(browser.wait_for_text("#tracking-number"), "TRK-E2E-42");
    let status = browser.wait_for("#order-status");
    assert_eq!(
        browser.attribute(&status, "data-status"),
        Some("fulfilled".to_owned())
    );
    assert_eq!(browser.text(&status), "shipped", "what the shopper reads");
    // A reload shows the same.
    browser.refresh();
    assert_eq!(browser.wait_for_text("#tracking-number"), "TRK-E2E-42");

    drop(browser);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_shows_the_reason_and_places_no_order() {
    let shop = shop().await;
    let browser = Browser::launch("declined");
    let email = "bob@example.com";
    register(&browser, &shop, "Bob", email);
    browse_and_add_to_cart(&browser, &shop, 1);
    check_out(&browser, email, DECLINED_CARD);

    // The page comes back from the kernel with the reason in its error box.
    let error = browser.wait_for_text_within("#checkout-error", WAIT_FOR_ORDER);
    assert!(
        error.contains("Your card was declined"),
        "the shopper is told why: {error}"
    );
    assert!(
        browser.current_path().starts_with("/checkout"),
        "still at checkout: {}",
        browser.current_url()
    );
    assert!(
        !browser.current_path().starts_with("/checkout/confirmation"),
        "no confirmation: {}",
        browser.current_url()
    );
    let city = browser.wait_for("form#checkout-form input[name=city]");
    assert_eq!(
        browser.property(&city, "value"),
        json!("Utrecht"),
        "the form keeps the address"
    );

    // No order stands: whatever the attempt wrote is cancelled, the stock is back, and
    // the account lists no order that is paid or waiting.
    let orders = shop.app.admin_get("/api/v1/admin/orders").await.json();
    let orders = orders.as_array().cloned().unwrap_or_default();
    assert!(
        orders.iter().all(|o| o["status"] == "cancelled"),
        "{orders:?}"
    );
    assert_eq!(shop.lot_quantity().await, 10, "the stock is back");
    browser.goto(&shop.url("/account/orders"));
    browser.wait_for("main");
    for link in browser.find_all("a.order-link") {
        let number = browser.text(&link);
        let order = orders
            .iter()
            .find(|o| o["number"] == json!(number))
            .unwrap_or_else(|| panic!("an order {number} that the admin API does not list"));
        assert_eq!(order["status"], "cancelled", "{order}");
    }

    // The cart is open again: back to checkout, and another card goes through.
    browser.goto(&shop.url("/cart"));
    check_out(&browser, email, GOOD_CARD);
    browser.wait_for_path("/checkout/confirmation/*", WAIT_FOR_ORDER);
    let number = browser.wait_for_text("#order-number");
    assert_eq!(browser.wait_for_text("#order-status"), "paid");
    let orders = shop.app.admin_get("/api/v1/admin/orders").await.json();
    let standing: Vec<&Value> = orders
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["status"] != "cancelled")
        .collect();
    assert_eq!(standing.len(), 1, "one order stands: {orders}");
    assert_eq!(
        (&standing[0]["number"], &standing[0]["status"]),
        (&json!(number), &json!("paid")),
        "{orders}"
    );
    assert_eq!(shop.lot_quantity().await, 9);

    drop(browser);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_shown_before_paying_is_the_total_charged_in_two_countries() {
    let shop = shop().await;
    let browser = Browser::launch("total-before-paying");
    let email = "vat@example.com";
    register(&browser, &shop, "Vera", email);
    // 2 x 19.99 with 21 % VAT included; shipping 4.95 to the Netherlands, 9.95 elsewhere;
    // Germany's VAT is 19 %.
    for (country, shipping, vat_label, total) in [
        ("NL", "€4.95", "Includes VAT (21 %)", "€44.93"),
        ("DE", "€9.95", "Includes VAT (19 %)", "€49.93"),
    ] {
        browse_and_add_to_cart(&browser, &shop, 2);
        fill_address_in(&browser, email, country);
        // The page's script shows this country's totals in place, before the card.
        browser.wait_until(WAIT, "the country's shipping in the summary", || {
            (browser.wait_for_text("#summary-shipping") == shipping).then_some(())
        });
        let shown = browser.wait_for_text("#summary-total");
        assert_eq!(shown, total, "{country}: the total before paying");
        let summary = browser.wait_for_text("#order-summary");
        assert!(summary.contains(vat_label), "{country}: {summary}");
        assert!(
            summary.contains(PRODUCT_NAME),
            "the summary names the product: {summary}"
        );
        let card = browser.wait_for("#card-section");
        assert_eq!(
            browser.property(&card, "hidden"),
            json!(false),
            "{country}: the card comes with the total"
        );
        pay(&browser, GOOD_CARD);
        browser.wait_for_path("/checkout/confirmation/*", WAIT_FOR_ORDER);
        let number = browser.wait_for_text("#order-number");
        assert_eq!(
            browser.wait_for_text("#order-total"),
            shown,
            "{country}: charged what was shown"
        );
        let order = shop
            .app
            .admin_get(&format!("/api/v1/admin/orders/{number}"))
            .await
            .json();
        let charged = olivine::catalog::model::Money {
            amount_minor: order["total_minor"].as_i64().unwrap(),
            currency: "EUR".into(),
        };
        assert_eq!(charged.display(), shown, "{order}");
        assert_eq!(order["status"], "paid", "{order}");
        assert!(
            !browser.wait_for_text("main").contains("on its way"),
            "no email is promised without an email channel"
        );
        browser.goto(&shop.url("/"));
    }
    drop(browser);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_replaces_the_card_and_the_new_card_goes_only_to_the_processor() {
    const NEW_CARD: &str = "5555555555554444";
    let shop = shop().await;
    let browser = Browser::launch("new-card");
    let email = "sub@example.com";
    register(&browser, &shop, "Sam", email);
    // On subscription from the product page, paid at checkout.
    browser.goto(&shop.url("/p/mag"));
    let subscribe = browser.wait_for("form.add-to-cart input[name=subscription]");
    browser.click(&subscribe);
    let add = browser.wait_for("form.add-to-cart button[type=submit]");
    browser.click(&add);
    browser.wait_for_path("/cart", WAIT);
    check_out(&browser, email, GOOD_CARD);
    browser.wait_for_path("/checkout/confirmation/*", WAIT_FOR_ORDER);
    let card_on_file = async || {
        let enc: String = sqlx::query_scalar("SELECT payment_method_enc FROM subscriptions")
            .fetch_one(&shop.app.kernel.state.db.pool)
            .await
            .expect("a subscription");
        shop.app
            .kernel
            .state
            .keys
            .decrypt_field("subscriptions.payment_method", &enc)
            .expect("its card")
    };
    let before = card_on_file().await;

    // The subscription's page: a card the processor refuses to tokenize is said in place.
    browser.goto(&shop.url("/account/subscriptions"));
    let link = browser.wait_for("a.subscription-link");
    browser.click(&link);
    browser.wait_for_path("/account/subscriptions/SUB-*", WAIT);
    let path = browser.current_path();
    browser.fill("#card-form #card-number", "4242424242424241");
    browser.fill("#card-form #card-exp-month", "12");
    browser.fill("#card-form #card-exp-year", "2030");
    browser.fill("#card-form #card-cvc", "123");
    let replace = browser.wait_for("#replace-card");
    browser.click(&replace);
    let error = browser.wait_for_text_within("#card-error", WAIT_FOR_ORDER);
    assert!(
        error.contains("Your card could not be checked"),
        "the shopper is told: {error}"
    );
    assert_eq!(browser.current_path(), path, "nothing was posted");

    // A good card: the script tokenizes it and posts only the token.
    browser.fill("#card-form #card-number", NEW_CARD);
    let replace = browser.wait_for("#replace-card");
    browser.click(&replace);
    browser.wait_for_path(
        &format!("{path}?done=replace_payment_method"),
        WAIT_FOR_ORDER,
    );
    let notice = browser.wait_for_text("p.form-notice");
    assert_eq!(notice, "The next deliveries are paid with the new card.");
    let after = card_on_file().await;
    assert!(
        after.starts_with("saved:cus_") && after != before,
        "{before} then {after}"
    );
    assert_not_stored(shop.app.db.dir.path(), NEW_CARD);

    drop(browser);
    shop.stop().await;
}

// The admin's browser test, with this file's WebDriver client and shop.
#[path = "admin_browser.rs"]
mod admin_browser;
