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
