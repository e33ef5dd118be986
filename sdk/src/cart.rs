//! Helpers on the generated records: carts, lines, products, customers, adjustments.

use std::collections::BTreeMap;
use std::fmt;

use crate::money::MoneyError;
use crate::types::{
    Adjustment, Cart, CartLine, CustomerRef, FieldError, Money, PointsEntry, ProductRef,
    ProductType,
};

impl CartLine {
    /// `unit_price_minor * quantity`, checked.
    pub fn total_minor(&self) -> Result<i64, MoneyError> {
        self.unit_price_minor
            .checked_mul(i64::from(self.quantity))
            .ok_or(MoneyError::Overflow)
    }

    /// `unit_price_minor * units` for part of the line's quantity, checked.
    pub fn price_of_units(&self, units: u32) -> Result<i64, MoneyError> {
        self.unit_price_minor
            .checked_mul(i64::from(units))
            .ok_or(MoneyError::Overflow)
    }
}

impl Cart {
    /// The product a line points at (`None` only if the host sent a bad index).
    pub fn product_of(&self, line: &CartLine) -> Option<&ProductRef> {
        self.products.get(line.product_index as usize)
    }

    /// The line with this id.
    pub fn line(&self, line_id: u32) -> Option<&CartLine> {
        self.lines.iter().find(|l| l.line_id == line_id)
    }

    /// Each line with its product.
    pub fn lines_with_products(&self) -> impl Iterator<Item = (&CartLine, Option<&ProductRef>)> {
        self.lines.iter().map(|l| (l, self.product_of(l)))
    }

    /// An amount in the cart's currency.
    pub fn money(&self, amount_minor: i64) -> Money {
        Money::new(amount_minor, self.currency.clone())
    }

    /// A line's total (`unit price * quantity`) in the cart's currency.
    pub fn line_total(&self, line: &CartLine) -> Result<Money, MoneyError> {
        Ok(self.money(line.total_minor()?))
    }

    /// Sum of all line totals, before adjustments, in minor units.
    pub fn subtotal_minor(&self) -> Result<i64, MoneyError> {
        self.lines.iter().try_fold(0_i64, |sum, line| {
            sum.checked_add(line.total_minor()?)
                .ok_or(MoneyError::Overflow)
        })
    }

    /// Sum of all line totals, before adjustments.
    pub fn subtotal(&self) -> Result<Money, MoneyError> {
        Ok(self.money(self.subtotal_minor()?))
    }

    /// Units in the whole cart (sum of quantities).
    pub fn total_units(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity)).sum()
    }

    /// Units of one product (by index into `products`), over all its lines and variants.
    pub fn quantity_of_product(&self, product_index: u32) -> u64 {
        self.lines
            .iter()
            .filter(|l| l.product_index == product_index)
            .map(|l| u64::from(l.quantity))
            .sum()
    }

    /// Units of the product with this slug, over all its lines and variants.
    pub fn quantity_of_slug(&self, slug: &str) -> u64 {
        self.lines
            .iter()
            .filter(|l| self.product_of(l).is_some_and(|p| p.slug == slug))
            .map(|l| u64::from(l.quantity))
            .sum()
    }

    /// Units per product index, in index order.
    pub fn quantities_by_product(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for line in &self.lines {
            *out.entry(line.product_index).or_insert(0) += u64::from(line.quantity);
        }
        out
    }

    /// Lines of one product (by index into `products`), in cart order.
    pub fn lines_of_product(&self, product_index: u32) -> impl Iterator<Item = &CartLine> {
        self.lines
            .iter()
            .filter(move |l| l.product_index == product_index)
    }

    /// Index into `products` of the product with this slug.
    pub fn product_index_of(&self, slug: &str) -> Option<u32> {
        self.products
            .iter()
            .position(|p| p.slug == slug)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Whether the (known) customer is in `segment`.
    pub fn customer_in_segment(&self, segment: &str) -> bool {
        self.customer
            .as_ref()
            .is_some_and(|c| c.in_segment(segment))
    }
}

impl ProductRef {
    /// Whether the product carries this tag.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether the product is in this category (by slug).
    pub fn in_category(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == category)
    }
}

impl CustomerRef {
    /// Whether the customer is in `segment`.
    pub fn in_segment(&self, segment: &str) -> bool {
        self.segments.iter().any(|s| s == segment)
    }
}

impl Adjustment {
    /// An adjustment of one line (total for the line, not per unit).
    pub fn line(line_id: u32, amount_minor: i64, reason: impl Into<String>) -> Adjustment {
        Adjustment {
            line_id: Some(line_id),
            amount_minor,
            reason: reason.into(),
        }
    }

    /// An adjustment of the whole cart.
    pub fn cart(amount_minor: i64, reason: impl Into<String>) -> Adjustment {
        Adjustment {
            line_id: None,
            amount_minor,
            reason: reason.into(),
        }
    }
}

impl ProductType {
    /// Every product type.
    pub const ALL: [ProductType; 3] = [
        ProductType::Supplement,
        ProductType::Skincare,
        ProductType::Bundle,
    ];

    /// The WIT (and kernel) name: `supplement`, `skincare`, `bundle`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductType::Supplement => "supplement",
            ProductType::Skincare => "skincare",
            ProductType::Bundle => "bundle",
        }
    }

    /// Parses a WIT name.
    pub fn parse(text: &str) -> Option<ProductType> {
        ProductType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for ProductType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FieldError {
    /// A problem with `field` (e.g. `attributes.volume_ml`).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl PointsEntry {
    /// A ledger entry.
    pub fn new(points: i64, reason: impl Into<String>) -> PointsEntry {
        PointsEntry {
            points,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart() -> Cart {
        let product = |id: u64, slug: &str| ProductRef {
            id,
            slug: slug.into(),
            product_type: ProductType::Supplement,
            tags: vec!["vegan".into()],
            categories: vec!["minerals".into()],
        };
        let line = |line_id, product_index, quantity, unit_price_minor| CartLine {
            line_id,
            product_index,
            variant_id: u64::from(line_id),
            quantity,
            unit_price_minor,
            subscription: false,
        };
        Cart {
            currency: "EUR".into(),
            lines: vec![line(1, 0, 2, 1999), line(2, 1, 1, 500), line(3, 0, 1, 2999)],
            products: vec![product(8, "magnesium-glycinate"), product(9, "zinc")],
            customer: Some(CustomerRef {
                pseudonym: "c-1".into(),
                segments: vec!["first-order".into()],
            }),
        }
    }

    #[test]
    fn cart_helpers() {
        let cart = cart();
        assert_eq!(cart.lines[0].total_minor(), Ok(3998));
        assert_eq!(cart.subtotal(), Ok(Money::new(3998 + 500 + 2999, "EUR")));
        assert_eq!(cart.total_units(), 4);
        assert_eq!(cart.quantity_of_product(0), 3);
        assert_eq!(cart.quantity_of_slug("zinc"), 1);
        assert_eq!(cart.quantity_of_slug("nope"), 0);
        assert_eq!(cart.product_index_of("zinc"), Some(1));
        assert_eq!(cart.lines_of_product(0).count(), 2);
        assert_eq!(
            cart.quantities_by_product(),
            BTreeMap::from([(0, 3), (1, 1)])
        );
        assert_eq!(cart.product_of(&cart.lines[1]).unwrap().slug, "zinc");
        assert!(cart.product_of(&cart.lines[1]).unwrap().has_tag("vegan"));
        assert!(cart.customer_in_segment("first-order"));
        assert!(!cart.customer_in_segment("vip"));
        assert_eq!(cart.line(3).unwrap().unit_price_minor, 2999);
    }

    #[test]
    fn line_total_overflow_is_an_error() {
        let mut cart = cart();
        cart.lines[0].unit_price_minor = i64::MAX;
        assert_eq!(cart.lines[0].total_minor(), Err(MoneyError::Overflow));
        assert_eq!(cart.subtotal_minor(), Err(MoneyError::Overflow));
    }

    #[test]
    fn product_type_names() {
        for t in ProductType::ALL {
            assert_eq!(ProductType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ProductType::parse("coffee"), None);
    }
}
