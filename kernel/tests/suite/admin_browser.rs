//! The merchant's admin in headless Chromium (a module of `browser`, whose WebDriver
//! client and shop it uses): a catalog manager signs in, creates a skincare product with
//! a variant, receives a lot of it, and sees it in the storefront. On a failure the
//! browser's screenshot and page are written under `target/tmp/browser/`, as for the
//! storefront's tests.

use super::*;

const NAME: &str = "Browser Calm Serum";

/// Sets a field's value with a script: a date input takes typed keys in the browser's
/// locale order, which a test should not depend on.
fn set_value(browser: &Browser, css: &str, value: &str) {
    browser.wait_for(css);
    browser.command(
        Method::POST,
        "/execute/sync",
        Some(json!({
            "script": "document.querySelector(arguments[0]).value = arguments[1];",
            "args": [css, value],
        })),
    );
}

/// Waits until the browser is at a path starting with `prefix` and ending with `suffix`.
fn wait_for_path_between(browser: &Browser, prefix: &str, suffix: &str) -> String {
    browser.wait_until(WAIT, &format!("the page {prefix}…{suffix}"), || {
        let current = browser.current_path();
        (current.starts_with(prefix) && current.ends_with(suffix)).then_some(current)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_adds_a_product_with_a_lot_and_the_shop_sells_it() {
    let shop = shop().await;
    let r = shop
        .app
        .admin_post(
            "/api/v1/admin/staff",
            &json!({"email": "cat@staff.example", "name": "Cat", "role": "catalog",
                "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let browser = Browser::launch("admin-product");

    // Signing in: a page of the admin sends the merchant to the form and back.
    browser.goto(&shop.url("/admin/products"));
    browser.wait_for_path("/admin/sign-in?next=*", WAIT);
    browser.fill("#f-email", "cat@staff.example");
    browser.fill("#f-password", PASSWORD);
    let submit = browser.wait_for("form[action='/admin/sign-in'] button[type=submit]");
    browser.click(&submit);
    browser.wait_for_path("/admin/products", WAIT);
    assert_eq!(browser.wait_for_text("h1"), "Products");
    let nav = browser.wait_for_text("header nav");
    assert!(
        !nav.contains("Orders"),
        "a catalog manager has no orders: {nav}"
    );

    // A skincare product with its first variant.
    let new = browser.wait_for("a[href='/admin/products/new?type=skincare']");
    browser.click(&new);
    browser.wait_for_path("/admin/products/new?type=skincare", WAIT);
    browser.fill("#f-name", NAME);
    browser.fill("#f-slug", "browser-calm-serum");
    browser.fill("#f-description", "A calming serum.");
    let dry = browser.wait_for("#f-attributes-skin-types-dry");
    browser.click(&dry);
    browser.fill("#f-attributes-volume-ml", "30");
    browser.fill("#f-attributes-application", "Two drops at night.");
    browser.fill("#f-variants-0-title", "30 ml");
    browser.fill("#f-variants-0-sku", "BCS-30");
    browser.fill("#f-variants-0-price-minor", "24.50");
    browser.fill("#f-variants-0-weight-grams", "80");
    let create = browser.wait_for("form.product-form button[type=submit]");
    browser.click(&create);
    wait_for_path_between(&browser, "/admin/products/", "?done=created");
    assert_eq!(browser.wait_for_text("h1"), NAME);

    // Receiving a lot of the variant.
    let receive = browser.wait_for("a[href='/admin/lots/new?sku=BCS-30']");
    browser.click(&receive);
    browser.wait_for_path("/admin/lots/new?sku=BCS-30", WAIT);
    browser.fill("#f-batch", "BCS-L1");
    set_value(&browser, "#f-manufactured-on", &date_in(-3));
    set_value(&browser, "#f-expires-on", &date_in(400));
    browser.fill("#f-quantity", "12");
    let submit = browser.wait_for("form[action='/admin/lots/new'] button[type=submit]");
    browser.click(&submit);
    wait_for_path_between(&browser, "/admin/products/", "?done=received");
    let lots = browser.wait_for_text("article.variant table");
    assert!(lots.contains("BCS-L1") && lots.contains("12"), "{lots}");

    // The shop sells it.
    shop.app.settle().await;
    let view = browser.wait_for("a[href='/p/browser-calm-serum']");
    browser.click(&view);
    browser.wait_for_path("/p/browser-calm-serum", WAIT);
    assert_eq!(browser.wait_for_text("h1"), NAME);
    let page = browser.wait_for_text("main");
    assert!(page.contains("€24.50"), "{page}");

    drop(browser);
    shop.stop().await;
}
