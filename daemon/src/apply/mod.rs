//! Applying a mode change: Docker cannot change a running container's network mode, so the
//! container is recreated in the other mode, as a journaled transaction that never loses the
//! container or its data.
//!
//! - `spec`: the new create request from the old container's own inspect (pure).
//! - `safety`: what a change must not destroy: the writable layer, dependents (pure).
//! - `journal`: the change in progress on disk, written before each step.
//! - `txn`: the steps, verification, rollback and finishing (idempotent, for recovery).
//! - `book`: the change running and the history; one change at a time.
//! - `run`: a request checked, planned and carried out; recovery at start.
//! - `compose`: the override file written instead, for a Compose project's container.
//! - `auto`: `advisor.mode = "apply"`: the advisor's pick carried out after an evaluation.

pub mod auto;
pub mod book;
pub mod compose;
pub mod journal;
pub mod run;
pub mod safety;
pub mod spec;
pub mod txn;

use std::sync::Arc;

use crate::state::Shared;
use book::ApplyBook;

/// What a mode change needs, handed to it by the daemon: the state it reads and the book it
/// keeps its changes in (the one slot, the running change, the history).
#[derive(Clone)]
pub struct Changes {
    pub state: Arc<Shared>,
    pub book: Arc<ApplyBook>,
}
