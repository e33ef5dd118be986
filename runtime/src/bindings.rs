//! Host bindings of the five worlds of `wit/olivine-plugin.wit` (`olivine:plugin@0.1.0`)
//! and of the second versions of the payment-adapter and loyalty-rule worlds (`wit/v0.2`,
//! `@0.2.0`). The 0.1
//! payment-adapter world imports every host interface, so it is generated first and the
//! other worlds reuse its types and host traits (`with`): one implementation of `log`,
//! `settings` and `http` serves every world and both versions. Each frozen version keeps
//! its own binding, so plugins built for 0.1 keep loading.

pub mod adapter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "payment-adapter",
    });
}

pub use adapter::olivine::plugin::{http, log, settings, types};

macro_rules! world {
    ($module:ident, $world:literal, { $($extra:tt)* }) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                with: {
                    "olivine:plugin/types": crate::bindings::types,
                    "olivine:plugin/log": crate::bindings::log,
                    "olivine:plugin/settings": crate::bindings::settings,
                    $($extra)*
                },
            });
        }
    };
}

world!(pricing, "pricing-rule", {});
world!(taxonomy, "variant-taxonomy", {});
world!(loyalty, "loyalty-rule", {});
world!(notification, "notification-channel", { "olivine:plugin/http": crate::bindings::http, });

/// The payment-adapter world at 0.2: saved payment methods, off-session charges, hard
/// and soft declines. It imports 0.1's `log`, `settings` and `http` and reuses 0.1's
/// shared records.
pub mod adapter_v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "payment-adapter",
        with: {
            "olivine:plugin/types@0.1.0": crate::bindings::types,
            "olivine:plugin/log@0.1.0": crate::bindings::log,
            "olivine:plugin/settings@0.1.0": crate::bindings::settings,
            "olivine:plugin/http@0.1.0": crate::bindings::http,
        },
    });
}

/// The payment records the kernel speaks (0.2's); a 0.1 adapter's are converted.
pub use adapter_v0_2::olivine::plugin0_2_0::types as payment;

/// The loyalty-rule world at 0.2: the event carries its time, the order's lines and the
/// customer's last twelve months. It imports 0.1's `log` and `settings` and reuses 0.1's
/// shared records.
pub mod loyalty_v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "loyalty-rule",
        with: {
            "olivine:plugin/types@0.1.0": crate::bindings::types,
            "olivine:plugin/log@0.1.0": crate::bindings::log,
            "olivine:plugin/settings@0.1.0": crate::bindings::settings,
        },
    });
}

/// The loyalty records the kernel speaks (0.2's); a 0.1 rule gets the event converted.
pub use loyalty_v0_2::olivine::plugin0_2_0::loyalty_types;

/// The notification-channel world at 0.2: a structured message (email address, device or
/// endpoint; title, text, HTML, link, push options), "recipient gone" and `Retry-After`,
/// and the `cache` import. It imports 0.1's `log`, `settings` and `http`.
pub mod notification_v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "notification-channel",
        with: {
            "olivine:plugin/types@0.1.0": crate::bindings::types,
            "olivine:plugin/log@0.1.0": crate::bindings::log,
            "olivine:plugin/settings@0.1.0": crate::bindings::settings,
            "olivine:plugin/http@0.1.0": crate::bindings::http,
        },
    });
}

/// The notification records the kernel speaks (0.2's); a 0.1 channel gets the message
/// converted.
pub use notification_v0_2::olivine::plugin0_2_0::{cache, notification_types};

/// The payment-adapter world at 0.3: 0.2's `payments` interface and records, plus the
/// `cache` import (a processor's access token kept between calls).
pub mod adapter_v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3",
        world: "payment-adapter",
        with: {
            "olivine:plugin/types@0.1.0": crate::bindings::types,
            "olivine:plugin/log@0.1.0": crate::bindings::log,
            "olivine:plugin/settings@0.1.0": crate::bindings::settings,
            "olivine:plugin/http@0.1.0": crate::bindings::http,
            "olivine:plugin/types@0.2.0": crate::bindings::payment,
            "olivine:plugin/cache@0.2.0": crate::bindings::cache,
        },
    });
}
