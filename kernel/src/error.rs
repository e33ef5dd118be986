//! The one error type of the HTTP layer. Every failure a client can see maps to a status
//! code and a JSON body that names the problem (and the field, where there is one).
//! Internal failures are logged with their context and answered with a generic 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field. `field` is a path into the request body such as
/// `variants[0].price_minor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `validation_failed`, `not_found`, `conflict`.
    pub error: &'static str,
    /// A human-readable sentence.
    pub message: String,
    /// The fields at fault, when the problem is with the input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// With `total_changed`: what the order costs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<Box<crate::orders::totals::CheckoutQuote>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON at all, or not the shape expected (400).
    #[error("{message}")]
    BadRequest {
        message: String,
        fields: Vec<FieldError>,
    },
    /// Well-formed input that breaks a rule (422).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state, e.g. a duplicate SKU (409).
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    #[error("authentication required")]
    Unauthorized,
    /// The payment processor declined; the reason is for the shopper (402). `hard`: the
    /// method will never work again (lost, stolen, closed card), so nothing retries it.
    #[error("{reason}")]
    PaymentDeclined { reason: String, hard: bool },
    /// Authenticated, but the role lacks the permission (403).
    #[error("{0}")]
    Forbidden(String),
    /// Refused with a code of its own that the client acts on (403), e.g.
    /// `mfa_setup_required`: the store requires two-factor sign-in the staff member has
    /// not set up.
    #[error("{message}")]
    ForbiddenBecause { code: &'static str, message: String },
    /// One credential of several that does not check out (401), naming the field: a
    /// second-factor code, a sign-in challenge, the password when turning a factor off.
    #[error("{message}")]
    BadCredential {
        field: &'static str,
        message: &'static str,
    },
    /// Credentials or a refresh token that do not check out (401). The message is the
    /// same whichever part was wrong, so it reveals nothing (e.g. whether an email has
    /// an account).
    #[error("{0}")]
    InvalidCredentials(&'static str),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// An uploaded file (a part of a multipart body, named by `field`) over its limit (413).
    #[error("{field}: {message}")]
    MediaTooLarge { field: String, message: String },
    /// An uploaded file of a type the route does not take, or not the type its part
    /// declares (415).
    #[error("{field}: {message}")]
    UnsupportedFile { field: String, message: String },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A checkout whose total is not the one the client showed: nothing was placed or
    /// charged (409, with the new quote).
    #[error("the total changed")]
    TotalChanged(Box<crate::orders::totals::CheckoutQuote>),
    /// A client passed its rate limit (429, with `Retry-After`).
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } | Error::TotalChanged(_) => StatusCode::CONFLICT,
            Error::Unauthorized | Error::InvalidCredentials(_) | Error::BadCredential { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Error::Forbidden(_) | Error::ForbiddenBecause { .. } => StatusCode::FORBIDDEN,
            Error::PaymentDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) | Error::UnsupportedFile { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Error::MediaTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (code, message, fields) = match self {
            Error::BadRequest { message, fields } => {
                ("bad_request", message.clone(), fields.clone())
            }
            Error::Validation(fields) => {
                let message = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                ("validation_failed", message, fields.clone())
            }
            Error::NotFound(what) => ("not_found", format!("{what} not found"), vec![]),
            Error::Conflict { message, field } => (
                "conflict",
                message.clone(),
                field
                    .iter()
                    .map(|f| FieldError::new(f.clone(), message.clone()))
                    .collect(),
            ),
            Error::Unauthorized => (
                "unauthorized",
                "a valid bearer token is required".to_owned(),
                vec![],
            ),
            Error::Forbidden(why) => ("forbidden", why.clone(), vec![]),
            Error::ForbiddenBecause { code, message } => (*code, message.clone(), vec![]),
            Error::BadCredential { field, message } => (
                "invalid_credentials",
                (*message).to_owned(),
                vec![FieldError::new(*field, *message)],
            ),
            Error::PaymentDeclined { reason, .. } => ("payment_declined", reason.clone(), vec![]),
            Error::InvalidCredentials(message) => {
                ("invalid_credentials", (*message).to_owned(), vec![])
            }
            Error::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("the request body exceeds the limit of {limit} bytes"),
                vec![FieldError::new(
                    "body",
                    format!("larger than {limit} bytes"),
                )],
            ),
            Error::UnsupportedMediaType(got) => (
                "unsupported_media_type",
                format!("expected Content-Type: application/json, got {got}"),
                vec![],
            ),
            Error::MediaTooLarge { field, message } => (
                "payload_too_large",
                format!("{field}: {message}"),
                vec![FieldError::new(field.clone(), message.clone())],
            ),
            Error::UnsupportedFile { field, message } => (
                "unsupported_media_type",
                format!("{field}: {message}"),
                vec![FieldError::new(field.clone(), message.clone())],
            ),
            Error::Unavailable(why) => ("unavailable", why.clone(), vec![]),
            Error::TotalChanged(quote) => {
                let total = crate::catalog::model::Money {
                    amount_minor: quote.total_minor,
                    currency: quote.currency.clone(),
                };
                let message = format!(
                    "the order now costs {}, not the total shown: review it and check out again",
                    total.display()
                );
                (
                    "total_changed",
                    message.clone(),
                    vec![FieldError::new("expected_total_minor", message)],
                )
            }
            Error::TooManyRequests { retry_after_secs } => (
                "too_many_requests",
                format!("too many requests: try again in {retry_after_secs} s"),
                vec![],
            ),
            // Never leak internals to the client; the log has the detail.
            Error::Internal(_) => ("internal", "internal server error".to_owned(), vec![]),
        };
        ErrorBody {
            error: code,
            message,
            fields,
            quote: match self {
                Error::TotalChanged(quote) => Some(quote.clone()),
                _ => None,
            },
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(err))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(err) = &self {
            tracing::error!(error = ?err, "internal error while handling request");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Error::TooManyRequests { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Collects field errors while validating a whole input, so a client learns about every
/// problem at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn check(&mut self, ok: bool, field: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}
