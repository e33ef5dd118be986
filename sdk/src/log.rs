//! Structured logging into the kernel's log, tagged with the plugin id by the host.
//!
//! ```
//! use olivine_sdk::log;
//!
//! log::info!("priced {} lines", 3);
//! log::warn("no qualifying lines");
//! ```
//!
//! Off wasm (native tests) lines go to stderr and to [`crate::testing::take_logs`].
//! Every call crosses into the host: log what helps an operator, not every line of a cart.

pub use crate::common::olivine::plugin::log::Level;

/// Writes one line at `level`.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::common::olivine::plugin::log::write(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::log(level, message);
}

/// Writes one line at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Writes one line at info level.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Writes one line at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Writes one line at error level.
pub fn error(message: &str) {
    write(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __olivine_log_debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __olivine_log_info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __olivine_log_warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __olivine_log_error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+)) };
}

/// `log::debug!("format {}", args)`: writes a formatted line at debug level.
pub use crate::__olivine_log_debug as debug;
/// `log::error!("format {}", args)`: writes a formatted line at error level.
pub use crate::__olivine_log_error as error;
/// `log::info!("format {}", args)`: writes a formatted line at info level.
pub use crate::__olivine_log_info as info;
/// `log::warn!("format {}", args)`: writes a formatted line at warn level.
pub use crate::__olivine_log_warn as warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_recorded_off_wasm() {
        crate::testing::clear();
        info!("priced {} lines", 3);
        warn("careful");
        assert_eq!(
            crate::testing::take_logs(),
            vec![
                (Level::Info, "priced 3 lines".to_owned()),
                (Level::Warn, "careful".to_owned())
            ]
        );
    }
}
