//! The probe engine against the real engine: bridge- and host-mode containers measured in
//! both modes by probe containers, counters present, nothing left behind (also after
//! `kill -9` mid-probe), history kept across restarts, a stock iperf3 server as target.

use std::time::Duration;

use netmode_e2e::api::{ProbeCell, ProbeMode, ProbeRun, Protocol, RunState};
use netmode_e2e::*;

const PROBE: &str = "enabled = false\nduration = \"500ms\"\nprotocols = [\"tcp\", \"udp\"]\nsizes = [64, 1024]\nmax_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [64, 1024]";

fn cells<'a>(run: &'a ProbeRun, name: &str) -> &'a [ProbeCell] {
    &run.containers
        .iter()
        .find(|c| c.target.name == name)
        .unwrap_or_else(|| panic!("{name} not in {run:?}"))
        .cells
}

/// Every cell measured something, with its counters.
fn assert_measured(cells: &[ProbeCell], modes: &[ProbeMode]) {
    for m in modes {
        for p in [Protocol::Tcp, Protocol::Udp] {
            for size in [64, 1024] {
                let c = cells
                    .iter()
                    .find(|c| c.mode == *m && c.protocol == p && c.size == size)
                    .unwrap_or_else(|| panic!("no {m:?} {p:?} {size} cell in {cells:?}"));
                assert!(c.error.is_none(), "{c:?}");
                assert!(c.goodput_bps.is_some_and(|g| g > 0.0), "{c:?}");
                let k = c.counters.as_ref().expect("counters");
                assert!(k.cpu_s > 0.0, "{c:?}");
                assert!(
                    k.voluntary_context_switches + k.involuntary_context_switches > 0,
                    "{c:?}"
                );
                assert!(k.net_rx_softirqs + k.net_tx_softirqs > 0, "{c:?}");
                // Where the work ran: softirqs per CPU, the sender's CPU.
                assert!(
                    k.net_rx_softirqs_per_cpu.iter().sum::<u64>() <= k.net_rx_softirqs
                        && !k.net_rx_softirqs_per_cpu.is_empty(),
                    "{k:?}"
                );
                assert!(!k.sender_cpus.is_empty(), "{k:?}");
                // probe.repetitions (2 by default): each run, the cell the median one.
                assert_eq!(c.runs.len(), 2, "{c:?}");
                assert!(c.runs.contains(&c.goodput_bps.unwrap()), "{c:?}");
                // Cycles and IPC: counted where the PMU allows, else null with the reason.
                let perf = &k.perf;
                assert!(
                    perf.cycles.is_some() && perf.ipc.is_some()
                        || perf.unavailable.as_deref().is_some_and(|r| !r.is_empty()),
                    "{perf:?}"
                );
                if p == Protocol::Udp {
                    assert!(c.loss.is_some_and(|l| (0.0..=1.0).contains(&l)), "{c:?}");
                }
            }
        }
    }
}

#[test]
fn bridge_and_host_containers_are_probed_in_both_modes() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, &probe_section(PROBE));
    let bridge = Container::run(
        "pb",
        &["--cpus", "0.5", "-m", "64m"],
        busybox_image(),
        &["sleep", "100000"],
    );
    let host = Container::run(
        "ph",
        &["--network", "host"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_for("both containers", Duration::from_secs(10), |s| {
        (find(s, &bridge.name).is_some() && find(s, &host.name).is_some()).then_some(())
    });

    // Through the CLI, as an operator would.
    let out = daemon.advisor(&["probe", &bridge.name]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{table}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in ["bridge", "host", "in_place", "GOODPUT", "tcp 64 B: bridge"] {
        assert!(table.contains(word), "{word} missing in\n{table}");
    }

    let list: api::ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
    let run = &list.runs[0];
    assert_eq!(run.state, RunState::Done, "{run:?}");
    assert!(
        run.sink
            .as_deref()
            .unwrap_or("")
            .starts_with("local 198.19."),
        "{run:?}"
    );
    let b = cells(run, &bridge.name);
    assert_measured(b, &[ProbeMode::Bridge, ProbeMode::Host, ProbeMode::InPlace]);
    let target = &run.containers[0].target;
    assert_eq!(
        target.limits.cpus,
        Some(0.5),
        "limits recorded with the probe"
    );
    // The probe containers ran with the target's CPU limit: 0.5 CPU over a 0.5 s cell.
    let cpu = b
        .iter()
        .find(|c| c.mode == ProbeMode::Bridge)
        .unwrap()
        .counters
        .as_ref()
        .unwrap()
        .cpu_s;
    assert!(
        cpu < 0.45,
        "a 0.5-CPU probe container used {cpu} CPU-s in 0.5 s"
    );

    // Through the API, for the host-mode container (no in-place probe for host mode).
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", host.name),
        Duration::from_secs(120),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");
    let h = cells(&run, &host.name);
    assert_measured(h, &[ProbeMode::Bridge, ProbeMode::Host]);
    assert!(!h.iter().any(|c| c.mode == ProbeMode::InPlace));

    // Latest results per container in /v1/status, and in /metrics.
    let s = daemon.status();
    for name in [&bridge.name, &host.name] {
        let p = find(&s, name)
            .unwrap()
            .probes
            .as_ref()
            .expect("probes in status");
        assert_eq!((p.bridge.len(), p.host.len()), (4, 4), "{p:?}");
    }
    let (_, metrics) = daemon.get("/metrics");
    let line = format!(
        "netmode_probe_goodput_bytes_per_second{{name=\"{}\",probe_mode=\"bridge\",direction=\"egress\",pattern=\"stream\",path=\"upstream\",protocol=\"tcp\",message_bytes=\"64\"}} ",
        host.name
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");

    // Nothing left behind.
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}

#[test]
fn the_sweep_measures_1_to_n_concurrent_containers_per_mode() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, &probe_section(PROBE));
    let out = daemon.advisor(&["probe", "--sweep"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("crossover tcp 64 B:"), "{text}");
    assert!(text.contains("crossover tcp 1024 B:"), "{text}");
    let s = daemon.status();
    let sweep = s.probe.sweep.expect("sweep in status");
    assert_eq!(sweep.max_concurrency, 2);
    // N = 1, 2 x two modes x TCP 64 B and 1024 B.
    assert_eq!(sweep.cells.len(), 8);
    for c in &sweep.cells {
        assert!(
            c.error.is_none() && c.goodput_bps.is_some_and(|g| g > 0.0),
            "{c:?}"
        );
    }
    // Each profile's crossover is what its cells say.
    assert_eq!(sweep.crossovers.len(), 2);
    for x in &sweep.crossovers {
        let at = |n, m| {
            sweep
                .cells
                .iter()
                .find(|c| {
                    c.concurrency == n
                        && c.mode == m
                        && c.size == x.size
                        && c.protocol == x.protocol
                })
                .unwrap()
                .goodput_bps
                .unwrap()
        };
        let expect = (1..=2).find(|n| at(*n, ProbeMode::Host) > at(*n, ProbeMode::Bridge));
        assert_eq!(x.containers, expect, "{x:?}");
    }
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}

#[test]
fn a_daemon_killed_mid_probe_leaves_nothing_after_a_restart() {
    require_docker();
    let mut daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section("enabled = false\nduration = \"5s\"\nprotocols = [\"tcp\"]\nsizes = [1024]"),
    );
    let c = Container::run("pk", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let (code, body) = daemon.post("/v1/probes", &format!("{{\"container\": \"{}\"}}", c.name));
    assert_eq!(code, 202, "{body}");
    // Wait for a probe container to exist, then kill the daemon without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while daemon.probe_containers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no probe container appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sink_link = format!("nmsk{}", &daemon.instance()[..8]);
    daemon.kill9();
    assert!(
        !daemon.probe_containers().is_empty(),
        "the probe container outlives a SIGKILL"
    );

    // The kernel removed the sink's namespace and veth pair with the process.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::process::Command::new("ip")
        .args(["link", "show", &sink_link])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{sink_link} outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    daemon.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !daemon.probe_containers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "leftover probe containers after restart:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And it probes again, once it has found the container (Podman answers its listing
    // later than Docker).
    daemon.wait_container(&c.name);
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", c.name),
        Duration::from_secs(120),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");

    // SIGTERM mid-probe: a clean stop removes the probe container itself.
    let (code, _) = daemon.post("/v1/probes", &format!("{{\"container\": \"{}\"}}", c.name));
    assert_eq!(code, 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while daemon.probe_containers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no probe container appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());

    // History survived both restarts.
    daemon.spawn();
    let list: api::ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
    assert!(
        list.runs
            .iter()
            .any(|r| r.id == run.id && r.state == RunState::Done),
        "{list:?}"
    );
    let latest = daemon.wait_for(
        "the container after the restart",
        Duration::from_secs(10),
        |s| find(s, &c.name).map(|c| c.probes.clone()),
    );
    assert_eq!(latest.expect("probes kept across restarts").run_id, run.id);
}

#[test]
fn a_stock_iperf3_server_can_be_the_target() {
    require_docker();
    let upstream = UpstreamHost::with_iperf3(&[5201, 5202]);
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(&format!(
            "enabled = false\nduration = \"1s\"\nprotocols = [\"tcp\", \"udp\"]\nsizes = [1024]\nin_place = false\nmax_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]\ntarget = \"iperf3://{}:5201\"",
            upstream.addr
        )),
    );
    let c = Container::run("pi", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\", \"sweep\": true}}", c.name),
        Duration::from_secs(180),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");
    assert_eq!(
        run.sink.as_deref(),
        Some(format!("iperf3://{}:5201", upstream.addr).as_str())
    );
    for cell in cells(&run, &c.name) {
        assert!(
            cell.error.is_none() && cell.goodput_bps.is_some_and(|g| g > 0.0),
            "{cell:?}"
        );
    }
    let sweep = run.sweep.expect("sweep");
    for cell in &sweep.cells {
        assert!(
            cell.error.is_none() && cell.goodput_bps.is_some_and(|g| g > 0.0),
            "{cell:?}"
        );
    }
}

#[test]
fn probe_requests_that_cannot_run_are_refused_clearly() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let none = Container::run(
        "pn",
        &["--network", "none"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_container(&none.name);
    let (code, body) = daemon.post(
        "/v1/probes",
        &format!("{{\"container\": \"{}\"}}", none.name),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("network mode none"), "{body}");
    let (code, body) = daemon.post("/v1/probes", "{\"container\": \"no-such\"}");
    assert_eq!(code, 404, "{body}");
    let (code, body) = daemon.post("/v1/probes", "{\"contianer\": \"x\"}");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("contianer"), "names the bad field: {body}");
    let (code, body) = daemon.post("/v1/probes", "{}");
    assert_eq!(code, 400, "{body}");
    let (code, _) = daemon.get("/v1/probes/p-nope");
    assert_eq!(code, 404);
    let out = daemon.advisor(&["probe", "no-such"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scheduled_runs_probe_every_container_and_sweep() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(
            "enabled = true\ninterval = \"10s\"\nduration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [64]\nin_place = false\nmax_concurrency = 1\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [64]\nskip_above_cpu = 1.0\nskip_above_traffic = \"10Gbit\"",
        ),
    );
    let a = Container::run("sa", &[], busybox_image(), &["sleep", "100000"]);
    let b = Container::run(
        "sb",
        &["-l", "netmode.policy=ignore"],
        busybox_image(),
        &["sleep", "100000"],
    );
    let s = daemon.wait_for("a scheduled run", Duration::from_secs(90), |s| {
        find(s, &a.name)?.probes.as_ref()?;
        s.probe.sweep.as_ref()?;
        Some(s.clone())
    });
    assert!(
        s.probe.enabled && s.probe.next_run_at_ms.is_some(),
        "{:?}",
        s.probe
    );
    assert!(
        find(&s, &b.name).unwrap().probes.is_none(),
        "netmode.policy=ignore is not probed"
    );
    let list: api::ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
    let run = list
        .runs
        .iter()
        .find(|r| r.trigger == api::Trigger::Schedule)
        .expect("a scheduled run");
    assert_eq!(run.state, RunState::Done, "{run:?}");
}

#[test]
fn a_busy_gateway_postpones_scheduled_runs() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(
            "enabled = true\ninterval = \"10s\"\nskip_above_traffic = \"1kbit\"\nskip_above_cpu = 1.0\nretry_after = \"2s\"",
        ),
    );
    let port = free_port();
    let c = Container::tcp_sink("busy", &["--network", "host"], port);
    let traffic = stream_tcp(format!("127.0.0.1:{port}"), Duration::from_secs(25));
    let s = daemon.wait_for("a postponed run", Duration::from_secs(40), |s| {
        s.probe.last_skip.as_ref().map(|_| s.clone())
    });
    let reason = s.probe.last_skip.clone().unwrap();
    assert!(
        reason.contains("live traffic") && reason.contains("skip_above_traffic"),
        "{reason}"
    );
    assert!(
        find(&s, &c.name).unwrap().probes.is_none(),
        "nothing was probed"
    );
    let list: api::ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
    assert!(list.runs.is_empty() && list.running.is_none(), "{list:?}");
    drop(traffic);
}

/// Follow-up runs (`probe.undecided_interval`) probe a network-active container the evidence
/// has not decided, between scheduled runs: its first round when it was never measured, more
/// while it stays undecided, none once it is decided (the scheduled runs go on).
#[test]
fn follow_ups_probe_what_the_evidence_has_not_decided() {
    require_docker();
    let gateway = network_gateway("bridge");
    let port = discard_listener();
    // Scheduled runs an hour apart (the first after two minutes), follow-ups every 3 s with no
    // duty-cycle wait.
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[advisor]\nactive_window = \"5s\"\n{}",
            probe_section(
                "enabled = true\ninterval = \"1h\"\nundecided_interval = \"3s\"\nmax_duty_cycle = 1.0\n\
                 duration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false\n\
                 skip_above_cpu = 1.0\nskip_above_traffic = \"10Gbit\""
            )
        ),
    );
    let c = Container::streaming("fu", &[], &gateway, port);
    // Follow-up runs of it, finished, running or queued: scheduled, one container, no sweep
    // (other tests' containers may get follow-ups of their own from this daemon).
    let follow_ups = || -> Vec<ProbeRun> {
        let list: api::ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
        list.runs
            .into_iter()
            .chain(list.running)
            .chain(list.queued)
            .filter(|r| r.trigger == api::Trigger::Schedule && r.sweep.is_none())
            .filter(|r| r.containers.len() == 1 && r.containers[0].target.name == c.name)
            .collect()
    };
    // Never measured: a follow-up gives it its first round.
    daemon.wait_for("a first follow-up run", Duration::from_secs(90), |_| {
        follow_ups()
            .iter()
            .any(|r| r.state == RunState::Done)
            .then_some(())
    });
    let rec = daemon.wait_for("a measured recommendation", Duration::from_secs(30), |s| {
        let rec = find(s, &c.name)?.recommendation.clone()?;
        (rec.basis == api::Basis::Measured).then_some(rec)
    });
    eprintln!(
        "after a follow-up: {:?}, P {:?}, network-active {}",
        rec.decision, rec.p_switch_pays, rec.network_active
    );
    if rec.network_active && rec.decision == api::Decision::Undecided {
        let before = follow_ups().len();
        daemon.wait_for("another follow-up run", Duration::from_secs(60), |_| {
            (follow_ups().len() > before).then_some(())
        });
    } else {
        // Decided (or idle): for 15 s, while it stays so, no follow-up of it starts (a run
        // started in the 2 s after the decision may have read the recommendation before it).
        let t0 = daemon.status().generated_at_ms + 2000;
        let until = std::time::Instant::now() + Duration::from_secs(15);
        let mut steady = true;
        while std::time::Instant::now() < until {
            let s = daemon.status();
            let now = find(&s, &c.name).and_then(|x| x.recommendation.clone());
            if !now.is_some_and(|r| r.decision != api::Decision::Undecided || !r.network_active) {
                steady = false;
                eprintln!("it became undecided again: follow-ups may resume");
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if steady {
            let started: Vec<ProbeRun> = follow_ups()
                .into_iter()
                .filter(|r| r.started_at_ms.is_some_and(|t| t > t0))
                .collect();
            assert!(
                started.is_empty(),
                "a follow-up probed {} though it is decided or idle ({:?}): {started:?}",
                c.name,
                rec.decision
            );
        }
    }
}
