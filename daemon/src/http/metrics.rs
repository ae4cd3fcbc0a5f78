//! Prometheus text exposition (format 0.0.4) of a status document. Metric names start with
//! `netmode_`; container series are labelled with the container's name and network mode.

use std::fmt::Write;

use netmode_advisor::api::{Attribution, DockerState, Status};

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

/// Mode changes for `/metrics`: one in progress, and those finished since start by
/// (trigger, outcome).
#[derive(Default)]
pub struct Applies {
    pub running: bool,
    pub counts: Vec<(String, String, u64)>,
}

pub fn render(s: &Status, applies: &Applies) -> String {
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
    o.sample(
        "netmode_docker_up",
        &[],
        if s.docker.state == DockerState::Connected {
            1.0
        } else {
            0.0
        },
    );

    let h = &s.host;
    o.family("netmode_host_cpus", "gauge", "Online CPUs.");
    o.sample("netmode_host_cpus", &[], h.cpus as f64);
    let host_gauges: [(&str, &str, Option<f64>); 5] = [
        (
            "netmode_host_cpu_utilisation_ratio",
            "Busy fraction of all CPUs over the last sample interval.",
            h.cpu_utilisation,
        ),
        (
            "netmode_host_softirq_ratio",
            "Fraction of CPU time spent in softirq context over the last interval.",
            h.softirq_share,
        ),
        (
            "netmode_host_context_switches_per_second",
            "Context switches per second, all CPUs.",
            h.context_switches_per_s,
        ),
        (
            "netmode_host_net_rx_softirqs_per_second",
            "NET_RX softirqs per second, all CPUs.",
            h.net_rx_softirqs_per_s,
        ),
        (
            "netmode_host_net_tx_softirqs_per_second",
            "NET_TX softirqs per second, all CPUs.",
            h.net_tx_softirqs_per_s,
        ),
    ];
    for (name, help, v) in host_gauges {
        if let Some(v) = v {
            o.family(name, "gauge", help);
            o.sample(name, &[], v);
        }
    }

    o.family(
        "netmode_containers",
        "gauge",
        "Running containers netmoded watches.",
    );
    o.sample("netmode_containers", &[], s.containers.len() as f64);

    o.family(
        "netmode_container_info",
        "gauge",
        "One series per running container; always 1. Labels carry id, image and how its traffic is seen.",
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
                ("container", &c.name),
                ("network_mode", &c.network_mode),
                ("id", &c.id[..c.id.len().min(12)]),
                ("image", &c.image),
                ("attributed", attributed),
            ],
            1.0,
        );
    }

    type Pick = fn(&netmode_advisor::api::Live) -> f64;
    let series: [(&str, &str, &str, Pick); 9] = [
        (
            "netmode_container_receive_bytes_total",
            "counter",
            "Bytes received by the container since netmoded started watching it.",
            |l| l.rx_bytes as f64,
        ),
        (
            "netmode_container_transmit_bytes_total",
            "counter",
            "Bytes sent by the container since netmoded started watching it.",
            |l| l.tx_bytes as f64,
        ),
        (
            "netmode_container_receive_packets_total",
            "counter",
            "Packets (TCP segments in host mode) received.",
            |l| l.rx_packets as f64,
        ),
        (
            "netmode_container_transmit_packets_total",
            "counter",
            "Packets (TCP segments in host mode) sent.",
            |l| l.tx_packets as f64,
        ),
        (
            "netmode_container_receive_bits_per_second",
            "gauge",
            "Receive rate over the last sample interval.",
            |l| l.rx_bps,
        ),
        (
            "netmode_container_transmit_bits_per_second",
            "gauge",
            "Send rate over the last sample interval.",
            |l| l.tx_bps,
        ),
        (
            "netmode_container_receive_packets_per_second",
            "gauge",
            "Packets received per second over the last interval.",
            |l| l.rx_pps,
        ),
        (
            "netmode_container_transmit_packets_per_second",
            "gauge",
            "Packets sent per second over the last interval.",
            |l| l.tx_pps,
        ),
        (
            "netmode_container_mean_packet_bytes",
            "gauge",
            "Mean packet size over the last interval (NaN without packets).",
            |l| l.mean_packet_bytes.unwrap_or(f64::NAN),
        ),
    ];
    for (name, kind, help, pick) in series {
        o.family(name, kind, help);
        for c in &s.containers {
            if let Some(l) = &c.live {
                o.sample(
                    name,
                    &[("container", &c.name), ("network_mode", &c.network_mode)],
                    pick(l),
                );
            }
        }
    }
    probes(&mut o, s);
    advice(&mut o, s);
    changes(&mut o, s, applies);
    o.text
}

fn advice(o: &mut Out, s: &Status) {
    let Some(a) = &s.advisor else { return };
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
                netmode_advisor::api::Action::Keep => "keep",
                netmode_advisor::api::Action::Switch => "switch",
            };
            o.sample(
                "netmode_recommendation_info",
                &[
                    ("container", &c.name),
                    ("network_mode", &c.network_mode),
                    ("mode", r.mode.as_str()),
                    ("action", action),
                    ("applicable", if r.applicable { "true" } else { "false" }),
                ],
                1.0,
            );
        }
    }
    type Pick = fn(&netmode_advisor::api::Recommendation) -> f64;
    let series: [(&str, &str, Pick); 2] = [
        (
            "netmode_recommendation_expected_gain_ratio",
            "Expected goodput of the recommended mode relative to the other (0.25 = +25%).",
            |r| r.expected_gain,
        ),
        (
            "netmode_recommendation_confidence",
            "Confidence of the recommendation (0..1).",
            |r| r.confidence,
        ),
    ];
    for (name, help, pick) in series {
        o.family(name, "gauge", help);
        for c in &s.containers {
            if let Some(r) = &c.recommendation {
                o.sample(
                    name,
                    &[("container", &c.name), ("network_mode", &c.network_mode)],
                    pick(r),
                );
            }
        }
    }
}

fn changes(o: &mut Out, s: &Status, a: &Applies) {
    if let Some(adv) = &s.advisor {
        o.family(
            "netmode_advisor_mode_info",
            "gauge",
            "advisor.mode: off, recommend or apply (applies by itself); always 1.",
        );
        o.sample(
            "netmode_advisor_mode_info",
            &[("mode", adv.mode.as_str())],
            1.0,
        );
    }
    o.family(
        "netmode_apply_running",
        "gauge",
        "1 while a mode change is in progress.",
    );
    o.sample(
        "netmode_apply_running",
        &[],
        if a.running { 1.0 } else { 0.0 },
    );
    o.family(
        "netmode_applies_total",
        "counter",
        "Mode changes finished since netmoded started, by trigger (manual, advisor) and outcome (applied, rolled_back, dry_run, refused, compose_override).",
    );
    for (trigger, outcome, n) in &a.counts {
        o.sample(
            "netmode_applies_total",
            &[("trigger", trigger), ("outcome", outcome)],
            *n as f64,
        );
    }
}

fn probes(o: &mut Out, s: &Status) {
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

    type Pick = fn(&netmode_advisor::api::ProbeCell) -> Option<f64>;
    let series: [(&str, &str, Pick); 3] = [
        (
            "netmode_probe_goodput_bits_per_second",
            "Receiver-side goodput of the latest probe, per probe mode, protocol and message size.",
            |c| c.goodput_bps,
        ),
        (
            "netmode_probe_loss_ratio",
            "UDP loss of the latest probe (0..1).",
            |c| c.loss,
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
                            ("container", &c.name),
                            ("network_mode", &c.network_mode),
                            ("probe_mode", cell.mode.as_str()),
                            ("protocol", cell.protocol.as_str()),
                            ("size", &size),
                        ],
                        v,
                    );
                }
            }
        }
    }

    if let Some(sw) = &s.probe.sweep {
        o.family(
            "netmode_sweep_goodput_bits_per_second",
            "gauge",
            "Aggregate goodput of N concurrent probe containers per mode (latest sweep).",
        );
        for cell in &sw.cells {
            if let Some(v) = cell.goodput_bps {
                let (n, size) = (cell.concurrency.to_string(), cell.size.to_string());
                o.sample(
                    "netmode_sweep_goodput_bits_per_second",
                    &[
                        ("probe_mode", cell.mode.as_str()),
                        ("concurrency", &n),
                        ("protocol", cell.protocol.as_str()),
                        ("size", &size),
                    ],
                    v,
                );
            }
        }
        o.family(
            "netmode_sweep_crossover_containers",
            "gauge",
            "Smallest number of concurrent containers at which host mode beat bridge mode, per protocol and size (NaN: not within the sweep).",
        );
        for c in &sw.crossovers {
            let size = c.size.to_string();
            o.sample(
                "netmode_sweep_crossover_containers",
                &[("protocol", c.protocol.as_str()), ("size", &size)],
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
