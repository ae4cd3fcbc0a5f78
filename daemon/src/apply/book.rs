//! The changes: the one in progress and the history (`<state_dir>/applies.jsonl`, oldest
//! first), the reservation that lets one change run at a time (taken atomically before a
//! change is planned: a second request is refused at once), and the daemon's wish to stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use netmode_advisor::api::{ApplyList, ApplyRecord};

use crate::rt::{now_ms, read_lock, write};
use netmode_advisor::api::wire_name;

pub const HISTORY_FILE: &str = "applies.jsonl";
const MAX_BYTES: usize = 2 << 20;

#[derive(Default)]
struct Book {
    running: Option<ApplyRecord>,
    history: Vec<ApplyRecord>,
    /// Changes finished since start, by (trigger, outcome): `/metrics` counters.
    counts: BTreeMap<(String, String), u64>,
}

/// The change slot is taken: by what ("web", "recovery at start").
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Held(pub String);

#[derive(Default)]
pub struct ApplyBook {
    book: RwLock<Book>,
    /// Held for the whole of a change (and of recovery at start): one change at a time.
    pub lock: smol::lock::Mutex<()>,
    /// What holds the one change slot ("web", "recovery"), from before its plan until it is
    /// settled: `reserve` and `release`.
    reserved: Mutex<Option<String>>,
    /// The daemon is stopping: a change in progress stops at its next step (or wait) and is
    /// settled.
    stopping: AtomicBool,
}

impl ApplyBook {
    /// Take the one change slot for `what`; `Err` with what holds it.
    pub fn reserve(&self, what: &str) -> Result<(), Held> {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        match &*r {
            Some(holder) => Err(Held(holder.clone())),
            None => {
                *r = Some(what.to_string());
                Ok(())
            }
        }
    }

    pub fn release(&self) {
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a change (or recovery) holds the slot.
    pub fn busy(&self) -> bool {
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> &AtomicBool {
        &self.stopping
    }

    /// A change's id: `a<unix seconds>-<this process's salt>-<n>`. Unique across processes
    /// and restarts, not just within one: the id is also the `netmode.apply.id` label by which
    /// a rollback finds (and removes) the container its change made, so two netmoded on one
    /// engine, or one restarted within the second, must never share one (they did: one's
    /// rollback removed the other's new container).
    pub fn new_id(&self) -> String {
        static SALT: std::sync::LazyLock<u32> =
            std::sync::LazyLock::new(|| crate::traffic::new_session() & 0xff_ffff);
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("a{}-{:06x}-{n}", now_ms() / 1000, *SALT)
    }

    pub fn load_history(&self, records: Vec<ApplyRecord>) {
        write(&self.book).history = records;
    }

    pub fn list(&self) -> ApplyList {
        let b = read_lock(&self.book);
        ApplyList {
            running: b.running.clone(),
            applies: b.history.iter().rev().cloned().collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<ApplyRecord> {
        let b = read_lock(&self.book);
        b.running
            .iter()
            .chain(b.history.iter())
            .find(|r| r.id == id)
            .cloned()
    }

    /// Changes finished since start: (trigger, outcome, count).
    pub fn counts(&self) -> Vec<(String, String, u64)> {
        read_lock(&self.book)
            .counts
            .iter()
            .map(|((t, o), n)| (t.clone(), o.clone(), *n))
            .collect()
    }

    /// The change in progress, if any (without copying the history).
    pub fn running(&self) -> Option<ApplyRecord> {
        read_lock(&self.book).running.clone()
    }

    pub fn set_running(&self, r: Option<ApplyRecord>) {
        write(&self.book).running = r;
    }

    /// Record a finished change (or a dry run); returns the history file's new contents.
    pub fn finish(&self, r: ApplyRecord, limit: usize) -> Vec<u8> {
        let mut b = write(&self.book);
        if b.running.as_ref().is_some_and(|x| x.id == r.id) {
            b.running = None;
        }
        let key = (wire_name(&r.trigger), wire_name(&r.state));
        *b.counts.entry(key).or_default() += 1;
        b.history.push(r);
        crate::state_dir::trim_lines(&mut b.history, limit, MAX_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reservation_at_a_time() {
        let b = ApplyBook::default();
        assert!(!b.busy());
        b.reserve("web").unwrap();
        assert_eq!(b.reserve("web"), Err(Held("web".into())));
        assert_eq!(b.reserve("db"), Err(Held("web".into())));
        b.release();
        b.reserve("db").unwrap();
        assert!(b.busy());
    }

    #[test]
    fn ids_carry_the_process_salt_and_never_repeat() {
        let (a, b) = (ApplyBook::default(), ApplyBook::default());
        let ids: Vec<String> = (0..3).flat_map(|_| [a.new_id(), b.new_id()]).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        for id in &ids {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.len(), 3, "{id}");
            assert!(parts[0].starts_with('a') && parts[0][1..].parse::<u64>().is_ok());
            assert_eq!(parts[1].len(), 6, "{id}");
            assert!(u32::from_str_radix(parts[1], 16).is_ok(), "{id}");
        }
    }
}
