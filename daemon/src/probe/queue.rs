//! The probe queue and book: requests waiting their turn, the run in progress, the history
//! (oldest first) and, derived from it, the latest probe of each container and the latest
//! sweep. The engine takes from it; the API adds to it and reads it.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use netmode_advisor::api::{
    self as api, ContainerProbes, ProbeList, ProbeMode, ProbeRun, ProbeStatus, RunState, Sweep,
    Trigger,
};

use crate::error::RequestError;
use crate::rt::{now_ms, read_lock, write};

/// A probe waiting its turn, with what it was asked for.
#[derive(Debug, Clone)]
pub struct QueuedProbe {
    pub run: ProbeRun,
    /// The container to probe (its id), if any.
    pub container: Option<String>,
    /// Probe every container netmode manages.
    pub all: bool,
    pub sweep: bool,
}

/// Everything known about probes: the engine's state, the queue, the history (oldest first)
/// and, derived from it, the latest probe of each container and the latest sweep.
#[derive(Default)]
struct ProbeBook {
    status: ProbeStatus,
    running: Option<ProbeRun>,
    queued: VecDeque<QueuedProbe>,
    history: Vec<ProbeRun>,
    latest: HashMap<String, ContainerProbes>,
    sweep: Option<Sweep>,
    next_id: u64,
    /// Runs finished since start, by outcome: `/metrics` counters.
    outcomes: std::collections::BTreeMap<String, u64>,
}

/// Queued probes beyond this are refused (429).
const MAX_QUEUED: usize = 8;

impl ProbeBook {
    /// Fold a finished run into the latest-per-container view and the latest sweep.
    fn absorb(&mut self, run: &ProbeRun) {
        if run.state != RunState::Done && run.state != RunState::Aborted {
            return;
        }
        for cp in &run.containers {
            if cp.error.is_some() || cp.cells.is_empty() {
                continue;
            }
            let of = |m: ProbeMode| {
                cp.cells
                    .iter()
                    .filter(|c| c.mode == m)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            self.latest.insert(
                cp.target.name.clone(),
                ContainerProbes {
                    run_id: run.id.clone(),
                    finished_at_ms: run.finished_at_ms.unwrap_or(0),
                    bridge: of(ProbeMode::Bridge),
                    host: of(ProbeMode::Host),
                    in_place: of(ProbeMode::InPlace),
                    measured_for: cp.measured_for.clone(),
                },
            );
        }
        if let Some(sw) = &run.sweep {
            self.sweep = Some(sw.clone());
        }
    }
}

/// The probe book behind its lock, and the engine's wake-up call.
pub struct ProbeQueue {
    book: RwLock<ProbeBook>,
    /// Wakes the probe engine when a probe is queued.
    wake: smol::channel::Sender<()>,
    /// f64 bits: a reload may change it.
    cell_duration_s: std::sync::atomic::AtomicU64,
    /// Told when a run is recorded: the tick evaluates the advice at once (`finished`).
    finished: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
}

impl ProbeQueue {
    pub fn new(enabled: bool, cell_duration_s: f64, wake: smol::channel::Sender<()>) -> ProbeQueue {
        ProbeQueue {
            book: RwLock::new(ProbeBook {
                status: ProbeStatus {
                    enabled,
                    ..Default::default()
                },
                ..Default::default()
            }),
            wake,
            cell_duration_s: std::sync::atomic::AtomicU64::new(cell_duration_s.to_bits()),
            finished: smol::channel::bounded(1),
        }
    }

    /// A signal for each run recorded by `finish` (runs recorded while the last signal is
    /// unread make one): whoever evaluates the advice listens, so that a run being `done` and
    /// the recommendations reflecting it are moments apart, not a sample interval.
    pub fn finished(&self) -> smol::channel::Receiver<()> {
        self.finished.1.clone()
    }

    /// A reloaded configuration: periodic probing on or off, the duration of new cells.
    pub fn configure(&self, enabled: bool, cell_duration_s: f64) {
        write(&self.book).status.enabled = enabled;
        self.cell_duration_s.store(
            cell_duration_s.to_bits(),
            std::sync::atomic::Ordering::Relaxed,
        );
        // The engine rereads its settings when it wakes.
        let _ = self.wake.try_send(());
    }

    /// The probe engine's status, with the queue and the latest sweep.
    pub fn status(&self) -> ProbeStatus {
        let b = read_lock(&self.book);
        let mut s = b.status.clone();
        s.running = b.running.as_ref().map(|r| r.id.clone());
        s.queued = b.queued.len() as u32;
        s.sweep = b.sweep.clone();
        s
    }

    pub fn update_status(&self, f: impl FnOnce(&mut ProbeStatus)) {
        f(&mut write(&self.book).status);
    }

    /// The latest probe of the container named `name`.
    pub fn latest(&self, name: &str) -> Option<ContainerProbes> {
        read_lock(&self.book).latest.get(name).cloned()
    }

    /// Start from the history kept in the state directory.
    pub fn load_history(&self, runs: Vec<ProbeRun>) {
        let mut b = write(&self.book);
        for r in &runs {
            b.absorb(r);
        }
        b.history = runs;
    }

    /// Runs finished since start: (outcome, count).
    pub fn outcomes(&self) -> Vec<(String, u64)> {
        read_lock(&self.book)
            .outcomes
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    pub fn list(&self) -> ProbeList {
        let b = read_lock(&self.book);
        ProbeList {
            running: b.running.clone(),
            queued: b.queued.iter().map(|q| q.run.clone()).collect(),
            runs: b.history.iter().rev().cloned().collect(),
        }
    }

    pub fn run(&self, id: &str) -> Option<ProbeRun> {
        let b = read_lock(&self.book);
        b.running
            .iter()
            .chain(b.queued.iter().map(|q| &q.run))
            .chain(b.history.iter())
            .find(|r| r.id == id)
            .cloned()
    }

    /// A new run, to be queued (or, for the scheduler, to run at once).
    pub fn new_run(&self, trigger: Trigger) -> ProbeRun {
        let mut b = write(&self.book);
        b.next_id += 1;
        ProbeRun {
            id: format!("p{}-{}", now_ms() / 1000, b.next_id),
            trigger,
            state: RunState::Queued,
            queued_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            sink: None,
            cell_duration_s: f64::from_bits(
                self.cell_duration_s
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            containers: Vec::new(),
            sweep: None,
            error: None,
            notes: Vec::new(),
            progress: None,
        }
    }

    /// Queue a run, unless too many wait already.
    pub fn push(&self, q: QueuedProbe) -> Result<(), RequestError> {
        let mut b = write(&self.book);
        if b.queued.len() >= MAX_QUEUED {
            return Err(RequestError::Busy(format!(
                "{MAX_QUEUED} probes are already queued; try again later"
            )));
        }
        b.queued.push_back(q);
        drop(b);
        let _ = self.wake.try_send(());
        Ok(())
    }

    pub fn next_queued(&self) -> Option<QueuedProbe> {
        write(&self.book).queued.pop_front()
    }

    /// Show a run in progress (or none).
    pub fn set_running(&self, run: Option<ProbeRun>) {
        write(&self.book).running = run;
    }

    /// How far the running run `id` is.
    pub fn set_progress(&self, id: &str, p: api::ProbeProgress) {
        if let Some(r) = write(&self.book).running.as_mut().filter(|r| r.id == id) {
            r.progress = Some(p);
        }
    }

    /// Record a finished run; returns the history file's new contents (trimmed to `limit`).
    pub fn finish(&self, run: ProbeRun, limit: usize) -> Vec<u8> {
        let mut b = write(&self.book);
        b.running = None;
        *b.outcomes.entry(api::wire_name(&run.state)).or_default() += 1;
        b.absorb(&run);
        b.history.push(run);
        let bytes = super::history::trim(&mut b.history, limit);
        drop(b);
        let _ = self.finished.0.try_send(());
        bytes
    }
}
