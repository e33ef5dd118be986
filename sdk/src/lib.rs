//! Guest-side SDK for Olivine WebAssembly plugins (`olivine:plugin@0.1.0`, see
//! `wit/olivine-plugin.wit`, and the payment-adapter, loyalty-rule and
//! notification-channel worlds' `@0.2.0`, `wit/v0.2`).
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements one of five
//! small traits and exports it with the matching macro:
//!
//! | world                      | trait                        | macro                                   |
//! |----------------------------|------------------------------|-----------------------------------------|
//! | `pricing-rule`             | [`PricingRule`]              | [`export_pricing_rule!`]                |
//! | `variant-taxonomy`         | [`VariantTaxonomy`]          | [`export_variant_taxonomy!`]            |
//! | `loyalty-rule`             | [`LoyaltyRule`]              | [`export_loyalty_rule!`]                |
//! | `loyalty-rule` 0.1         | [`LoyaltyRuleV0_1`]          | [`export_loyalty_rule_v0_1!`]           |
//! | `payment-adapter`          | [`PaymentAdapter`]           | [`export_payment_adapter!`]             |
//! | `payment-adapter` 0.1      | [`PaymentAdapterV0_1`]       | [`export_payment_adapter_v0_1!`]        |
//! | `payment-adapter` 0.3      | [`PaymentAdapter`]           | [`export_payment_adapter_v0_3!`]        |
//! | `notification-channel`     | [`NotificationChannel`]      | [`export_notification_channel!`]        |
//! | `notification-channel` 0.1 | [`NotificationChannelV0_1`]  | [`export_notification_channel_v0_1!`]   |
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
//! and [`notifications`] (0.2; [`notifications_v0_1`]); the types every world shares are
//! generated once, in [`types`], the payment records of 0.2 in [`payment_types`], the
//! loyalty records of 0.2 in [`loyalty_types`] and the notification records of 0.2 in
//! [`notification_types`]. A payment adapter built for 0.2 can save a payment method for
//! renewals and tells hard declines from soft ones; a loyalty rule built for 0.2 sees
//! when the event happened, the order's lines and the customer's last twelve months; a
//! notification channel built for 0.2 gets a structured message (an email address, a
//! device or an endpoint), can say that a recipient is gone or when to retry, keeps
//! tokens in the host's [`cache`] and reads the wall clock ([`clock`]).
//! Plugins built for 0.1 keep loading. Plugins that prefer the raw generated `Guest`
//! traits can implement e.g. `olivine_sdk::pricing::exports::olivine::plugin::pricing::Guest`
//! and export it with `olivine_sdk::pricing::export!(MyType);` instead.
//!
//! Everything here also compiles for the host target, so plugin logic can be unit tested
//! with a plain `cargo test`: off wasm, `log` prints to stderr and `settings`, `http`,
//! `cache` and `clock` read what [`testing`] sets up.

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
/// Generated bindings of the `notification-channel` world, first version (0.1): a flat
/// notification with a recipient string. Included in a world of another name, as
/// [`payments_v0_1`] is.
#[allow(missing_docs)]
pub mod notifications_v0_1 {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package olivine:sdk;
            world notification-channel-v0-1 {
                include olivine:plugin/notification-channel@0.1.0;
            }
        ",
        world: "olivine:sdk/notification-channel-v0-1",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
            "olivine:plugin/http@0.1.0": crate::common::olivine::plugin::http,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::notifications_v0_1",
    });
}

/// Generated bindings of the `notification-channel` world at 0.2
/// (`wit/v0.2/notification-channel.wit`): a structured message (an email address, a
/// device or an endpoint; title, text, HTML, link, push options), "recipient gone" and
/// `Retry-After`, and the host's `cache` ([`cache`]). It imports 0.1's `log`, `settings`
/// and `http`.
#[allow(missing_docs)]
pub mod notifications {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "notification-channel",
        with: {
            "olivine:plugin/types@0.1.0": crate::common::olivine::plugin::types,
            "olivine:plugin/log@0.1.0": crate::common::olivine::plugin::log,
            "olivine:plugin/settings@0.1.0": crate::common::olivine::plugin::settings,
            "olivine:plugin/http@0.1.0": crate::common::olivine::plugin::http,
        },
        additional_derives: [PartialEq, Eq, Clone],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::notifications",
    });
}

/// The records, enums and variants of `olivine:plugin/types`, shared by every world.
pub mod types {
    pub use crate::common::olivine::plugin::types::*;
}

/// The payment records of `olivine:plugin/types@0.2.0`, what a [`PaymentAdapter`] takes
/// and gives. `Money`, `CustomerRef` and `PaymentStatus` are the shared ones of [`types`].
pub mod payment_types {
    pub use crate::payments::olivine::plugin0_2_0::types::*;
}

/// The notification records of `olivine:plugin/notification-types@0.2.0`, what a
/// [`NotificationChannel`] takes and gives (`Message`, `Recipient`, `Device`,
/// `EmailAddress`, `DeliveryError`, ...). `DeliveryReceipt` is the shared one of
/// [`types`]; 0.1's `Notification` and `DeliveryError` stay there too.
pub mod notification_types {
    pub use crate::notifications::olivine::plugin0_2_0::notification_types::*;
}

/// The loyalty records of `olivine:plugin/loyalty-types@0.2.0`, what a [`LoyaltyRule`]
/// takes (`LoyaltyEvent`, `OrderLine`, `CustomerHistory`). `Money`, `CustomerRef` and
/// `PointsEntry` are the shared ones of [`types`].
pub mod loyalty_types {
    pub use crate::loyalty::olivine::plugin0_2_0::loyalty_types::*;
}

pub mod cache;
mod cart;
pub mod http;
pub mod log;
mod loyalty_event;
pub mod money;
pub mod pem;
pub mod product;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;

pub use money::MoneyError;
pub use types::Money;

use loyalty_types::LoyaltyEvent;
use notification_types::{DeliveryError, Message};
use payment_types::{
    AuthorizeRequest, PaymentError, PaymentOperation, PaymentResult, SaveRequest, SavedMethod,
};
use types::{
    Adjustment, Cart, DeliveryReceipt, FieldError, PointsEntry, ProductInput, TaxonomyInfo,
    ValidatedProduct,
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

/// A `notification-channel` plugin (0.2): delivers a message through [`http`] to an email
/// address, a device or an endpoint, and may keep tokens in the host's [`cache`].
pub trait NotificationChannel {
    /// Delivers one message. `Err(Retryable)` is tried again later with the same
    /// idempotency key; `Err(RecipientGone)` makes the kernel forget the device.
    fn deliver(message: &Message) -> Result<DeliveryReceipt, DeliveryError>;
}

/// A `notification-channel` plugin built for the first version of the world (0.1): a
/// flat notification, every failure retryable or permanent. The kernel still loads it;
/// new channels implement [`NotificationChannel`].
pub trait NotificationChannelV0_1 {
    /// Delivers one notification.
    fn deliver(notification: &types::Notification)
    -> Result<DeliveryReceipt, types::DeliveryError>;
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

/// Exports a [`PaymentAdapter`] implementation as a payment adapter of the world's third
/// version (`wit/v0.3`; its manifest says `abi = "0.3"`). 0.3 exports 0.2's `payments`
/// interface unchanged and adds the `cache` import: the component is what
/// [`export_payment_adapter!`] makes, and it imports the cache when the adapter uses
/// [`cache`]. (One set of export bindings serves both: wit-bindgen names its export
/// macros after the interface, which the two versions share.)
#[macro_export]
macro_rules! export_payment_adapter_v0_3 {
    ($ty:ident) => {
        $crate::export_payment_adapter!($ty);
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

/// Exports a [`NotificationChannel`] implementation as the plugin's
/// `notifications@0.2.0` interface (its manifest says `abi = "0.2"`).
#[macro_export]
macro_rules! export_notification_channel {
    ($ty:ident) => {
        impl $crate::notifications::exports::olivine::plugin0_2_0::notifications::Guest for $ty {
            fn deliver(
                message: $crate::notification_types::Message,
            ) -> ::core::result::Result<$crate::types::DeliveryReceipt, $crate::notification_types::DeliveryError>
            {
                <$ty as $crate::NotificationChannel>::deliver(&message)
            }
        }
        $crate::notifications::export!($ty with_types_in $crate::notifications);
    };
}

/// Exports a [`NotificationChannelV0_1`] implementation as the plugin's
/// `notifications@0.1.0` interface (its manifest says `abi = "0.1"`).
#[macro_export]
macro_rules! export_notification_channel_v0_1 {
    ($ty:ident) => {
        impl $crate::notifications_v0_1::exports::olivine::plugin::notifications::Guest for $ty {
            fn deliver(
                notification: $crate::types::Notification,
            ) -> ::core::result::Result<$crate::types::DeliveryReceipt, $crate::types::DeliveryError>
            {
                <$ty as $crate::NotificationChannelV0_1>::deliver(&notification)
            }
        }
        $crate::notifications_v0_1::export!($ty with_types_in $crate::notifications_v0_1);
    };
}

/// The wall clock, for the worlds that have one (notification channels and payment
/// adapters: their WASI wall clock is the real one). Pure worlds (pricing, taxonomy,
/// loyalty) see a clock fixed at the epoch.
///
/// Off wasm, [`now_unix_seconds`](clock::now_unix_seconds) reads the test clock
/// ([`testing::set_now`]) when one is set, else the real clock.
///
/// ```
/// use olivine_sdk::{clock, testing};
///
/// testing::set_now(1_800_000_000);
/// assert_eq!(clock::now_unix_seconds(), 1_800_000_000);
/// assert_eq!(clock::retry_after_seconds("120"), Some(120));
/// assert_eq!(clock::retry_after_seconds("Fri, 15 Jan 2027 08:00:30 GMT"), Some(30));
/// testing::clear();
/// ```
pub mod clock {
    use crate::time::Timestamp;

    /// Seconds since the Unix epoch (0 if the clock is before it).
    pub fn now_unix_seconds() -> u64 {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(now) = crate::testing::now() {
            return now;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate) into
    /// seconds since the Unix epoch. The obsolete RFC 850 and asctime forms are refused.
    pub fn parse_http_date(text: &str) -> Option<u64> {
        let mut parts = text.split_ascii_whitespace();
        let (_day_name, day, month, year, time, zone) = (
            parts.next()?.strip_suffix(',')?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || zone != "GMT" || day.len() != 2 || year.len() != 4 {
            return None;
        }
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.iter().position(|m| *m == month)? + 1;
        let rfc3339 = format!("{year}-{month:02}-{day}T{time}Z");
        let at = Timestamp::parse(&rfc3339).ok()?;
        u64::try_from(at.unix_millis / 1_000).ok()
    }

    /// The seconds a `Retry-After` header value asks to wait: delay-seconds (`120`) or an
    /// HTTP date, counted from [`now_unix_seconds`] (0 when it is past). `None` for
    /// anything else.
    pub fn retry_after_seconds(value: &str) -> Option<u32> {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Some(
                value
                    .parse::<u64>()
                    .map_or(u32::MAX, |s| u32::try_from(s).unwrap_or(u32::MAX)),
            );
        }
        let at = parse_http_date(value)?;
        let wait = at.saturating_sub(now_unix_seconds());
        Some(u32::try_from(wait).unwrap_or(u32::MAX))
    }
}

mod notification_helpers {
    use crate::http::Response;
    use crate::notification_types::{DeliveryError, Message, Priority, Recipient, Retry};

    impl Message {
        /// A message of `topic` for `recipient`, with nothing else known: no HTML, link,
        /// collapse key or expiry, normal priority, transactional, empty data. For tests;
        /// fill in the rest with struct update syntax:
        ///
        /// ```
        /// use olivine_sdk::prelude::*;
        ///
        /// let shipped = Message {
        ///     title: "Your order shipped".into(),
        ///     priority: Priority::High,
        ///     ..Message::new("order.shipped", "n-1", Recipient::Endpoint("https://h/x".into()))
        /// };
        /// assert_eq!(shipped.data_json, "");
        /// ```
        pub fn new(
            topic: impl Into<String>,
            idempotency_key: impl Into<String>,
            recipient: Recipient,
        ) -> Message {
            Message {
                topic: topic.into(),
                idempotency_key: idempotency_key.into(),
                recipient,
                title: String::new(),
                text: String::new(),
                html: None,
                link: None,
                collapse_key: None,
                expires_at: None,
                priority: Priority::Normal,
                marketing: false,
                data_json: String::new(),
            }
        }
    }

    impl DeliveryError {
        /// `Retryable` after the kernel's backoff.
        pub fn retryable(reason: impl Into<String>) -> DeliveryError {
            DeliveryError::Retryable(Retry {
                reason: reason.into(),
                after_seconds: None,
            })
        }

        /// `Retryable` after `after_seconds` when the provider asked for a delay.
        pub fn retryable_after(
            reason: impl Into<String>,
            after_seconds: Option<u32>,
        ) -> DeliveryError {
            DeliveryError::Retryable(Retry {
                reason: reason.into(),
                after_seconds,
            })
        }

        /// `Retryable`, after the response's `Retry-After` when it has one
        /// ([`crate::clock::retry_after_seconds`]).
        pub fn retryable_response(reason: impl Into<String>, response: &Response) -> DeliveryError {
            DeliveryError::retryable_after(
                reason,
                response
                    .header("retry-after")
                    .and_then(crate::clock::retry_after_seconds),
            )
        }

        /// The outcome when the host's HTTP call to `service` itself failed: denied by
        /// the host (the merchant has not granted it: permanent until they do), timed
        /// out or unreachable (retryable).
        pub fn from_http_error(service: &str, error: &crate::http::HttpError) -> DeliveryError {
            use crate::http::HttpError;
            match error {
                HttpError::Denied(why) => DeliveryError::Permanent(format!(
                    "the host denied the request to {service}: {why}"
                )),
                HttpError::Timeout => DeliveryError::retryable(format!("{service} timed out")),
                HttpError::Failed(why) => {
                    DeliveryError::retryable(format!("{service} is unreachable: {why}"))
                }
            }
        }

        /// What went wrong, whatever the kind.
        pub fn reason(&self) -> &str {
            match self {
                DeliveryError::Retryable(retry) => &retry.reason,
                DeliveryError::Permanent(why) | DeliveryError::RecipientGone(why) => why,
            }
        }

        /// Whether the kernel tries again.
        pub fn is_retryable(&self) -> bool {
            matches!(self, DeliveryError::Retryable(_))
        }
    }
}

/// What most plugins need: `use olivine_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::loyalty_types::{CustomerHistory, LoyaltyEvent, OrderLine};
    pub use crate::money::{self, MoneyError};
    pub use crate::notification_types::{
        DeliveryError, Device, EmailAddress, Message, Priority, PushPlatform, Recipient, Retry,
    };
    pub use crate::payment_types::{
        AuthorizeRequest, Decline, PaymentError, PaymentOperation, PaymentResult, PaymentSource,
        SaveRequest, SavedMethod,
    };
    pub use crate::product::FieldErrors;
    pub use crate::time::Timestamp;
    pub use crate::types::{
        Adjustment, AttributeSpec, Cart, CartLine, CustomerRef, DeliveryReceipt, FieldError, Money,
        PaymentStatus, PointsEntry, ProductInput, ProductRef, ProductType, TaxonomyInfo,
        ValidatedProduct, ValidatedVariant, VariantInput,
    };
    pub use crate::{
        LoyaltyRule, NotificationChannel, PaymentAdapter, PricingRule, VariantTaxonomy,
    };
    pub use crate::{cache, clock, log, settings};
}

#[doc(hidden)]
pub mod __private {
    pub use std::string::String;
    pub use std::vec::Vec;
}

#[cfg(test)]
mod tests {
    use crate::clock::{now_unix_seconds, parse_http_date, retry_after_seconds};
    use crate::http::Response;
    use crate::notification_types::{DeliveryError, Recipient, Retry};
    use crate::testing;

    #[test]
    fn http_dates_and_retry_after() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
        testing::clear();
        testing::set_now(784_111_700);
        assert_eq!(now_unix_seconds(), 784_111_700);
        assert_eq!(
            retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(77)
        );
        assert_eq!(
            retry_after_seconds("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(0),
            "a date in the past: at once"
        );
        assert_eq!(retry_after_seconds(" 120 "), Some(120));
        assert_eq!(retry_after_seconds("99999999999"), Some(u32::MAX));
        assert_eq!(retry_after_seconds("-5"), None);
        assert_eq!(retry_after_seconds("soon"), None);
        testing::advance_now(10);
        assert_eq!(now_unix_seconds(), 784_111_710);
        testing::clear();
        assert_eq!(testing::now(), None);
        assert!(now_unix_seconds() > 1_700_000_000, "the real clock");
    }

    #[test]
    fn delivery_error_helpers() {
        let response = Response::new(503).with_header("Retry-After", "30");
        let err = DeliveryError::retryable_response("busy", &response);
        assert_eq!(
            err,
            DeliveryError::Retryable(Retry {
                reason: "busy".into(),
                after_seconds: Some(30)
            })
        );
        assert!(err.is_retryable());
        assert_eq!(err.reason(), "busy");
        assert_eq!(
            DeliveryError::retryable_response("busy", &Response::new(503)),
            DeliveryError::retryable("busy")
        );
        let gone = DeliveryError::RecipientGone("unregistered".into());
        assert!(!gone.is_retryable());
        assert_eq!(gone.reason(), "unregistered");
        let m = crate::notification_types::Message::new(
            "order.shipped",
            "k",
            Recipient::Endpoint("https://h/x".into()),
        );
        assert_eq!(
            (m.topic.as_str(), m.idempotency_key.as_str()),
            ("order.shipped", "k")
        );
    }
}
