//! Guest-side SDK for Olivine WebAssembly plugins (`olivine:plugin@0.1.0`, see
//! `wit/olivine-plugin.wit`, and the payment-adapter and loyalty-rule worlds' `@0.2.0`,
//! `wit/v0.2`).
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements one of five
//! small traits and exports it with the matching macro:
//!
//! | world                  | trait                   | macro                              |
//! |------------------------|-------------------------|------------------------------------|
//! | `pricing-rule`         | [`PricingRule`]         | [`export_pricing_rule!`]           |
//! | `variant-taxonomy`     | [`VariantTaxonomy`]     | [`export_variant_taxonomy!`]       |
//! | `loyalty-rule`         | [`LoyaltyRule`]         | [`export_loyalty_rule!`]           |
//! | `loyalty-rule` 0.1     | [`LoyaltyRuleV0_1`]     | [`export_loyalty_rule_v0_1!`]      |
//! | `payment-adapter`      | [`PaymentAdapter`]      | [`export_payment_adapter!`]        |
//! | `payment-adapter` 0.1  | [`PaymentAdapterV0_1`]  | [`export_payment_adapter_v0_1!`]   |
//! | `notification-channel` | [`NotificationChannel`] | [`export_notification_channel!`]   |
//!
//! ```ignore
//! use olivine_sdk::prelude::*;
//!
//! struct TenOff;
//!
//! impl PricingRule for TenOff {
//!     fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
//!         let mut out = Vec::new();
//!         for line in &cart.lines {
//!             let amount = money::percent_discount(line.total_minor()?, 10)?;
//!             out.push(Adjustment::line(line.line_id, amount, "10% off"));
//!         }
//!         Ok(out)
//!     }
//! }
//!
//! olivine_sdk::export_pricing_rule!(TenOff);
//! ```
//!
//! The generated bindings of each world live in [`pricing`], [`taxonomy`], [`loyalty`]
//! (0.2; [`loyalty_v0_1`] for the first version), [`payments`] (0.2; [`payments_v0_1`])
//! and [`notifications`]; the types every world shares are generated once, in [`types`],
//! the payment records of 0.2 in [`payment_types`] and the loyalty records of 0.2 in
//! [`loyalty_types`]. A payment adapter built for 0.2 can save a payment method for
//! renewals and tells hard declines from soft ones; a loyalty rule built for 0.2 sees
//! when the event happened, the order's lines and the customer's last twelve months.
//! Plugins built for 0.1 keep loading. Plugins that prefer the raw generated `Guest`
//! traits can implement e.g. `olivine_sdk::pricing::exports::olivine::plugin::pricing::Guest`
//! and export it with `olivine_sdk::pricing::export!(MyType);` instead.
//!
//! Everything here also compiles for the host target, so plugin logic can be unit tested
//! with a plain `cargo test`: off wasm, `log` prints to stderr and `settings` and `http`
//! read what [`testing`] sets up.

#![warn(missing_docs)]

/// Bindings of the shared interfaces (`types`, `log`, `settings`, `http`), generated
/// once so that every world uses the same Rust types.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod common {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package olivine:sdk;
            world common {
                import olivine:plugin/types@0.1.0;
                import olivine:plugin/log@0.1.0;
                import olivine:plugin/settings@0.1.0;
                import olivine:plugin/http@0.1.0;
            }
        ",
        world: "olivine:sdk/common",
        generate_all,
        generate_unused_types: true,
        additional_derives: [PartialEq, Eq, Clone],
    });
}

macro_rules! world {
    ($(#[$doc:meta])* $module:ident, $world:literal, $bindings:literal $(, $http:literal)?) => {
        $(#[$doc])*
        #[allow(missing_docs)]
        pub mod $module {
            wit_bindgen::generate!({
                path: "../wit",
                world: $world,
                with: {
                    "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
                    "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
                    "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
                    $($http: crate::common::olivine::plugin::http,)?
                },
                pub_export_macro: true,
                export_macro_name: "export",
                default_bindings_module: $bindings,
            });
        }
    };
}

world!(
    /// Generated bindings of the `pricing-rule` world.
    pricing, "pricing-rule", "$crate::pricing"
);
world!(
    /// Generated bindings of the `variant-taxonomy` world.
    taxonomy, "variant-taxonomy", "$crate::taxonomy"
);
/// Generated bindings of the `loyalty-rule` world, first version (0.1). Included in a
/// world of another name, as [`payments_v0_1`] is.
#[allow(missing_docs)]
pub mod loyalty_v0_1 {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package olivine:sdk;
            world loyalty-rule-v0-1 {
                include olivine:plugin/loyalty-rule@0.1.0;
            }
        ",
        world: "olivine:sdk/loyalty-rule-v0-1",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::loyalty_v0_1",
    });
}

/// Generated bindings of the `loyalty-rule` world at 0.2 (`wit/v0.2/loyalty-rule.wit`):
/// the event carries its time, the order's lines and the customer's history. It imports
/// 0.1's `log` and `settings`.
#[allow(missing_docs)]
pub mod loyalty {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "loyalty-rule",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
        },
        additional_derives: [PartialEq, Eq, Clone],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::loyalty",
    });
}
/// Generated bindings of the `payment-adapter` world, first version (0.1). Included in a
/// world of another name: wit-bindgen names a crate-wide export macro after the world,
/// and 0.2's world has the same name.
#[allow(missing_docs)]
pub mod payments_v0_1 {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package olivine:sdk;
            world payment-adapter-v0-1 {
                include olivine:plugin/payment-adapter@0.1.0;
            }
        ",
        world: "olivine:sdk/payment-adapter-v0-1",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
            "olivine:plugin/http@0.1.0": crate::common::olivine::plugin::http,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::payments_v0_1",
    });
}

/// Generated bindings of the `payment-adapter` world at 0.2 (`wit/v0.2`): saved payment
/// methods, off-session charges, hard and soft declines. It imports 0.1's `log`,
/// `settings` and `http`, so [`http`], [`log`] and [`settings`] serve it as they serve
/// every world.
#[allow(missing_docs)]
pub mod payments {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "payment-adapter",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
            "olivine:plugin/http@0.1.0": crate::common::olivine::plugin::http,
        },
        additional_derives: [PartialEq, Eq, Clone],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::payments",
    });
}
world!(
    /// Generated bindings of the `notification-channel` world.
    notifications, "notification-channel", "$crate::notifications", "olivine:plugin/http@0.1.0"
);

/// The records, enums and variants of `olivine:plugin/types`, shared by every world.
pub mod types {
    pub use crate::common::olivine::plugin::types::*;
}

/// The payment records of `olivine:plugin/types@0.2.0`, what a [`PaymentAdapter`] takes
/// and gives. `Money`, `CustomerRef` and `PaymentStatus` are the shared ones of [`types`].
pub mod payment_types {
    pub use crate::payments::olivine::plugin0_2_0::types::*;
}

/// The loyalty records of `olivine:plugin/loyalty-types@0.2.0`, what a [`LoyaltyRule`]
/// takes (`LoyaltyEvent`, `OrderLine`, `CustomerHistory`). `Money`, `CustomerRef` and
/// `PointsEntry` are the shared ones of [`types`].
pub mod loyalty_types {
    pub use crate::loyalty::olivine::plugin0_2_0::loyalty_types::*;
}

mod cart;
pub mod http;
pub mod log;
mod loyalty_event;
pub mod money;
pub mod product;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;

pub use money::MoneyError;
pub use types::Money;

use loyalty_types::LoyaltyEvent;
use payment_types::{
    AuthorizeRequest, PaymentError, PaymentOperation, PaymentResult, SaveRequest, SavedMethod,
};
use types::{
    Adjustment, Cart, DeliveryError, DeliveryReceipt, FieldError, Notification, PointsEntry,
    ProductInput, TaxonomyInfo, ValidatedProduct,
};

/// A `pricing-rule` plugin: proposes price adjustments for a cart.
pub trait PricingRule {
    /// Proposes adjustments for the whole cart. Negative amounts are discounts. An error
    /// skips the rule (the kernel logs it); it never fails the checkout.
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String>;
}

/// A `variant-taxonomy` plugin: describes and validates one product type.
pub trait VariantTaxonomy {
    /// The product type, its attributes and its variants' option names, for admin forms.
    fn describe() -> TaxonomyInfo;
    /// Validates a product being created or edited; returns normalised attributes and one
    /// SKU and weight per input variant, in order, or every problem found.
    fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>>;
}

/// A `loyalty-rule` plugin (0.2): turns loyalty events into points. The event says when
/// it happened, what the order held and what the customer spent in the last twelve
/// months.
pub trait LoyaltyRule {
    /// The ledger entries an event earns (often none). An error is retried later.
    fn on_event(event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String>;
}

/// A `loyalty-rule` plugin built for the first version of the world (0.1): the event
/// has no time, lines or history. The kernel still loads it; new rules implement
/// [`LoyaltyRule`].
pub trait LoyaltyRuleV0_1 {
    /// The ledger entries an event earns (often none).
    fn on_event(event: &types::LoyaltyEvent) -> Result<Vec<PointsEntry>, String>;
}

/// A `payment-adapter` plugin (0.2): talks to a payment processor through [`http`].
pub trait PaymentAdapter {
    /// Turns the checkout's one-time token into a method the processor keeps, for
    /// renewals charged later without the shopper (off session).
    fn save_payment_method(request: &SaveRequest) -> Result<SavedMethod, PaymentError>;
    /// Authorises an amount on a one-time token or a saved method.
    fn authorize(request: &AuthorizeRequest) -> Result<PaymentResult, PaymentError>;
    /// Captures an authorised payment (`amount: None` = in full).
    fn capture(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError>;
    /// Refunds a captured payment (`amount: None` = in full).
    fn refund(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError>;
    /// Voids an authorisation that was not captured.
    fn void(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError>;
}

/// A `payment-adapter` plugin built for the first version of the world (0.1): no saved
/// methods, every decline soft. The kernel still loads it; new adapters implement
/// [`PaymentAdapter`].
pub trait PaymentAdapterV0_1 {
    /// Authorises an amount on a payment token.
    fn authorize(
        request: &types::AuthorizeRequest,
    ) -> Result<types::PaymentResult, types::PaymentError>;
    /// Captures an authorised payment (`amount: None` = in full).
    fn capture(
        operation: &types::PaymentOperation,
    ) -> Result<types::PaymentResult, types::PaymentError>;
    /// Refunds a captured payment (`amount: None` = in full).
    fn refund(
        operation: &types::PaymentOperation,
    ) -> Result<types::PaymentResult, types::PaymentError>;
    /// Voids an authorisation that was not captured.
    fn void(
        operation: &types::PaymentOperation,
    ) -> Result<types::PaymentResult, types::PaymentError>;
}

/// A `notification-channel` plugin: delivers notifications through [`http`].
pub trait NotificationChannel {
    /// Delivers one notification.
    fn deliver(notification: &Notification) -> Result<DeliveryReceipt, DeliveryError>;
}

/// Exports a [`PricingRule`] implementation as the plugin's `pricing` interface.
///
/// `olivine_sdk::export_pricing_rule!(MyRule);` at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_pricing_rule {
    ($ty:ident) => {
        impl $crate::pricing::exports::olivine::plugin::pricing::Guest for $ty {
            fn price(
                cart: $crate::types::Cart,
            ) -> ::core::result::Result<$crate::__private::Vec<$crate::types::Adjustment>, $crate::__private::String>
            {
                <$ty as $crate::PricingRule>::price(&cart)
            }
        }
        $crate::pricing::export!($ty with_types_in $crate::pricing);
    };
}

/// Exports a [`VariantTaxonomy`] implementation as the plugin's `taxonomy` interface.
#[macro_export]
macro_rules! export_variant_taxonomy {
    ($ty:ident) => {
        impl $crate::taxonomy::exports::olivine::plugin::taxonomy::Guest for $ty {
            fn describe() -> $crate::types::TaxonomyInfo {
                <$ty as $crate::VariantTaxonomy>::describe()
            }
            fn validate(
                product: $crate::types::ProductInput,
            ) -> ::core::result::Result<
                $crate::types::ValidatedProduct,
                $crate::__private::Vec<$crate::types::FieldError>,
            > {
                <$ty as $crate::VariantTaxonomy>::validate(&product)
            }
        }
        $crate::taxonomy::export!($ty with_types_in $crate::taxonomy);
    };
}

/// Exports a [`LoyaltyRule`] implementation as the plugin's `loyalty@0.2.0` interface
/// (its manifest says `abi = "0.2"`).
#[macro_export]
macro_rules! export_loyalty_rule {
    ($ty:ident) => {
        impl $crate::loyalty::exports::olivine::plugin0_2_0::loyalty::Guest for $ty {
            fn on_event(
                event: $crate::loyalty_types::LoyaltyEvent,
            ) -> ::core::result::Result<$crate::__private::Vec<$crate::types::PointsEntry>, $crate::__private::String>
            {
                <$ty as $crate::LoyaltyRule>::on_event(&event)
            }
        }
        $crate::loyalty::export!($ty with_types_in $crate::loyalty);
    };
}

/// Exports a [`LoyaltyRuleV0_1`] implementation as the plugin's `loyalty@0.1.0`
/// interface (its manifest says `abi = "0.1"`).
#[macro_export]
macro_rules! export_loyalty_rule_v0_1 {
    ($ty:ident) => {
        impl $crate::loyalty_v0_1::exports::olivine::plugin::loyalty::Guest for $ty {
            fn on_event(
                event: $crate::types::LoyaltyEvent,
            ) -> ::core::result::Result<$crate::__private::Vec<$crate::types::PointsEntry>, $crate::__private::String>
            {
                <$ty as $crate::LoyaltyRuleV0_1>::on_event(&event)
            }
        }
        $crate::loyalty_v0_1::export!($ty with_types_in $crate::loyalty_v0_1);
    };
}

/// Exports a [`PaymentAdapter`] implementation as the plugin's `payments@0.2.0`
/// interface (its manifest says `abi = "0.2"`).
#[macro_export]
macro_rules! export_payment_adapter {
    ($ty:ident) => {
        impl $crate::payments::exports::olivine::plugin0_2_0::payments::Guest for $ty {
            fn save_payment_method(
                request: $crate::payment_types::SaveRequest,
            ) -> ::core::result::Result<$crate::payment_types::SavedMethod, $crate::payment_types::PaymentError> {
                <$ty as $crate::PaymentAdapter>::save_payment_method(&request)
            }
            fn authorize(
                request: $crate::payment_types::AuthorizeRequest,
            ) -> ::core::result::Result<$crate::payment_types::PaymentResult, $crate::payment_types::PaymentError> {
                <$ty as $crate::PaymentAdapter>::authorize(&request)
            }
            fn capture(
                operation: $crate::payment_types::PaymentOperation,
            ) -> ::core::result::Result<$crate::payment_types::PaymentResult, $crate::payment_types::PaymentError> {
                <$ty as $crate::PaymentAdapter>::capture(&operation)
            }
            fn refund(
                operation: $crate::payment_types::PaymentOperation,
            ) -> ::core::result::Result<$crate::payment_types::PaymentResult, $crate::payment_types::PaymentError> {
                <$ty as $crate::PaymentAdapter>::refund(&operation)
            }
            fn void(
                operation: $crate::payment_types::PaymentOperation,
            ) -> ::core::result::Result<$crate::payment_types::PaymentResult, $crate::payment_types::PaymentError> {
                <$ty as $crate::PaymentAdapter>::void(&operation)
            }
        }
        $crate::payments::export!($ty with_types_in $crate::payments);
    };
}

/// Exports a [`PaymentAdapterV0_1`] implementation as the plugin's `payments@0.1.0`
/// interface (its manifest says `abi = "0.1"`).
#[macro_export]
macro_rules! export_payment_adapter_v0_1 {
    ($ty:ident) => {
        impl $crate::payments_v0_1::exports::olivine::plugin::payments::Guest for $ty {
            fn authorize(
                request: $crate::types::AuthorizeRequest,
            ) -> ::core::result::Result<$crate::types::PaymentResult, $crate::types::PaymentError> {
                <$ty as $crate::PaymentAdapterV0_1>::authorize(&request)
            }
            fn capture(
                operation: $crate::types::PaymentOperation,
            ) -> ::core::result::Result<$crate::types::PaymentResult, $crate::types::PaymentError> {
                <$ty as $crate::PaymentAdapterV0_1>::capture(&operation)
            }
            fn refund(
                operation: $crate::types::PaymentOperation,
            ) -> ::core::result::Result<$crate::types::PaymentResult, $crate::types::PaymentError> {
                <$ty as $crate::PaymentAdapterV0_1>::refund(&operation)
            }
            fn void(
                operation: $crate::types::PaymentOperation,
            ) -> ::core::result::Result<$crate::types::PaymentResult, $crate::types::PaymentError> {
                <$ty as $crate::PaymentAdapterV0_1>::void(&operation)
            }
        }
        $crate::payments_v0_1::export!($ty with_types_in $crate::payments_v0_1);
    };
}

/// Exports a [`NotificationChannel`] implementation as the plugin's `notifications`
/// interface.
#[macro_export]
macro_rules! export_notification_channel {
    ($ty:ident) => {
        impl $crate::notifications::exports::olivine::plugin::notifications::Guest for $ty {
            fn deliver(
                notification: $crate::types::Notification,
            ) -> ::core::result::Result<$crate::types::DeliveryReceipt, $crate::types::DeliveryError>
            {
                <$ty as $crate::NotificationChannel>::deliver(&notification)
            }
        }
        $crate::notifications::export!($ty with_types_in $crate::notifications);
    };
}

/// What most plugins need: `use olivine_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::loyalty_types::{CustomerHistory, LoyaltyEvent, OrderLine};
    pub use crate::money::{self, MoneyError};
    pub use crate::payment_types::{
        AuthorizeRequest, Decline, PaymentError, PaymentOperation, PaymentResult, PaymentSource,
        SaveRequest, SavedMethod,
    };
    pub use crate::product::FieldErrors;
    pub use crate::time::Timestamp;
    pub use crate::types::{
        Adjustment, AttributeSpec, Cart, CartLine, CustomerRef, DeliveryError, DeliveryReceipt,
        FieldError, Money, Notification, PaymentStatus, PointsEntry, ProductInput, ProductRef,
        ProductType, TaxonomyInfo, ValidatedProduct, ValidatedVariant, VariantInput,
    };
    pub use crate::{
        LoyaltyRule, NotificationChannel, PaymentAdapter, PricingRule, VariantTaxonomy,
    };
    pub use crate::{log, settings};
}

#[doc(hidden)]
pub mod __private {
    pub use std::string::String;
    pub use std::vec::Vec;
}
