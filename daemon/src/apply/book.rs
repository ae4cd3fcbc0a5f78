//! The changes: the one in progress and the history (`<state_dir>/applies.jsonl`, oldest
//! first), and the lock that lets one change run at a time.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use netmode_advisor::api::{ApplyList, ApplyRecord};

use crate::rt::{now_ms, read_lock, wire_name, write};

pub const HISTORY_FILE: &str = "applies.jsonl";
const MAX_BYTES: usize = 2 << 20;

#[derive(Default)]
struct Book {
    running: Option<ApplyRecord>,
    history: Vec<ApplyRecord>,
    /// Changes finished since start, by (trigger, outcome): `/metrics` counters.
    counts: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
pub struct ApplyBook {
    book: RwLock<Book>,
    next: AtomicU64,
    /// Held for the whole of a change (and of recovery at start): one change at a time.
    pub lock: smol::lock::Mutex<()>,
}

impl ApplyBook {
    pub fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("a{}-{n}", now_ms() / 1000)
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
