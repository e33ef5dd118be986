//! A browser for the storefront tests: cookies carried from response to request by hand
//! (respecting their paths), form posts with the `Origin` a browser sends, CSRF tokens
//! taken from the pages, and registering and signing in through the forms.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};

use super::{TestApp, TestResponse};

pub const PASSWORD: &str = "correct horse battery";
pub const HOST: &str = "shop.example";
pub const SITE: &str = "https://shop.example";

/// One cookie as a browser keeps it.
#[derive(Clone, Debug)]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    pub path: String,
}

/// The cookies of one browser.
#[derive(Clone, Default)]
pub struct Browser {
    pub cookies: Vec<StoredCookie>,
}

impl Browser {
    /// Takes the response's `Set-Cookie` headers: stores, replaces or (Max-Age=0)
    /// deletes.
    pub fn take(&mut self, r: &TestResponse) {
        for set in set_cookies(r) {
            let mut parts = set.split(';');
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = "/".to_owned();
            let mut removed = false;
            for attr in parts {
                let attr = attr.trim();
                if let Some(p) = attr.strip_prefix("Path=") {
                    path = p.to_owned();
                }
                if attr == "Max-Age=0" {
                    removed = true;
                }
            }
            self.cookies.retain(|c| !(c.name == name && c.path == path));
            if !removed {
                self.cookies.push(StoredCookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    path,
                });
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }

    pub fn set(&mut self, name: &str, value: &str, path: &str) {
        self.cookies.retain(|c| c.name != name);
        self.cookies.push(StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            path: path.to_owned(),
        });
    }

    pub fn has(&self, name: &str) -> bool {
        self.cookies.iter().any(|c| c.name == name)
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.retain(|c| c.name != name);
    }

    /// The `Cookie` header a browser sends to `path`.
    pub fn header_for(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                c.path == "/" || path == c.path || path.starts_with(&format!("{}/", c.path))
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }
}

pub fn set_cookies(r: &TestResponse) -> Vec<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Set-Cookie` header of cookie `name`.
#[track_caller]
pub fn set_cookie(r: &TestResponse, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", set_cookies(r)))
}

pub fn sets_cookie(r: &TestResponse, name: &str) -> bool {
    set_cookies(r)
        .iter()
        .any(|c| c.starts_with(&format!("{name}=")))
}

pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    browser: &Browser,
    form: Option<&[(&str, &str)]>,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(cookie) = browser.header_for(path) {
        builder = builder.header(header::COOKIE, cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match form {
        Some(fields) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let mut encoder = form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                encoder.append_pair(k, v);
            }
            Body::from(encoder.finish())
        }
        None => Body::empty(),
    };
    app.send(builder.body(body).unwrap()).await
}

/// A GET; the browser keeps the cookies it is given.
pub async fn get(app: &TestApp, browser: &mut Browser, path: &str) -> TestResponse {
    let r = send(app, Method::GET, path, browser, None, &[]).await;
    browser.take(&r);
    r
}

/// A form post from a page of the shop (with the `Origin` a browser sends).
pub async fn post_form(
    app: &TestApp,
    browser: &mut Browser,
    path: &str,
    fields: &[(&str, &str)],
) -> TestResponse {
    let r = send(
        app,
        Method::POST,
        path,
        browser,
        Some(fields),
        &[("origin", SITE)],
    )
    .await;
    browser.take(&r);
    r
}

/// The CSRF token in a page's form.
#[track_caller]
pub fn csrf_of(page: &TestResponse) -> String {
    let html = page.text();
    let start = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + r#"name="csrf" value=""#.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

#[track_caller]
pub fn location(r: &TestResponse) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    r.headers[header::LOCATION].to_str().unwrap().to_owned()
}

#[track_caller]
pub fn assert_html(r: &TestResponse, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(r.text().starts_with("<!DOCTYPE html>"));
}

/// Registers through the form; the new customer is signed in.
pub async fn register(app: &TestApp, browser: &mut Browser, email: &str, name: &str) {
    let page = get(app, browser, "/account/register").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let r = post_form(
        app,
        browser,
        "/account/register",
        &[
            ("csrf", &csrf),
            ("name", name),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(location(&r), "/account");
}

/// Signs in through the form, with an optional `next`.
pub async fn sign_in(
    app: &TestApp,
    browser: &mut Browser,
    email: &str,
    password: &str,
    next: Option<&str>,
) -> TestResponse {
    let page = get(app, browser, "/account/sign-in").await;
    let csrf = csrf_of(&page);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("email", email),
        ("password", password),
    ];
    if let Some(next) = next {
        fields.push(("next", next));
    }
    post_form(app, browser, "/account/sign-in", &fields).await
}

/// A browser signed in as a new customer.
pub async fn signed_in(app: &TestApp, email: &str, name: &str) -> Browser {
    let mut browser = Browser::default();
    register(app, &mut browser, email, name).await;
    browser
}
