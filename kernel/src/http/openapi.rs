//! Completes the OpenAPI document the routes declare: every operation documents every
//! status it can answer, with the one error schema, and every answer has a description.
//! The statuses come from what the layers in front of every handler do, so a new route
//! cannot forget them:
//!
//! - every `/api/` operation may be rate limited: 429;
//! - one that takes a token (staff or customer, required or optional) may answer 401;
//!   a staff route, 403 for a role without the permission;
//! - path or query parameters: 400 (unreadable) and 422 (a rule broken); path
//!   parameters name something: 404;
//! - a request body: 400 (not JSON), 413 (too large), 415 (not JSON's content type),
//!   422.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

/// What a status means, for answers that say nothing of their own.
fn description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "Done; no content",
        "400" => {
            "The request cannot be read: not JSON, or a parameter of the wrong type (the error names it)"
        }
        "401" => "No valid bearer token",
        "402" => "The payment was declined (the message is for the shopper)",
        "403" => {
            "The token's role lacks the permission this needs (`forbidden`), or the store requires two-factor sign-in this session lacks (`mfa_setup_required`, `mfa_required`)"
        }
        "404" => "Not found",
        "409" => "Conflicts with the current state (the error says how)",
        "413" => "The request body is larger than the limit",
        "415" => "The body's Content-Type is not application/json",
        "422" => "A rule is broken: each field at fault is named",
        "429" => "Too many requests from this client: retry after the Retry-After header's seconds",
        "503" => "A service this needs cannot answer now; retry later",
        _ => "See the body",
    }
}

fn error_response(status: &str) -> Response {
    ResponseBuilder::new()
        .description(description(status))
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
        )
        .build()
}

/// Adds every status the layers can answer, and descriptions where there are none.
pub fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            complete_operation(path, operation);
        }
    }
}

fn complete_operation(path: &str, operation: &mut Operation) {
    let mut statuses: Vec<&str> = Vec::new();
    if path.starts_with("/api/") {
        statuses.push("429");
    }
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .flat_map(|requirement| {
            serde_json::to_value(requirement)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default()
        })
        .collect();
    if !schemes.is_empty() {
        statuses.push("401");
    }
    if schemes.iter().any(|s| s == "staff_token") {
        statuses.push("403");
    }
    let parameters = operation.parameters.iter().flatten();
    let (mut in_path, mut in_query) = (false, false);
    for parameter in parameters {
        if let RefOr::T(parameter) = parameter {
            match parameter.parameter_in {
                ParameterIn::Path => in_path = true,
                ParameterIn::Query => in_query = true,
                _ => {}
            }
        }
    }
    if in_path || in_query {
        statuses.extend(["400", "422"]);
    }
    if in_path {
        statuses.push("404");
    }
    if operation.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    let responses = &mut operation.responses.responses;
    for status in statuses {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(error_response(status)));
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            response.description = description(status).to_owned();
        }
    }
}
