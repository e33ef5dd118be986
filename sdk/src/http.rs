//! Outbound HTTP through the host (payment-adapter and notification-channel worlds only).
//!
//! The host sends the request only to hosts the manifest declares under
//! `[permissions] http` and the merchant granted; anything else comes back as
//! [`HttpError::Denied`]. Timeouts are the host's.
//!
//! ```
//! use olivine_sdk::http::{self, Request};
//!
//! olivine_sdk::testing::mock_http(|_| Ok(http::Response::new(202)));
//! let request = Request::post("https://hooks.example.com/olivine")
//!     .header("x-olivine-topic", "order.confirmed")
//!     .json(r#"{"ok":true}"#);
//! let response = http::send(&request).unwrap();
//! assert!(response.is_success());
//! ```

pub use crate::common::olivine::plugin::http::{HttpError, Request, Response};

/// Sends a request through the host. Off wasm, [`crate::testing::mock_http`] answers.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    #[cfg(target_arch = "wasm32")]
    return crate::common::olivine::plugin::http::send(request);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::send(request);
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json(self, json: impl Into<String>) -> Request {
        self.header("content-type", "application/json")
            .body(json.into().into_bytes())
    }

    /// The first header with this name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl Response {
    /// A response with a status and nothing else (for tests).
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (for tests).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (for tests).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 4xx.
    pub fn is_client_error(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// 5xx.
    pub fn is_server_error(&self) -> bool {
        (500..600).contains(&self.status)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl HttpError {
    /// Whether trying again later may succeed (timeouts and transport failures).
    pub fn is_transient(&self) -> bool {
        matches!(self, HttpError::Timeout | HttpError::Failed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_headers() {
        let r = Request::post("https://h/x").header("X-A", "1").json("{}");
        assert_eq!(r.method, "POST");
        assert_eq!(r.header_value("x-a"), Some("1"));
        assert_eq!(r.header_value("Content-Type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
        let resp = Response::new(503)
            .with_header("X-Request-Id", "abc")
            .with_body("oops");
        assert!(resp.is_server_error() && !resp.is_success());
        assert_eq!(resp.header("x-request-id"), Some("abc"));
        assert_eq!(resp.text(), "oops");
    }

    #[test]
    fn without_a_mock_requests_are_denied() {
        crate::testing::clear();
        assert!(matches!(
            send(&Request::get("https://h/")),
            Err(HttpError::Denied(_))
        ));
        assert_eq!(crate::testing::sent_requests().len(), 1);
    }
}
