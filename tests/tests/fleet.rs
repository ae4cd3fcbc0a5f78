//! docs/fleet.md's example, run: `contrib/fleet/netmode-fleet` against three daemons on this
//! machine (each with its own state and port) and one endpoint that does not answer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netmode_e2e::*;
use serde_json::Value;

#[test]
fn the_fleet_script_tabulates_three_gateways_and_names_the_unreachable_one() {
    require_docker();
    let gateways: Vec<Daemon> = (0..3).map(|_| Daemon::start(FAST_SAMPLING, "")).collect();
    let bridge = Container::tcp_sink("fleet-b", &[], 18000);
    let host_port = free_port();
    let host = Container::tcp_sink("fleet-h", &["--network", "host"], host_port);
    for g in &gateways {
        g.wait_for("both containers", Duration::from_secs(10), |st| {
            (find(st, &bridge.name).is_some() && find(st, &host.name).is_some()).then_some(())
        });
    }
    let dead = format!("http://127.0.0.1:{}", free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/fleet/netmode-fleet");
    let mut endpoints: Vec<String> = gateways.iter().map(|g| g.endpoint.clone()).collect();
    endpoints.push(dead.clone());

    // The table: a line per gateway, the dead one said so, exit code 1.
    let out = Command::new("python3")
        .arg(&script)
        .args(&endpoints)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(lines[0].starts_with("GATEWAY"), "{table}");
    for (g, line) in gateways.iter().zip(&lines[1..4]) {
        let st = g.status();
        assert!(line.starts_with(&g.endpoint), "{line}");
        assert!(
            line.contains(&format!("  {}  ", st.containers.len())),
            "{line}"
        );
        assert!(line.contains("connected"), "{line}");
        assert!(line.contains("bridge=") && line.contains("host="), "{line}");
    }
    assert!(
        lines[4].starts_with(&dead) && lines[4].contains("unreachable"),
        "{table}"
    );

    // The same as JSON, from a file of endpoints.
    let dir = TempDir::new("fleet");
    let list = dir.path().join("gateways.txt");
    std::fs::write(
        &list,
        format!("# the gateways\n{}\n", endpoints[..3].join("\n")),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .args(["--json", "--file"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    for (g, r) in gateways.iter().zip(&rows) {
        let st = g.status();
        assert_eq!(r["containers"], st.containers.len());
        let hosts = st
            .containers
            .iter()
            .filter(|c| c.mode_kind == netmode_e2e::api::ModeKind::Host)
            .count();
        assert_eq!(r["modes"]["host"], hosts, "{r}");
        assert_eq!(r["advisor"], "recommend", "{r}");
    }
}
