//! Probe traffic like the containers' own, against the real engine (`probe.traffic =
//! "auto"`): a container that receives is probed in the receive direction, one that sends in
//! the send direction, and one that exchanges small requests and answers with
//! request/response cells, judged on their latency; their recommendations cite that
//! evidence.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use netmode_e2e::api::{Direction, Path, Pattern, ProbeCell, ProbeMode, RunState};
use netmode_e2e::*;

const PROBE: &str = "enabled = false\nduration = \"500ms\"\nprotocols = [\"tcp\", \"udp\"]\nsizes = [1024]\nin_place = false";

/// A host-side TCP server that answers every line with itself and closes: what a polled
/// service does, small requests and answers.
fn echo_listener() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 256];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    port
}

fn directions(cells: &[ProbeCell], mode: ProbeMode) -> Vec<Direction> {
    let mut d: Vec<Direction> = cells
        .iter()
        .filter(|c| c.mode == mode)
        .map(|c| c.direction)
        .collect();
    d.sort();
    d.dedup();
    d
}

#[test]
fn a_receiving_container_is_probed_in_the_receive_direction() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, &probe_section(PROBE));
    // Receives a steady TCP stream from the host.
    let port = 7000;
    let receiver = Container::tcp_sink("ingr", &[], port);
    let _stream = stream_tcp(format!("{}:{port}", receiver.ip()), Duration::from_secs(90));
    // Sends a steady TCP stream to the host.
    let sink_port = discard_listener();
    let script = format!(
        "while true; do nc {} {sink_port} < /dev/zero; sleep 0.2; done",
        network_gateway("bridge")
    );
    let sender = Container::run("egr", &[], busybox_image(), &["sh", "-c", &script]);

    daemon.wait_for(
        "both containers' live traffic",
        Duration::from_secs(30),
        |s| {
            let rx = find(s, &receiver.name)?.live.as_ref()?;
            let tx = find(s, &sender.name)?.live.as_ref()?;
            (rx.rx_bps > 1e6
                && rx.rx_bps > 3.0 * rx.tx_bps
                && tx.tx_bps > 1e6
                && tx.tx_bps > 3.0 * tx.rx_bps)
                .then_some(())
        },
    );

    let run = daemon.probe("{\"all\": true}", Duration::from_secs(180));
    assert_eq!(run.state, RunState::Done, "{run:?}");
    let cells_of = |name: &str| -> &[ProbeCell] {
        &run.containers
            .iter()
            .find(|c| c.target.name == name)
            .unwrap_or_else(|| panic!("{name} not probed: {run:?}"))
            .cells
    };
    let r = cells_of(&receiver.name);
    for mode in [ProbeMode::Bridge, ProbeMode::Host] {
        assert_eq!(directions(r, mode), [Direction::Ingress], "{r:?}");
    }
    for c in r.iter().filter(|c| c.direction == Direction::Ingress) {
        assert!(c.error.is_none(), "{c:?}");
        assert!(c.goodput_bps.is_some_and(|g| g > 1e6), "{c:?}");
        assert!(c.counters.as_ref().is_some_and(|k| k.cpu_s > 0.0), "{c:?}");
    }
    let s = cells_of(&sender.name);
    assert_eq!(
        directions(s, ProbeMode::Bridge),
        [Direction::Egress],
        "{s:?}"
    );

    // The operator's view: the direction column and the ingress comparison.
    let out = daemon.advisor(&["probe", &receiver.name]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in ["TRAFFIC", "ingress", "tcp 1024 B ingress: bridge"] {
        assert!(table.contains(word), "{word} missing in\n{table}");
    }

    // The recommendation weighs the ingress cells and says so.
    let detail = daemon.wait_for("probe evidence", Duration::from_secs(30), |s| {
        let rec = find(s, &receiver.name)?.recommendation.as_ref()?;
        rec.evidence
            .iter()
            .find(|e| e.step == "probes")
            .map(|e| e.detail.clone())
    });
    assert!(
        detail.contains("ingress cells") && detail.contains("% received"),
        "{detail}"
    );
    let out = daemon.advisor(&["explain", &receiver.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ingress"), "{text}");
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}

#[test]
fn a_request_response_container_is_probed_on_latency() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(
            "enabled = false\nduration = \"500ms\"\nprotocols = [\"tcp\", \"udp\"]\nsizes = [64]\nmax_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [64]",
        ),
    );
    // Polls a service on the host: one small request and answer per connection, without pause.
    let port = echo_listener();
    let script = format!(
        "while true; do echo ping | nc -w 1 {} {port} > /dev/null; done",
        network_gateway("bridge")
    );
    let poller = Container::run("rr", &[], busybox_image(), &["sh", "-c", &script]);
    let live = daemon.wait_for(
        "request/response-like traffic",
        Duration::from_secs(30),
        |s| {
            let l = find(s, &poller.name)?.live.clone()?;
            l.request_response_like().then_some(l)
        },
    );

    // Meanwhile its live figures are watched: the in-place cells send from the poller's own
    // namespace, 50-80 k exchanges a second where the poller sends 6-7 k packets, and its
    // rates must be held, not taken over by the probe's traffic. (Its own rate may drop while
    // the probe's senders take both CPUs: that is no takeover.)
    let pps = |l: &netmode_advisor::api::Live| l.rx_pps + l.tx_pps;
    let takeover = 5.0 * pps(&live).max(100.0);
    let watching = std::sync::atomic::AtomicBool::new(true);
    let (run, polluted) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let s = daemon.status();
                if let Some(l) = find(&s, &poller.name).and_then(|c| c.live.clone())
                    && pps(&l) > takeover
                {
                    seen.push(l);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            seen
        });
        let run = daemon.probe(
            &format!("{{\"container\": \"{}\", \"sweep\": true}}", poller.name),
            Duration::from_secs(180),
        );
        std::thread::sleep(Duration::from_secs(2));
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        (run, watcher.join().unwrap())
    });
    assert_eq!(run.state, RunState::Done, "{run:?}");
    assert!(
        polluted.is_empty(),
        "live figures taken over by the probe: {polluted:?}"
    );
    let cells = &run.containers[0].cells;
    for mode in [ProbeMode::Bridge, ProbeMode::Host, ProbeMode::InPlace] {
        for c in cells
            .iter()
            .filter(|c| c.mode == mode && c.pattern == Pattern::RequestResponse)
        {
            assert!(c.error.is_none(), "{c:?}");
            let t = c.transactions.expect("transactions");
            assert!(t.per_s > 100.0, "{c:?}");
            assert!(
                t.latency_p50_us > 0.0 && t.latency_p50_us <= t.latency_p99_us,
                "{c:?}"
            );
            // Every run's transactions per second beside its round trip; the cell is the
            // median run by transactions.
            assert!(
                !c.runs_per_s.is_empty() && c.runs_per_s.len() == c.runs.len(),
                "{c:?}"
            );
            assert!(c.runs_per_s.contains(&t.per_s), "{c:?}");
        }
        assert_eq!(
            cells
                .iter()
                .filter(|c| c.mode == mode && c.pattern == Pattern::RequestResponse)
                .count(),
            2,
            "TCP and UDP request/response in {mode:?}: {cells:?} (live {live:?})"
        );
    }
    // The sweep measures what the gateway's active containers do (other tests' containers
    // may be active meanwhile, with their own kinds): 1..2 concurrent request/response
    // clients per mode, their crossover in transactions per second.
    let sweep = run.sweep.as_ref().expect("sweep");
    let rr: Vec<&ProbeCell> = sweep
        .cells
        .iter()
        .filter(|c| c.pattern == Pattern::RequestResponse)
        .collect();
    assert_eq!(rr.len(), 4, "{sweep:?}");
    for c in &rr {
        assert!(c.error.is_none(), "{c:?}");
        assert!(c.transactions.is_some_and(|t| t.per_s > 100.0), "{c:?}");
        // A sweep cell runs once: its run is its figures (the round trip in `runs`, as
        // documented; transactions per second in `runs_per_s`).
        let t = c.transactions.unwrap();
        assert_eq!(
            (c.runs.as_slice(), c.runs_per_s.as_slice()),
            ([t.latency_p50_us].as_slice(), [t.per_s].as_slice()),
            "{c:?}"
        );
    }
    let x = sweep
        .crossovers
        .iter()
        .find(|x| x.pattern == Pattern::RequestResponse)
        .unwrap_or_else(|| panic!("no request/response crossover: {sweep:?}"));
    let tps = |n: u32, m: ProbeMode| {
        rr.iter()
            .find(|c| c.concurrency == n && c.mode == m)
            .and_then(|c| c.transactions)
            .map(|t| t.per_s)
            .unwrap()
    };
    let expected = (1..=2).find(|&n| tps(n, ProbeMode::Host) > tps(n, ProbeMode::Bridge));
    assert_eq!(x.containers, expected, "{sweep:?}");

    let out = daemon.advisor(&["probe", &poller.name]);
    let table = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // Not a terminal: a progress line per cell, the cell running named.
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('[')).collect();
    assert!(
        lines.len() >= 2
            && lines.iter().all(|l| l.contains(" cells, ~"))
            && lines.iter().any(|l| l.contains("request/response")),
        "{log}"
    );
    for word in ["req/resp", "P50 us", "tcp 64 B request/response: bridge"] {
        assert!(table.contains(word), "{word} missing in\n{table}");
    }

    // Network-active by its exchanges (few bytes), judged on its transactions per second.
    let rec = daemon.wait_for("probe evidence", Duration::from_secs(30), |s| {
        let rec = find(s, &poller.name)?.recommendation.clone()?;
        rec.evidence
            .iter()
            .any(|e| e.step == "probes")
            .then_some(rec)
    });
    let text = |step: &str| {
        rec.evidence
            .iter()
            .find(|e| e.step == step)
            .map(|e| e.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        text("activity").contains("request/response exchanges/s"),
        "{:?}",
        rec.evidence
    );
    assert!(
        text("probes").contains("request/response")
            && text("probes").contains("transactions per second"),
        "{:?}",
        rec.evidence
    );
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}

/// A user-defined network removed at the end (after its containers, declared later, are).
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker_output(&["network", "rm", &self.0]);
    }
}

/// A Compose-like pair on one network: a sensor polling its web service (a new HTTP
/// connection per request, busybox wget against busybox httpd). netmoded tells that this
/// traffic stays on the gateway, names the peer, probes the path between containers (a sink
/// container on their network for bridge and in-place cells, the host's loopback for host
/// cells) instead of the upstream one, and the advisor says where its evidence comes from.
#[test]
fn containers_talking_to_each_other_are_probed_on_their_path() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(
            "enabled = false\nduration = \"500ms\"\nprotocols = [\"tcp\"]\nsizes = [64]\nrepetitions = 1\ntraffic = [\"request_response\"]",
        ),
    );
    let net = Network(unique("nmt-compose"));
    docker(&["network", "create", "--label", "netmode-test=1", &net.0]);
    let network = format!("--network={}", net.0);
    let web = Container::run(
        "web",
        &[&network],
        busybox_image(),
        &[
            "sh",
            "-c",
            "echo hello > /tmp/index.html && exec busybox httpd -f -p 8080 -h /tmp",
        ],
    );
    let script = format!(
        "while true; do busybox wget -q -O /dev/null http://{}:8080/index.html; done",
        web.ip()
    );
    let sensor = Container::run(
        "sensor",
        &[&network],
        busybox_image(),
        &["sh", "-c", &script],
    );

    // Both ends see it: the web service's and the sensor's traffic is with each other.
    for (me, peer) in [(&sensor, &web), (&web, &sensor)] {
        let live = daemon.wait_for(
            "traffic between containers told apart",
            Duration::from_secs(30),
            |s| {
                let l = find(s, &me.name)?.live.clone()?;
                (l.local_share? >= 0.9).then_some(l)
            },
        );
        assert_eq!(live.local_peers, vec![peer.name.clone()], "{live:?}");
    }

    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", sensor.name),
        Duration::from_secs(180),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");
    let cells = &run.containers[0].cells;
    // All of its traffic is on the gateway: the local path alone.
    assert!(cells.iter().all(|c| c.path == Path::Local), "{cells:?}");
    for mode in [ProbeMode::Bridge, ProbeMode::Host, ProbeMode::InPlace] {
        let c = cells
            .iter()
            .find(|c| c.mode == mode)
            .unwrap_or_else(|| panic!("no {mode:?} cell in {cells:?}"));
        assert!(c.error.is_none(), "{c:?}");
        assert!(c.transactions.is_some_and(|t| t.per_s > 100.0), "{c:?}");
    }
    // The sink container is gone with the probe containers.
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());

    let out = daemon.advisor(&["probe", &sensor.name]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("req/resp local"), "{table}");
    assert!(table.contains("request/response local: bridge"), "{table}");
    let status = daemon.advisor(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    // Every protocol is seen (the per-cgroup counters count on this machine).
    let note = format!("% of its traffic is with {} on this gateway", web.name);
    assert!(
        status
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{}:", sensor.name)) && l.contains(&note)),
        "{status}"
    );

    let rec = daemon.wait_for("probe evidence", Duration::from_secs(30), |s| {
        let rec = find(s, &sensor.name)?.recommendation.clone()?;
        rec.evidence
            .iter()
            .find(|e| e.step == "probes")
            .map(|e| e.detail.clone())
    });
    assert!(
        rec.contains("on the path between containers of the gateway")
            && rec.contains("with containers of the gateway"),
        "{rec}"
    );
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}
