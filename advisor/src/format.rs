//! Human-readable rendering of API documents (what `advisor status` prints).
//! Pure functions of data, so they are tested without a daemon.

use crate::api::{Action, Attribution, Basis, Container, DockerState, Recommendation, Status};

/// A left/right aligned text table.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named in `header`; a name starting with `>` is right-aligned.
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.iter().map(|h| h.trim_start_matches('>')).collect(),
            right: header.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - cell.chars().count();
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567.0` bit/s -> `"1.23"` (Mbit/s).
pub fn mbit(bps: f64) -> String {
    format!("{:.2}", bps / 1e6)
}

/// Packets per second, compact: `950`, `12.3k`, `1.20M`.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn percent(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) => format!("{:.1}%", f * 100.0),
        None => "-".into(),
    }
}

pub fn attribution(a: Attribution) -> &'static str {
    match a {
        Attribution::Full => "all",
        Attribution::TcpOnly => "tcp only",
        Attribution::Shared => "shared",
        Attribution::None => "none",
    }
}

/// What is seen of a container's traffic, and what counted it: "all (veth)", "all (cgroup)",
/// "tcp only (sockets)".
pub fn seen(l: &crate::api::Live) -> String {
    let by = match l.source.as_str() {
        "veth" => "veth",
        "cgroup_bpf" => "cgroup",
        "sock_diag" => "sockets",
        _ => return attribution(l.attributed).to_string(),
    };
    format!("{} ({by})", attribution(l.attributed))
}

/// The one-line summary above the table.
pub fn status_headline(s: &Status) -> String {
    let h = &s.host;
    let docker = match s.docker.state {
        DockerState::Connected => format!(
            "docker: connected ({} {}, API {})",
            s.docker.engine.as_deref().unwrap_or("engine"),
            s.docker.server_version.as_deref().unwrap_or("?"),
            s.docker.api_version.as_deref().unwrap_or("?")
        ),
        DockerState::Connecting => "docker: connecting".to_string(),
        DockerState::Unavailable => match &s.docker.error {
            Some(e) => format!("docker: unavailable ({e})"),
            None => "docker: unavailable".to_string(),
        },
    };
    let cs = h
        .context_switches_per_s
        .map(|v| format!("{} cs/s", rate(v)))
        .unwrap_or_else(|| "- cs/s".into());
    let advisor = match &s.advisor {
        Some(a) if a.mode == crate::api::AdvisorMode::Off => " | advisor off".to_string(),
        Some(a) => {
            format!(
                " | advisor {}{}",
                a.mode.as_str(),
                match a.mode {
                    crate::api::AdvisorMode::Apply => " (applies by itself)",
                    _ => "",
                }
            ) + &format!(
                " | {} network-active, crossover {}",
                a.network_active.len(),
                a.crossover.describe()
            )
        }
        None => String::new(),
    };
    format!(
        "netmoded {} on {} | {} CPUs, cpu {}, softirq {}, {} | {}{advisor}",
        s.version,
        h.hostname,
        h.cpus,
        percent(h.cpu_utilisation),
        percent(h.softirq_share),
        cs,
        docker
    )
}

/// The RECOMMENDATION cell of `advisor status`.
pub fn recommendation_cell(r: Option<&Recommendation>) -> String {
    let Some(r) = r else { return "-".into() };
    let gain = format!("{:+.0}%", r.expected_gain * 100.0);
    match (r.basis, r.action) {
        (Basis::Excluded, _) => "left alone".into(),
        (Basis::Pinned, Action::Keep) => format!("pinned {}", r.mode.as_str()),
        (Basis::Pinned, Action::Switch) if r.applicable => {
            format!("-> {} (pinned)", r.mode.as_str())
        }
        (Basis::Pinned, Action::Switch) => format!("{} (pinned, blocked)", r.mode.as_str()),
        (_, Action::Keep) if !r.network_active => "keep (idle)".into(),
        (_, Action::Keep) => format!("keep {gain}"),
        (_, Action::Switch) if r.applicable => format!("-> {} {gain}", r.mode.as_str()),
        (_, Action::Switch) => format!("{} {gain} (blocked)", r.mode.as_str()),
    }
}

fn live_cells(c: &Container) -> [String; 6] {
    match &c.live {
        Some(l) => [
            mbit(l.rx_bps),
            mbit(l.tx_bps),
            rate(l.rx_pps),
            rate(l.tx_pps),
            l.mean_packet_bytes
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".into()),
            seen(l),
        ],
        None => [
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "(sampling)".into(),
        ],
    }
}

/// The whole `advisor status` output.
pub fn status_table(s: &Status) -> String {
    let mut out = status_headline(s);
    out.push('\n');
    if s.containers.is_empty() {
        out.push_str("no running containers\n");
        return out;
    }
    let mut t = Table::new(&[
        "NAME",
        "MODE",
        ">RX Mbit/s",
        ">TX Mbit/s",
        ">RX pkt/s",
        ">TX pkt/s",
        ">MEAN B",
        "SEEN",
        "RECOMMENDATION",
    ]);
    for c in &s.containers {
        let [rx, tx, rxp, txp, mean, seen] = live_cells(c);
        t.row(vec![
            c.name.clone(),
            c.network_mode.clone(),
            rx,
            tx,
            rxp,
            txp,
            mean,
            seen,
            recommendation_cell(c.recommendation.as_ref()),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    let mut notes: Vec<String> = s
        .containers
        .iter()
        .filter_map(|c| {
            let note = c.live.as_ref()?.note.as_ref()?;
            Some(format!("  {}: {}", c.name, note))
        })
        .collect();
    // Traffic that stays on the gateway takes another path than the study's.
    for c in &s.containers {
        if let Some(l) = &c.live
            && let Some(share) = l
                .local_share
                .filter(|s| *s >= crate::api::Live::LOCAL_DOMINATES)
        {
            // The per-cgroup counters see every protocol; the sockets, TCP.
            let what = if s.host.counting.as_ref().is_some_and(|c| c.reason.is_none()) {
                "traffic"
            } else {
                "TCP"
            };
            notes.push(format!(
                "  {}: {:.0}% of its {what} is with {} on this gateway (probed on that path)",
                c.name,
                share * 100.0,
                if l.local_peers.is_empty() {
                    "containers".to_string()
                } else {
                    l.local_peers.join(", ")
                }
            ));
        }
    }
    for c in &s.containers {
        if let Some(r) = &c.recommendation
            && r.action == Action::Switch
        {
            notes.push(format!("  {}: {}", c.name, r.reason));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

// ------------------------------------------------------------------ probe results

use crate::api::{CellKind, Direction, Path, Pattern, ProbeCell, ProbeMode, ProbeRun, Sweep};

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// "3 ±12%": how many runs, and half their range against the median run.
fn runs_spread(runs: &[f64]) -> String {
    if runs.len() < 2 {
        return runs.len().to_string();
    }
    let mut s = runs.to_vec();
    s.sort_by(f64::total_cmp);
    let median = s[(s.len() - 1) / 2];
    let (lo, hi) = min_max(runs);
    if median > 0.0 {
        format!("{} ±{:.0}%", runs.len(), 50.0 * (hi - lo) / median)
    } else {
        runs.len().to_string()
    }
}

/// "egress", "ingress" or "req/resp".
fn traffic_label(c: &ProbeCell) -> String {
    let kind = match c.pattern {
        Pattern::RequestResponse => "req/resp",
        Pattern::Stream => c.direction.as_str(),
    };
    match c.path {
        Path::Local => format!("{kind} local"),
        Path::Upstream => kind.to_string(),
    }
}

fn limits_text(l: &crate::api::Limits) -> String {
    let mut parts = Vec::new();
    if let Some(c) = l.cpus {
        parts.push(format!("{c} CPU"));
    }
    if let Some(s) = &l.cpuset {
        parts.push(format!("cpuset {s}"));
    }
    if let Some(s) = l.cpu_shares {
        parts.push(format!("{s} shares"));
    }
    if let Some(m) = l.memory_bytes {
        parts.push(format!("{} MiB", m >> 20));
    }
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

fn opt_mbit(v: Option<f64>) -> String {
    v.map(mbit).unwrap_or_else(|| "-".into())
}

/// The rows of a set of cells, and the first reason perf counters were unavailable.
fn cell_table(cells: &[ProbeCell], with_n: bool) -> (String, Option<String>) {
    let mut header = vec!["MODE"];
    if with_n {
        header.push(">N");
    }
    // The traffic only when some cell was not an egress stream (most rounds send only, as
    // the study did).
    let with_dir = cells.iter().any(|c| {
        c.direction == Direction::Ingress
            || c.pattern == Pattern::RequestResponse
            || c.path == Path::Local
    });
    if with_dir {
        header.push("TRAFFIC");
    }
    let with_rr = cells.iter().any(|c| c.transactions.is_some());
    header.extend(["PROTO", ">SIZE"]);
    if with_rr {
        header.extend([">TRANS/s", ">P50 us", ">P99 us"]);
    }
    let with_runs = cells.iter().any(|c| c.runs.len() > 1);
    header.extend([
        ">GOODPUT Mbit/s",
        ">SENT Mbit/s",
        ">LOSS",
        ">CPU s",
        ">CTX SW",
        ">FAULTS",
        ">NET SOFTIRQS",
        ">IPC",
    ]);
    if with_runs {
        header.push(">RUNS");
    }
    let mut t = Table::new(&header);
    let mut perf_reason = None;
    let dash = || "-".to_string();
    for c in cells {
        let k = c.counters.as_ref();
        if let Some(r) = k.and_then(|k| k.perf.unavailable.clone()) {
            perf_reason.get_or_insert(r);
        }
        let mut row = vec![c.mode.as_str().to_string()];
        if with_n {
            row.push(c.concurrency.to_string());
        }
        if with_dir {
            row.push(traffic_label(c));
        }
        row.extend([c.protocol.as_str().to_string(), c.size.to_string()]);
        if with_rr {
            match &c.transactions {
                Some(t) => row.extend([
                    format!("{:.0}", t.per_s),
                    format!("{:.0}", t.latency_p50_us),
                    format!("{:.0}", t.latency_p99_us),
                ]),
                None => row.extend([dash(), dash(), dash()]),
            }
        }
        row.extend([
            if c.error.is_some() {
                "failed".into()
            } else {
                opt_mbit(c.goodput_bps)
            },
            opt_mbit(c.sent_bps),
            c.loss
                .map(|l| format!("{:.1}%", l * 100.0))
                .unwrap_or_else(dash),
            k.map(|k| format!("{:.2}", k.cpu_s)).unwrap_or_else(dash),
            k.map(|k| (k.voluntary_context_switches + k.involuntary_context_switches).to_string())
                .unwrap_or_else(dash),
            k.map(|k| (k.minor_faults + k.major_faults).to_string())
                .unwrap_or_else(dash),
            k.map(|k| (k.net_rx_softirqs + k.net_tx_softirqs).to_string())
                .unwrap_or_else(dash),
            k.and_then(|k| k.perf.ipc)
                .map(|i| format!("{i:.2}"))
                .unwrap_or_else(dash),
        ]);
        if with_runs {
            row.push(runs_spread(&c.runs));
        }
        t.row(row);
    }
    let mut text = t.render();
    for c in cells.iter().filter(|c| c.error.is_some()) {
        text.push_str(&format!(
            "  {} {} {} B failed: {}\n",
            c.mode.as_str(),
            c.protocol.as_str(),
            c.size,
            c.error.as_deref().unwrap_or("")
        ));
    }
    (text, perf_reason)
}

/// "tcp 64 B: bridge 123.40 vs host 98.20 Mbit/s (bridge +25.7%)" for each protocol and size.
pub fn mode_comparison(cells: &[ProbeCell]) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys: Vec<CellKind> = cells.iter().map(CellKind::of).collect();
    keys.sort();
    keys.dedup();
    for kind in keys {
        let CellKind {
            path,
            pattern: pat,
            direction: d,
            protocol: p,
            size: s,
        } = kind;
        let local = if path == Path::Local { " local" } else { "" };
        let cell = |m: ProbeMode| {
            cells
                .iter()
                .find(|c| c.mode == m && kind.is(c) && c.concurrency == 1)
        };
        // Runs of the two modes that overlap (by the figure they are judged by): no winner
        // to call.
        let overlap = match (
            cell(ProbeMode::Bridge).map(ProbeCell::throughput_runs),
            cell(ProbeMode::Host).map(ProbeCell::throughput_runs),
        ) {
            (Some(b), Some(h)) if b.len() > 1 && h.len() > 1 => {
                let (bmin, bmax) = min_max(b);
                let (hmin, hmax) = min_max(h);
                bmax >= hmin && hmax >= bmin
            }
            _ => false,
        };
        let too_close = if overlap {
            "; their runs overlap: too close to call"
        } else {
            ""
        };
        if pat == Pattern::RequestResponse {
            let tx = |m| cell(m).and_then(|c| c.transactions);
            if let (Some(b), Some(h)) = (tx(ProbeMode::Bridge), tx(ProbeMode::Host))
                && b.per_s > 0.0
                && h.per_s > 0.0
            {
                let (winner, gain) = if b.per_s >= h.per_s {
                    ("bridge", b.per_s / h.per_s - 1.0)
                } else {
                    ("host", h.per_s / b.per_s - 1.0)
                };
                out.push(format!(
                    "{} {s} B request/response{local}: bridge {:.0} vs host {:.0} transactions/s ({winner} +{:.1}%{too_close}; median round trip {:.0} vs {:.0} us)",
                    p.as_str(),
                    b.per_s,
                    h.per_s,
                    gain * 100.0,
                    b.latency_p50_us,
                    h.latency_p50_us,
                ));
            }
            continue;
        }
        let get = |m: ProbeMode| cell(m).and_then(|c| c.goodput_bps);
        if let (Some(b), Some(h)) = (get(ProbeMode::Bridge), get(ProbeMode::Host)) {
            let (winner, gain) = if b >= h {
                ("bridge", b / h - 1.0)
            } else {
                ("host", h / b - 1.0)
            };
            out.push(format!(
                "{} {} B{}{local}: bridge {} vs host {} Mbit/s ({winner} +{:.1}%{})",
                p.as_str(),
                s,
                match d {
                    Direction::Egress => "",
                    Direction::Ingress => " ingress",
                },
                mbit(b),
                mbit(h),
                gain * 100.0,
                too_close,
            ));
        }
    }
    out
}

pub fn sweep_table(s: &Sweep) -> String {
    let mut out = format!(
        "sweep: N = 1..{} concurrent probe containers per mode, {} each\n",
        s.max_concurrency,
        limits_text(&s.limits)
    );
    let mut t = Table::new(&["PROFILE", ">N", ">BRIDGE", ">HOST", ">HOST vs BRIDGE"]);
    for kind in s.profiles() {
        for n in 1..=s.max_concurrency {
            let at = |m: ProbeMode| s.at(&kind, n, m).and_then(|c| c.throughput());
            let (b, h) = (at(ProbeMode::Bridge), at(ProbeMode::Host));
            let vs = match (b, h) {
                (Some(b), Some(h)) if b > 0.0 => format!("{:+.1}%", (h / b - 1.0) * 100.0),
                _ => "-".into(),
            };
            // Request/response: transactions per second, not Mbit/s.
            let cell = |v: Option<f64>| match kind.pattern {
                Pattern::RequestResponse => v.map_or("-".into(), |t| format!("{t:.0} tx/s")),
                Pattern::Stream => v.map_or("-".into(), |b| format!("{} Mbit/s", mbit(b))),
            };
            t.row(vec![kind.label(), n.to_string(), cell(b), cell(h), vs]);
        }
    }
    out.push_str(&t.render());
    for c in &s.crossovers {
        let kind = CellKind {
            path: Path::Upstream,
            direction: c.direction,
            pattern: c.pattern,
            protocol: c.protocol,
            size: c.size,
        }
        .label();
        out.push_str(&match c.containers {
            Some(n) => format!("crossover {kind}: host mode overtakes bridge mode at N = {n}\n"),
            None => format!(
                "crossover {kind}: none; bridge mode held up to N = {}\n",
                s.max_concurrency
            ),
        });
    }
    for c in s.cells.iter().filter(|c| c.error.is_some()) {
        out.push_str(&format!(
            "  {} {} {} B N={} failed: {}\n",
            c.mode.as_str(),
            c.protocol.as_str(),
            c.size,
            c.concurrency,
            c.error.as_deref().unwrap_or("")
        ));
    }
    out
}

/// What `advisor probe` prints.
pub fn probe_run(r: &ProbeRun) -> String {
    let took = match (r.started_at_ms, r.finished_at_ms) {
        (Some(s), Some(f)) => format!(" in {:.1} s", f.saturating_sub(s) as f64 / 1000.0),
        _ => String::new(),
    };
    let mut out = format!(
        "probe {} ({:?}) {:?}{took}; sink {}; {} s per cell\n",
        r.id,
        r.trigger,
        r.state,
        r.sink.as_deref().unwrap_or("-"),
        r.cell_duration_s
    )
    .to_lowercase();
    if let Some(e) = &r.error {
        out.push_str(&format!("error: {e}\n"));
    }
    let mut perf_reason = None;
    for cp in &r.containers {
        out.push_str(&format!(
            "\n{} ({}; probes on {}, {})\n",
            cp.target.name,
            cp.target.network_mode,
            cp.target.bridge_network,
            limits_text(&cp.target.limits)
        ));
        if let Some(e) = &cp.error {
            out.push_str(&format!("  {e}\n"));
        }
        if let Some(other) = &cp.measured_for {
            out.push_str(&format!(
                "  (bridge and host cells shared with {other}: same network and limits)\n"
            ));
        }
        if !cp.cells.is_empty() {
            let (table, reason) = cell_table(&cp.cells, false);
            out.push_str(&table);
            if perf_reason.is_none() {
                perf_reason = reason;
            }
            for line in mode_comparison(&cp.cells) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    if let Some(s) = &r.sweep {
        out.push('\n');
        out.push_str(&sweep_table(s));
    }
    if let Some(reason) = perf_reason {
        out.push_str(&format!("\ncycles and IPC: not counted: {reason}\n"));
    }
    out
}

/// What `advisor explain` prints: the recommendation and the whole chain behind it.
pub fn explain(c: &Container) -> String {
    let mut out = format!(
        "{} ({}, network mode {}, {})\n",
        c.name,
        &c.id[..c.id.len().min(12)],
        c.network_mode,
        limits_text(&c.limits)
    );
    match &c.live {
        Some(l) => out.push_str(&format!(
            "live: rx {} tx {} Mbit/s, {} pkt/s, mean packet {}, seen: {}\n",
            mbit(l.rx_bps),
            mbit(l.tx_bps),
            rate(l.rx_pps + l.tx_pps),
            l.mean_packet_bytes
                .map(|m| format!("{m:.0} B"))
                .unwrap_or_else(|| "-".into()),
            seen(l)
        )),
        None => out.push_str("live: not sampled yet\n"),
    }
    let Some(r) = &c.recommendation else {
        out.push_str("\nno recommendation yet (the first evaluation follows the first sample)\n");
        return out;
    };
    out.push_str(
        &format!(
            "\nrecommendation: {} (mode {}, {}, expected gain {:+.1}%{}, basis {:?}{})\n",
            recommendation_cell(Some(r)),
            r.mode.as_str(),
            match r.action {
                Action::Keep => "keep",
                Action::Switch => "switch",
            },
            r.expected_gain * 100.0,
            r.gain_interval
                .map(|[lo, hi]| format!(" (80%: {:+.1}% to {:+.1}%)", lo * 100.0, hi * 100.0))
                .unwrap_or_default(),
            r.basis,
            if r.applicable { ", applicable" } else { "" }
        )
        .to_lowercase(),
    );
    // "P = 0.97 that host gains at least 10% over bridge: decided, switch (...)".
    if let Some(e) = r.evidence.iter().find(|e| e.step == "probability") {
        out.push_str(&format!(
            "decision: {} ({})\n",
            r.decision.as_str(),
            e.detail
        ));
    }
    if let Some(why) = &r.apply_waits {
        out.push_str(&format!("apply mode waits: {why}\n"));
    }
    out.push_str(&format!("  {}\n", r.reason));
    if !r.evidence.is_empty() {
        out.push_str("\nevidence:\n");
        for (i, e) in r.evidence.iter().enumerate() {
            out.push_str(&format!("  {}. {}: {}\n", i + 1, e.step, e.detail));
        }
    }
    if !r.blockers.is_empty() {
        out.push_str("\nblocked by:\n");
        for b in &r.blockers {
            out.push_str(&format!("  - [{}] {}\n", b.kind, b.message));
        }
    }
    if !r.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &r.warnings {
            out.push_str(&format!("  - [{}] {}\n", w.kind, w.message));
        }
    }
    if let Some(p) = &c.probes {
        let cells: Vec<ProbeCell> = p.bridge.iter().chain(&p.host).cloned().collect();
        let lines = mode_comparison(&cells);
        if !lines.is_empty() {
            out.push_str(&format!("\nlatest probe ({}):\n", p.run_id));
            for l in lines {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    out
}

// ------------------------------------------------------------------ mode changes

use crate::api::{ApplyList, ApplyRecord, ApplyState};

fn apply_state(s: ApplyState) -> &'static str {
    match s {
        ApplyState::Queued => "queued",
        ApplyState::Running => "running",
        ApplyState::Applied => "applied",
        ApplyState::RolledBack => "rolled back",
        ApplyState::DryRun => "dry run",
        ApplyState::Refused => "refused",
        ApplyState::Failed => "FAILED",
        ApplyState::ComposeOverride => "override",
    }
}

/// One change: what it did (or would do), field by field.
pub fn apply_record(r: &ApplyRecord) -> String {
    let mut out = format!(
        "apply {} ({}): {} {} -> {}: {}",
        r.id,
        match r.trigger {
            crate::api::Trigger::Advisor => "advisor",
            _ => "manual",
        },
        r.container,
        r.from.as_str(),
        r.to.as_str(),
        apply_state(r.state)
    );
    if let (Some(a), Some(b)) = (r.started_at_ms, r.finished_at_ms) {
        out.push_str(&format!(" in {:.1} s", b.saturating_sub(a) as f64 / 1000.0));
    }
    out.push('\n');
    if let Some(e) = &r.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    if let Some(o) = &r.compose_override {
        out.push_str(&format!(
            "  nothing was changed: {} belongs to a Compose project, which would undo a change\n  \
             made behind its back. Compose override written to {}:\n",
            r.container, o.file
        ));
        for l in o.content.lines() {
            out.push_str(&format!("    | {l}\n"));
        }
        out.push_str(&format!("  apply it with Compose:\n    {}\n", o.command));
        return out;
    }
    if r.state == ApplyState::DryRun {
        out.push_str("  nothing was changed; the new container would differ from the old in:\n");
    } else {
        out.push_str("  the new container differs from the old in:\n");
    }
    for d in &r.diff {
        out.push_str(&format!("    {d}\n"));
    }
    if !r.dropped.is_empty() {
        out.push_str("  dropped in host mode (recorded for the way back):\n");
        for d in &r.dropped {
            out.push_str(&format!("    {d}\n"));
        }
    }
    out
}

/// `advisor history`: one line per change, newest first.
pub fn apply_history(l: &ApplyList) -> String {
    let mut out = String::from(
        "ID                 CONTAINER        FROM    TO      OUTCOME      SECONDS  ERROR\n",
    );
    for r in l.running.iter().chain(l.applies.iter()) {
        let secs = match (r.started_at_ms, r.finished_at_ms) {
            (Some(a), Some(b)) => format!("{:.1}", b.saturating_sub(a) as f64 / 1000.0),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<18} {:<16} {:<7} {:<7} {:<12} {:>7}  {}\n",
            r.id,
            r.container,
            r.from.as_str(),
            r.to.as_str(),
            apply_state(r.state),
            secs,
            r.error.as_deref().unwrap_or("")
        ));
    }
    if l.running.is_none() && l.applies.is_empty() {
        out.push_str("(no change made yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_numbers_right_and_text_left() {
        let mut t = Table::new(&["NAME", ">RATE"]);
        t.row(vec!["a".into(), "1.00".into()]);
        t.row(vec!["longer".into(), "12.50".into()]);
        assert_eq!(t.render(), "NAME     RATE\na        1.00\nlonger  12.50\n");
    }

    #[test]
    fn rates_are_compact() {
        assert_eq!(rate(950.4), "950");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(1_200_000.0), "1.20M");
        assert_eq!(mbit(1_234_567.0), "1.23");
        assert_eq!(percent(Some(0.1234)), "12.3%");
        assert_eq!(percent(None), "-");
    }
}
