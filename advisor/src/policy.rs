//! The advisor's policy: pure functions from data to per-container recommendations.
//!
//! ```text
//!  prior (the study)        measurements (probes, sweep)        constraints, labels
//!  bridge for 1 active,  ─► log goodput ratio host/bridge ─────►  blockers, warnings
//!  host from the crossover   weighed by their confidence          pins, exclusions
//!                                        │
//!                            min gain, hysteresis, cooldown ─► recommendation
//! ```
//!
//! Everything the policy remembers between evaluations (activity averages, probe rounds,
//! what it recommended and since when) is an explicit [`Memory`] value: the same input and
//! memory always give the same output and the same new memory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::{
    Action, Basis, Blocker, Container, CrossoverInfo, Evidence, Limits, ModeKind, ProbeCell,
    ProbeMode, Protocol, Recommendation, Sweep,
};

/// Policy settings (netmoded's `[advisor]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A container is network-active above this rate (rx + tx, averaged), bit/s.
    pub active_threshold_bps: f64,
    /// Averaging window of the activity, seconds.
    pub active_window_s: f64,
    /// Recommend a switch only above this expected gain (0.10 = 10 %).
    pub min_gain: f64,
    /// A recommended switch holds until its gain falls below `min_gain - hysteresis`.
    pub hysteresis: f64,
    /// A container's recommended action changes at most once per cooldown; no switch is
    /// recommended within a cooldown of the container's last mode change.
    pub cooldown_ms: u64,
    /// The prior's crossover in network-active containers; 0: the CPU count.
    pub prior_crossover: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            active_threshold_bps: 1e6,
            active_window_s: 60.0,
            min_gain: 0.10,
            hysteresis: 0.05,
            cooldown_ms: 30 * 60 * 1000,
            prior_crossover: 0,
        }
    }
}

/// The study's figures: bridge +25 % for one container (TCP), host +31..45 % with four.
pub const PRIOR_SINGLE_GAIN: f64 = 0.25;
pub const PRIOR_MULTI_GAIN: f64 = 0.38;
/// Probe and sweep rounds remembered.
pub const ROUNDS_KEPT: usize = 8;
/// How far the study's figures may be off for this gateway, as a standard deviation of the
/// log goodput ratio: a Pi 3 over Wi-Fi says something, but not everything, about another
/// gateway.
pub const PRIOR_SD: f64 = 0.25;
/// The spread assumed for a single round (log units): a few seconds of traffic on a busy
/// gateway, until a second round shows the real spread.
pub const SINGLE_ROUND_SD: f64 = 0.15;
/// Rounds never agree better than this, and the transfer from probe to deployment is never
/// exact.
const MIN_ROUND_SD: f64 = 0.03;
const MODEL_SD: f64 = 0.02;

/// Who holds a listening socket on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerOwner {
    /// A host-mode container's process.
    Container(String),
    /// Docker's userland proxy for a published port.
    DockerProxy,
    /// Any other process (its command name).
    Process(String),
    Unknown,
}

/// A TCP listening or UDP bound socket of the host's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostListener {
    pub protocol: String,
    pub port: u16,
    pub owner: ListenerOwner,
}

pub struct Input<'a> {
    pub now_ms: u64,
    pub cpus: u32,
    pub containers: &'a [Container],
    pub sweep: Option<&'a Sweep>,
    pub host_listeners: &'a [HostListener],
    /// Ports each container listens on in its own namespace, by name: (protocol, port).
    pub container_ports: &'a BTreeMap<String, Vec<(String, u16)>>,
    pub config: &'a Config,
}

/// A probe round of one container: the log goodput ratio host/bridge per cell (N = 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRound {
    pub run_id: String,
    pub cells: Vec<CellRatio>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRatio {
    pub protocol: Protocol,
    pub size: u32,
    pub log_ratio: f64,
    /// CPU seconds the probe sender spent per GB delivered, in each mode.
    #[serde(default)]
    pub bridge_cpu_s_per_gb: Option<f64>,
    #[serde(default)]
    pub host_cpu_s_per_gb: Option<f64>,
}

/// A sweep round: the log ratio of aggregate goodput host/bridge per protocol, size and N.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRound {
    pub run_id: String,
    pub limits: Limits,
    #[serde(default)]
    pub cells: Vec<SweepRatio>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRatio {
    pub protocol: Protocol,
    pub size: u32,
    pub n: u32,
    pub log_ratio: f64,
    /// CPU seconds per GB of the single-container cells (N = 1) of this profile, per mode.
    pub bridge_cpu_s_per_gb: Option<f64>,
    pub host_cpu_s_per_gb: Option<f64>,
}

impl SweepRatio {
    /// The cell's profile and ratio without its N, as the per-container cells carry them.
    fn cell(&self) -> CellRatio {
        CellRatio {
            protocol: self.protocol,
            size: self.size,
            log_ratio: self.log_ratio,
            bridge_cpu_s_per_gb: self.bridge_cpu_s_per_gb,
            host_cpu_s_per_gb: self.host_cpu_s_per_gb,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerMemory {
    pub mode: Option<ModeKind>,
    pub mode_since_ms: u64,
    pub activity_bps: f64,
    pub activity_at_ms: u64,
    /// What was recommended (mode, action) and since when.
    pub recommended: Option<(ModeKind, Action)>,
    pub recommended_since_ms: u64,
    /// When a switch was last recommended or taken back (0: never).
    #[serde(default)]
    pub last_flip_ms: u64,
    pub probe_rounds: Vec<ProbeRound>,
}

/// What the policy carries from one evaluation to the next (netmoded keeps it in
/// `<state_dir>/advisor.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub containers: BTreeMap<String, ContainerMemory>,
    pub sweeps: Vec<SweepRound>,
}

pub struct Evaluation {
    pub network_active: Vec<String>,
    pub crossover: CrossoverInfo,
    pub recommendations: BTreeMap<String, Recommendation>,
}

// ------------------------------------------------------------------ measurements

fn log_ratio(host: f64, bridge: f64) -> Option<f64> {
    (host > 0.0 && bridge > 0.0).then(|| (host / bridge).ln())
}

/// CPU seconds a probe cell's senders spent per GB they delivered.
pub fn cell_cpu_s_per_gb(c: &ProbeCell) -> Option<f64> {
    let gb = c.goodput_bps? * c.duration_s / 8.0 / 1e9;
    let cpu = c.counters.as_ref()?.cpu_s;
    (gb > 0.0 && cpu > 0.0).then(|| cpu / gb)
}

/// Log ratios host/bridge per protocol and size from a container's latest probe cells.
pub fn cell_ratios(bridge: &[ProbeCell], host: &[ProbeCell]) -> Vec<CellRatio> {
    let mut out = Vec::new();
    for b in bridge.iter().filter(|c| c.concurrency == 1) {
        let h = host
            .iter()
            .find(|h| h.protocol == b.protocol && h.size == b.size && h.concurrency == 1);
        if let Some(h) = h
            && let Some(l) = log_ratio(h.goodput_bps.unwrap_or(0.0), b.goodput_bps.unwrap_or(0.0))
        {
            out.push(CellRatio {
                protocol: b.protocol,
                size: b.size,
                log_ratio: l,
                bridge_cpu_s_per_gb: cell_cpu_s_per_gb(b),
                host_cpu_s_per_gb: cell_cpu_s_per_gb(h),
            });
        }
    }
    out
}

/// Log ratios of a sweep's aggregate goodput host/bridge per protocol, size and N.
pub fn sweep_ratios(s: &Sweep) -> Vec<SweepRatio> {
    let mut out = Vec::new();
    for (protocol, size) in s.profiles() {
        let at = |n: u32, m: ProbeMode| {
            s.cells.iter().find(|c| {
                c.protocol == protocol && c.size == size && c.concurrency == n && c.mode == m
            })
        };
        let cpu = |m: ProbeMode| at(1, m).and_then(cell_cpu_s_per_gb);
        for n in 1..=s.max_concurrency {
            let (Some(h), Some(b)) = (at(n, ProbeMode::Host), at(n, ProbeMode::Bridge)) else {
                continue;
            };
            if let Some(l) = log_ratio(h.goodput_bps.unwrap_or(0.0), b.goodput_bps.unwrap_or(0.0)) {
                out.push(SweepRatio {
                    protocol,
                    size,
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
}

impl Profile {
    pub fn of(c: &Container) -> Profile {
        let l = c.live.as_ref();
        Profile {
            mode: c.mode_kind,
            tcp_share: l.and_then(|l| l.tcp_share),
            mean_packet: l.and_then(|l| l.mean_packet_bytes),
            cpu_s_per_gb: l.and_then(|l| l.cpu_s_per_gb),
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
    let by_packet = || match p.mean_packet {
        Some(m) => log_kernel((m - 42.0).max(1.0), c.size as f64),
        None => 1.0,
    };
    let size = match c.protocol {
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
    proto * size
}

fn weighted_ratio(cells: &[CellRatio], profile: &Profile) -> Option<f64> {
    let (mut sum, mut w) = (0.0, 0.0);
    for c in cells {
        let k = cell_weight(c, profile);
        sum += k * c.log_ratio;
        w += k;
    }
    (w > 0.0).then(|| sum / w)
}

/// Mean and per-round spread of `values` (a single value gets the assumed spread).
fn mean_sd(values: &[f64]) -> (f64, f64) {
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

/// A measured estimate: log ratio host/bridge, its per-round spread, and how many rounds
/// back it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub log_ratio: f64,
    pub spread: f64,
    pub rounds: usize,
}

impl Estimate {
    /// Standard deviation of the estimate itself: the rounds' spread shrinks with their
    /// number, down to the model's own error.
    pub fn sd(&self) -> f64 {
        (self.spread.powi(2) / self.rounds.max(1) as f64 + MODEL_SD.powi(2)).sqrt()
    }
}

/// The measurement weighed against the prior by their precisions (normal approximation):
/// the combined log ratio, the measurement's weight, and a confidence in 0..1 (how much the
/// combination narrows the prior's uncertainty).
pub fn combine(prior: f64, m: Option<&Estimate>) -> (f64, f64, f64) {
    let prior_precision = 1.0 / PRIOR_SD.powi(2);
    match m {
        None => (prior, 0.0, 0.1),
        Some(m) => {
            let precision = 1.0 / m.sd().powi(2);
            let w = precision / (precision + prior_precision);
            let posterior_sd = (1.0 / (precision + prior_precision)).sqrt();
            (
                w * m.log_ratio + (1.0 - w) * prior,
                w,
                (1.0 - posterior_sd / PRIOR_SD).clamp(0.1, 1.0),
            )
        }
    }
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
fn matching_sweeps(memory: &Memory) -> Vec<&SweepRound> {
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
fn round_at(round: &SweepRound, n: u32, profile: &Profile) -> Option<(f64, u32)> {
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
fn sweep_at(sweeps: &[&SweepRound], n: u32, profile: &Profile) -> Option<(Estimate, u32)> {
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

// ------------------------------------------------------------------ memory

/// Fold the inputs into the memory: activity averages, new probe and sweep rounds, modes.
pub fn remember(input: &Input, old: &Memory) -> Memory {
    let mut m = Memory {
        containers: BTreeMap::new(),
        sweeps: old.sweeps.clone(),
    };
    if let Some(s) = input.sweep
        && let Some(run_id) = s.cells.first().map(|_| sweep_id(s))
        && !m.sweeps.iter().any(|r| r.run_id == run_id)
    {
        let cells = sweep_ratios(s);
        if !cells.is_empty() {
            m.sweeps.push(SweepRound {
                run_id,
                limits: s.limits.clone(),
                cells,
            });
        }
    }
    if m.sweeps.len() > ROUNDS_KEPT {
        m.sweeps.drain(..m.sweeps.len() - ROUNDS_KEPT);
    }
    for c in input.containers {
        let mut cm = old.containers.get(&c.name).cloned().unwrap_or_default();
        if cm.mode != Some(c.mode_kind) {
            if cm.mode.is_some() {
                cm.mode_since_ms = input.now_ms;
            }
            cm.mode = Some(c.mode_kind);
        }
        if let Some(l) = &c.live {
            let rate = l.rx_bps + l.tx_bps;
            let dt = input.now_ms.saturating_sub(cm.activity_at_ms) as f64 / 1000.0;
            cm.activity_bps = if cm.activity_at_ms == 0 {
                rate
            } else {
                let a = (dt / input.config.active_window_s.max(0.001)).min(1.0);
                cm.activity_bps + a * (rate - cm.activity_bps)
            };
            cm.activity_at_ms = input.now_ms;
        }
        if let Some(p) = &c.probes
            && !cm.probe_rounds.iter().any(|r| r.run_id == p.run_id)
        {
            let cells = cell_ratios(&p.bridge, &p.host);
            if !cells.is_empty() {
                cm.probe_rounds.push(ProbeRound {
                    run_id: p.run_id.clone(),
                    cells,
                });
                if cm.probe_rounds.len() > ROUNDS_KEPT {
                    cm.probe_rounds.remove(0);
                }
            }
        }
        m.containers.insert(c.name.clone(), cm);
    }
    m
}

/// A sweep has no id of its own; its cells identify it.
fn sweep_id(s: &Sweep) -> String {
    let total: f64 = s.cells.iter().filter_map(|c| c.goodput_bps).sum();
    format!("{}-{}-{total:.0}", s.max_concurrency, s.cells.len())
}

// ------------------------------------------------------------------ constraints

fn is_user_network(name: &str) -> bool {
    !matches!(name, "bridge" | "host" | "none")
}

/// Ports a container serves: what it listens on, and what it declares or publishes.
fn served_ports(c: &Container, input: &Input) -> BTreeSet<(String, u16)> {
    let mut out: BTreeSet<(String, u16)> = input
        .container_ports
        .get(&c.name)
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default();
    for p in &c.ports {
        out.insert((p.protocol.clone(), p.container_port));
    }
    for e in &c.exposed_ports {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        if let Ok(port) = port.parse() {
            out.insert((proto.to_string(), port));
        }
    }
    if c.mode_kind == ModeKind::Host {
        for l in input.host_listeners {
            if l.owner == ListenerOwner::Container(c.name.clone()) {
                out.insert((l.protocol.clone(), l.port));
            }
        }
    }
    out
}

fn blocker(kind: &str, message: String) -> Blocker {
    Blocker {
        kind: kind.into(),
        message,
    }
}

/// What blocks moving `c` to `target`, and what the operator should know. Conflicts with
/// other containers planned for host mode are added by the caller.
pub fn constraints(c: &Container, target: ModeKind, input: &Input) -> (Vec<Blocker>, Vec<Blocker>) {
    let (mut blockers, mut warnings) = (Vec::new(), Vec::new());
    // Others that share this container's namespace move with it.
    let dependants: Vec<&str> = input
        .containers
        .iter()
        .filter(|o| {
            o.network_mode
                .strip_prefix("container:")
                .is_some_and(|x| x == c.id || x == c.name || (x.len() >= 12 && c.id.starts_with(x)))
        })
        .map(|o| o.name.as_str())
        .collect();
    if !dependants.is_empty() {
        blockers.push(blocker(
            "shared_namespace",
            format!(
                "{} share{} its network namespace (network_mode container:{}); switching would change theirs too",
                dependants.join(", "),
                if dependants.len() == 1 { "s" } else { "" },
                c.name
            ),
        ));
    }
    match target {
        ModeKind::Host => {
            for p in &c.ports {
                let Some(hp) = p.host_port else { continue };
                let ip = p.host_ip.as_deref().unwrap_or("");
                if hp != p.container_port {
                    blockers.push(blocker(
                        "published_port",
                        format!(
                            "-p {}{hp}:{}/{} would become port {} in host mode: clients of port {hp} would break",
                            if ip.is_empty() || ip == "0.0.0.0" || ip == "::" { String::new() } else { format!("{ip}:") },
                            p.container_port,
                            p.protocol,
                            p.container_port
                        ),
                    ));
                } else if !(ip.is_empty() || ip == "0.0.0.0" || ip == "::") {
                    warnings.push(blocker(
                        "published_port",
                        format!(
                            "port {hp}/{} is published on {ip} only; in host mode the container binds it itself, usually on every interface",
                            p.protocol
                        ),
                    ));
                }
            }
            for (proto, port) in served_ports(c, input) {
                for l in input
                    .host_listeners
                    .iter()
                    .filter(|l| l.protocol == proto && l.port == port)
                {
                    // Docker's proxy for this container's own publication goes away with it.
                    let publisher = input.containers.iter().find(|o| {
                        o.ports
                            .iter()
                            .any(|p| p.host_port == Some(port) && p.protocol == proto)
                    });
                    let holder = match (&l.owner, publisher) {
                        (ListenerOwner::DockerProxy, Some(o)) if o.name == c.name => continue,
                        (ListenerOwner::DockerProxy, Some(o)) => {
                            format!("container {} (published port)", o.name)
                        }
                        (ListenerOwner::DockerProxy, None) => "docker-proxy".to_string(),
                        (ListenerOwner::Container(o), _) if *o == c.name => continue,
                        (ListenerOwner::Container(o), _) => format!("host-mode container {o}"),
                        (ListenerOwner::Process(p), _) => format!("process {p}"),
                        (ListenerOwner::Unknown, _) => "another process".to_string(),
                    };
                    blockers.push(blocker(
                        "host_listener",
                        format!("port {port}/{proto} is already in use on the host by {holder}"),
                    ));
                }
            }
            for n in &c.networks {
                if !is_user_network(&n.name) {
                    if !n.links.is_empty() {
                        blockers.push(blocker(
                            "links",
                            format!(
                                "it reaches {} through --link, which host mode does not provide",
                                n.links.join(", ")
                            ),
                        ));
                    }
                    continue;
                }
                if !n.aliases.is_empty() {
                    blockers.push(blocker(
                        "docker_dns",
                        format!(
                            "on network {} it is known as {} (Docker DNS); containers using those names would lose it",
                            n.name,
                            n.aliases.join(", ")
                        ),
                    ));
                }
                let peers: Vec<&str> = input
                    .containers
                    .iter()
                    .filter(|o| o.name != c.name && o.networks.iter().any(|on| on.name == n.name))
                    .map(|o| o.name.as_str())
                    .collect();
                if !peers.is_empty() {
                    blockers.push(blocker(
                        "docker_dns",
                        format!(
                            "{} on network {} can reach it by name through Docker DNS; host mode takes it off that network",
                            peers.join(", "),
                            n.name
                        ),
                    ));
                } else if n.aliases.is_empty() {
                    warnings.push(blocker(
                        "docker_dns",
                        format!("it would leave network {} and its Docker DNS", n.name),
                    ));
                }
            }
            let linked_from: Vec<&str> = input
                .containers
                .iter()
                .filter(|o| {
                    o.networks.iter().any(|n| {
                        n.links.iter().any(|l| {
                            l.trim_start_matches('/').split(':').next() == Some(c.name.as_str())
                        })
                    })
                })
                .map(|o| o.name.as_str())
                .collect();
            if !linked_from.is_empty() {
                blockers.push(blocker(
                    "links",
                    format!(
                        "{} reach{} it through --link",
                        linked_from.join(", "),
                        if linked_from.len() == 1 { "es" } else { "" }
                    ),
                ));
            }
            warnings.push(blocker(
                "isolation",
                "host mode gives up network isolation: the container shares the host's interfaces and ports".into(),
            ));
        }
        ModeKind::Bridge => {
            let own: Vec<String> = input
                .host_listeners
                .iter()
                .filter(|l| l.owner == ListenerOwner::Container(c.name.clone()))
                .map(|l| (l.port, l.protocol.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|(port, proto)| format!("{port}/{proto}"))
                .collect();
            if !own.is_empty() {
                warnings.push(blocker(
                    "unpublished_ports",
                    format!("it listens on {}; in bridge mode they need publishing (-p PORT:PORT) to stay reachable", own.join(", ")),
                ));
            }
            warnings.push(blocker(
                "host_dependencies",
                "in host mode it may rely on the host's interfaces (broadcast or multicast discovery, services on 127.0.0.1); check before switching".into(),
            ));
        }
        _ => {}
    }
    // Docker lists a publication once per address family: one message each.
    let mut seen = BTreeSet::new();
    blockers.retain(|b| seen.insert(b.message.clone()));
    let mut seen = BTreeSet::new();
    warnings.retain(|b| seen.insert(b.message.clone()));
    (blockers, warnings)
}

// ------------------------------------------------------------------ the decision

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn mbit(bps: f64) -> String {
    format!("{:.2} Mbit/s", bps / 1e6)
}

fn excluded(c: &Container, reason: String) -> Recommendation {
    Recommendation {
        mode: c.mode_kind,
        action: Action::Keep,
        applicable: false,
        expected_gain: 0.0,
        confidence: 1.0,
        reason,
        blockers: Vec::new(),
        warnings: Vec::new(),
        basis: Basis::Excluded,
        network_active: false,
        held_until_ms: None,
        evidence: Vec::new(),
    }
}

fn other(m: ModeKind) -> ModeKind {
    match m {
        ModeKind::Host => ModeKind::Bridge,
        _ => ModeKind::Host,
    }
}

/// Evaluate every container; returns the evaluation and the memory to keep.
pub fn evaluate(input: &Input, old: &Memory) -> (Evaluation, Memory) {
    let cfg = input.config;
    let mut memory = remember(input, old);
    let mut containers: Vec<&Container> = input.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    let managed = |c: &Container| matches!(c.mode_kind, ModeKind::Bridge | ModeKind::Host);
    let active: Vec<String> = containers
        .iter()
        .filter(|c| managed(c))
        .filter(|c| {
            memory
                .containers
                .get(&c.name)
                .is_some_and(|m| m.activity_bps >= cfg.active_threshold_bps)
        })
        .map(|c| c.name.clone())
        .collect();
    let n_active = active.len() as u32;
    // The study's Pi had four cores; a single-core gateway still has one container alone.
    let prior_crossover = if cfg.prior_crossover > 0 {
        cfg.prior_crossover
    } else {
        input.cpus.max(2)
    };
    // The gateway's crossover is the one for the busiest network-active container's traffic.
    let busiest = containers
        .iter()
        .filter(|c| active.contains(&c.name))
        .max_by(|a, b| {
            let act = |c: &Container| {
                memory
                    .containers
                    .get(&c.name)
                    .map_or(0.0, |m| m.activity_bps)
            };
            act(a).total_cmp(&act(b))
        })
        .map(|c| Profile::of(c))
        .unwrap_or(Profile {
            mode: ModeKind::Bridge,
            tcp_share: None,
            mean_packet: None,
            cpu_s_per_gb: None,
        });
    let sweeps = matching_sweeps(&memory);
    let crossover = if sweeps.is_empty() {
        CrossoverInfo {
            containers: Some(prior_crossover),
            source: "prior".into(),
            protocol: None,
            size: None,
        }
    } else {
        // The swept profile that weighs most for that traffic names it.
        let named = sweeps.last().and_then(|r| {
            r.cells
                .iter()
                .filter(|c| c.n == 1)
                .map(|c| {
                    let w = cell_weight(&c.cell(), &busiest);
                    (w, c.protocol, c.size)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
        });
        CrossoverInfo {
            containers: measured_crossover(&memory, &busiest),
            source: "measured".into(),
            protocol: named.map(|n| n.1),
            size: named.map(|n| n.2),
        }
    };

    let mut recs: BTreeMap<String, Recommendation> = BTreeMap::new();
    for c in &containers {
        let rec = match (c.mode_kind, c.policy_label.as_deref()) {
            (ModeKind::None, _) => {
                excluded(c, "Network mode none: netmode never changes it.".into())
            }
            (ModeKind::Container, _) => excluded(
                c,
                format!(
                    "It shares another container's namespace ({}); that container's mode decides.",
                    c.network_mode
                ),
            ),
            (ModeKind::Other, _) => excluded(
                c,
                format!(
                    "Network {} uses a driver netmode does not compare yet; it is left as it is.",
                    c.network_mode
                ),
            ),
            (_, Some("ignore")) => excluded(
                c,
                "Labelled netmode.policy=ignore: netmode leaves it alone.".into(),
            ),
            (_, Some(pin @ ("bridge" | "host"))) => pinned(c, pin, input, &memory),
            _ => decide(
                c,
                input,
                &memory,
                &sweeps,
                n_active,
                prior_crossover,
                &active,
            ),
        };
        recs.insert(c.name.clone(), rec);
    }

    plan_port_conflicts(&containers, input, &mut recs);

    for (name, r) in recs.iter_mut() {
        r.applicable = r.action == Action::Switch && r.blockers.is_empty();
        if r.action == Action::Switch && !r.blockers.is_empty() && r.basis != Basis::Pinned {
            r.reason = format!(
                "{} mode is expected to deliver {} more, but the switch is blocked: {}.",
                capitalise(r.mode.as_str()),
                pct(r.expected_gain),
                r.blockers[0].message
            );
        }
        if let Some(cm) = memory.containers.get_mut(name) {
            let now = (r.mode, r.action);
            if cm.recommended != Some(now) {
                let was_switch = cm.recommended.is_some_and(|(_, a)| a == Action::Switch);
                if was_switch || r.action == Action::Switch {
                    cm.last_flip_ms = input.now_ms;
                }
                cm.recommended = Some(now);
                cm.recommended_since_ms = input.now_ms;
            }
        }
    }
    (
        Evaluation {
            network_active: active,
            crossover,
            recommendations: recs,
        },
        memory,
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn pinned(c: &Container, pin: &str, input: &Input, memory: &Memory) -> Recommendation {
    let target = if pin == "host" {
        ModeKind::Host
    } else {
        ModeKind::Bridge
    };
    let action = if c.mode_kind == target {
        Action::Keep
    } else {
        Action::Switch
    };
    let (blockers, warnings) = if action == Action::Switch {
        constraints(c, target, input)
    } else {
        (Vec::new(), Vec::new())
    };
    let isolation = if target == ModeKind::Host {
        "; host mode gives up network isolation"
    } else {
        ""
    };
    let reason = match action {
        Action::Keep => format!("Pinned to {pin} by label netmode.policy={pin}{isolation}."),
        Action::Switch if blockers.is_empty() => {
            format!(
                "Pinned to {pin} by label netmode.policy={pin}, so it should switch{isolation}."
            )
        }
        Action::Switch => format!(
            "Pinned to {pin} by label netmode.policy={pin}, but the switch is blocked: {}.",
            blockers[0].message
        ),
    };
    Recommendation {
        mode: target,
        action,
        applicable: false,
        expected_gain: 0.0,
        confidence: 1.0,
        reason,
        blockers,
        warnings,
        basis: Basis::Pinned,
        network_active: memory
            .containers
            .get(&c.name)
            .is_some_and(|m| m.activity_bps >= input.config.active_threshold_bps),
        held_until_ms: None,
        evidence: vec![Evidence {
            step: "label".into(),
            detail: format!("netmode.policy={pin} pins the mode; measurements are not consulted"),
        }],
    }
}

fn decide(
    c: &Container,
    input: &Input,
    memory: &Memory,
    sweeps: &[&SweepRound],
    n_active: u32,
    prior_crossover: u32,
    active: &[String],
) -> Recommendation {
    let cfg = input.config;
    let cm = memory.containers.get(&c.name).cloned().unwrap_or_default();
    let is_active = active.contains(&c.name);
    let mut evidence = vec![Evidence {
        step: "activity".into(),
        detail: format!(
            "{} averaged over {:.0} s (threshold {}): {}; {} network-active container{} in all",
            mbit(cm.activity_bps),
            cfg.active_window_s,
            mbit(cfg.active_threshold_bps),
            if is_active {
                "network-active"
            } else {
                "not network-active"
            },
            n_active,
            if n_active == 1 { "" } else { "s" }
        ),
    }];
    if !is_active {
        return Recommendation {
            mode: c.mode_kind,
            action: Action::Keep,
            applicable: false,
            expected_gain: 0.0,
            confidence: 0.5,
            reason: format!(
                "Not network-active ({} < {}): its mode does not change throughput now.",
                mbit(cm.activity_bps),
                mbit(cfg.active_threshold_bps)
            ),
            blockers: Vec::new(),
            warnings: Vec::new(),
            basis: Basis::Prior,
            network_active: false,
            held_until_ms: None,
            evidence,
        };
    }
    let n = n_active.max(1);

    // The prior.
    let prior = prior_log_ratio(n, prior_crossover);
    evidence.push(Evidence {
        step: "prior".into(),
        detail: format!(
            "the study: bridge +{} for one container, host +{} from the crossover; crossover taken as {} -> {} {} at N = {n}",
            pct(PRIOR_SINGLE_GAIN),
            pct(PRIOR_MULTI_GAIN),
            prior_crossover,
            if prior > 0.0 { "host" } else { "bridge" },
            pct(prior.abs().exp() - 1.0)
        ),
    });

    // The measurements.
    let profile = Profile::of(c);
    let probe_values: Vec<f64> = cm
        .probe_rounds
        .iter()
        .filter_map(|r| weighted_ratio(&r.cells, &profile))
        .collect();
    let probe = (!probe_values.is_empty()).then(|| {
        let (mean, sd) = mean_sd(&probe_values);
        Estimate {
            log_ratio: mean,
            spread: sd,
            rounds: probe_values.len(),
        }
    });
    if let Some(p) = &probe {
        let traffic = [
            profile.tcp_share.map(|s| format!("{:.0}% TCP", s * 100.0)),
            profile.cpu_s_per_gb.map(|c| format!("{c:.1} CPU s/GB")),
            profile.mean_packet.map(|m| format!("{m:.0} B packets")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        evidence.push(Evidence {
            step: "probes".into(),
            detail: format!(
                "{} probe round{} of this container, cells weighted toward its traffic ({}): host/bridge {:+.1}% (spread {:.1}%)",
                p.rounds,
                if p.rounds == 1 { "" } else { "s" },
                if traffic.is_empty() { "profile unknown: even weights".to_string() } else { traffic },
                (p.log_ratio.exp() - 1.0) * 100.0,
                p.spread * 100.0
            ),
        });
    }
    let sweep_n = sweep_at(sweeps, n, &profile);
    let sweep_1 = sweep_at(sweeps, 1, &profile);
    if let (Some((e, at)), Some((e1, _))) = (&sweep_n, &sweep_1) {
        evidence.push(Evidence {
            step: "sweep".into(),
            detail: format!(
                "{} sweep round{}, profiles weighted toward its traffic: aggregate host/bridge {:+.1}% at N = 1, {:+.1}% at N = {at}{} (spread {:.1}%)",
                e.rounds,
                if e.rounds == 1 { "" } else { "s" },
                (e1.log_ratio.exp() - 1.0) * 100.0,
                (e.log_ratio.exp() - 1.0) * 100.0,
                if at < &n { format!(" (largest measured, standing in for N = {n})") } else { String::new() },
                e.spread * 100.0
            ),
        });
    }
    let measured: Option<Estimate> = match (&sweep_n, &sweep_1, &probe) {
        // Alone, the container's own probe says it all.
        (_, _, Some(p)) if n == 1 => Some(*p),
        // The container's own single-sender ratio, moved to concurrency N the way the
        // sweep says the ratio moves from 1 to N.
        (Some((sn, at)), Some((s1, _)), Some(p)) => {
            let mut e = Estimate {
                log_ratio: sn.log_ratio + (p.log_ratio - s1.log_ratio),
                spread: (sn.spread.powi(2) + p.spread.powi(2) + s1.spread.powi(2)).sqrt(),
                rounds: sn.rounds.min(p.rounds),
            };
            if *at < n {
                e.spread = e.spread * 1.5 + 0.1;
            }
            Some(e)
        }
        (Some((sn, at)), _, None) => {
            let mut e = *sn;
            if *at < n {
                e.spread = e.spread * 1.5 + 0.1;
            }
            Some(e)
        }
        (None, _, Some(p)) => Some(Estimate {
            // No sweep: the prior's shift from 1 to N container(s) stands in for it.
            log_ratio: p.log_ratio + prior - prior_log_ratio(1, prior_crossover),
            spread: p.spread * 2.0,
            rounds: p.rounds,
        }),
        _ => None,
    };
    let (estimate, weight, confidence) = combine(prior, measured.as_ref());
    let basis = if measured.is_some() {
        Basis::Measured
    } else {
        Basis::Prior
    };
    evidence.push(Evidence {
        step: "weighing".into(),
        detail: match &measured {
            Some(m) => format!(
                "measured {:+.1}% ({} round{}, spread {:.1}% per round, sd {:.1}%) weighs {:.0}% against the prior's {:+.1}% (sd {:.0}%)",
                (m.log_ratio.exp() - 1.0) * 100.0,
                m.rounds,
                if m.rounds == 1 { "" } else { "s" },
                m.spread * 100.0,
                m.sd() * 100.0,
                weight * 100.0,
                (prior.exp() - 1.0) * 100.0,
                PRIOR_SD * 100.0
            ),
            None => "no probe or sweep yet: the prior alone".into(),
        },
    });
    let best = if estimate > 0.0 {
        ModeKind::Host
    } else {
        ModeKind::Bridge
    };
    let gain = estimate.abs().exp() - 1.0;
    evidence.push(Evidence {
        step: "estimate".into(),
        detail: format!(
            "{} mode expected to deliver {} more than {}",
            best.as_str(),
            pct(gain),
            other(best).as_str()
        ),
    });

    // Hysteresis: a switch already recommended holds down to min_gain - hysteresis.
    let previously_switch_to_best = cm.recommended == Some((best, Action::Switch));
    let threshold = if previously_switch_to_best {
        (cfg.min_gain - cfg.hysteresis).max(0.0)
    } else {
        cfg.min_gain
    };
    let mut action = if best != c.mode_kind && gain >= threshold {
        Action::Switch
    } else {
        Action::Keep
    };
    let mut mode = if action == Action::Switch {
        best
    } else {
        c.mode_kind
    };
    evidence.push(Evidence {
        step: "threshold".into(),
        detail: format!(
            "a switch needs {} ({}): {}",
            pct(threshold),
            if previously_switch_to_best {
                "min_gain minus hysteresis, the switch being already recommended"
            } else {
                "min_gain"
            },
            match (best == c.mode_kind, action) {
                (true, _) => "it already runs in the better mode".to_string(),
                (false, Action::Switch) => "met".to_string(),
                (false, Action::Keep) => "not met".to_string(),
            }
        ),
    });

    // Cooldown. A switch, once recommended, is not taken back within the cooldown, and a
    // new switch waits a cooldown after the last one was recommended or taken back (the
    // first switch is free). No switch is recommended within a cooldown of the container's
    // last mode change.
    let mut held_until_ms: Option<u64> = None;
    let now = input.now_ms;
    let flip_hold = cm.last_flip_ms.saturating_add(cfg.cooldown_ms);
    if let Some((pm, pa)) = cm.recommended
        && (pm, pa) != (mode, action)
        && cm.last_flip_ms > 0
        && now < flip_hold
        && (pa == Action::Switch || action == Action::Switch)
    {
        held_until_ms = Some(flip_hold);
        (mode, action) = match pa {
            Action::Switch if pm != c.mode_kind => (pm, Action::Switch),
            _ => (c.mode_kind, Action::Keep),
        };
    }
    let mode_hold = cm.mode_since_ms.saturating_add(cfg.cooldown_ms);
    if action == Action::Switch && cm.mode_since_ms > 0 && now < mode_hold {
        held_until_ms = Some(held_until_ms.map_or(mode_hold, |h| h.max(mode_hold)));
        action = Action::Keep;
        mode = c.mode_kind;
    }
    if let Some(t) = held_until_ms {
        evidence.push(Evidence {
            step: "cooldown".into(),
            detail: format!("held: the recommendation may change again at {t} (Unix ms)"),
        });
    }

    let (blockers, warnings) = if action == Action::Switch {
        constraints(c, mode, input)
    } else {
        (Vec::new(), Vec::new())
    };
    let source = match basis {
        Basis::Measured => format!("measured, confidence {:.2}", confidence),
        _ => "the study's prior alone: no probe yet".into(),
    };
    let who = format!(
        "With {n} network-active container{}",
        if n == 1 { "" } else { "s" }
    );
    let isolation = if mode == ModeKind::Host {
        "; host mode gives up network isolation"
    } else {
        ""
    };
    let reason = match (action, held_until_ms) {
        (_, Some(_)) => format!(
            "{who}, the recommendation is held by the cooldown ({} mode expected {} better, {source}){isolation}.",
            best.as_str(),
            pct(gain)
        ),
        (Action::Switch, None) => format!(
            "{who}, {} mode is expected to deliver {} more than {} mode ({source}){isolation}.",
            mode.as_str(),
            pct(gain),
            other(mode).as_str()
        ),
        (Action::Keep, None) if best == c.mode_kind => format!(
            "{who}, {} mode is expected to deliver {} more than {} mode ({source}){isolation}.",
            best.as_str(),
            pct(gain),
            other(best).as_str()
        ),
        (Action::Keep, None) => format!(
            "{who}, {} mode would gain only {} ({source}), below the {} needed to switch{isolation}.",
            best.as_str(),
            pct(gain),
            pct(threshold)
        ),
    };
    Recommendation {
        mode,
        action,
        applicable: false,
        // Goodput of `mode` relative to the other mode: negative when keeping a mode whose
        // deficit is below the switch threshold.
        expected_gain: (if mode == ModeKind::Host {
            estimate
        } else {
            -estimate
        })
        .exp()
            - 1.0,
        confidence,
        reason,
        blockers,
        warnings,
        basis,
        network_active: true,
        held_until_ms,
        evidence,
    }
}

/// Two containers cannot both serve the same port in host mode. Containers already in host
/// mode keep theirs; among those recommended to switch, the one expected to gain most goes
/// first.
fn plan_port_conflicts(
    containers: &[&Container],
    input: &Input,
    recs: &mut BTreeMap<String, Recommendation>,
) {
    let mut taken: BTreeMap<(String, u16), String> = BTreeMap::new();
    let staying: Vec<&&Container> = containers
        .iter()
        .filter(|c| {
            c.mode_kind == ModeKind::Host
                && recs.get(&c.name).is_some_and(|r| r.mode == ModeKind::Host)
        })
        .collect();
    for c in staying {
        for p in served_ports(c, input) {
            taken.entry(p).or_insert_with(|| c.name.clone());
        }
    }
    let mut moving: Vec<&&Container> = containers
        .iter()
        .filter(|c| {
            c.mode_kind != ModeKind::Host
                && recs
                    .get(&c.name)
                    .is_some_and(|r| r.mode == ModeKind::Host && r.action == Action::Switch)
        })
        .collect();
    moving.sort_by(|a, b| {
        let g = |c: &Container| recs.get(&c.name).map(|r| r.expected_gain).unwrap_or(0.0);
        g(b).total_cmp(&g(a)).then(a.name.cmp(&b.name))
    });
    for c in moving {
        let mut conflicts = Vec::new();
        for p in served_ports(c, input) {
            match taken.get(&p) {
                Some(other) => conflicts.push(format!(
                    "port {}/{} is also served by {} in host mode",
                    p.1, p.0, other
                )),
                None => {
                    taken.insert(p, c.name.clone());
                }
            }
        }
        if let Some(r) = recs.get_mut(&c.name) {
            for m in conflicts {
                r.blockers.push(blocker("port_conflict", m));
            }
        }
    }
}

#[cfg(test)]
mod tests;
