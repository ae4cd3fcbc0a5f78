//! Probe history in the state directory: `probes.jsonl`, one run per line, oldest first,
//! bounded in runs and bytes, and replaced atomically on every change.

use netmode_advisor::api::ProbeRun;

use crate::error::StateError;
use crate::state_dir::StateDir;

pub const FILE: &str = "probes.jsonl";
/// Whatever the run limit, the file stays under this size (oldest runs go first).
pub const MAX_BYTES: usize = 2 << 20;

/// Read the history; lines that are not runs (an older format, a hand edit) are skipped
/// with a warning.
pub fn load(dir: &StateDir) -> Result<Vec<ProbeRun>, StateError> {
    dir.read_lines(FILE)
}

/// Keep at most `limit` runs and `MAX_BYTES`, newest kept; the JSON lines to write.
pub fn trim(runs: &mut Vec<ProbeRun>, limit: usize) -> Vec<u8> {
    crate::state_dir::trim_lines(runs, limit, MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmode_advisor::api::{RunState, Trigger};

    fn run(id: &str, notes: usize) -> ProbeRun {
        ProbeRun {
            id: id.into(),
            trigger: Trigger::Manual,
            state: RunState::Done,
            queued_at_ms: 1,
            started_at_ms: Some(2),
            finished_at_ms: Some(3),
            sink: None,
            cell_duration_s: 3.0,
            containers: vec![],
            sweep: None,
            error: None,
            notes: vec!["x".repeat(1000); notes],
            progress: None,
        }
    }

    #[test]
    fn survives_a_restart_bounded_and_skips_garbage() {
        let p = std::env::temp_dir().join(format!("netmode-hist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let dir = StateDir::open(&p).unwrap();
        let mut runs: Vec<ProbeRun> = (0..5).map(|i| run(&format!("r{i}"), 0)).collect();
        dir.write_atomic(FILE, &trim(&mut runs, 3)).unwrap();
        assert_eq!(runs.len(), 3);
        let back = load(&dir).unwrap();
        assert_eq!(
            back.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r3", "r4"]
        );

        let mut text = String::from_utf8(dir.read(FILE).unwrap().unwrap()).unwrap();
        text.push_str("{not a run}\n");
        dir.write_atomic(FILE, text.as_bytes()).unwrap();
        assert_eq!(load(&dir).unwrap().len(), 3);
        drop(dir);
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn bytes_are_bounded_too() {
        let mut runs: Vec<ProbeRun> = (0..10).map(|i| run(&format!("r{i}"), 400)).collect();
        let bytes = trim(&mut runs, 100);
        assert!(bytes.len() <= MAX_BYTES);
        assert!(runs.len() < 10 && runs.last().unwrap().id == "r9");
    }
}
