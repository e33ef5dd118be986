//! Helpers on the 0.2 loyalty records.

use crate::loyalty_types::{CustomerHistory, LoyaltyEvent, OrderLine};
use crate::time::Timestamp;
use crate::types::{CustomerRef, Money};

/// What the kernel's fixtures runner assumes for an event without a time.
pub(crate) const EPOCH: &str = "1970-01-01T00:00:00Z";

impl LoyaltyEvent {
    /// An event of `kind` for the customer with `pseudonym`, with nothing else known: no
    /// amount, count, lines or product, a zero history and the start of the epoch as its
    /// time. For tests; fill in the rest with struct update syntax:
    ///
    /// ```
    /// use olivine_sdk::prelude::*;
    ///
    /// let paid = LoyaltyEvent {
    ///     amount: Some(Money::new(4999, "EUR")),
    ///     occurred_at: "2026-12-02T09:30:00.000Z".into(),
    ///     ..LoyaltyEvent::new("order.paid", "c-1", "event:1")
    /// };
    /// assert_eq!(paid.history.spend_12_months.amount_minor, 0);
    /// ```
    pub fn new(
        kind: impl Into<String>,
        pseudonym: impl Into<String>,
        event_id: impl Into<String>,
    ) -> LoyaltyEvent {
        LoyaltyEvent {
            kind: kind.into(),
            customer: CustomerRef {
                pseudonym: pseudonym.into(),
                segments: Vec::new(),
            },
            amount: None,
            count: None,
            event_id: event_id.into(),
            occurred_at: EPOCH.to_owned(),
            lines: Vec::new(),
            history: CustomerHistory {
                spend_12_months: Money::zero(""),
                orders_12_months: 0,
                customer_since: EPOCH.to_owned(),
            },
            product_slug: None,
        }
    }

    /// When the event happened (the kernel's clock), parsed: an error names the event.
    pub fn occurred_at(&self) -> Result<Timestamp, String> {
        Timestamp::parse(&self.occurred_at)
            .map_err(|err| format!("event {}: occurred_at: {err}", self.event_id))
    }

    /// The order's lines whose product is in the category with this slug.
    pub fn lines_in_category<'a>(
        &'a self,
        category: &'a str,
    ) -> impl Iterator<Item = &'a OrderLine> + 'a {
        self.lines.iter().filter(move |l| l.in_category(category))
    }
}

impl OrderLine {
    /// Whether the line's product is in the category with this slug.
    pub fn in_category(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == category)
    }
}
