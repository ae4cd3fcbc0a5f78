//! Prometheus text exposition (format 0.0.4) of a status document, after Prometheus'
//! naming conventions: names start with `netmode_`, base units (bytes, seconds), counters
//! end in `_total`, rates are left to `rate()`, and labels that describe a container (image,
//! id, network mode) live on `netmode_container_info` only, so that a container's series keep
//! their identity (`name`, as cAdvisor's) when its mode changes. Host series that duplicate
//! node_exporter are off unless `http.host_metrics`. `docs/api.md` lists every series.

use std::fmt::Write;

use netmode_advisor::api::{Action, Attribution, Container, DockerState, Status};

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A family with one sample per container that has a value, labelled by its name.
    fn per_container(
        &mut self,
        (name, kind, help): (&str, &str, &str),
        s: &Status,
        value: impl Fn(&Container) -> Option<f64>,
    ) {
        self.family(name, kind, help);
        for c in &s.containers {
            if let Some(v) = value(c) {
                self.sample(name, &[("name", &c.name)], v);
            }
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn bool_label(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// What `/metrics` shows beyond the status document.
#[derive(Default)]
pub struct Extra {
    /// `http.host_metrics`: host series that node_exporter also has.
    pub host: bool,
    /// A mode change is in progress.
    pub apply_running: bool,
    /// Mode changes finished since start: (trigger, outcome, count).
    pub applies: Vec<(String, String, u64)>,
    /// Probe runs finished since start: (outcome, count).
    pub probe_runs: Vec<(String, u64)>,
    /// The endpoint's connections: (open, closed idle to make room, refused).
    pub http: (usize, u64, u64),
    /// The last configuration reload succeeded; when the configuration in force was loaded.
    pub reload: crate::state::Reloaded,
    /// Tasks alive on the daemon's executor.
    pub tasks: usize,
}

/// The whole text for the daemon's state now.
pub fn of(app: &super::App) -> String {
    let extra = Extra {
        host: app.state.config().http.host_metrics,
        apply_running: app.changes.book.running().is_some(),
        applies: app.changes.book.counts(),
        probe_runs: app.probes.outcomes(),
        http: app.conns.counts(),
        reload: app.state.reloaded(),
        tasks: crate::rt::tasks(),
    };
    render(&crate::view::status(&app.state, &app.probes), &extra)
}

/// The file written into `http.textfile_dir`, for node_exporter's textfile collector.
pub const TEXTFILE: &str = "netmode.prom";

/// How often `http.textfile_dir` is rewritten (each write is fsync'd: not at every sample).
const TEXTFILE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The textfile task: while `http.textfile_dir` is set (a reload may set or unset it), the
/// text is rewritten every `TEXTFILE_EVERY`.
pub async fn textfile_task(app: std::sync::Arc<super::App>) {
    loop {
        if app.state.config().http.textfile_dir.is_some() {
            let s = app.clone();
            smol::unblock(move || write_textfile(&s)).await;
        }
        async_io::Timer::after(TEXTFILE_EVERY).await;
    }
}

/// Write the text atomically into `http.textfile_dir` (if set).
pub fn write_textfile(app: &super::App) {
    if let Some(dir) = &app.state.config().http.textfile_dir
        && let Err(e) =
            crate::state_dir::write_atomic_mode(&dir.join(TEXTFILE), of(app).as_bytes(), 0o644)
    {
        log::warn!("http.textfile_dir: {e}");
    }
}

pub fn render(s: &Status, x: &Extra) -> String {
    let mut o = Out {
        text: String::new(),
    };
    o.family(
        "netmode_build_info",
        "gauge",
        "netmoded's version; always 1.",
    );
    o.sample("netmode_build_info", &[("version", &s.version)], 1.0);
    o.family(
        "netmode_docker_up",
        "gauge",
        "1 when the Docker engine is connected and followed.",
    );
    let up = s.docker.state == DockerState::Connected;
    o.sample("netmode_docker_up", &[], if up { 1.0 } else { 0.0 });
    if x.host {
        host(&mut o, s);
    }
    containers(&mut o, s);
    probes(&mut o, s, x);
    advice(&mut o, s);
    changes(&mut o, x);
    endpoint(&mut o, x);
    o.text
}

fn endpoint(o: &mut Out, x: &Extra) {
    o.family(
        "netmode_runtime_tasks",
        "gauge",
        "Tasks alive on netmoded's event loop (connections, probes, watchers); flat over a long run.",
    );
    o.sample("netmode_runtime_tasks", &[], x.tasks as f64);
    if let Some(h) = crate::heap::now() {
        o.family(
            "netmode_heap_bytes",
            "gauge",
            "Bytes in use on netmoded's heap (benchmark builds with feature heap-stats only).",
        );
        o.sample("netmode_heap_bytes", &[], h.bytes as f64);
        o.family(
            "netmode_heap_peak_bytes",
            "gauge",
            "The most bytes in use on netmoded's heap at once since start (heap-stats builds only).",
        );
        o.sample("netmode_heap_peak_bytes", &[], h.peak_bytes as f64);
        o.family(
            "netmode_heap_allocations_total",
            "counter",
            "Allocations since start (benchmark builds with feature heap-stats only).",
        );
        o.sample("netmode_heap_allocations_total", &[], h.allocations as f64);
    }
    let crate::state::Reloaded { ok, at_ms } = x.reload;
    o.family(
        "netmode_config_last_reload_successful",
        "gauge",
        "0 if the last configuration reload (SIGHUP) failed: the file has an error and the previous configuration is still in force.",
    );
    o.sample(
        "netmode_config_last_reload_successful",
        &[],
        if ok { 1.0 } else { 0.0 },
    );
    o.family(
        "netmode_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the configuration in force was loaded (start or reload), Unix time.",
    );
    o.sample(
        "netmode_config_last_reload_success_timestamp_seconds",
        &[],
        at_ms as f64 / 1000.0,
    );
    let (open, evicted, refused) = x.http;
    o.family(
        "netmode_http_connections",
        "gauge",
        "Connections open on netmoded's HTTP endpoint.",
    );
    o.sample("netmode_http_connections", &[], open as f64);
    o.family(
        "netmode_http_connections_closed_total",
        "counter",
        "Connections the endpoint closed to protect the others: idle (a request head not sent, or kept alive) while the idle limits were reached, or refused with every slot busy.",
    );
    for (reason, n) in [("idle_evicted", evicted), ("refused", refused)] {
        o.sample(
            "netmode_http_connections_closed_total",
            &[("reason", reason)],
            n as f64,
        );
    }
}

/// Host series (node_exporter has their raw counters): only with `http.host_metrics`.
fn host(o: &mut Out, s: &Status) {
    let h = &s.host;
    o.family("netmode_host_cpus", "gauge", "Online CPUs.");
    o.sample("netmode_host_cpus", &[], h.cpus as f64);
    let gauges: [(&str, &str, Option<f64>); 2] = [
        (
            "netmode_host_cpu_utilisation_ratio",
            "Busy fraction of all CPUs over the last sample interval.",
            h.cpu_utilisation,
        ),
        (
            "netmode_host_softirq_ratio",
            "Fraction of CPU time spent in softirq context over the last sample interval.",
            h.softirq_share,
        ),
    ];
    for (name, help, v) in gauges {
        if let Some(v) = v {
            o.family(name, "gauge", help);
            o.sample(name, &[], v);
        }
    }
}

fn containers(o: &mut Out, s: &Status) {
    o.family(
        "netmode_containers",
        "gauge",
        "Running containers netmoded watches.",
    );
    o.sample("netmode_containers", &[], s.containers.len() as f64);
    o.family(
        "netmode_container_info",
        "gauge",
        "One series per running container; always 1. Its labels describe the container; join on name.",
    );
    for c in &s.containers {
        let attributed = match c.live.as_ref().map(|l| l.attributed) {
            Some(Attribution::Full) => "full",
            Some(Attribution::TcpOnly) => "tcp_only",
            Some(Attribution::Shared) => "shared",
            Some(Attribution::None) => "none",
            None => "pending",
        };
        o.sample(
            "netmode_container_info",
            &[
                ("name", &c.name),
                ("container_id", &c.id),
                ("image", &c.image),
                ("network_mode", &c.network_mode),
                ("mode", c.mode_kind.as_str()),
                ("attributed", attributed),
                (
                    "source",
                    c.live.as_ref().map_or("pending", |l| l.source.as_str()),
                ),
            ],
            1.0,
        );
    }
    type Pick = fn(&netmode_advisor::api::Live) -> u64;
    let series: [(&str, &str, Pick); 4] = [
        (
            "netmode_container_network_receive_bytes_total",
            "Bytes the container received since netmoded started watching it (host mode: TCP payload).",
            |l| l.rx_bytes,
        ),
        (
            "netmode_container_network_transmit_bytes_total",
            "Bytes the container sent since netmoded started watching it (host mode: TCP payload).",
            |l| l.tx_bytes,
        ),
        (
            "netmode_container_network_receive_packets_total",
            "Packets (TCP segments in host mode) the container received.",
            |l| l.rx_packets,
        ),
        (
            "netmode_container_network_transmit_packets_total",
            "Packets (TCP segments in host mode) the container sent.",
            |l| l.tx_packets,
        ),
    ];
    for (name, help, pick) in series {
        o.per_container((name, "counter", help), s, |c| {
            c.live.as_ref().map(|l| pick(l) as f64)
        });
    }
}

fn advice(o: &mut Out, s: &Status) {
    let Some(a) = &s.advisor else { return };
    o.family(
        "netmode_advisor_mode_info",
        "gauge",
        "advisor.mode: off, recommend or apply (applies by itself); always 1.",
    );
    o.sample(
        "netmode_advisor_mode_info",
        &[("mode", a.mode.as_str())],
        1.0,
    );
    o.family(
        "netmode_network_active_containers",
        "gauge",
        "Containers the advisor counts as network-active.",
    );
    o.sample(
        "netmode_network_active_containers",
        &[],
        a.network_active.len() as f64,
    );
    o.family(
        "netmode_crossover_containers",
        "gauge",
        "Network-active containers from which host mode is expected to win (NaN: not within the measured range).",
    );
    o.sample(
        "netmode_crossover_containers",
        &[("source", &a.crossover.source)],
        a.crossover.containers.map_or(f64::NAN, |n| n as f64),
    );
    o.family(
        "netmode_recommendation_info",
        "gauge",
        "The advisor's recommendation per container; always 1.",
    );
    for c in &s.containers {
        if let Some(r) = &c.recommendation {
            let action = match r.action {
                Action::Keep => "keep",
                Action::Switch => "switch",
            };
            o.sample(
                "netmode_recommendation_info",
                &[
                    ("name", &c.name),
                    ("mode", r.mode.as_str()),
                    ("action", action),
                    ("applicable", bool_label(r.applicable)),
                    ("basis", basis(r.basis)),
                ],
                1.0,
            );
        }
    }
    type Pick = fn(&netmode_advisor::api::Recommendation) -> Option<f64>;
    let series: [(&str, &str, Pick); 5] = [
        (
            "netmode_recommendation_expected_gain_ratio",
            "Expected goodput of the recommended mode relative to the other (0.25 = +25%).",
            |r| Some(r.expected_gain),
        ),
        (
            "netmode_recommendation_confidence_ratio",
            "Probability that the recommended action is the right one (0..1).",
            |r| Some(r.confidence),
        ),
        (
            "netmode_recommendation_switch_pays_probability",
            "Posterior probability that switching mode gains at least advisor.min_gain (0..1).",
            |r| r.p_switch_pays,
        ),
        (
            "netmode_recommendation_undecided",
            "1 while the evidence has not decided the container's mode, else 0.",
            |r| {
                Some(f64::from(u8::from(
                    r.decision == netmode_advisor::api::Decision::Undecided,
                )))
            },
        ),
        (
            "netmode_recommendation_apply_waiting",
            "1 while apply mode holds a recommended switch back (the reason: apply_waits in /v1), else 0.",
            |r| Some(f64::from(u8::from(r.apply_waits.is_some()))),
        ),
    ];
    for (name, help, pick) in series {
        o.per_container((name, "gauge", help), s, |c| {
            c.recommendation.as_ref().and_then(pick)
        });
    }
}

fn basis(b: netmode_advisor::api::Basis) -> &'static str {
    use netmode_advisor::api::Basis;
    match b {
        Basis::Prior => "prior",
        Basis::Measured => "measured",
        Basis::Pinned => "pinned",
        Basis::Excluded => "excluded",
    }
}

fn changes(o: &mut Out, x: &Extra) {
    o.family(
        "netmode_apply_running",
        "gauge",
        "1 while a mode change is in progress.",
    );
    o.sample(
        "netmode_apply_running",
        &[],
        if x.apply_running { 1.0 } else { 0.0 },
    );
    o.family(
        "netmode_applies_total",
        "counter",
        "Mode changes finished since netmoded started, by trigger (manual, advisor) and outcome (applied, rolled_back, dry_run, refused, failed, compose_override).",
    );
    for (trigger, outcome, n) in &x.applies {
        o.sample(
            "netmode_applies_total",
            &[("trigger", trigger), ("outcome", outcome)],
            *n as f64,
        );
    }
}

fn probes(o: &mut Out, s: &Status, x: &Extra) {
    o.family(
        "netmode_probe_running",
        "gauge",
        "1 while a probe run is in progress.",
    );
    o.sample(
        "netmode_probe_running",
        &[],
        if s.probe.running.is_some() { 1.0 } else { 0.0 },
    );
    o.family(
        "netmode_probe_runs_total",
        "counter",
        "Probe runs finished since netmoded started, by outcome (done, failed, aborted).",
    );
    for (outcome, n) in &x.probe_runs {
        o.sample(
            "netmode_probe_runs_total",
            &[("outcome", outcome)],
            *n as f64,
        );
    }
    o.per_container(
        (
            "netmode_probe_timestamp_seconds",
            "gauge",
            "When the container's latest probe finished (Unix seconds).",
        ),
        s,
        |c| c.probes.as_ref().map(|p| p.finished_at_ms as f64 / 1000.0),
    );
    type Pick = fn(&netmode_advisor::api::ProbeCell) -> Option<f64>;
    let series: [(&str, &str, Pick); 5] = [
        (
            "netmode_probe_goodput_bytes_per_second",
            "Receiver-side goodput of the latest probe, per probe mode, protocol and message size.",
            |c| c.goodput_bps.map(|b| b / 8.0),
        ),
        (
            "netmode_probe_loss_ratio",
            "UDP loss of the latest probe (0..1).",
            |c| c.loss,
        ),
        (
            "netmode_probe_transactions_per_second",
            "Request/response transactions per second of the latest probe.",
            |c| c.transactions.map(|t| t.per_s),
        ),
        (
            "netmode_probe_latency_p50_seconds",
            "Median round trip of a request/response transaction in the latest probe.",
            |c| c.transactions.map(|t| t.latency_p50_us / 1e6),
        ),
        (
            "netmode_probe_cpu_seconds",
            "CPU time the probe senders used in the latest probe cell.",
            |c| c.counters.as_ref().map(|k| k.cpu_s),
        ),
    ];
    for (name, help, pick) in series {
        o.family(name, "gauge", help);
        for c in &s.containers {
            let Some(p) = &c.probes else { continue };
            for cell in p.bridge.iter().chain(&p.host).chain(&p.in_place) {
                if let Some(v) = pick(cell) {
                    let size = cell.size.to_string();
                    o.sample(
                        name,
                        &[
                            ("name", &c.name),
                            ("probe_mode", cell.mode.as_str()),
                            ("direction", cell.direction.as_str()),
                            ("pattern", cell.pattern.as_str()),
                            ("path", cell.path.as_str()),
                            ("protocol", cell.protocol.as_str()),
                            ("message_bytes", &size),
                        ],
                        v,
                    );
                }
            }
        }
    }

    if let Some(sw) = &s.probe.sweep {
        // A family's samples follow its header, all together.
        type Pick = fn(&netmode_advisor::api::ProbeCell) -> Option<f64>;
        let series: [(&str, &str, Pick); 2] = [
            (
                "netmode_sweep_goodput_bytes_per_second",
                "Aggregate goodput of N concurrent probe containers per mode (latest sweep).",
                |c| c.goodput_bps.map(|b| b / 8.0),
            ),
            (
                "netmode_sweep_transactions_per_second",
                "Aggregate request/response transactions per second of N concurrent probe containers per mode (latest sweep).",
                |c| c.transactions.map(|t| t.per_s),
            ),
        ];
        for (name, help, pick) in series {
            o.family(name, "gauge", help);
            for cell in &sw.cells {
                let Some(v) = pick(cell) else { continue };
                let (n, size) = (cell.concurrency.to_string(), cell.size.to_string());
                o.sample(
                    name,
                    &[
                        ("probe_mode", cell.mode.as_str()),
                        ("concurrency", &n),
                        ("direction", cell.direction.as_str()),
                        ("pattern", cell.pattern.as_str()),
                        ("protocol", cell.protocol.as_str()),
                        ("message_bytes", &size),
                    ],
                    v,
                );
            }
        }
        o.family(
            "netmode_sweep_crossover_containers",
            "gauge",
            "Smallest number of concurrent containers at which host mode beat bridge mode, per kind of traffic, protocol and size (NaN: not within the sweep).",
        );
        for c in &sw.crossovers {
            let size = c.size.to_string();
            o.sample(
                "netmode_sweep_crossover_containers",
                &[
                    ("direction", c.direction.as_str()),
                    ("pattern", c.pattern.as_str()),
                    ("protocol", c.protocol.as_str()),
                    ("message_bytes", &size),
                ],
                c.containers.map_or(f64::NAN, |n| n as f64),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
