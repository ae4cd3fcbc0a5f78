//! netmode's advisor library: the versioned API types shared by `netmoded`, the `advisor` CLI
//! and fleet scripts, and the pure functions that turn measurements into per-container
//! network-mode recommendations.
//!
//! Nothing in this crate performs I/O except `client` (the CLI's HTTP client, feature `cli`).

pub mod api;
#[cfg(feature = "cli")]
pub mod client;
mod error;
pub mod format;
pub mod policy;
#[cfg(feature = "schema")]
pub mod schema;

pub use error::Error;
