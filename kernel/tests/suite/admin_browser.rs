//! The merchant's admin in headless Chromium (a module of `browser`, whose WebDriver
//! client and shop it uses): a catalog manager signs in, creates a skincare product with
//! two variants, receives a lot of one of them, sees it in the storefront, recalls that
//! lot and sees the product stop selling; a merchant fulfils a
//! shopper's order with a tracking number and refunds part of it, uploads a new version
//! of a pricing plugin as a package, activates it and sees the shopper's cart priced by
//! it, rolls it back, and recalls the batch the order came from; a catalog manager is
//! refused the plugin pages. On a failure the browser's screenshot and page are written
//! under `target/tmp/browser/`, as for the storefront's tests.

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
async fn a_merchant_adds_a_product_with_a_lot_the_shop_sells_it_until_the_lot_is_recalled() {
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
    let created = wait_for_path_between(&browser, "/admin/products/", "?done=created");
    assert_eq!(browser.wait_for_text("h1"), NAME);
    let product = created
        .trim_start_matches("/admin/products/")
        .trim_end_matches("?done=created")
        .to_owned();

    // Its second variant, from the product's page.
    let add = format!("/admin/products/{product}/variants");
    let in_add = |name: &str| format!("form[action='{add}'] [name='{name}']");
    browser.fill(&in_add("title"), "50 ml");
    browser.fill(&in_add("sku"), "BCS-50");
    browser.fill(&in_add("price_minor"), "34.50");
    browser.fill(&in_add("weight_grams"), "120");
    submit_form(&browser, &add);
    browser.wait_for_path(
        &format!("/admin/products/{product}?done=variant_added"),
        WAIT,
    );
    let variants: Vec<String> = browser
        .find_all("article.variant h3")
        .iter()
        .map(|h| browser.text(h))
        .collect();
    assert_eq!(variants.len(), 2, "{variants:?}");
    assert!(
        variants[0].contains("BCS-30") && variants[1].contains("BCS-50"),
        "{variants:?}"
    );

    // Receiving a lot of the first variant only.
    let receive = browser.wait_for("a[href='/admin/lots/new?sku=BCS-30']");
    browser.click(&receive);
    browser.wait_for_path("/admin/lots/new?sku=BCS-30", WAIT);
    browser.fill("#f-batch", "BCS-L1");
    set_value(&browser, "#f-manufactured-on", &date_in(-3));
    set_value(&browser, "#f-expires-on", &date_in(400));
    browser.fill("#f-quantity", "12");
    let submit = browser.wait_for("form[action='/admin/lots/new'] button[type=submit]");
    browser.click(&submit);
    browser.wait_for_path(&format!("/admin/products/{product}?done=received"), WAIT);
    let variants: Vec<String> = browser
        .find_all("article.variant")
        .iter()
        .map(|a| browser.text(a))
        .collect();
    assert_eq!(variants.len(), 2, "{variants:?}");
    assert!(
        variants[0].contains("BCS-L1") && variants[0].contains("12"),
        "{variants:?}"
    );
    assert!(
        variants[1].contains("No lots.") && !variants[1].contains("BCS-L1"),
        "{variants:?}"
    );

    // The shop sells it: the variant with the lot, the other one out of stock.
    shop.app.settle().await;
    let view = browser.wait_for("a[href='/p/browser-calm-serum']");
    browser.click(&view);
    browser.wait_for_path("/p/browser-calm-serum", WAIT);
    assert_eq!(browser.wait_for_text("h1"), NAME);
    let page = browser.wait_for_text("main");
    assert!(
        page.contains("€24.50") && page.contains("30 ml") && page.contains("50 ml"),
        "{page}"
    );
    let sku = browser.wait_for("form.add-to-cart input[name='sku']");
    assert_eq!(
        browser.attribute(&sku, "value").as_deref(),
        Some("BCS-30"),
        "the variant with stock is offered"
    );

    // The lot it received recalled (by its batch and the variant's SKU): the product
    // stops selling at once.
    browser.goto(&shop.url("/admin/recalls/new"));
    browser.fill("#f-batch", "BCS-L1");
    browser.fill("#f-sku", "BCS-30");
    browser.fill("#f-reason", "Supplier notice");
    submit_form(&browser, "/admin/recalls/new");
    let confirm = browser.wait_for("form[action='/admin/recalls/new'] button.danger");
    let lots = browser.wait_for_text("main table");
    assert!(
        lots.contains("BCS-30") && !lots.contains("MAG-60") && lots.contains("12"),
        "the lots it would recall: {lots}"
    );
    assert_eq!(browser.text(&confirm), "Recall batch BCS-L1");
    browser.click(&confirm);
    // A catalog manager may not read the report (it names customers): the list.
    browser.wait_for_path("/admin/recalls", WAIT);
    let recalls = browser.wait_for_text("main table");
    assert!(
        recalls.contains("BCS-L1") && recalls.contains("Supplier notice"),
        "{recalls}"
    );
    shop.app.settle().await;
    // The page is public and cacheable (max-age): a reload revalidates it, as a shopper's
    // reload does.
    browser.goto(&shop.url("/p/browser-calm-serum"));
    browser.refresh();
    assert_eq!(browser.wait_for_text("h1"), NAME);
    let add = browser
        .try_find("form.add-to-cart button[type=submit]")
        .expect("the page");
    assert!(
        add.is_none(),
        "a recalled lot does not sell: {}",
        browser.wait_for_text("main")
    );
    let page = browser.wait_for_text("main");
    assert!(page.contains("Out of stock"), "{page}");
    let product = shop
        .app
        .get("/api/v1/products/browser-calm-serum")
        .await
        .json();
    let sellable: Vec<i64> = product["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            v["availability"]["sellable_quantity"]
                .as_i64()
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(sellable, [0, 0], "{product}");
    // The demo catalog's batch is untouched.
    assert_eq!(shop.lot_quantity().await, 10);
    let mag = shop.app.get("/api/v1/products/mag").await.json();
    assert_eq!(
        mag["variants"][0]["availability"]["sellable_quantity"], 10,
        "{mag}"
    );

    drop(browser);
    shop.stop().await;
}

/// Signs `email` in to the admin from its sign-in page.
fn admin_sign_in(browser: &Browser, shop: &Shop, email: &str) {
    browser.goto(&shop.url("/admin/sign-in"));
    browser.fill("#f-email", email);
    browser.fill("#f-password", PASSWORD);
    let submit = browser.wait_for("form[action='/admin/sign-in'] button[type=submit]");
    browser.click(&submit);
    browser.wait_for_path("/admin", WAIT);
}

/// Submits the form whose action is `action` (its submit button).
fn submit_form(browser: &Browser, action: &str) {
    let button = browser.wait_for(&format!("form[action='{action}'] button[type=submit]"));
    browser.click(&button);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_fulfils_refunds_swaps_a_pricing_plugin_and_recalls_a_batch() {
    let shop = shop().await;
    for (email, role) in [
        ("ops@staff.example", "admin"),
        ("cat@staff.example", "catalog"),
    ] {
        let r = shop
            .app
            .admin_post(
                "/api/v1/admin/staff",
                &json!({"email": email, "name": role, "role": role, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // A shopper's paid order of two MAG-60.
    let shopper = Browser::launch("admin-shopper");
    let email = "ada.admin@example.com";
    register(&shopper, &shop, "Ada", email);
    browse_and_add_to_cart(&shopper, &shop, 2);
    check_out(&shopper, email, GOOD_CARD);
    shopper.wait_for_path("/checkout/confirmation/*", WAIT_FOR_ORDER);
    let number = shopper.wait_for_text("#order-number");

    // Fulfilled with a tracking number (the payment is captured), then part refunded.
    let merchant = Browser::launch("admin-merchant");
    admin_sign_in(&merchant, &shop, "ops@staff.example");
    merchant.goto(&shop.url(&format!("/admin/orders/{number}/fulfil")));
    merchant.fill("#f-carrier", "DHL");
    merchant.fill("#f-tracking-number", "TRK-BROWSER-1");
    submit_form(&merchant, &format!("/admin/orders/{number}/fulfil"));
    merchant.wait_for_path(
        &format!("/admin/orders/{number}?done=fulfilled"),
        WAIT_FOR_ORDER,
    );
    let refund = merchant.wait_for(&format!("a[href='/admin/orders/{number}/refund']"));
    merchant.click(&refund);
    merchant.wait_for_path(&format!("/admin/orders/{number}/refund"), WAIT);
    merchant.fill("#f-amount-minor", "5.00");
    submit_form(&merchant, &format!("/admin/orders/{number}/refund"));
    merchant.wait_for_path(
        &format!("/admin/orders/{number}?done=refunded"),
        WAIT_FOR_ORDER,
    );
    let order = shop
        .app
        .admin_get(&format!("/api/v1/admin/orders/{number}"))
        .await
        .json();
    assert_eq!(
        (
            order["status"].as_str(),
            order["tracking_number"].as_str(),
            order["refunded_minor"].as_i64()
        ),
        (Some("fulfilled"), Some("TRK-BROWSER-1"), Some(500)),
        "{order}"
    );

    // Version 0.1.0 of a pricing plugin serves (10% off from ten units: nothing for two).
    // 0.2.0, uploaded as a package, gives 10% from two units: self-tested, activated,
    // the shopper's cart shows it; rolled back, it is gone.
    let v1 = plugin_upload("tiered-volume", "tiered_volume", |m| m);
    let r = shop.app.admin_post("/api/v1/admin/plugins", &v1).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v2 = plugin_upload("tiered-volume", "tiered_volume", |m| {
        m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
            .replace("default = \"10:5,25:10,50:15\"", "default = \"2:10\"")
    });
    let file = evidence_dir().join("tiered-volume-0.2.0.olpkg");
    std::fs::write(&file, v2.to_string()).expect("package file");
    merchant.goto(&shop.url("/admin/plugins/upload"));
    let input = merchant.wait_for("#f-package");
    merchant.command(
        Method::POST,
        &format!("/element/{}/value", input.0),
        Some(json!({ "text": file.to_string_lossy() })),
    );
    submit_form(&merchant, "/admin/plugins/upload");
    let passed = merchant.wait_for_text("#self-test-passed");
    assert!(
        passed.starts_with("Self-test passed: 4 fixtures"),
        "{passed}"
    );
    submit_form(&merchant, "/admin/plugins/tiered-volume/activate");
    merchant.wait_for_path("/admin/plugins/tiered-volume?done=activated", WAIT);
    shop.app.settle().await;
    browse_and_add_to_cart(&shopper, &shop, 2);
    let cart = shopper.wait_for_text("main");
    assert!(
        cart.contains("Volume discount 10%"),
        "0.2.0 prices the cart: {cart}"
    );
    // Rolling back asks first.
    submit_form(&merchant, "/admin/plugins/tiered-volume/rollback");
    let confirm =
        merchant.wait_for("form[action='/admin/plugins/tiered-volume/rollback'] button.danger");
    merchant.click(&confirm);
    merchant.wait_for_path("/admin/plugins/tiered-volume?done=rolled_back", WAIT);
    shop.app.settle().await;
    shopper.refresh();
    let cart = shopper.wait_for_text("main");
    assert!(
        !cart.contains("Volume discount"),
        "0.1.0 again: nothing for two units: {cart}"
    );

    // The lot's batch recalled: the product stops selling at once.
    merchant.goto(&shop.url("/admin/recalls/new"));
    merchant.fill("#f-batch", "B1");
    merchant.fill("#f-reason", "Label misprint");
    submit_form(&merchant, "/admin/recalls/new");
    let confirm = merchant.wait_for("form[action='/admin/recalls/new'] button.danger");
    merchant.click(&confirm);
    wait_for_path_between(&merchant, "/admin/recalls/", "");
    let report = merchant.wait_for_text("main");
    assert!(
        report.contains(&number) && report.contains(email),
        "the recall report: {report}"
    );
    shop.app.settle().await;
    // The page is public and cacheable (max-age): a reload revalidates it, as a shopper's
    // reload does.
    shopper.goto(&shop.url("/p/mag"));
    shopper.refresh();
    assert_eq!(shopper.wait_for_text("h1"), PRODUCT_NAME);
    let add = shopper
        .try_find("form.add-to-cart button[type=submit]")
        .expect("the page");
    assert!(
        add.is_none(),
        "a recalled batch does not sell: {}",
        shopper.wait_for_text("main")
    );

    // A catalog manager is refused the plugin pages, the list as well as the upload,
    // and the navigation does not offer them.
    let catalog = Browser::launch("admin-catalog");
    admin_sign_in(&catalog, &shop, "cat@staff.example");
    let nav = catalog.wait_for_text("header nav");
    assert!(
        !nav.contains("Plugins"),
        "a catalog manager has no plugins: {nav}"
    );
    for refused in [
        "/admin/plugins",
        "/admin/plugins/tiered-volume",
        "/admin/plugins/upload",
    ] {
        catalog.goto(&shop.url(refused));
        assert_eq!(
            catalog.wait_for_text("h1"),
            "Not open to your role",
            "{refused}"
        );
    }

    drop((shopper, merchant, catalog));
    shop.stop().await;
}
