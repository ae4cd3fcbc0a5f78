//! The probe engine: what each container would get in bridge mode and in host mode on this
//! gateway, measured with real traffic from short-lived probe containers (never the container
//! itself), and the multi-container sweep that locates the crossover. The traffic itself is
//! `crate::traffic`'s; this module places it through Docker.
//!
//! - `request`: a manual probe request, checked and queued.
//! - `queue`: the probe requests waiting, the one running, and the history (`ProbeBook`).
//! - `plan`: pure decisions: which containers, which cells, when, the crossover, a cell's result.
//! - `engine`: the task that runs one probe at a time, manual ones first, scheduled ones within
//!   a budget.
//! - `runner`: probe containers (or an in-place thread) for one cell, and their counters.
//! - `image`: the probe image, built from the daemon's own executable.
//! - `localsink`: the default sink, in a network namespace behind the daemon's own veth pair.
//! - `history`: results kept in the state directory.

pub mod engine;
pub mod history;
pub mod image;
pub mod localsink;
pub mod plan;
pub mod queue;
pub mod request;
pub mod runner;
