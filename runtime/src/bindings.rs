//! Host bindings of the five worlds of `wit/olivine-plugin.wit`. The payment-adapter
//! world imports every host interface, so it is generated first and the other worlds
//! reuse its types and host traits (`with`): one implementation of `log`, `settings`
//! and `http` serves every world.

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
