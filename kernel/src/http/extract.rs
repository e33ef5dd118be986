//! Extractors that turn bad input into the one JSON error shape, naming the field:
//! bodies (JSON), path segments and query strings.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::{Error, FieldError};

/// Splits a serde error into the field it concerns and a message without the position
/// suffix. `missing field` and `unknown field` errors name the field itself.
pub fn field_and_message(path: &str, message: &str) -> (String, String) {
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let parent = if path == "." || path.is_empty() {
        ""
    } else {
        path
    };
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.find('`')
        {
            let name = &rest[..end];
            // For unknown fields the path already ends at the field itself.
            let field = if parent == name || parent.ends_with(&format!(".{name}")) {
                parent.to_owned()
            } else if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            };
            let text = if prefix.starts_with("missing") {
                "is required".to_owned()
            } else {
                format!("is not a known field{}", &rest[end + 1..])
            };
            return (field, text);
        }
    }
    let field = if parent.is_empty() { "body" } else { parent };
    (field.to_owned(), message.to_owned())
}

/// Deserialises JSON, naming the field at fault: a syntax error is a 400, a value of the
/// wrong type or shape is a 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // PostgreSQL cannot store a NUL character in text, and no field means one: refuse it
    // here, once for every body, naming the field (JSON can only spell it `\u0000`).
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let mut fields = Vec::new();
        nul_fields(&value, String::new(), &mut fields);
        if !fields.is_empty() {
            return Err(Error::Validation(
                fields
                    .into_iter()
                    .map(|f| FieldError::new(f, "must not contain a NUL character"))
                    .collect(),
            ));
        }
    }
    // No field of any request may carry a card number (see `card_numbers`).
    if super::card_numbers::might_contain_card_number(bytes)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let mut fields = Vec::new();
        super::card_numbers::json_fields(&value, String::new(), &mut fields);
        if !fields.is_empty() {
            return Err(Error::Validation(
                fields
                    .into_iter()
                    .map(|f| FieldError::new(f, super::card_numbers::MESSAGE))
                    .collect(),
            ));
        }
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::BadRequest {
                message: format!("malformed JSON: {inner}"),
                fields: vec![FieldError::new("body", inner.to_string())],
            }
        } else {
            let (field, message) = field_and_message(&path, &inner.to_string());
            Error::Validation(vec![FieldError::new(field, message)])
        }
    })
}

/// Collects the paths (as `a.b[0].c`) of every string, or object key, holding a NUL
/// character, so the answer names every field at fault at once.
fn nul_fields(value: &serde_json::Value, path: String, found: &mut Vec<String>) {
    use serde_json::Value;
    let name = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => found.push(name(&path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_fields(item, format!("{path}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    found.push(name(&path));
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                nul_fields(item, child, found);
            }
        }
        _ => {}
    }
}

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !(essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")) {
            return Err(Error::UnsupportedMediaType(if content_type.is_empty() {
                "nothing".to_owned()
            } else {
                content_type
            }));
        }
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge { limit }
            } else {
                Error::BadRequest {
                    message: format!("could not read the body: {rejection}"),
                    fields: vec![FieldError::new("body", rejection.body_text())],
                }
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A path parameter; a bad one is a 400 naming it.
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|rejection| Error::BadRequest {
                message: format!("invalid path: {}", rejection.body_text()),
                fields: vec![FieldError::new("path", rejection.body_text())],
            })
    }
}

/// A query string; a bad parameter is a 422 naming it.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        if let Some((key, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        {
            return Err(Error::invalid(
                key.replace('\0', ""),
                "must not contain a NUL character",
            ));
        }
        let carded: Vec<FieldError> = form_urlencoded::parse(query.as_bytes())
            .filter(|(key, value)| {
                super::card_numbers::contains_card_number(key)
                    || super::card_numbers::contains_card_number(value)
            })
            .map(|(key, _)| FieldError::new(key.into_owned(), super::card_numbers::MESSAGE))
            .collect();
        if !carded.is_empty() {
            return Err(Error::Validation(carded));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|err| {
                let path = err.path().to_string();
                let (field, message) = field_and_message(&path, &err.into_inner().to_string());
                Error::Validation(vec![FieldError::new(field, message)])
            })
    }
}

/// A customer signed in with `Authorization: Bearer <access token>`; anything else is a
/// 401 (see [`crate::accounts::authenticate`] for what is checked).
pub struct CustomerAuth(pub crate::accounts::Authenticated);

impl FromRequestParts<AppState> for CustomerAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Error::Unauthorized)?;
        crate::accounts::authenticate(state, token)
            .await
            .map(CustomerAuth)
    }
}

/// The staff user the admin middleware authenticated (every admin handler may take it,
/// to name the actor in the audit log).
pub struct StaffAuth(pub crate::staff::Staff);

impl<S: Send + Sync> FromRequestParts<S> for StaffAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<crate::staff::Staff>()
            .cloned()
            .map(StaffAuth)
            .ok_or(Error::Unauthorized)
    }
}

/// A customer when the request carries a bearer token (which must then be valid: a bad
/// one is a 401, not a guest), or a guest when it carries none.
pub struct MaybeCustomer(pub Option<crate::accounts::Authenticated>);

impl FromRequestParts<AppState> for MaybeCustomer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(MaybeCustomer(None));
        }
        CustomerAuth::from_request_parts(parts, state)
            .await
            .map(|CustomerAuth(auth)| MaybeCustomer(Some(auth)))
    }
}
