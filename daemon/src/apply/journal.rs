//! The journal of the change in progress: `<state_dir>/apply-journal.json`, rewritten
//! atomically (fsync'd) *before* each step, with everything needed to finish or undo the
//! change after a `kill -9`, a power cut or an engine restart: the old container's id, name,
//! restart policy and state, the full create request, and the step that was started.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use netmode_advisor::api::ApplyRecord;

use crate::error::{ApplyError, Result};
use crate::state_dir::StateDir;

pub const FILE: &str = "apply-journal.json";

/// The steps of a change, in order. Up to `Verify` a failure (or a restart) rolls back;
/// from `RemoveOld` on the change is finished instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Plan,
    ClearRestartPolicy,
    RenameAside,
    Stop,
    Create,
    Connect,
    Start,
    Verify,
    RemoveOld,
    Done,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::Plan,
        Step::ClearRestartPolicy,
        Step::RenameAside,
        Step::Stop,
        Step::Create,
        Step::Connect,
        Step::Start,
        Step::Verify,
        Step::RemoveOld,
        Step::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::ClearRestartPolicy => "clear_restart_policy",
            Step::RenameAside => "rename_aside",
            Step::Stop => "stop",
            Step::Create => "create",
            Step::Connect => "connect",
            Step::Start => "start",
            Step::Verify => "verify",
            Step::RemoveOld => "remove_old",
            Step::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Everything about one change in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub record: ApplyRecord,
    /// The step started last (done or not: recovery treats it as either).
    pub step: Step,
    /// The container's own name, and the one it is renamed to while the new one is made.
    pub name: String,
    pub aside: String,
    /// The old container's restart policy (Docker's JSON), given back on rollback.
    pub restart_policy: Value,
    pub was_running: bool,
    /// The new container's create request and the networks to connect before it starts.
    pub create: Value,
    pub connect: Vec<(String, Value)>,
}

pub fn save(dir: &StateDir, j: &Journal) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(j).unwrap_or_default();
    dir.write_atomic(FILE, &bytes)
}

/// The journal left by a change that did not finish: `Ok(None)` when there is none. An
/// unreadable one is moved aside (`apply-journal.json.corrupt-<ms>`) and reported.
pub fn load(dir: &StateDir) -> Result<Option<Journal>, ApplyError> {
    let bytes = match dir.read(FILE)? {
        Some(b) => b,
        None => return Ok(None),
    };
    match serde_json::from_slice(&bytes) {
        Ok(j) => Ok(Some(j)),
        Err(e) => {
            let moved = dir.quarantine(FILE, "the journal of an interrupted change is unreadable");
            Err(ApplyError::CorruptJournal {
                path: dir.path().join(FILE),
                reason: e.to_string(),
                moved,
            })
        }
    }
}

pub fn close(dir: &StateDir) -> Result<()> {
    let p = dir.path().join(FILE);
    match std::fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::error::Error::io("cannot remove", p, e)),
    }
    std::fs::File::open(dir.path())
        .and_then(|d| d.sync_all())
        .map_err(|e| crate::error::Error::io("cannot sync directory", dir.path(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_ordered_and_named_once() {
        for w in Step::ALL.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
        assert_eq!(Step::parse("nope"), None);
    }
}
