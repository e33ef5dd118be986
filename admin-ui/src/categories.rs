//! Categories: the tree with each one's products, adding one, changing its name, address,
//! parent and place, deleting one (after a confirmation; one with subcategories is
//! refused). Through `catalog::{create,update,delete}_category`, as the admin API's routes
//! are (audited; the products' pages and search entries follow the change).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::catalog::model::{Category, NewCategory};
use crate::error::{Error, Result};
use crate::staff::Staff;

const SECTION: &str = "/admin/categories";
/// The navigation entry the pages mark.
const NAV: &str = "/admin/products";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(list_page).post(create))
        .route("/admin/categories/{id}", get(edit_page).post(update))
        .route(
            "/admin/categories/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

const NOTICES: &[(&str, &str)] = &[
    ("created", "Category added."),
    ("saved", "Category saved."),
    (
        "deleted",
        "Category deleted; its products stay in the catalog.",
    ),
];

/// The categories in tree order (each parent, then its subcategories), with their depth.
fn tree(categories: &[(Category, i64)]) -> Vec<(&Category, i64, usize)> {
    fn add<'a>(
        parent: Option<&str>,
        depth: usize,
        categories: &'a [(Category, i64)],
        out: &mut Vec<(&'a Category, i64, usize)>,
    ) {
        // The depth bound stops a cycle a database edit could make.
        if depth > 20 {
            return;
        }
        for (category, count) in categories
            .iter()
            .filter(|(c, _)| c.parent.as_deref() == parent)
        {
            out.push((category, *count, depth));
            add(Some(&category.slug), depth + 1, categories, out);
        }
    }
    let mut out = Vec::new();
    add(None, 0, categories, &mut out);
    out
}

/// The form's fields as the domain names them. A position that is not a number is
/// reported with the domain's own checks of the other fields, so all show at once.
fn input_from(form: &Form, errors: &mut FormErrors) -> NewCategory {
    let position = match form.get("position").trim() {
        "" => 0,
        text => text.parse().unwrap_or_else(|_| {
            errors.add("position", "must be a whole number");
            0
        }),
    };
    let parent = form.get("parent").trim();
    if !errors.is_empty() {
        let mut problems = crate::error::Problems::new();
        crate::catalog::model::check_slug(&mut problems, "slug", form.get("slug").trim());
        crate::catalog::model::check_text(&mut problems, "name", form.get("name"), 100);
        if let Err(Error::Validation(fields)) = problems.into_result() {
            errors.fields.extend(fields);
        }
    }
    NewCategory {
        slug: form.get("slug").trim().to_owned(),
        name: form.get("name").to_owned(),
        parent: (!parent.is_empty()).then(|| parent.to_owned()),
        position,
    }
}

fn fields_of(category: &Category) -> Form {
    Form::from_pairs(vec![
        ("slug".to_owned(), category.slug.clone()),
        ("name".to_owned(), category.name.clone()),
        (
            "parent".to_owned(),
            category.parent.clone().unwrap_or_default(),
        ),
        ("position".to_owned(), category.position.to_string()),
    ])
}

/// The fields of a category's form; `editing` leaves itself out of the parents offered.
fn inputs(
    form: &Form,
    categories: &[(Category, i64)],
    editing: Option<i64>,
    errors: &FormErrors,
) -> Markup {
    let labels: Vec<(String, String)> =
        std::iter::once((String::new(), "None (a top category)".to_owned()))
            .chain(
                tree(categories)
                    .into_iter()
                    .filter(|(c, _, _)| Some(c.id) != editing)
                    .map(|(c, _, depth)| {
                        (c.slug.clone(), format!("{}{}", "— ".repeat(depth), c.name))
                    }),
            )
            .collect();
    let options: Vec<(&str, &str)> = labels
        .iter()
        .map(|(v, l)| (v.as_str(), l.as_str()))
        .collect();
    html! {
        (field("Name", "name", Kind::Text, form.get("name"), errors))
        (field_with_hint("Address", "slug", Kind::Text, form.get("slug"),
            Some("Lowercase letters, digits and hyphens: the shop shows the category at /c/<address>."), errors))
        (field("Inside", "parent", Kind::Select(&options), form.get("parent"), errors))
        (field_with_hint("Position", "position", Kind::Number, form.get("position"),
            Some("Lower numbers come first in the shop's menus."), errors))
    }
}

async fn list_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), NOTICES);
    list(
        &state,
        &staff,
        &admin,
        notice,
        &Form::default(),
        &FormErrors::default(),
    )
    .await
}

async fn list(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    notice: Option<&str>,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let categories = match crate::catalog::categories_for_staff(state).await {
        Ok(categories) => categories,
        Err(err) => return layout::error_page(&err, "categories"),
    };
    let may_write = super::may(staff.role, &Method::POST, SECTION);
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } }
        h1 { "Categories" }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        @if categories.is_empty() {
            p.empty { "No category yet." }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Address" } th { "Position" } th { "Products" } } }
                tbody {
                    @for (category, count, depth) in tree(&categories) {
                        tr id={ "category-" (category.id) } {
                            td { (("— ").repeat(depth))
                                @if may_write { a href={ (SECTION) "/" (category.id) } { (category.name) } }
                                @else { (category.name) } }
                            td { code { (category.slug) } }
                            td { (category.position) }
                            td { a href={ "/admin/products?category=" (category.slug) } { (count) } }
                        }
                    }
                }
            }
        }
        @if may_write {
            section {
                h2 { "Add a category" }
                (form_alert(errors))
                form method="post" action=(SECTION) novalidate {
                    (admin.csrf_input())
                    (inputs(form, &categories, None, errors))
                    button.button.primary type="submit" { "Add the category" }
                }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Categories",
        NAV,
        body,
    )
}

async fn create(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let mut errors = FormErrors::default();
    let input = input_from(&form, &mut errors);
    let created = async {
        if !errors.is_empty() {
            return Err(Error::Validation(errors.fields.clone()));
        }
        crate::catalog::create_category(&state, &staff.actor, &input).await
    };
    match created.await {
        Ok(_) => layout::see_other(&format!("{SECTION}?done=created")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => list(&state, &staff, &admin, None, &form, &errors).await,
            None => layout::error_page(&err, "category"),
        },
    }
}

async fn category(state: &AppState, id: i64) -> Result<Category> {
    let mut conn = state.db.pool.acquire().await?;
    crate::catalog::repo::category_by_id(&mut conn, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("category {id}")))
}

async fn edit_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    match category(&state, id).await {
        Ok(found) => {
            edit(
                &state,
                &staff,
                &admin,
                &found,
                &fields_of(&found),
                &FormErrors::default(),
            )
            .await
        }
        Err(err) => layout::error_page(&err, "category"),
    }
}

async fn edit(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    category: &Category,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let categories = match crate::catalog::categories_for_staff(state).await {
        Ok(categories) => categories,
        Err(err) => return layout::error_page(&err, "categories"),
    };
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } " › " a href=(SECTION) { "Categories" } }
        div.title-row {
            h1 { (category.name) }
            a.button href={ "/c/" (category.slug) } { "View in the shop" }
        }
        (form_alert(errors))
        form method="post" action={ (SECTION) "/" (category.id) } novalidate {
            (admin.csrf_input())
            (inputs(form, &categories, Some(category.id), errors))
            div.actions {
                button.button.primary type="submit" { "Save the category" }
                a.button.danger href={ (SECTION) "/" (category.id) "/delete" } { "Delete…" }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        &category.name,
        NAV,
        body,
    )
}

async fn update(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let mut errors = FormErrors::default();
    let input = input_from(&form, &mut errors);
    let updated = async {
        if !errors.is_empty() {
            return Err(Error::Validation(errors.fields.clone()));
        }
        crate::catalog::update_category(&state, &staff.actor, id, &input).await
    };
    match updated.await {
        Ok(_) => layout::see_other(&format!("{SECTION}?done=saved")),
        Err(err) => match (FormErrors::from_error(&err), category(&state, id).await) {
            (Some(errors), Ok(found)) => edit(&state, &staff, &admin, &found, &form, &errors).await,
            _ => layout::error_page(&err, "category"),
        },
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    let loaded = async {
        let found = category(&state, id).await?;
        let count = crate::catalog::categories_for_staff(&state)
            .await?
            .iter()
            .find(|(c, _)| c.id == id)
            .map_or(0, |(_, count)| *count);
        Ok::<_, Error>((found, count))
    };
    let (found, count) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "category"),
    };
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } " › " a href=(SECTION) { "Categories" } }
        h1 { "Delete " (found.name) "?" }
        p { "Its " (count) " product(s) stay in the catalog, outside this category. The shop's "
            code { "/c/" (found.slug) } " address stops working. This cannot be undone." }
        form method="post" action={ (SECTION) "/" (found.id) "/delete" } {
            (admin.csrf_input())
            div.actions {
                button.button.danger type="submit" { "Delete the category" }
                a.button href={ (SECTION) "/" (found.id) } { "Keep it" }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Delete a category", NAV, body)
}

async fn delete(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    match crate::catalog::delete_category(&state, &staff.actor, id).await {
        Ok(()) => layout::see_other(&format!("{SECTION}?done=deleted")),
        // Subcategories: said on the category's page.
        Err(err @ Error::Conflict { .. }) => {
            match (FormErrors::from_error(&err), category(&state, id).await) {
                (Some(errors), Ok(found)) => {
                    edit(&state, &staff, &admin, &found, &fields_of(&found), &errors).await
                }
                _ => layout::error_page(&err, "category"),
            }
        }
        Err(err) => layout::error_page(&err, "category"),
    }
}
