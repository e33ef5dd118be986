//! Subcommands of the `olivine` binary that are more than a few lines.

pub mod import;
pub mod keys;
pub mod plugin;
pub mod search;
pub mod staff;
