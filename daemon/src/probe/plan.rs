//! What a probe run does, decided without I/O: which containers a scheduled run probes, which
//! cells it sends, the limits the sweep runs with, when the next run may start and whether it
//! should wait, a cell's result from its senders' reports, and the crossover. Unit-tested here;
//! the engine carries it out.

use std::time::{Duration, Instant};

use netmode_advisor::api::{
    self, CellCounters, Host, Limits, Path, Pattern, ProbeCell, ProbeMode, Protocol, Transactions,
};

use crate::config::{Probe as ProbeConfig, Traffic, TrafficKind};
use crate::error::ProbeError;
use crate::traffic::SenderReport;

/// Containers moving at least this much (rx + tx) count as network-active when the sweep
/// picks the limits its containers run with.
const ACTIVE_BPS: f64 = 100_000.0;
/// What one cell sends (its kind, as its results are matched), for how long, how fast.
#[derive(Debug, Clone)]
pub struct Cell {
    pub kind: api::CellKind,
    pub duration: Duration,
    pub rate_bps: Option<u64>,
    /// Request/response: exchanges in flight (`probe.rr_in_flight`); 1 for streams.
    pub in_flight: u32,
}

/// The senders' reports and the cell's counters.
#[derive(Debug, Clone)]
pub struct CellRun {
    pub reports: Vec<SenderReport>,
    pub counters: CellCounters,
}

/// Every kind of traffic x protocol x size, but sizes above a protocol's `max_message` (a
/// TCP write larger than a UDP datagram can be) for that protocol.
pub fn cells_in(
    cfg: &ProbeConfig,
    kinds: &[TrafficKind],
    protocols: &[Protocol],
    sizes: &[u32],
) -> Vec<Cell> {
    let mut v = Vec::new();
    for kind in kinds {
        let (direction, pattern) = kind.direction_and_pattern();
        for &protocol in protocols {
            // A size above UDP's largest datagram is TCP's alone.
            for &size in sizes.iter().filter(|&&s| s <= protocol.max_message()) {
                v.push(Cell {
                    kind: api::CellKind {
                        path: Path::Upstream,
                        pattern,
                        direction,
                        protocol,
                        size,
                    },
                    duration: cfg.duration,
                    rate_bps: cfg.rate,
                    in_flight: match pattern {
                        Pattern::RequestResponse => cfg.rr_in_flight,
                        Pattern::Stream => 1,
                    },
                });
            }
        }
    }
    v
}

/// The kinds of traffic a container is probed with: the configured list, or (`auto`) the
/// kinds its live traffic will weigh (the advisor weighs cells by how much the traffic looks
/// like them, so the others would cost probe time for nothing):
/// - request/response alone for a container exchanging small packets both ways at similar
///   rates (with a netmode sink: iperf3 has no request/response test);
/// - else egress when it sends at least a quarter of its bytes, ingress when it receives at
///   least a quarter of them (and is active);
/// - egress, the study's cells, for an idle container.
pub fn traffic(cfg: &ProbeConfig, c: &api::Container) -> Vec<TrafficKind> {
    match &cfg.traffic {
        Traffic::List(v) => v.clone(),
        Traffic::Auto => {
            let Some(l) = &c.live else {
                return vec![TrafficKind::Egress];
            };
            let iperf3 = cfg
                .target
                .as_deref()
                .is_some_and(|t| t.starts_with("iperf3://"));
            if l.request_response_like() && !iperf3 {
                return vec![TrafficKind::RequestResponse];
            }
            let rx = l.rx_share().unwrap_or(0.0);
            let mut v = Vec::new();
            if rx <= 0.75 {
                v.push(TrafficKind::Egress);
            }
            if rx >= 0.25 && l.rx_bps >= ACTIVE_BPS {
                v.push(TrafficKind::Ingress);
            }
            if v.is_empty() {
                v.push(TrafficKind::Egress);
            }
            v
        }
    }
}

/// A container with at least this share of its traffic on the gateway is probed on the
/// local path alone (the upstream cells would weigh almost nothing).
const LOCAL_ONLY: f64 = 0.9;

/// Where a container's cells go: upstream, and to a sink on the gateway too when most of its
/// traffic is with containers of the gateway (`Live::local_share`), that path alone when
/// nearly all of it is. Local cells go to netmode sinks netmoded starts, whatever
/// `probe.target` is.
pub fn paths(c: &api::Container) -> Vec<Path> {
    let share = c.live.as_ref().and_then(|l| l.local_share).unwrap_or(0.0);
    let mut v = Vec::new();
    if share < LOCAL_ONLY {
        v.push(Path::Upstream);
    }
    if share >= api::Live::LOCAL_DOMINATES {
        v.push(Path::Local);
    }
    v
}

/// The cells of a container: every kind of traffic x protocol x size, on each path.
pub fn container_cells(cfg: &ProbeConfig, kinds: &[TrafficKind], paths: &[Path]) -> Vec<Cell> {
    cells_on(cfg, kinds, &cfg.protocols, &cfg.sizes, paths)
}

/// `kinds` x `protocols` x `sizes` on each of `paths`.
fn cells_on(
    cfg: &ProbeConfig,
    kinds: &[TrafficKind],
    protocols: &[Protocol],
    sizes: &[u32],
    paths: &[Path],
) -> Vec<Cell> {
    let mut v = Vec::new();
    for &path in paths {
        v.extend(
            cells_in(cfg, kinds, protocols, sizes)
                .into_iter()
                .map(|c| Cell {
                    kind: api::CellKind { path, ..c.kind },
                    ..c
                }),
        );
    }
    v
}

/// The message size of the cell `probe.traffic = "auto"` adds for a container moving a bulk
/// TCP stream: what a bulk sender writes (iperf3's default, 128 KiB), where the study's 64 and
/// 1024 B writes cost a bulk receiver several times its own CPU per byte and the 1024 B
/// stream is bimodal run to run (docs/benchmarks.md, run f). Run h measured 65000 B writes
/// beside it on the same rounds: they read bridge ahead where iperf3's own client read host
/// +12 to +30 %, and decided on 131072 B the replay scored 0.148 against 0.397.
pub const BULK_SIZE: u32 = Protocol::Tcp.max_message();

/// A live mean packet at least this large (bytes) is a bulk stream's: frames this large are
/// the stack's offload aggregates (GSO/GRO), which full writes of a stream produce and
/// requests, answers and datagrams do not (a bulk receiver here: 26-33 KB).
pub const BULK_MIN_PACKET: f64 = 4096.0;

/// Is `c`'s live traffic a bulk stream: offload-sized frames, not requests and answers?
fn bulk_stream(c: &api::Container) -> bool {
    c.live.as_ref().is_some_and(|l| {
        !l.request_response_like() && l.mean_packet_bytes.is_some_and(|m| m >= BULK_MIN_PACKET)
    })
}

/// Would cells of `traffic` x `protocols` x `sizes` take the bulk cell: chosen (`auto`), TCP
/// among the protocols and the size not configured already?
fn takes_bulk(traffic: &Traffic, protocols: &[Protocol], sizes: &[u32]) -> bool {
    matches!(traffic, Traffic::Auto)
        && protocols.contains(&Protocol::Tcp)
        && !sizes.contains(&BULK_SIZE)
}

/// Does `c` get the bulk cell? With `probe.traffic = "auto"`, TCP probed and the size not
/// configured already, when its live traffic is a stream of offload-sized frames.
pub fn bulk(cfg: &ProbeConfig, c: &api::Container) -> bool {
    takes_bulk(&cfg.traffic, &cfg.protocols, &cfg.sizes) && bulk_stream(c)
}

/// The stream kinds among `kinds` (what the bulk cell is measured for).
fn streams(kinds: &[TrafficKind]) -> Vec<TrafficKind> {
    kinds
        .iter()
        .copied()
        .filter(|k| k.direction_and_pattern().1 == Pattern::Stream)
        .collect()
}

/// Every cell a container is probed with: its kinds of traffic x protocols x sizes on each
/// of its paths, and for a bulk stream (`bulk`) a TCP stream cell of `BULK_SIZE` B writes
/// per stream kind and path.
pub fn planned(cfg: &ProbeConfig, c: &api::Container) -> Vec<Cell> {
    let kinds = traffic(cfg, c);
    let paths = paths(c);
    let mut cells = container_cells(cfg, &kinds, &paths);
    if bulk(cfg, c) {
        cells.extend(cells_on(
            cfg,
            &streams(&kinds),
            &[Protocol::Tcp],
            &[BULK_SIZE],
            &paths,
        ));
    }
    cells
}

/// Every cell the sweep measures at each N: `probe.sweep_traffic` (`sweep_traffic`) x
/// `sweep_protocols` x `sweep_sizes`, and with `sweep_traffic = "auto"`, when a
/// network-active container the run may probe is a bulk stream, a TCP stream cell of
/// `BULK_SIZE` B writes per stream kind of those containers, as their own probes have: the
/// sweep's estimate for such a container otherwise rests on writes it does not make.
pub fn sweep_cells(cfg: &ProbeConfig, containers: &[api::Container]) -> Vec<Cell> {
    let mut cells = cells_in(
        cfg,
        &sweep_traffic(cfg, containers),
        &cfg.sweep_protocols,
        &cfg.sweep_sizes,
    );
    if takes_bulk(&cfg.sweep_traffic, &cfg.sweep_protocols, &cfg.sweep_sizes) {
        let kinds = active_kinds(containers, |c| {
            if bulk_stream(c) {
                streams(&traffic(cfg, c))
            } else {
                Vec::new()
            }
        });
        cells.extend(cells_in(cfg, &kinds, &[Protocol::Tcp], &[BULK_SIZE]));
    }
    cells
}

/// The kinds of traffic the sweep measures: the configured list, or (`auto`) every kind
/// `traffic` chooses for a network-active container the run may probe (in the order egress,
/// ingress, request/response), egress streams when none is active.
pub fn sweep_traffic(cfg: &ProbeConfig, containers: &[api::Container]) -> Vec<TrafficKind> {
    if let Traffic::List(v) = &cfg.sweep_traffic {
        return v.clone();
    }
    let mut kinds = active_kinds(containers, |c| traffic(cfg, c));
    if kinds.is_empty() {
        kinds.push(TrafficKind::Egress);
    }
    kinds
}

/// The kinds `pick` gives for the network-active containers a run may probe, sorted, each
/// once.
fn active_kinds(
    containers: &[api::Container],
    pick: impl Fn(&api::Container) -> Vec<TrafficKind>,
) -> Vec<TrafficKind> {
    let mut kinds: Vec<TrafficKind> = eligible(containers)
        .iter()
        .filter(|c| c.live.as_ref().is_some_and(is_active))
        .flat_map(pick)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Network-active: moving at least `ACTIVE_BPS`, or exchanging requests and answers.
fn is_active(l: &api::Live) -> bool {
    l.rx_bps + l.tx_bps >= ACTIVE_BPS || l.request_response_like()
}

/// Should a scheduled run wait? The reason, if so.
pub fn postpone_reason(host: &Host, live_bps: f64, cfg: &ProbeConfig) -> Option<String> {
    if let Some(u) = host.cpu_utilisation
        && u > cfg.skip_above_cpu
    {
        return Some(format!(
            "host CPU at {:.0}% is above probe.skip_above_cpu ({:.0}%)",
            u * 100.0,
            cfg.skip_above_cpu * 100.0
        ));
    }
    if live_bps > cfg.skip_above_traffic as f64 {
        return Some(format!(
            "containers' live traffic {:.1} Mbit/s is above probe.skip_above_traffic ({:.1} Mbit/s)",
            live_bps / 1e6,
            cfg.skip_above_traffic as f64 / 1e6
        ));
    }
    None
}

/// When the next scheduled run may start, after one that started at `started` and took
/// `took`: not before the interval, and not so soon that probing exceeds the duty cycle.
pub fn next_start(started: Instant, took: Duration, cfg: &ProbeConfig) -> Instant {
    started + cfg.interval.max(took.div_f64(cfg.max_duty_cycle))
}

/// When the next follow-up run may start, after a run that started at `started` and took
/// `took`: not before `probe.undecided_interval`, nor so soon that probing exceeds the duty
/// cycle.
pub fn next_follow_up(started: Instant, took: Duration, cfg: &ProbeConfig) -> Instant {
    started + cfg.undecided_interval.max(took.div_f64(cfg.max_duty_cycle))
}

/// Containers a scheduled run probes: bridge- or host-mode ones not labelled
/// `netmode.policy=ignore`.
pub fn eligible(containers: &[api::Container]) -> Vec<api::Container> {
    containers
        .iter()
        .filter(|c| c.mode_kind.is_manageable())
        .filter(|c| c.policy_label.as_deref() != Some("ignore"))
        .cloned()
        .collect()
}

/// Is `c` settled, so that a scheduled run leaves it out? Its mode is decided (switch or keep,
/// on measured evidence), and its latest probe (`latest`) measured, in both modes, every cell
/// it would be probed with now (`planned`: the same kinds of traffic, paths, protocols and
/// sizes, the bulk cell included). A
/// change of its traffic or of the configured cells brings it back, and so does a change of
/// the gateway that reopens its decision (the sweep, still run, at another number of active
/// containers): then it is undecided again.
pub fn settled(
    cfg: &ProbeConfig,
    c: &api::Container,
    latest: Option<&api::ContainerProbes>,
) -> bool {
    let Some(r) = c.recommendation.as_ref() else {
        return false;
    };
    if r.decision == api::Decision::Undecided || r.basis != api::Basis::Measured {
        return false;
    }
    let Some(l) = latest else {
        return false;
    };
    let measured = |cells: &[ProbeCell], k: &api::CellKind| {
        cells
            .iter()
            .any(|x| x.error.is_none() && x.concurrency == 1 && k.is(x))
    };
    let want = planned(cfg, c);
    !want.is_empty()
        && want.iter().all(|cell| {
            measured(&l.host, &cell.kind)
                && (measured(&l.bridge, &cell.kind) || measured(&l.in_place, &cell.kind))
        })
}

/// The container a follow-up run probes: of the network-active containers netmode manages
/// whose decision is still open, the one whose decision is worth most: the chance the
/// recommendation is wrong (the smaller of P and 1 - P that switching pays), times the gain at
/// stake, times its traffic. A container whose recommendation rests on the prior alone counts
/// as a coin toss at the study's gain.
pub fn follow_up(containers: &[api::Container]) -> Option<&api::Container> {
    containers
        .iter()
        .filter(|c| c.mode_kind.is_manageable() && c.policy_label.as_deref() != Some("ignore"))
        .filter_map(|c| {
            let r = c.recommendation.as_ref()?;
            if !r.network_active || r.decision != api::Decision::Undecided {
                return None;
            }
            let p = r.p_switch_pays?;
            let traffic = c.live.as_ref().map_or(0.0, |l| l.rx_bps + l.tx_bps);
            let value = p.min(1.0 - p) * r.expected_gain.abs().max(0.01) * traffic.max(1.0);
            Some((value, c))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.name.cmp(&a.1.name)))
        .map(|(_, c)| c)
}

/// The limits the sweep's containers run with: those most network-active containers have,
/// or, when none is active (probing waits for a quiet gateway), those most of the containers
/// netmode manages have. Ties go to the first seen (containers are sorted by name).
pub fn typical_limits(containers: &[api::Container]) -> Limits {
    let most_common = |active_only: bool| -> Option<Limits> {
        let mut counts: Vec<(Limits, usize)> = Vec::new();
        for c in eligible(containers) {
            let active = c.live.as_ref().is_some_and(is_active);
            if active_only && !active {
                continue;
            }
            match counts.iter_mut().find(|(l, _)| *l == c.limits) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.limits, 1)),
            }
        }
        let best = counts.iter().map(|(_, n)| *n).max()?;
        counts.into_iter().find(|(_, n)| *n == best).map(|(l, _)| l)
    };
    most_common(true)
        .or_else(|| most_common(false))
        .unwrap_or_default()
}

/// The smallest N at which host mode's aggregate goodput beats bridge mode's.
pub fn crossover(cells: &[ProbeCell]) -> Option<u32> {
    let at = |n: u32, m: ProbeMode| {
        cells
            .iter()
            .find(|c| c.concurrency == n && c.mode == m)
            .and_then(|c| c.throughput())
    };
    let max = cells.iter().map(|c| c.concurrency).max()?;
    (1..=max).find(|n| matches!((at(*n, ProbeMode::Host), at(*n, ProbeMode::Bridge)), (Some(h), Some(b)) if h > b))
}

/// A cell's result from its senders' reports.
pub fn cell_result(
    mode: ProbeMode,
    cell: &Cell,
    n: u32,
    r: Result<CellRun, ProbeError>,
) -> ProbeCell {
    let mut out = ProbeCell {
        mode,
        direction: cell.kind.direction,
        pattern: cell.kind.pattern,
        path: cell.kind.path,
        protocol: cell.kind.protocol,
        size: cell.kind.size,
        concurrency: n,
        in_flight: cell.in_flight,
        goodput_bps: None,
        sent_bps: None,
        loss: None,
        duration_s: cell.duration.as_secs_f64(),
        transactions: None,
        runs: Vec::new(),
        runs_per_s: Vec::new(),
        counters: None,
        error: None,
    };
    match r {
        Err(e) => out.error = Some(e.to_string()),
        Ok(run) => {
            out.counters = Some(run.counters);
            if let Some(e) = run.reports.iter().find_map(|r| r.error.clone()) {
                out.error = Some(e);
                return out;
            }
            let outcomes: Vec<_> = run
                .reports
                .iter()
                .filter_map(|r| r.outcome.as_ref())
                .collect();
            out.goodput_bps = Some(outcomes.iter().map(|o| o.goodput_bps()).sum());
            out.sent_bps = Some(outcomes.iter().map(|o| o.sent_bps()).sum());
            if cell.kind.protocol == Protocol::Udp {
                let sent: u64 = outcomes.iter().map(|o| o.sent_messages).sum();
                let lost: f64 = outcomes
                    .iter()
                    .map(|o| o.loss.unwrap_or(0.0) * o.sent_messages as f64)
                    .sum();
                out.loss = (sent > 0).then(|| lost / sent as f64);
            }
            // This run's figures, as `runs` and `runs_per_s` document them.
            match cell.kind.pattern {
                Pattern::Stream => out.runs = out.goodput_bps.into_iter().collect(),
                Pattern::RequestResponse => {
                    out.transactions = transactions(&outcomes, out.loss);
                    out.runs = out
                        .transactions
                        .map(|t| t.latency_p50_us)
                        .into_iter()
                        .collect();
                    out.runs_per_s = out.transactions.map(|t| t.per_s).into_iter().collect();
                }
            }
        }
    }
    out
}

/// One cell from its runs (the same cell measured `probe.repetitions` times): the median
/// run by throughput (goodput, or for request/response transactions per second: one over
/// the mean exchange time, so a stall on a policed path counts where the median round trip
/// would hide it), its figures and counters, and every run's figures in `runs` (and
/// `runs_per_s`). Failed runs are left out while one succeeded; a cell all of whose runs
/// failed keeps the first error.
pub fn merge_runs(runs: Vec<ProbeCell>) -> Option<ProbeCell> {
    let mut ok: Vec<ProbeCell> = runs
        .iter()
        .filter(|c| c.error.is_none() && c.throughput().is_some())
        .cloned()
        .collect();
    if ok.is_empty() {
        return runs.into_iter().next();
    }
    let all_runs: Vec<f64> = ok.iter().flat_map(|c| c.runs.clone()).collect();
    let all_per_s: Vec<f64> = ok.iter().flat_map(|c| c.runs_per_s.clone()).collect();
    ok.sort_by(|a, b| {
        a.throughput()
            .unwrap_or(0.0)
            .total_cmp(&b.throughput().unwrap_or(0.0))
    });
    // The lower median of an even count: a figure that was measured, not an average.
    let mut cell = ok.swap_remove((ok.len() - 1) / 2);
    cell.runs = all_runs;
    cell.runs_per_s = all_per_s;
    Some(cell)
}

/// Transactions per second summed over clients; the median of their medians and the worst
/// of their 99th percentiles.
fn transactions(outcomes: &[&crate::traffic::Outcome], loss: Option<f64>) -> Option<Transactions> {
    let per_s = outcomes
        .iter()
        .filter(|o| o.elapsed_s > 0.0)
        .map(|o| o.transactions as f64 / o.elapsed_s)
        .sum();
    let mut p50: Vec<f64> = outcomes.iter().filter_map(|o| o.latency_p50_us).collect();
    p50.sort_by(f64::total_cmp);
    let p99 = outcomes
        .iter()
        .filter_map(|o| o.latency_p99_us)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Some(Transactions {
        per_s,
        latency_p50_us: *p50.get(p50.len() / 2)?,
        latency_p99_us: p99?,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmode_advisor::api::{Direction, ModeKind};

    fn cell(mode: ProbeMode, n: u32, bps: f64) -> ProbeCell {
        ProbeCell {
            mode,
            direction: Direction::Egress,
            pattern: Pattern::Stream,
            path: Path::Upstream,
            protocol: Protocol::Tcp,
            size: 64,
            concurrency: n,
            in_flight: 1,
            goodput_bps: Some(bps),
            sent_bps: None,
            loss: None,
            duration_s: 3.0,
            transactions: None,
            runs: vec![bps],
            runs_per_s: Vec::new(),
            counters: None,
            error: None,
        }
    }

    #[test]
    fn runs_merge_into_the_median_run() {
        let runs = vec![
            cell(ProbeMode::Bridge, 1, 300.0),
            cell(ProbeMode::Bridge, 1, 100.0),
            ProbeCell {
                error: Some("sink gone".into()),
                goodput_bps: None,
                ..cell(ProbeMode::Bridge, 1, 0.0)
            },
            cell(ProbeMode::Bridge, 1, 200.0),
        ];
        let m = merge_runs(runs).unwrap();
        assert_eq!(m.goodput_bps, Some(200.0));
        assert_eq!(m.runs, [300.0, 100.0, 200.0]);
        assert!(m.error.is_none());
        // Two runs: the lower one, as measured.
        let m = merge_runs(vec![
            cell(ProbeMode::Host, 1, 5.0),
            cell(ProbeMode::Host, 1, 9.0),
        ]);
        assert_eq!(m.unwrap().goodput_bps, Some(5.0));
        // All failed: the first error stays.
        let failed = ProbeCell {
            error: Some("x".into()),
            goodput_bps: None,
            ..cell(ProbeMode::Host, 1, 0.0)
        };
        assert_eq!(
            merge_runs(vec![failed.clone()]).unwrap().error.as_deref(),
            Some("x")
        );
        assert_eq!(merge_runs(vec![]), None);
    }

    /// Request/response runs are judged by transactions per second: a run that stalled
    /// (a policer's drops cost a retransmission timeout now and then) is the slow one even
    /// though its median round trip is the best of the three.
    #[test]
    fn request_response_runs_merge_by_transactions_per_second() {
        let rr = |per_s: f64, p50: f64| ProbeCell {
            pattern: Pattern::RequestResponse,
            transactions: Some(Transactions {
                per_s,
                latency_p50_us: p50,
                latency_p99_us: 4.0 * p50,
                loss: None,
            }),
            // Each run's figures as cell_result records them.
            runs: vec![p50],
            runs_per_s: vec![per_s],
            ..cell(ProbeMode::Bridge, 1, 1e6)
        };
        let m = merge_runs(vec![
            rr(30_000.0, 30.0),
            rr(900.0, 25.0),
            rr(20_000.0, 45.0),
        ])
        .unwrap();
        assert_eq!(m.runs_per_s, [30_000.0, 900.0, 20_000.0]);
        assert_eq!(m.runs, [30.0, 25.0, 45.0]);
        assert_eq!(m.transactions.unwrap().per_s, 20_000.0);
        assert_eq!(m.throughput(), Some(20_000.0));
    }

    #[test]
    fn crossover_is_the_first_n_where_host_wins() {
        let cells = vec![
            cell(ProbeMode::Bridge, 1, 100.0),
            cell(ProbeMode::Host, 1, 80.0),
            cell(ProbeMode::Bridge, 2, 150.0),
            cell(ProbeMode::Host, 2, 140.0),
            cell(ProbeMode::Bridge, 3, 160.0),
            cell(ProbeMode::Host, 3, 190.0),
        ];
        assert_eq!(crossover(&cells), Some(3));
        assert_eq!(crossover(&cells[..4]), None);
        assert_eq!(crossover(&[]), None);
    }

    fn container(name: &str, cpus: Option<f64>, rx_bps: f64, tx_bps: f64) -> api::Container {
        let mut x: api::Container = serde_json::from_value(serde_json::json!({
            "id": name, "name": name, "image": "i", "network_mode": "bridge", "mode_kind": "bridge",
            "networks": [], "pid": 1, "started_at": "", "limits": {"cpus": cpus, "cpu_shares": null,
            "cpuset": null, "memory_bytes": null}, "ports": [], "exposed_ports": [], "compose": null,
            "policy_label": null, "live": null, "probes": null
        }))
        .unwrap();
        if rx_bps + tx_bps > 0.0 {
            x.live = serde_json::from_value(serde_json::json!({"rx_bps": rx_bps, "tx_bps": tx_bps,
                "rx_pps": 1.0, "tx_pps": 0.0, "mean_packet_bytes": 100.0, "attributed": "full",
                "source": "veth", "interfaces": [], "rx_bytes": 0, "tx_bytes": 0, "rx_packets": 0,
                "tx_packets": 0, "interval_s": 1.0, "note": null}))
            .unwrap();
        }
        x
    }

    /// A recommendation of `decision` with `p` that switching pays and `gain` at stake.
    fn decided(
        mut c: api::Container,
        decision: api::Decision,
        p: f64,
        gain: f64,
    ) -> api::Container {
        c.recommendation = serde_json::from_value(serde_json::json!({
            "mode": "bridge", "action": "keep", "applicable": false, "expected_gain": gain,
            "confidence": 1.0 - p, "reason": "", "blockers": [], "warnings": [],
            "basis": "measured", "network_active": true, "held_until_ms": null, "evidence": [],
            "p_switch_pays": p, "decision": decision,
        }))
        .unwrap();
        c
    }

    #[test]
    fn a_follow_up_probes_the_undecided_container_worth_most() {
        use api::Decision::{Keep, Switch, Undecided};
        // Worth: min(P, 1 - P) x gain x traffic.
        let cs = vec![
            decided(container("a", None, 10e6, 0.0), Undecided, 0.9, 0.2), // 0.1 x 0.2 x 10
            decided(container("b", None, 5e6, 0.0), Undecided, 0.5, 0.3),  // 0.5 x 0.3 x 5
            decided(container("c", None, 100e6, 0.0), Switch, 0.99, 0.5),  // decided
            decided(container("d", None, 100e6, 0.0), Keep, 0.01, 0.5),    // decided
        ];
        assert_eq!(follow_up(&cs).map(|c| c.name.as_str()), Some("b"));
        // Much more traffic outweighs a surer estimate.
        let mut cs = cs;
        cs[0] = decided(container("a", None, 500e6, 0.0), Undecided, 0.9, 0.2);
        assert_eq!(follow_up(&cs).map(|c| c.name.as_str()), Some("a"));
        // Not network-active, ignored, or left alone: never.
        for c in cs.iter_mut().take(2) {
            c.recommendation.as_mut().unwrap().network_active = false;
        }
        assert_eq!(follow_up(&cs).map(|c| c.name.as_str()), None);
        let mut ignored = decided(container("e", None, 10e6, 0.0), Undecided, 0.5, 0.3);
        ignored.policy_label = Some("ignore".into());
        assert_eq!(follow_up(&[ignored]).map(|c| c.name.as_str()), None);
    }

    /// A latest probe that measured `cells` in bridge and in host mode.
    fn measured(cells: &[Cell]) -> api::ContainerProbes {
        let of = |mode: ProbeMode| -> Vec<ProbeCell> {
            cells
                .iter()
                .map(|k| ProbeCell {
                    protocol: k.kind.protocol,
                    size: k.kind.size,
                    direction: k.kind.direction,
                    pattern: k.kind.pattern,
                    path: k.kind.path,
                    ..cell(mode, 1, 1e6)
                })
                .collect()
        };
        api::ContainerProbes {
            run_id: "r".into(),
            finished_at_ms: 0,
            bridge: of(ProbeMode::Bridge),
            host: of(ProbeMode::Host),
            in_place: vec![],
            measured_for: None,
        }
    }

    #[test]
    fn a_decided_container_measured_as_it_is_now_is_settled() {
        use api::Decision::{Keep, Switch, Undecided};
        let cfg = ProbeConfig::default();
        // Idle containers are probed with egress streams only.
        let c = decided(container("a", None, 0.0, 0.0), Keep, 0.01, 0.3);
        let latest = measured(&container_cells(&cfg, &traffic(&cfg, &c), &paths(&c)));
        assert!(settled(&cfg, &c, Some(&latest)));
        let switch = decided(container("a", None, 0.0, 0.0), Switch, 0.99, 0.3);
        assert!(settled(&cfg, &switch, Some(&latest)));
        // Undecided, on the prior alone, or never probed: not settled.
        let open = decided(container("a", None, 0.0, 0.0), Undecided, 0.6, 0.3);
        assert!(!settled(&cfg, &open, Some(&latest)));
        let mut prior = c.clone();
        prior.recommendation.as_mut().unwrap().basis = api::Basis::Prior;
        assert!(!settled(&cfg, &prior, Some(&latest)));
        assert!(!settled(&cfg, &c, None));
        // A cell that failed, or one mode missing a cell, is no measurement.
        let mut failed = latest.clone();
        failed.host[0].error = Some("refused".into());
        assert!(!settled(&cfg, &c, Some(&failed)));
        let mut short = latest.clone();
        short.bridge.pop();
        assert!(!settled(&cfg, &c, Some(&short)));
        // Measured in place instead of on a bridge probe container: the same.
        let mut in_place = latest.clone();
        in_place.in_place = std::mem::take(&mut in_place.bridge);
        assert!(settled(&cfg, &c, Some(&in_place)));
        // Its traffic changed (now it receives): the cells it needs were never measured.
        let busy = decided(container("a", None, 50e6, 0.0), Keep, 0.01, 0.3);
        assert!(!settled(&cfg, &busy, Some(&latest)));
        // The configuration asks for another size.
        let mut bigger = cfg.clone();
        bigger.sizes.push(1400);
        assert!(!settled(&bigger, &c, Some(&latest)));
    }

    #[test]
    fn containers_are_probed_with_traffic_like_their_own() {
        use TrafficKind::*;
        let cfg = ProbeConfig::default();
        let of = |rx: f64, tx: f64| traffic(&cfg, &container("a", None, rx, tx));
        // Idle, or sending: the study's egress cells only.
        assert_eq!(of(0.0, 0.0), [Egress]);
        assert_eq!(of(1e6, 9e6), [Egress]);
        // Both ways: both.
        assert_eq!(of(3e6, 9e6), [Egress, Ingress]);
        // Receiving (nearly) only: ingress only.
        assert_eq!(of(9e6, 1e5), [Ingress]);
        // A trickle is no profile.
        assert_eq!(of(5e4, 0.0), [Egress]);
        // Small packets both ways at similar rates: request/response alone (container() gives
        // 100 B packets; rx_pps and tx_pps set here).
        let mut c = container("a", None, 2e5, 2e5);
        let l = c.live.as_mut().unwrap();
        (l.rx_pps, l.tx_pps) = (250.0, 250.0);
        assert_eq!(traffic(&cfg, &c), [RequestResponse]);
        // ... but not against iperf3, and not for a one-way stream of small packets.
        let iperf3 = ProbeConfig {
            target: Some("iperf3://10.0.0.5:5201".into()),
            ..ProbeConfig::default()
        };
        assert_eq!(traffic(&iperf3, &c), [Egress, Ingress]);
        let l = c.live.as_mut().unwrap();
        (l.rx_pps, l.tx_pps) = (250.0, 10.0);
        assert!(!traffic(&cfg, &c).contains(&RequestResponse));
        let fixed = ProbeConfig {
            traffic: Traffic::List(vec![Ingress]),
            ..ProbeConfig::default()
        };
        assert_eq!(traffic(&fixed, &container("a", None, 0.0, 0.0)), [Ingress]);
        let cells = cells_in(
            &cfg,
            &[Egress, RequestResponse],
            &[Protocol::Tcp],
            &[64, 1024],
        );
        assert_eq!(cells.len(), 4);
        assert_eq!(
            (cells[2].kind.direction, cells[2].kind.pattern),
            (Direction::Egress, Pattern::RequestResponse)
        );
    }

    #[test]
    fn a_bulk_stream_gets_a_cell_of_bulk_writes() {
        let cfg = ProbeConfig::default();
        let sizes = |c: &api::Container, cfg: &ProbeConfig| -> Vec<(Direction, Protocol, u32)> {
            planned(cfg, c)
                .iter()
                .map(|x| (x.kind.direction, x.kind.protocol, x.kind.size))
                .collect()
        };
        // A bulk receiver (iperf3 here: 26-33 KB offload frames): its ingress cells at the
        // configured sizes, then one of bulk writes.
        let mut bulk_rx = container("a", None, 20e6, 1e5);
        bulk_rx.live.as_mut().unwrap().mean_packet_bytes = Some(30_000.0);
        let tcp = ProbeConfig {
            protocols: vec![Protocol::Tcp],
            ..ProbeConfig::default()
        };
        assert_eq!(
            sizes(&bulk_rx, &tcp),
            [
                (Direction::Ingress, Protocol::Tcp, 64),
                (Direction::Ingress, Protocol::Tcp, 1024),
                (Direction::Ingress, Protocol::Tcp, BULK_SIZE),
            ]
        );
        // UDP probed too (the default): the bulk cell is TCP's alone (no datagram is that
        // large).
        let got = sizes(&bulk_rx, &cfg);
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], (Direction::Ingress, Protocol::Tcp, BULK_SIZE));
        // Full frames or smaller (a stream of small writes, the study's 1024 B), requests and
        // answers, or an idle container: the configured cells only.
        let mut frames = bulk_rx.clone();
        frames.live.as_mut().unwrap().mean_packet_bytes = Some(1500.0);
        assert!(!bulk(&cfg, &frames));
        assert_eq!(sizes(&frames, &tcp).len(), 2);
        let mut rr = container("a", None, 2e5, 2e5);
        let l = rr.live.as_mut().unwrap();
        (l.rx_pps, l.tx_pps, l.mean_packet_bytes) = (250.0, 250.0, Some(100.0));
        assert!(!bulk(&cfg, &rr));
        assert!(!bulk(&cfg, &container("a", None, 0.0, 0.0)));
        // A fixed list of kinds, no TCP, or the size configured already: as configured.
        let fixed = ProbeConfig {
            traffic: Traffic::List(vec![TrafficKind::Ingress]),
            ..ProbeConfig::default()
        };
        assert!(!bulk(&fixed, &bulk_rx));
        let udp = ProbeConfig {
            protocols: vec![Protocol::Udp],
            ..ProbeConfig::default()
        };
        assert!(!bulk(&udp, &bulk_rx));
        let configured = ProbeConfig {
            sizes: vec![64, BULK_SIZE],
            ..tcp.clone()
        };
        assert!(!bulk(&configured, &bulk_rx));
        assert_eq!(sizes(&bulk_rx, &configured).len(), 2);
        // A decided bulk receiver whose latest probe lacks the bulk cell is not settled.
        let d = decided(bulk_rx, api::Decision::Keep, 0.01, 0.3);
        let all = planned(&tcp, &d);
        assert!(settled(&tcp, &d, Some(&measured(&all))));
        assert!(!settled(&tcp, &d, Some(&measured(&all[..2]))));
    }

    #[test]
    fn the_sweep_gets_the_bulk_cell_of_a_bulk_stream() {
        let cells = |cfg: &ProbeConfig, cs: &[api::Container]| -> Vec<(Direction, Protocol, u32)> {
            sweep_cells(cfg, cs)
                .iter()
                .map(|x| (x.kind.direction, x.kind.protocol, x.kind.size))
                .collect()
        };
        let tcp = ProbeConfig {
            sweep_protocols: vec![Protocol::Tcp],
            ..ProbeConfig::default()
        };
        let mut bulk_rx = container("a", None, 20e6, 1e5);
        bulk_rx.live.as_mut().unwrap().mean_packet_bytes = Some(30_000.0);
        let mut small = container("b", None, 20e6, 1e5);
        small.live.as_mut().unwrap().mean_packet_bytes = Some(1500.0);
        // A receiver of small frames: the configured sizes, ingress.
        assert_eq!(
            cells(&tcp, std::slice::from_ref(&small)),
            [
                (Direction::Ingress, Protocol::Tcp, 64),
                (Direction::Ingress, Protocol::Tcp, 1024),
            ]
        );
        // A bulk receiver beside it: one cell of bulk writes more, for its kind.
        assert_eq!(
            cells(&tcp, &[small.clone(), bulk_rx.clone()]),
            [
                (Direction::Ingress, Protocol::Tcp, 64),
                (Direction::Ingress, Protocol::Tcp, 1024),
                (Direction::Ingress, Protocol::Tcp, BULK_SIZE),
            ]
        );
        // Its own probes and the sweep agree on the cell.
        assert!(
            planned(&ProbeConfig::default(), &bulk_rx)
                .iter()
                .any(|c| c.kind.size == BULK_SIZE && c.kind.direction == Direction::Ingress)
        );
        // A fixed list of kinds, no TCP, the size configured, or an ignored container: as
        // configured.
        for cfg in [
            ProbeConfig {
                sweep_traffic: Traffic::List(vec![TrafficKind::Ingress]),
                ..tcp.clone()
            },
            ProbeConfig {
                sweep_protocols: vec![Protocol::Udp],
                ..ProbeConfig::default()
            },
            ProbeConfig {
                sweep_sizes: vec![64, BULK_SIZE],
                ..tcp.clone()
            },
        ] {
            let got = cells(&cfg, std::slice::from_ref(&bulk_rx));
            assert_eq!(
                got.iter().filter(|c| c.2 == BULK_SIZE).count(),
                usize::from(cfg.sweep_sizes.contains(&BULK_SIZE)),
                "{cfg:?}"
            );
        }
        let mut ignored = bulk_rx.clone();
        ignored.policy_label = Some("ignore".into());
        assert!(cells(&tcp, &[ignored]).iter().all(|c| c.2 != BULK_SIZE));
    }

    #[test]
    fn the_sweep_covers_the_traffic_of_the_active_containers() {
        use TrafficKind::*;
        let cfg = ProbeConfig::default();
        // Nothing active (a trickle, an idle one): the study's egress streams.
        let quiet = [
            container("a", None, 5e4, 0.0),
            container("b", None, 0.0, 0.0),
        ];
        assert_eq!(sweep_traffic(&cfg, &quiet), [Egress]);
        // A receiver and a request/response poller: their kinds, in a fixed order, once.
        let mut poller = container("p", None, 2e4, 2e4);
        let l = poller.live.as_mut().unwrap();
        (l.rx_pps, l.tx_pps) = (250.0, 250.0);
        let busy = [
            poller.clone(),
            container("r", None, 9e6, 1e5),
            container("r2", None, 8e6, 0.0),
            container("idle", None, 0.0, 0.0),
        ];
        assert_eq!(sweep_traffic(&cfg, &busy), [Ingress, RequestResponse]);
        // A container labelled to be ignored does not count.
        let mut ignored = poller;
        ignored.policy_label = Some("ignore".into());
        assert_eq!(sweep_traffic(&cfg, &[ignored]), [Egress]);
        // A fixed list is the list.
        let fixed = ProbeConfig {
            sweep_traffic: Traffic::List(vec![RequestResponse]),
            ..ProbeConfig::default()
        };
        assert_eq!(sweep_traffic(&fixed, &quiet), [RequestResponse]);
    }

    #[test]
    fn traffic_between_containers_is_probed_on_its_path_too() {
        let cfg = ProbeConfig::default();
        let mut c = container("sensor", None, 2e6, 2e6);
        assert_eq!(paths(&c), [Path::Upstream]);
        c.live.as_mut().unwrap().local_share = Some(0.3);
        assert_eq!(paths(&c), [Path::Upstream]);
        c.live.as_mut().unwrap().local_share = Some(0.8);
        assert_eq!(paths(&c), [Path::Upstream, Path::Local]);
        let cells = container_cells(&cfg, &[TrafficKind::Egress], &paths(&c));
        assert_eq!(cells.len(), 8);
        assert!(cells[..4].iter().all(|c| c.kind.path == Path::Upstream));
        assert!(cells[4..].iter().all(|c| c.kind.path == Path::Local));
        // Nearly all of it on the gateway: that path alone, the round no longer.
        c.live.as_mut().unwrap().local_share = Some(0.95);
        assert_eq!(paths(&c), [Path::Local]);
    }

    #[test]
    fn the_sweep_takes_the_limits_containers_have() {
        let c = |name: &str, cpus: Option<f64>, bps: f64| container(name, cpus, bps, 0.0);
        // Idle gateway: what most containers have.
        let idle = [
            c("a", Some(0.5), 0.0),
            c("b", Some(0.5), 0.0),
            c("c", None, 0.0),
        ];
        assert_eq!(typical_limits(&idle).cpus, Some(0.5));
        // The active ones decide when there are some.
        let busy = [
            c("a", Some(0.5), 0.0),
            c("b", Some(0.5), 0.0),
            c("c", None, 5e6),
        ];
        assert_eq!(typical_limits(&busy).cpus, None);
        assert_eq!(typical_limits(&[]), Limits::default());
    }

    #[test]
    fn the_duty_cycle_caps_how_often_runs_start() {
        let cfg = ProbeConfig {
            interval: Duration::from_secs(60),
            max_duty_cycle: 0.1,
            ..ProbeConfig::default()
        };
        let t0 = Instant::now();
        // A 2 s run: the interval decides.
        assert_eq!(
            next_start(t0, Duration::from_secs(2), &cfg),
            t0 + Duration::from_secs(60)
        );
        // A 30 s run: 10 % duty means 300 s between starts.
        assert_eq!(
            next_start(t0, Duration::from_secs(30), &cfg),
            t0 + Duration::from_secs(300)
        );
    }

    #[test]
    fn busy_gateways_postpone_scheduled_runs() {
        let cfg = ProbeConfig::default();
        let mut host = Host {
            hostname: "h".into(),
            kernel: "k".into(),
            arch: "a".into(),
            cpus: 4,
            sample_interval_s: 5.0,
            cpu_utilisation: Some(0.2),
            softirq_share: None,
            context_switches_per_s: None,
            net_rx_softirqs_per_s: None,
            net_tx_softirqs_per_s: None,
            counting: None,
        };
        assert_eq!(postpone_reason(&host, 1e6, &cfg), None);
        let r = postpone_reason(&host, 80e6, &cfg).unwrap();
        assert!(
            r.contains("80.0 Mbit/s") && r.contains("skip_above_traffic"),
            "{r}"
        );
        host.cpu_utilisation = Some(0.9);
        assert!(postpone_reason(&host, 0.0, &cfg).unwrap().contains("90%"));
    }

    #[test]
    fn cells_are_every_protocol_and_size_in_order() {
        let cfg = ProbeConfig {
            duration: Duration::from_secs(2),
            rate: Some(1_000_000),
            ..ProbeConfig::default()
        };
        let cells = cells_in(
            &cfg,
            &[TrafficKind::Egress],
            &[Protocol::Tcp, Protocol::Udp],
            &[64, 1024],
        );
        let got: Vec<(Protocol, u32)> = cells
            .iter()
            .map(|c| (c.kind.protocol, c.kind.size))
            .collect();
        assert_eq!(
            got,
            vec![
                (Protocol::Tcp, 64),
                (Protocol::Tcp, 1024),
                (Protocol::Udp, 64),
                (Protocol::Udp, 1024)
            ]
        );
        assert!(
            cells
                .iter()
                .all(|c| c.duration == Duration::from_secs(2) && c.rate_bps == Some(1_000_000))
        );
        assert!(cells_in(&cfg, &[TrafficKind::Egress], &[], &[64]).is_empty());
        // A size above a UDP datagram's largest is TCP's alone.
        let big = cells_in(
            &cfg,
            &[TrafficKind::Egress],
            &[Protocol::Tcp, Protocol::Udp],
            &[1024, 131_072],
        );
        let got: Vec<_> = big.iter().map(|c| (c.kind.protocol, c.kind.size)).collect();
        assert_eq!(
            got,
            [
                (Protocol::Tcp, 1024),
                (Protocol::Tcp, 131_072),
                (Protocol::Udp, 1024)
            ]
        );
    }

    #[test]
    fn only_manageable_unignored_containers_are_eligible() {
        let c = |name: &str, mode: &str, kind: ModeKind, label: Option<&str>| {
            let mut x = crate::testing::container(name, name, mode, kind);
            x.policy_label = label.map(str::to_string);
            x
        };
        let all = [
            c("a", "bridge", ModeKind::Bridge, None),
            c("b", "host", ModeKind::Host, Some("host")),
            c("c", "none", ModeKind::None, None),
            c("d", "container:a", ModeKind::Container, None),
            c("e", "lan", ModeKind::Other, None),
            c("f", "bridge", ModeKind::Bridge, Some("ignore")),
        ];
        let names: Vec<String> = eligible(&all).into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["a", "b"]);
    }
}
