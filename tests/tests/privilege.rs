//! Started without a capability a feature needs (setpriv takes it out of the bounding set),
//! netmoded says which and disables that feature only: it serves, follows Docker, measures
//! live traffic and advises; probing answers 503 with the reason; without CAP_BPF (nor
//! CAP_SYS_ADMIN, which covers it) host-mode containers are counted by their TCP sockets, and
//! the status says so and why.

use std::time::Duration;

use netmode_e2e::*;

fn without(cap: &str, named: &str) {
    let bounding = format!("--bounding-set=-{cap}");
    let daemon = Daemon::start_wrapped(
        &["setpriv", "--inh-caps=-all", &bounding, "--"],
        FAST_SAMPLING,
        &probe_section("enabled = false\nduration = \"1s\""),
    );
    // The capability is really gone from the daemon.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    let c = Container::run("priv", &[], busybox_image(), &["sleep", "100000"]);
    let s = daemon.wait_for(
        "the container and the probe error",
        Duration::from_secs(20),
        |s| (find(s, &c.name).is_some() && s.probe.error.is_some()).then(|| s.clone()),
    );
    let err = s.probe.error.clone().unwrap();
    assert!(err.contains(named), "without {cap} (CapEff {eff}): {err}");
    assert_eq!(
        s.docker.state,
        netmode_e2e::api::DockerState::Connected,
        "{s:?}"
    );
    let (code, body) = daemon.post("/v1/probes", &format!("{{\"container\": \"{}\"}}", c.name));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(named), "{body}");
    // Everything else goes on: recommendations come, /metrics answers.
    daemon.wait_for("recommendations", Duration::from_secs(10), |_| {
        (daemon.get("/v1/recommendations").0 == 200).then_some(())
    });
    assert_eq!(daemon.get("/metrics").0, 200);
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("probing disabled") && l.contains(named)),
        "{log}"
    );
}

#[test]
fn without_cap_sys_admin_only_probing_is_disabled_and_it_says_why() {
    require_docker();
    without("sys_admin", "CAP_SYS_ADMIN");
}

#[test]
fn without_cap_net_admin_only_probing_is_disabled_and_it_says_why() {
    require_docker();
    without("net_admin", "CAP_NET_ADMIN");
}

#[test]
fn without_cap_bpf_host_mode_is_counted_by_its_sockets_and_it_says_why() {
    require_docker();
    let daemon = Daemon::start_wrapped(
        &[
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-bpf,-sys_admin",
            "--",
        ],
        FAST_SAMPLING,
        &probe_section("enabled = false\nduration = \"1s\""),
    );
    let port = free_port();
    let c = Container::tcp_sink("nobpf", &["--network", "host"], port);
    let t = stream_tcp(format!("127.0.0.1:{port}"), Duration::from_secs(3));
    let s = daemon.wait_for("its TCP counted", Duration::from_secs(20), |s| {
        let l = find(s, &c.name)?.live.as_ref()?;
        (l.rx_bytes > 0).then(|| s.clone())
    });
    assert!(t.join().unwrap() > 0);
    let counting = s.host.counting.clone().unwrap();
    assert_eq!(counting.mechanism, "veth_sock_diag", "{counting:?}");
    let why = counting.reason.unwrap_or_default();
    assert!(why.contains("CAP_BPF"), "names what is missing: {why}");
    let l = find(&s, &c.name).unwrap().live.clone().unwrap();
    assert_eq!(l.source, "sock_diag");
    assert_eq!(l.attributed, netmode_e2e::api::Attribution::TcpOnly);
    let note = l.note.unwrap_or_default();
    assert!(
        note.contains("UDP") && note.contains("not seen") && note.contains("CAP_BPF"),
        "says what it cannot see, and why: {note}"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("netmode_container_info{")
                && l.contains(&c.name)
                && l.contains("source=\"sock_diag\"")),
        "{metrics}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("per-cgroup packet counters unavailable"),
        "{log}"
    );
}
