//! Measurements: probe cells and sweeps turned into log goodput ratios (host over bridge),
//! weighed toward the traffic a container really carries, and combined with the prior.

use super::*;
use crate::api::{CellKind, Direction, Live, Path, Pattern, ProbeCell, ProbeMode};
pub(super) fn log_ratio(host: f64, bridge: f64) -> Option<f64> {
    (host > 0.0 && bridge > 0.0).then(|| (host / bridge).ln())
}

/// CPU seconds a probe cell's senders spent per GB they delivered.
pub fn cell_cpu_s_per_gb(c: &ProbeCell) -> Option<f64> {
    let gb = c.goodput_bps? * c.duration_s / 8.0 / 1e9;
    let cpu = c.counters.as_ref()?.cpu_s;
    (gb > 0.0 && cpu > 0.0).then(|| cpu / gb)
}

/// CPU microseconds a request/response cell's senders spent per exchange (its counters and
/// its rate are the same run's: the median one).
pub fn cell_cpu_us_per_exchange(c: &ProbeCell) -> Option<f64> {
    if c.pattern != Pattern::RequestResponse {
        return None;
    }
    let exchanges = c.transactions.as_ref()?.per_s * c.duration_s;
    let cpu = c.counters.as_ref()?.cpu_s;
    (exchanges > 0.0 && cpu > 0.0).then(|| cpu * 1e6 / exchanges)
}

/// A cell's figure in each of its runs, larger is better: goodput, or for request/response
/// transactions per second; the merged figure when it ran once. A request/response cell
/// recorded before its rates were kept has its runs' median round trips instead.
fn runs_of(c: &ProbeCell) -> (Vec<f64>, RrFigure) {
    if !c.throughput_runs().is_empty() {
        (c.throughput_runs().to_vec(), RrFigure::PerS)
    } else if c.pattern == Pattern::RequestResponse && !c.runs.is_empty() {
        (c.runs.clone(), RrFigure::LatencyUs)
    } else {
        (c.throughput().into_iter().collect(), RrFigure::PerS)
    }
}

/// A probe round as the posterior reads it: each cell's runs per mode as log figures
/// (oriented so that larger is better for host: log goodput or log transactions per second;
/// minus log latency in rounds remembered from before), weighted toward the container's
/// traffic. A round remembered before runs were kept counts each cell's ratio as one run per
/// mode.
pub(super) fn probe_round(cells: &[CellRatio], profile: &Profile) -> Option<posterior::Round> {
    let logs = |v: &[f64], sign: f64| -> Vec<f64> {
        v.iter()
            .filter(|x| **x > 0.0)
            .map(|x| sign * x.ln())
            .collect()
    };
    let per_cell: Vec<(f64, Vec<f64>, Vec<f64>)> = cells
        .iter()
        .map(|c| {
            let w = cell_weight(c, profile);
            let sign = c.rr_runs.sign(c.pattern);
            let (b, h) = (logs(&c.bridge_runs, sign), logs(&c.host_runs, sign));
            if b.is_empty() || h.is_empty() {
                (w, vec![0.0], vec![c.log_ratio])
            } else {
                (w, b, h)
            }
        })
        .collect();
    posterior::round_of(&per_cell)
}

/// Log ratios host/bridge per protocol and size from a container's latest probe cells.
pub fn cell_ratios(bridge: &[ProbeCell], host: &[ProbeCell]) -> Vec<CellRatio> {
    let mut out = Vec::new();
    for b in bridge.iter().filter(|c| c.concurrency == 1) {
        let kind = CellKind::of(b);
        let Some(h) = host.iter().find(|h| kind.is(h) && h.concurrency == 1) else {
            continue;
        };
        let ((bridge_runs, fb), (host_runs, fh)) = (runs_of(b), runs_of(h));
        // Both modes' runs must be the same figure (a cell from before the rates were kept
        // beside one from after: the merged figures alone).
        let (bridge_runs, host_runs, figure) = if fb == fh {
            (bridge_runs, host_runs, fb)
        } else {
            (Vec::new(), Vec::new(), RrFigure::PerS)
        };
        let Some(l) = log_ratio(h.throughput().unwrap_or(0.0), b.throughput().unwrap_or(0.0))
        else {
            continue;
        };
        let sign = figure.sign(b.pattern);
        // Runs paired in the order they ran (bridge, host, bridge, host, ...).
        let reps: Vec<f64> = if bridge_runs.len() >= 2 && host_runs.len() >= 2 {
            bridge_runs
                .iter()
                .zip(&host_runs)
                .filter_map(|(&rb, &rh)| log_ratio(rh, rb).map(|l| sign * l))
                .collect()
        } else {
            Vec::new()
        };
        out.push(CellRatio {
            bridge_runs,
            host_runs,
            rr_runs: figure,
            direction: b.direction,
            pattern: b.pattern,
            path: b.path,
            reps,
            protocol: b.protocol,
            size: b.size,
            log_ratio: l,
            bridge_cpu_s_per_gb: cell_cpu_s_per_gb(b),
            host_cpu_s_per_gb: cell_cpu_s_per_gb(h),
            bridge_cpu_us_per_exchange: cell_cpu_us_per_exchange(b),
            host_cpu_us_per_exchange: cell_cpu_us_per_exchange(h),
        });
    }
    out
}

/// Log ratios of a sweep's aggregate throughput host/bridge (goodput, or transactions per
/// second for request/response) per kind of traffic, protocol, size and N.
pub fn sweep_ratios(s: &Sweep) -> Vec<SweepRatio> {
    let mut out = Vec::new();
    for kind in s.profiles() {
        let cpu = |m: ProbeMode| s.at(&kind, 1, m).and_then(cell_cpu_s_per_gb);
        for n in 1..=s.max_concurrency {
            let (Some(h), Some(b)) = (
                s.at(&kind, n, ProbeMode::Host),
                s.at(&kind, n, ProbeMode::Bridge),
            ) else {
                continue;
            };
            if let Some(l) = log_ratio(h.throughput().unwrap_or(0.0), b.throughput().unwrap_or(0.0))
            {
                out.push(SweepRatio {
                    direction: kind.direction,
                    pattern: kind.pattern,
                    protocol: kind.protocol,
                    size: kind.size,
                    n,
                    log_ratio: l,
                    bridge_cpu_s_per_gb: cpu(ProbeMode::Bridge),
                    host_cpu_s_per_gb: cpu(ProbeMode::Host),
                });
            }
        }
    }
    out
}

/// What a container's traffic looks like, to tell which probe cells speak for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// The mode it runs in now (its CPU cost per byte is compared with the cells of that mode).
    pub mode: ModeKind,
    pub tcp_share: Option<f64>,
    pub mean_packet: Option<f64>,
    pub cpu_s_per_gb: Option<f64>,
    /// CPU microseconds its cgroup spends per packet (`Live::cpu_us_per_packet`).
    pub cpu_us_per_packet: Option<f64>,
    /// Share of its traffic (bytes) it receives; `None` when it moves nothing.
    pub rx_share: Option<f64>,
    /// Whether its traffic looks like requests and answers (`Live::request_response_like`);
    /// `None` when it moves nothing.
    pub request_response: Option<bool>,
    /// Share of its traffic with other containers of the gateway (`Live::local_share`: every
    /// protocol where the per-cgroup counters count, else TCP).
    pub local_share: Option<f64>,
}

impl Profile {
    pub fn of(c: &Container) -> Profile {
        let l = c.live.as_ref();
        Profile {
            mode: c.mode_kind,
            tcp_share: l.and_then(|l| l.tcp_share),
            mean_packet: l.and_then(|l| l.mean_packet_bytes),
            cpu_s_per_gb: l.and_then(|l| l.cpu_s_per_gb),
            cpu_us_per_packet: l.and_then(|l| l.cpu_us_per_packet),
            rx_share: l.and_then(Live::rx_share),
            request_response: l
                .filter(|l| l.rx_pps + l.tx_pps > 0.0)
                .map(Live::request_response_like),
            local_share: l.and_then(|l| l.local_share),
        }
    }

    /// Nothing known: every cell weighs alike.
    pub fn unknown(mode: ModeKind) -> Profile {
        Profile {
            mode,
            tcp_share: None,
            mean_packet: None,
            cpu_s_per_gb: None,
            cpu_us_per_packet: None,
            rx_share: None,
            request_response: None,
            local_share: None,
        }
    }
}

/// A Gaussian kernel on the log distance of two positive quantities: 1 when equal, 0.61 a
/// factor 1.65 apart, under 0.01 a factor 5 apart.
fn log_kernel(a: f64, b: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return 1.0;
    }
    let d = a.ln() - b.ln();
    (-d * d / 0.5).exp().max(1e-6)
}

/// How much a probe cell speaks for a container's traffic:
/// - pattern: request/response cells for traffic that looks like requests and answers,
///   streams for the rest (even weights when unknown);
/// - direction: egress cells by the share of bytes it sends, ingress cells by the share it
///   receives (even weights when unknown; request/response cells go both ways);
/// - path: local cells by the share of its traffic with containers of the gateway, upstream
///   cells by the rest (even weights when unknown);
/// - protocol: by the container's TCP share (even weights when unknown);
/// - size: UDP datagrams show their size on the wire (the mean packet, less its headers);
///   TCP writes do not (the stack coalesces them), but their cost does: small writes cost
///   several times more CPU per byte, so TCP cells are matched on CPU seconds per GB, and on
///   packet size only when that is unknown.
pub fn cell_weight(c: &CellRatio, p: &Profile) -> f64 {
    let proto = match (p.tcp_share, c.protocol) {
        (Some(s), Protocol::Tcp) => s,
        (Some(s), Protocol::Udp) => 1.0 - s,
        (None, _) => 0.5,
    }
    .max(1e-3);
    let pattern = match (p.request_response, c.pattern) {
        (Some(rr), Pattern::RequestResponse) => f64::from(u8::from(rr)),
        (Some(rr), Pattern::Stream) => f64::from(u8::from(!rr)),
        (None, _) => 0.5,
    }
    .max(1e-3);
    let direction = match (p.rx_share, c.direction, c.pattern) {
        (_, _, Pattern::RequestResponse) => 1.0,
        (Some(r), Direction::Ingress, _) => r,
        (Some(r), Direction::Egress, _) => 1.0 - r,
        (None, _, _) => 0.5,
    }
    .max(1e-3);
    let path = match (p.local_share, c.path) {
        (Some(l), Path::Local) => l,
        (Some(l), Path::Upstream) => 1.0 - l,
        (None, _) => 0.5,
    }
    .max(1e-3);
    let by_packet = || match p.mean_packet {
        Some(m) => log_kernel((m - 42.0).max(1.0), c.size as f64),
        None => 1.0,
    };
    let size = match c.protocol {
        // Datagrams, and requests one at a time, show their size on the wire.
        _ if c.pattern == Pattern::RequestResponse => by_packet(),
        Protocol::Udp => by_packet(),
        Protocol::Tcp => {
            let cell = if p.mode == ModeKind::Host {
                c.host_cpu_s_per_gb
            } else {
                c.bridge_cpu_s_per_gb
            };
            match (p.cpu_s_per_gb, cell) {
                (Some(a), Some(b)) => log_kernel(a, b),
                _ => by_packet(),
            }
        }
    };
    pattern * direction * path * proto * size
}

/// What one exchange of a container costs, in the mode it runs in, as Amdahl's law needs it:
/// the time the probes' path takes (microseconds per exchange at the probe's own rate) and
/// the container's own work beside it (its CPU per exchange less the probe sender's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathCost {
    pub path_us: f64,
    pub work_us: f64,
}

impl PathCost {
    /// The path's share of the container's time per exchange.
    pub fn share(&self) -> f64 {
        self.path_us / (self.path_us + self.work_us)
    }
}

/// A container's [`PathCost`], from the request/response cells of every round (weighed
/// toward its traffic as their ratios are; geometric means) and its cgroup's CPU per packet
/// (two packets an exchange: a request and its answer). `None` unless its traffic looks like
/// requests and answers and both are measured. A server whose own work per request is ten
/// times the path's time gets a tenth of the path's saving; a policed bridge, whose path
/// stalls each exchange far longer than any server works on it, passes on nearly all of it.
pub fn path_cost<'a>(
    cells: impl IntoIterator<Item = &'a CellRatio>,
    p: &Profile,
) -> Option<PathCost> {
    if p.request_response != Some(true) {
        return None;
    }
    let app = p.cpu_us_per_packet.filter(|x| *x > 0.0)? * 2.0;
    let median = |v: &[f64]| -> Option<f64> {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| *x > 0.0).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len().checked_sub(1)? / 2).copied()
    };
    let (mut time, mut cpu, mut w) = (0.0, 0.0, 0.0);
    for c in cells.into_iter().filter(|c| c.rr_runs == RrFigure::PerS) {
        let (runs, cpu_us) = if p.mode == ModeKind::Host {
            (&c.host_runs, c.host_cpu_us_per_exchange)
        } else {
            (&c.bridge_runs, c.bridge_cpu_us_per_exchange)
        };
        let (Some(per_s), Some(cpu_us)) = (median(runs), cpu_us.filter(|x| *x > 0.0)) else {
            continue;
        };
        let k = cell_weight(c, p);
        time += k * (1e6 / per_s).ln();
        cpu += k * cpu_us.ln();
        w += k;
    }
    (w > 0.0).then(|| PathCost {
        path_us: (time / w).exp(),
        work_us: (app - (cpu / w).exp()).max(0.0),
    })
}

/// The weighted ratio of each repetition of a round (one value when its cells ran once): a
/// cell that disagrees with itself run to run spreads them.
pub(super) fn weighted_ratios(cells: &[CellRatio], profile: &Profile) -> Vec<f64> {
    let n = cells.iter().map(|c| c.reps.len()).max().unwrap_or(0);
    if n < 2 {
        return weighted_ratio(cells, profile).into_iter().collect();
    }
    (0..n)
        .filter_map(|i| {
            let (mut sum, mut w) = (0.0, 0.0);
            for c in cells {
                let k = cell_weight(c, profile);
                sum += k * c.reps.get(i).copied().unwrap_or(c.log_ratio);
                w += k;
            }
            (w > 0.0).then(|| sum / w)
        })
        .collect()
}

pub(super) fn weighted_ratio(cells: &[CellRatio], profile: &Profile) -> Option<f64> {
    let (mut sum, mut w) = (0.0, 0.0);
    for c in cells {
        let k = cell_weight(c, profile);
        sum += k * c.log_ratio;
        w += k;
    }
    (w > 0.0).then(|| sum / w)
}

/// Mean and per-round spread of `values` (a single value gets the assumed spread).
pub(super) fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() < 2 {
        SINGLE_ROUND_SD
    } else {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0))
            .sqrt()
            .max(MIN_ROUND_SD)
    };
    (mean, sd)
}

/// A measured summary for the evidence a recommendation shows: log ratio host/bridge, its
/// per-round spread, and how many rounds back it (the decision reads `posterior`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub log_ratio: f64,
    pub spread: f64,
    pub rounds: usize,
}

/// The prior's log ratio host/bridge for `n` network-active containers.
pub fn prior_log_ratio(n: u32, crossover: u32) -> f64 {
    if n >= crossover.max(1) {
        (1.0 + PRIOR_MULTI_GAIN).ln()
    } else {
        -(1.0 + PRIOR_SINGLE_GAIN).ln()
    }
}

/// The sweep rounds that describe the latest sweep's conditions (the same limits), newest
/// last.
pub(super) fn matching_sweeps(memory: &Memory) -> Vec<&SweepRound> {
    let Some(last) = memory.sweeps.last() else {
        return Vec::new();
    };
    memory
        .sweeps
        .iter()
        .filter(|s| s.limits == last.limits && !s.cells.is_empty())
        .collect()
}

/// One round's log ratio at `n` for traffic like `profile`: the profiles it swept, weighted
/// as the probe cells are (the largest N measured stands in for larger ones).
pub(super) fn round_at(round: &SweepRound, n: u32, profile: &Profile) -> Option<(f64, u32)> {
    let max = round.cells.iter().map(|c| c.n).max()?;
    let at = n.clamp(1, max);
    let (mut sum, mut weight) = (0.0, 0.0);
    for c in round.cells.iter().filter(|c| c.n == at) {
        let w = cell_weight(&c.cell(), profile);
        sum += w * c.log_ratio;
        weight += w;
    }
    (weight > 0.0).then(|| (sum / weight, at))
}

/// The sweep's estimate at `n` for traffic like `profile`, over its rounds.
pub(super) fn sweep_at(
    sweeps: &[&SweepRound],
    n: u32,
    profile: &Profile,
) -> Option<(Estimate, u32)> {
    let per_round: Vec<(f64, u32)> = sweeps
        .iter()
        .filter_map(|r| round_at(r, n, profile))
        .collect();
    let at = per_round.iter().map(|(_, at)| *at).min()?;
    let values: Vec<f64> = per_round.iter().map(|(v, _)| *v).collect();
    let (mean, sd) = mean_sd(&values);
    Some((
        Estimate {
            log_ratio: mean,
            spread: sd,
            rounds: values.len(),
        },
        at,
    ))
}

/// The measured crossover for traffic like `profile`: the smallest N at which the mean sweep
/// ratio favours host.
pub fn measured_crossover(memory: &Memory, profile: &Profile) -> Option<u32> {
    let sweeps = matching_sweeps(memory);
    let max = sweeps
        .iter()
        .flat_map(|s| s.cells.iter().map(|c| c.n))
        .max()?;
    (1..=max).find(|n| {
        sweep_at(&sweeps, *n, profile).is_some_and(|(e, at)| at == *n && e.log_ratio > 0.0)
    })
}
