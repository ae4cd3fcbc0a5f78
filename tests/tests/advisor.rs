//! Recommendations through the real daemon: GET /v1/recommendations, containers[].recommendation,
//! /metrics, `advisor status` and `advisor explain`, the policy's memory in the state
//! directory.

use std::time::Duration;

use netmode_e2e::api::{Action, Basis, ModeKind, Recommendations};
use netmode_e2e::*;

#[test]
fn recommendations_are_served_and_explained() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[advisor]\nactive_window = \"1s\"\ncooldown = \"0s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false\nmax_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]"
            )
        ),
    );
    // A bridge container pinned to host, whose published port would change meaning.
    let host_port = free_port();
    let pinned = Container::tcp_sink(
        "pin",
        &[
            "-p",
            &format!("127.0.0.1:{host_port}:18000"),
            "-l",
            "netmode.policy=host",
        ],
        18000,
    );
    // A bridge container the policy decides on, and one left alone.
    let auto = Container::tcp_sink("auto", &[], 18000);
    let none = Container::run(
        "nonet",
        &["--network", "none"],
        busybox_image(),
        &["sleep", "100000"],
    );

    // Measurements for the auto container.
    let out = daemon.advisor(&["probe", &auto.name, "--sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic makes both bridge containers network-active.
    let t1 = stream_tcp(format!("127.0.0.1:{host_port}"), Duration::from_secs(8));
    let t2 = stream_tcp(format!("{}:18000", auto.ip()), Duration::from_secs(8));
    let recs: Recommendations =
        daemon.wait_for("both network-active", Duration::from_secs(20), |_| {
            let (code, body) = daemon.get("/v1/recommendations");
            assert_eq!(code, 200, "{body}");
            let r: Recommendations = serde_json::from_str(&body).unwrap();
            (r.network_active.contains(&pinned.name) && r.network_active.contains(&auto.name))
                .then_some(r)
        });
    let of = |name: &str| {
        recs.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .recommendation
            .clone()
    };

    let p = of(&pinned.name);
    assert_eq!(
        (p.mode, p.action, p.basis, p.applicable),
        (ModeKind::Host, Action::Switch, Basis::Pinned, false)
    );
    let b = p
        .blockers
        .iter()
        .find(|b| b.kind == "published_port")
        .expect("the remapped port blocks");
    assert_eq!(
        b.message,
        format!(
            "-p 127.0.0.1:{host_port}:18000/tcp would become port 18000 in host mode: clients of port {host_port} would break"
        )
    );

    let a = of(&auto.name);
    assert_eq!(a.basis, Basis::Measured, "{}", a.reason);
    assert!(a.network_active);
    assert!(a.mode == ModeKind::Bridge || a.mode == ModeKind::Host);
    assert!(
        a.evidence.iter().any(|e| e.step == "probes"),
        "{:?}",
        a.evidence
    );
    assert!(
        a.evidence.iter().any(|e| e.step == "sweep"),
        "{:?}",
        a.evidence
    );
    if a.mode == ModeKind::Host {
        assert!(
            a.reason.contains("gives up network isolation"),
            "{}",
            a.reason
        );
    }

    let n = of(&none.name);
    assert_eq!(
        (n.mode, n.action, n.basis),
        (ModeKind::None, Action::Keep, Basis::Excluded)
    );

    // The same object in /v1/status and per container.
    let s = daemon.status();
    assert_eq!(
        find(&s, &pinned.name)
            .unwrap()
            .recommendation
            .as_ref()
            .unwrap()
            .mode,
        ModeKind::Host
    );
    assert!(s.advisor.as_ref().unwrap().network_active.len() >= 2);

    // advisor status: a RECOMMENDATION column.
    let out = daemon.advisor(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(&pinned.name))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.ends_with("host (pinned, blocked)"), "{row}");
    assert!(table.contains("RECOMMENDATION"));

    // advisor explain: the chain of evidence with numbers.
    let out = daemon.advisor(&["explain", &auto.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "recommendation:",
        "evidence:",
        "1. activity:",
        "prior:",
        "probes:",
        "sweep:",
        "weighing:",
        "Mbit/s",
        "%",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    let out = daemon.advisor(&["explain", &pinned.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("blocked by:") && text.contains("[published_port]"),
        "{text}"
    );
    let out = daemon.advisor(&["explain", &pinned.name, "--json"]);
    let r: netmode_e2e::api::Recommendation = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.mode, ModeKind::Host);
    let out = daemon.advisor(&["explain", "no-such-container"]);
    assert_eq!(out.status.code(), Some(4));

    // Prometheus.
    let (_, metrics) = daemon.get("/metrics");
    let line = format!(
        "netmode_recommendation_info{{name=\"{}\",mode=\"host\",action=\"switch\",applicable=\"false\",basis=\"pinned\"}} 1",
        pinned.name
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert!(metrics.contains("netmode_network_active_containers"));

    // The policy's memory is kept in the state directory.
    assert!(daemon.state_dir().join("advisor.json").exists());
    t1.join().unwrap();
    t2.join().unwrap();
}

/// A probe run is weighed as soon as it is recorded, not at the next sample: with samples
/// 12 s apart, the recommendation of a network-active container has no probe evidence before
/// `advisor probe` and has it within a second of the command's return (a reading that waited
/// for the next sample would see it there about one time in eight).
#[test]
fn a_finished_probe_is_weighed_at_once() {
    require_docker();
    let daemon = Daemon::start(
        "sample_interval = \"12s\"",
        &format!(
            "[advisor]\nactive_window = \"1s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false"
            )
        ),
    );
    let c = Container::tcp_sink("weigh", &[], 18000);
    let _load = stream_tcp(format!("{}:18000", c.ip()), Duration::from_secs(60));
    let evidence_steps = || -> Option<Vec<String>> {
        let (code, body) = daemon.get("/v1/recommendations");
        assert_eq!(code, 200, "{body}");
        let r: Recommendations = serde_json::from_str(&body).unwrap();
        r.containers
            .into_iter()
            .find(|x| x.name == c.name && x.recommendation.network_active)
            .map(|x| {
                x.recommendation
                    .evidence
                    .into_iter()
                    .map(|e| e.step)
                    .collect()
            })
    };
    let before = daemon.wait_for(
        "the container network-active",
        Duration::from_secs(40),
        |_| evidence_steps(),
    );
    assert!(!before.iter().any(|s| s == "probes"), "{before:?}");

    let out = daemon.advisor(&["probe", &c.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let returned = std::time::Instant::now();
    let after = loop {
        let steps = evidence_steps().expect("still network-active");
        if steps.iter().any(|s| s == "probes") || returned.elapsed() > Duration::from_secs(1) {
            break steps;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        after.iter().any(|s| s == "probes"),
        "the run is done but not weighed {:?} after: {after:?}",
        returned.elapsed()
    );
}
