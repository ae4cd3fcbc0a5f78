//! What a study keeps: every cell as measured (`results.json`, written after each cell so an
//! interrupted study resumes), and the summaries the tables and figures draw: medians with
//! their spread over the repetitions.

use std::collections::BTreeMap;

use netmode_advisor::api::{CellCounters, Protocol};
use serde::{Deserialize, Serialize};

use crate::plan::{CellKey, Experiment, Mode, Options};

pub const FORMAT: u32 = 1;

/// The machine, as flent records it beside its results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub docker_api: String,
    /// `name mtu` of every interface.
    pub interfaces: Vec<String>,
    /// `tc qdisc show` (empty when tc is missing).
    pub qdiscs: Vec<String>,
    /// CPU cycle counters: "available" or why not.
    pub perf: String,
    /// Where the traffic went.
    pub sink: String,
}

/// One measured cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    #[serde(flatten)]
    pub key: CellKey,
    /// Receiver-side goodput, bit/s, summed over the cell's senders.
    pub goodput_bps: Option<f64>,
    pub sent_bps: Option<f64>,
    pub loss: Option<f64>,
    pub duration_s: f64,
    /// Request/response cells (`--multi .../request-response`): transactions and latency.
    #[serde(default)]
    pub transactions: Option<netmode_advisor::api::Transactions>,
    pub counters: Option<CellCounters>,
    pub error: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub format: u32,
    pub netmode_version: String,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub machine: Machine,
    pub options: Options,
    pub cells: Vec<CellResult>,
}

impl Results {
    pub fn done(&self, key: &CellKey) -> bool {
        self.cells
            .iter()
            .any(|c| &c.key == key && c.error.is_none())
    }
}

/// Median, min and max of the repetitions of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(mut xs: Vec<f64>) -> Option<Spread> {
        xs.retain(|x| x.is_finite());
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(|a, b| a.total_cmp(b));
        let n = xs.len();
        let median = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: xs[0],
            max: xs[n - 1],
            n,
        })
    }

    /// May no winner be called between the two? When their spreads overlap, or when either
    /// is a single run (no spread to judge against).
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.n < 2 || other.n < 2 || (self.min <= other.max && other.min <= self.max)
    }
}

/// The repetitions of one (experiment, mode, protocol, size, n), gathered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub experiment: Experiment,
    pub mode: Mode,
    pub protocol: Protocol,
    pub size: u32,
    pub n: u32,
}

/// Per-second rates of a cell's counters, as the paper's tables give them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub cycles: Option<Spread>,
    pub instructions: Option<Spread>,
    pub ipc: Option<Spread>,
    pub context_switches: Option<Spread>,
    pub page_faults: Option<Spread>,
    pub cpu_migrations: Option<Spread>,
    pub softirqs: Option<Spread>,
    pub cpu_utilisation: Option<Spread>,
    /// Why cycles are missing, if they are.
    pub perf_unavailable: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub goodput: Option<Spread>,
    pub rates: Rates,
    pub errors: Vec<String>,
}

pub fn summarise(cells: &[CellResult]) -> BTreeMap<Group, Summary> {
    let mut groups: BTreeMap<Group, Vec<&CellResult>> = BTreeMap::new();
    for c in cells {
        groups
            .entry(Group {
                experiment: c.key.experiment,
                mode: c.key.mode,
                protocol: c.key.protocol,
                size: c.key.size,
                n: c.key.n,
            })
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|(g, cs)| {
            let ok: Vec<&&CellResult> = cs.iter().filter(|c| c.error.is_none()).collect();
            let per_s = |f: &dyn Fn(&CellCounters) -> Option<f64>| {
                Spread::of(
                    ok.iter()
                        .filter_map(|c| {
                            let k = c.counters.as_ref()?;
                            Some(f(k)? / c.duration_s.max(1e-9))
                        })
                        .collect(),
                )
            };
            let rates = Rates {
                cycles: per_s(&|k| k.perf.cycles.map(|v| v as f64)),
                instructions: per_s(&|k| k.perf.instructions.map(|v| v as f64)),
                ipc: Spread::of(
                    ok.iter()
                        .filter_map(|c| c.counters.as_ref()?.perf.ipc)
                        .collect(),
                ),
                context_switches: per_s(&|k| {
                    Some((k.voluntary_context_switches + k.involuntary_context_switches) as f64)
                }),
                page_faults: per_s(&|k| Some((k.minor_faults + k.major_faults) as f64)),
                cpu_migrations: per_s(&|k| k.perf.cpu_migrations.map(|v| v as f64)),
                softirqs: per_s(&|k| Some((k.net_rx_softirqs + k.net_tx_softirqs) as f64)),
                cpu_utilisation: per_s(&|k| Some(k.cpu_s)),
                perf_unavailable: ok
                    .iter()
                    .find_map(|c| c.counters.as_ref()?.perf.unavailable.clone()),
            };
            let summary = Summary {
                goodput: Spread::of(ok.iter().filter_map(|c| c.goodput_bps).collect()),
                rates,
                errors: cs.iter().filter_map(|c| c.error.clone()).collect(),
            };
            (g, summary)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(vec![1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(vec![]).is_none());
        let a = Spread::of(vec![1.0, 2.0]).unwrap();
        let b = Spread::of(vec![2.0, 3.0]).unwrap();
        let c = Spread::of(vec![2.5, 3.0]).unwrap();
        assert!(a.overlaps(&b) && !a.overlaps(&c));
        // One run has no spread: never a winner.
        let one = Spread::of(vec![10.0]).unwrap();
        assert!(one.overlaps(&a) && a.overlaps(&one));
    }
}
