//! The journal of the change in progress: `<state_dir>/apply-journal.json`, rewritten
//! atomically (fsync'd) *before* each step, with everything needed to finish or undo the
//! change after a `kill -9`, a power cut or an engine restart: the old container's id, name,
//! restart policy and state, the full create request, and the step that was started.
//!
//! The file carries a format version (`VERSION`). Fields added since version 1 have
//! defaults, so a journal an older netmoded left is recovered, not quarantined; one from a
//! newer netmoded (a downgrade mid-change) is refused and left in place for that version.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use netmode_advisor::api::ApplyRecord;

use crate::error::{ApplyError, StateError};
use crate::state_dir::StateDir;

pub const FILE: &str = "apply-journal.json";

/// This netmoded's journal format. 1: no `version` field (netmoded 0.1 before the safety
/// work); 2: version, commit and watch steps, the carried image, the stop deadline.
pub const VERSION: u32 = 2;

/// The steps of a change, in order. Up to `Verify` a failure (or a restart) rolls back;
/// from `RemoveOld` on the change is finished instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Plan,
    ClearRestartPolicy,
    RenameAside,
    Stop,
    /// Only with `carry_writable_layer`: the stopped old container committed to an image.
    Commit,
    Create,
    Connect,
    Start,
    Verify,
    /// Verified; watched a while longer (`apply.watch`), the old container still kept.
    Watch,
    RemoveOld,
    Done,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::Plan,
        Step::ClearRestartPolicy,
        Step::RenameAside,
        Step::Stop,
        Step::Commit,
        Step::Create,
        Step::Connect,
        Step::Start,
        Step::Verify,
        Step::Watch,
        Step::RemoveOld,
        Step::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::ClearRestartPolicy => "clear_restart_policy",
            Step::RenameAside => "rename_aside",
            Step::Stop => "stop",
            Step::Commit => "commit",
            Step::Create => "create",
            Step::Connect => "connect",
            Step::Start => "start",
            Step::Verify => "verify",
            Step::Watch => "watch",
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
    /// The format (`VERSION`); absent in version 1.
    #[serde(default = "version_1")]
    pub version: u32,
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
    /// Commit the old container's writable layer and make the new one from that image.
    #[serde(default)]
    pub carry_writable_layer: bool,
    /// How long the old container's stop may take: its own stop timeout (the engine kills
    /// it after that) and a margin, never the generic request timeout.
    #[serde(default = "default_stop_wait")]
    pub stop_wait_s: u64,
}

fn version_1() -> u32 {
    1
}

fn default_stop_wait() -> u64 {
    40
}

/// How long a stop of `inspect`'s container may take: its stop timeout (Docker's default 10 s
/// when it has none), plus 30 s for the engine to answer.
pub fn stop_wait_of(inspect: &Value) -> u64 {
    inspect["Config"]["StopTimeout"]
        .as_u64()
        .unwrap_or(10)
        .saturating_add(30)
}

pub fn save(dir: &StateDir, j: &Journal) -> Result<(), StateError> {
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
    match serde_json::from_slice::<Journal>(&bytes) {
        Ok(j) if j.version > VERSION => Err(ApplyError::Refused(format!(
            "{}: written by a newer netmoded (journal version {}, this one reads up to {VERSION}); \
             left in place: run that version to settle the change",
            dir.path().join(FILE).display(),
            j.version
        ))),
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

pub fn close(dir: &StateDir) -> Result<(), StateError> {
    let p = dir.path().join(FILE);
    match std::fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::error::StateError::io("cannot remove", p, e)),
    }
    std::fs::File::open(dir.path())
        .and_then(|d| d.sync_all())
        .map_err(|e| crate::error::StateError::io("cannot sync directory", dir.path(), e))
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

    /// What netmoded 0.1 wrote before the format had a version: recovered, with defaults.
    #[test]
    fn a_version_1_journal_is_read() {
        let v1 = serde_json::json!({
            "record": {
                "id": "a1-1", "container": "web", "container_id": "abc", "new_id": null,
                "from": "bridge", "to": "host", "trigger": "manual", "state": "running",
                "step": "stop", "diff": [], "dropped": [], "error": null,
                "queued_at_ms": 1, "started_at_ms": 2, "finished_at_ms": null
            },
            "step": "stop", "name": "web", "aside": "web-netmode-a1-1",
            "restart_policy": {"Name": "always"}, "was_running": true,
            "create": {"Image": "x"}, "connect": []
        });
        let j: Journal = serde_json::from_value(v1).unwrap();
        assert_eq!(j.version, 1);
        assert_eq!(j.step, Step::Stop);
        assert!(!j.carry_writable_layer);
        assert_eq!(j.stop_wait_s, 40);
        assert_eq!(
            stop_wait_of(&serde_json::json!({"Config": {"StopTimeout": 120}})),
            150
        );
    }
}
