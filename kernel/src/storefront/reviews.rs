//! Reviews in the storefront: the form to review a product the customer bought
//! (`/p/{slug}/review`), and the customer's reviews with their moderation state
//! (`/account/reviews`). Both call [`crate::reviews`], the API's own code; the product
//! page shows the published ones (from the cached product).

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use super::account::{
    Form, FormErrors, account_page_response, form_alert, labelled_input, sentence, server_error,
    status_of,
};
use crate::app::AppState;
use crate::error::Error;
use crate::http::session::{Customer, Session, see_other};
use crate::reviews::{self, NewReview};

const MY_REVIEWS: &str = "/account/reviews";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/p/{slug}/review", get(review_page).post(review_submit))
        .route(MY_REVIEWS, get(my_reviews_page))
}

/// `★★★★☆` for 4.
pub(super) fn stars(rating: i64) -> String {
    let full = usize::try_from(rating.clamp(0, 5)).unwrap_or(0);
    format!("{}{}", "★".repeat(full), "☆".repeat(5 - full))
}

async fn review_page(
    State(state): State<AppState>,
    Customer(_customer): Customer,
    session: Session,
    slug: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return super::catalog::not_found_page().into_response();
    };
    review_form(
        &state,
        &session,
        &slug,
        &Form::parse(b""),
        &FormErrors::default(),
    )
    .await
}

async fn review_form(
    state: &AppState,
    session: &Session,
    slug: &str,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let product = match crate::catalog::cached_product(state, slug).await {
        Ok(Some(cached)) => cached,
        Ok(None) => return super::catalog::not_found_page().into_response(),
        Err(err) => return server_error(&err, "review"),
    };
    let value = |name: &str| Some(form.get(name)).filter(|v| !v.is_empty());
    let chosen = form.get("rating");
    let body = html! {
        header.page-head {
            p { a href={ "/p/" (slug) } { (product.product.name) } }
            h1 { "Review " (product.product.name) }
        }
        section.panel {
            form #review-form method="post" action={ "/p/" (slug) "/review" } {
                (session.csrf_input())
                (form_alert(errors))
                fieldset.field {
                    legend { "Rating" }
                    @for rating in (1..=5).rev() {
                        label.choice {
                            input type="radio" name="rating" value=(rating) required
                                checked[chosen == rating.to_string()];
                            " " (stars(rating))
                        }
                    }
                    @if let Some(message) = errors.field("rating") {
                        p.field-error { (sentence(message)) }
                    }
                }
                (labelled_input("Title", "title", "text", value("title"), "off", true, errors))
                div.field {
                    label for="f-body" { "Your review" }
                    textarea #f-body name="body" rows="6" maxlength="5000" required
                        aria-invalid=[errors.field("body").map(|_| "true")] { (form.get("body")) }
                    @if let Some(message) = errors.field("body") {
                        p.field-error { (sentence(message)) }
                    }
                }
                (labelled_input("Shown as (leave empty for your first name and initial)", "author_name", "text", value("author_name"), "nickname", false, errors))
                p.muted { "Reviews are read by our team before they are published. Please leave out email addresses and other personal details." }
                p { button.button.primary type="submit" { "Send review" } }
            }
        }
    };
    account_page_response(state, status_of(errors), "Write a review", body).await
}

async fn review_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    slug: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return super::catalog::not_found_page().into_response();
    };
    let form = Form::parse(&body);
    let Ok(rating) = form.get("rating").trim().parse::<i64>() else {
        let errors = FormErrors {
            fields: vec![crate::error::FieldError::new(
                "rating",
                "choose 1 to 5 stars",
            )],
            form: None,
        };
        return review_form(&state, &session, &slug, &form, &errors).await;
    };
    let author = form.get("author_name").trim();
    let input = NewReview {
        rating,
        title: form.get("title").to_owned(),
        body: form.get("body").to_owned(),
        author_name: (!author.is_empty()).then(|| author.to_owned()),
    };
    match reviews::submit(&state, customer.customer_id, &slug, input).await {
        Ok(_) => see_other(&format!("{MY_REVIEWS}?sent=1")),
        Err(Error::Conflict {
            message,
            field: None,
        }) => {
            let errors = FormErrors {
                fields: Vec::new(),
                form: Some(sentence(&message)),
            };
            review_form(&state, &session, &slug, &form, &errors).await
        }
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => review_form(&state, &session, &slug, &form, &errors).await,
            None => server_error(&err, "review"),
        },
    }
}

async fn my_reviews_page(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let mine = match reviews::list_for_customer(&state, customer.customer_id).await {
        Ok(mine) => mine,
        Err(err) => return server_error(&err, "reviews"),
    };
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Reviews" }
        }
        @if mine.is_empty() {
            section.message { p { "You have not reviewed anything yet. Products you bought can be reviewed from their page." } }
        } @else {
            @for review in &mine {
                (review_card(review))
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Reviews", body).await
}

fn review_card(review: &reviews::Review) -> Markup {
    let state = match review.status.as_str() {
        "published" => "published",
        "rejected" => "not published",
        _ => "waiting to be read by our team",
    };
    html! {
        article.panel.review data-status=(review.status) {
            h2 { a href={ "/p/" (review.product_slug) } { (review.title) } }
            p { span.stars aria-label={ (review.rating) " out of 5" } { (stars(review.rating)) } " · " (state) }
            @if let Some(reason) = &review.reject_reason { p.muted { "Why: " (reason) } }
            p { (review.body) }
        }
    }
}
