//! The systemd side: the notify protocol spoken to a socket the test owns (READY, STATUS,
//! WATCHDOG pings, STOPPING), and the unit file as systemd-analyze sees it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use netmode_e2e::*;

/// Everything sent to `sock` until `deadline`.
fn collect(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some((until - Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    out
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    require_docker();
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut daemon = Daemon::start_with_env(
        FAST_SAMPLING,
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    let msgs = collect(&sock, Instant::now() + Duration::from_secs(3));
    let ready = msgs
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {msgs:?}"));
    assert!(
        msgs[ready]
            .1
            .lines()
            .any(|l| l.starts_with("STATUS=docker connected")),
        "{:?}",
        msgs[ready]
    );
    // WATCHDOG=1 keeps coming, well within the 300 ms period.
    let pings: Vec<Instant> = msgs[ready..]
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 6,
        "{} pings in about 3 s: {msgs:?}",
        pings.len()
    );
    for w in pings.windows(2) {
        assert!(
            w[1] - w[0] < Duration::from_millis(300),
            "a gap of {:?}",
            w[1] - w[0]
        );
    }
    // SIGTERM: STOPPING=1, then a clean exit.
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    let rest = collect(&sock, Instant::now() + Duration::from_millis(200));
    assert!(
        rest.iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "{rest:?}"
    );
}

/// A task the daemon cannot go on without ends (a test hook ends the sampling loop): the
/// daemon says which and exits non-zero, so systemd restarts it, instead of serving stale
/// figures.
#[test]
fn a_task_that_ends_stops_the_daemon_with_an_error() {
    require_docker();
    for task in ["tick", "docker", "http"] {
        let mut daemon =
            Daemon::start_with_env(FAST_SAMPLING, "", &[("NETMODE_TEST_END_TASK", task)]);
        let status = daemon.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{task}: {status:?}");
        let log = daemon.log_text();
        assert!(log.contains(&format!("task {task} ended")), "{task}: {log}");
    }
}

/// The sampling loop stops turning (a test hook stops polling it) while everything else
/// runs: the watchdog pings stop within two sample intervals and a Docker call's timeout,
/// and the status says why, so systemd's watchdog restarts the daemon.
#[test]
fn the_watchdog_is_fed_only_while_sampling_turns() {
    require_docker();
    let dir = TempDir::new("notify-stall");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let started = Instant::now();
    let daemon = Daemon::start_with_env(
        FAST_SAMPLING,
        "[docker]\nrequest_timeout = \"1s\"",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
            ("NETMODE_TEST_STALL_TASK", "tick"),
        ],
    );
    let end = Instant::now() + Duration::from_secs(9);
    let msgs = collect(&sock, end);
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(pings.len() >= 3, "pings before the stall: {msgs:?}");
    // Stalled about 1 s after the loop started; stale 2 x 500 ms + 1 s later: the pings
    // stop (at a 100 ms cadence, none for 3 s means they stopped).
    let last = *pings.last().unwrap();
    assert!(
        end - last >= Duration::from_secs(3),
        "pings went on until {:?} after start: {msgs:?}",
        last - started
    );
    assert!(
        msgs.iter()
            .any(|(_, m)| m.lines().any(|l| l.starts_with("STATUS=sampling stalled"))),
        "{msgs:?}"
    );
    // The rest of the daemon still answers (the watchdog is what restarts it).
    assert_eq!(daemon.get("/healthz").0, 200);
}

#[test]
fn ready_waits_for_docker_to_be_known_absent_and_says_so() {
    let dir = TempDir::new("notify-nodocker");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let _daemon = Daemon::start_with_env(
        FAST_SAMPLING,
        &format!(
            "[docker]\nsocket = \"{}\"\n",
            dir.path().join("absent.sock").display()
        ),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let msgs = collect(&sock, Instant::now() + Duration::from_secs(2));
    let ready = msgs
        .iter()
        .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .expect("READY=1");
    assert!(ready.1.contains("STATUS=docker unavailable"), "{ready:?}");
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/netmoded.service"
    ))
    .unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=netmode",
        "ConfigurationDirectory=netmode",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(key)), "{key} missing");
    }
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = TempDir::new("unit");
    let local = unit.replace("/usr/bin/netmoded", bin("netmoded").to_str().unwrap());
    let file = dir.path().join("netmoded.service");
    std::fs::write(&file, local).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze (Debian's systemd package) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_us: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("netmoded.service"))
        .collect();
    assert!(
        out.status.success() && about_us.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

/// The syscalls of a `systemd-analyze syscall-filter` group, nested groups expanded.
fn syscall_group(group: &str, out: &mut std::collections::BTreeSet<String>) {
    let o = std::process::Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze");
    assert!(
        o.status.success(),
        "{group}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in String::from_utf8_lossy(&o.stdout).lines().skip(1) {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            syscall_group(item, out);
        } else {
            out.insert(item.to_string());
        }
    }
}

/// What the unit's `SystemCallFilter=` lines allow, as systemd reads them: the first (an
/// allow list) sets the set, `~` lines take from it.
fn unit_allows(unit: &str) -> std::collections::BTreeSet<String> {
    let mut allowed = std::collections::BTreeSet::new();
    for line in unit.lines() {
        let Some(v) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        let (deny, v) = match v.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let mut set = std::collections::BTreeSet::new();
        for item in v.split_whitespace() {
            if item.starts_with('@') {
                syscall_group(item, &mut set);
            } else {
                set.insert(item.to_string());
            }
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    assert!(!allowed.is_empty(), "no SystemCallFilter= in the unit");
    allowed
}

/// The unit's `SystemCallFilter=` cannot be applied on a machine whose PID 1 is not systemd;
/// instead every system call the daemon makes through its start, a probe (the local sink's
/// namespace, perf counters), a real mode change, a reload and its stop (strace -f) must be
/// one the filter allows.
#[test]
fn every_system_call_the_daemon_makes_is_one_the_unit_allows() {
    require_docker();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/netmoded.service"
    ))
    .unwrap();
    let allowed = unit_allows(&unit);
    assert!(allowed.contains("setns") && allowed.contains("perf_event_open"));
    assert!(!allowed.contains("mount") && !allowed.contains("setuid"));

    let dir = TempDir::new("strace");
    let summary = dir.path().join("strace.txt");
    let summary_arg = summary.to_str().unwrap().to_string();
    let mut daemon = Daemon::start_wrapped(
        &["strace", "-f", "-qq", "-c", "-o", &summary_arg],
        FAST_SAMPLING,
        &format!(
            "[apply]\nverify = \"1s\"\nwatch = \"1s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"1s\"\nprotocols = [\"tcp\"]\nsizes = [1024]"
            )
        ),
    );
    let c = Container::run("strace", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", c.name),
        Duration::from_secs(120),
    );
    assert_eq!(run.state, netmode_e2e::api::RunState::Done, "{run:?}");
    let (code, body) = daemon.post(
        "/v1/apply",
        &format!("{{\"container\": \"{}\", \"mode\": \"host\"}}", c.name),
    );
    assert!(code == 202 || code == 200, "{code} {body}");
    daemon.wait_for("the change", Duration::from_secs(60), |_| {
        let (_, text) = daemon.get("/v1/applies");
        let list: netmode_e2e::api::ApplyList = serde_json::from_str(&text).unwrap();
        (list.running.is_none() && !list.applies.is_empty()).then_some(())
    });
    daemon.signal("HUP");
    daemon.wait_for("the reload", Duration::from_secs(10), |_| {
        daemon
            .log_text()
            .contains("configuration reloaded")
            .then_some(())
    });
    let _ = daemon.get("/metrics");
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&summary).unwrap();
    // strace -c: a table whose last column is the call's name, between dashed lines.
    let made: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('-') && !l.starts_with('%'))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| *name != "total")
        .collect();
    assert!(made.len() > 20 && made.contains(&"setns"), "{text}");
    let refused: Vec<&&str> = made.iter().filter(|s| !allowed.contains(**s)).collect();
    assert!(
        refused.is_empty(),
        "system calls the unit's filter would refuse: {refused:?}\n{text}"
    );
}
