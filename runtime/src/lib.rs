//! The sandboxed host of Olivine plugins: one wasmtime engine with the component model
//! and the pooling allocator, on-disk caching of compiled components, a manifest and
//! world check at load time, and calls that each run in a fresh instance under an
//! instruction budget (fuel), a memory cap and output caps.

pub mod bindings;
pub mod build;
mod cache;
pub mod fixtures;
mod host;
pub mod manifest;
mod outbound;
mod runtime;
pub mod testing;

pub use host::HttpGrant;
pub use manifest::{Limits, Manifest, SettingSpec, SettingType, World};
pub use runtime::{
    CallError, CallStats, LoadError, PaymentAnswer, PaymentCall, Plugin, Runtime, RuntimeConfig,
    supported_abis,
};

/// The ABI every world speaks: `olivine:plugin@0.1.x`.
pub const ABI_VERSION: &str = "0.1.0";
/// The payment-adapter world also speaks its second version, `olivine:plugin@0.2.x`
/// (`wit/v0.2`), and its third, `olivine:plugin@0.3.x` (`wit/v0.3`: 0.2's interface and
/// the host cache).
pub const PAYMENT_ABI_VERSION: &str = "0.3.0";
/// So does the loyalty-rule world (`wit/v0.2/loyalty-rule.wit`).
pub const LOYALTY_ABI_VERSION: &str = "0.2.0";
/// So does the notification-channel world (`wit/v0.2/notification-channel.wit`).
pub const NOTIFICATION_ABI_VERSION: &str = "0.2.0";
