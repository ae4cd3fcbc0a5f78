//! netmoded sees every container: discovery from the engine, live traffic in bridge and host
//! mode, the JSON endpoint, /metrics, and `advisor status`.

use std::io::Write;
use std::time::{Duration, Instant};

use netmode_e2e::api::{Attribution, ModeKind};
use netmode_e2e::*;

#[test]
fn bridge_and_host_containers_are_listed_with_growing_traffic() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let bridge = Container::tcp_sink("bridge", &[], 18000);
    let host_port = free_port();
    let host = Container::tcp_sink("host", &["--network", "host"], host_port);

    // Traffic into each container: through the bridge to the container's address, and over
    // loopback to the host-mode container's listener.
    let t1 = stream_tcp(format!("{}:18000", bridge.ip()), Duration::from_secs(12));
    let t2 = stream_tcp(format!("127.0.0.1:{host_port}"), Duration::from_secs(12));

    // Both are listed with the right modes, and their counters grow between two looks.
    let first = daemon.wait_for(
        "both containers with traffic",
        Duration::from_secs(20),
        |s| {
            let b = find(s, &bridge.name)?;
            let h = find(s, &host.name)?;
            let (bl, hl) = (b.live.as_ref()?, h.live.as_ref()?);
            (bl.rx_bytes > 0 && hl.rx_bytes > 0).then_some((bl.rx_bytes, hl.rx_bytes))
        },
    );
    // While the stream runs, the bridge container's traffic profile says it is all TCP (the
    // sockets inside its namespace account for the veth's payload).
    let s = daemon.wait_for(
        "counters to grow, and the stream seen as TCP",
        Duration::from_secs(10),
        |s| {
            let bl = find(s, &bridge.name)?.live.as_ref()?;
            let h = find(s, &host.name)?.live.as_ref()?.rx_bytes;
            let tcp = bl.tcp_share.is_some_and(|t| t > 0.9);
            (bl.rx_bytes > first.0 && h > first.1 && tcp).then(|| s.clone())
        },
    );

    let b = find(&s, &bridge.name).unwrap();
    assert_eq!(b.id, bridge.id);
    assert_eq!(b.network_mode, "bridge");
    assert_eq!(b.mode_kind, ModeKind::Bridge);
    assert_eq!(short_image(&b.image), busybox_image());
    assert!(b.pid > 0);
    let bl = b.live.as_ref().unwrap();
    assert_eq!(bl.attributed, Attribution::Full);
    assert_eq!(bl.source, "veth");
    assert!(
        bl.interfaces.iter().all(|i| i.starts_with("veth")) && !bl.interfaces.is_empty(),
        "{bl:?}"
    );
    assert!(bl.rx_bps > 0.0 && bl.rx_pps > 0.0, "{bl:?}");
    assert!(bl.mean_packet_bytes.is_some_and(|m| m > 40.0), "{bl:?}");

    let h = find(&s, &host.name).unwrap();
    assert_eq!(h.network_mode, "host");
    assert_eq!(h.mode_kind, ModeKind::Host);
    let hl = h.live.as_ref().unwrap();
    // Counted in the kernel by its cgroup, every packet (tests/tests/privilege.rs has the
    // daemon without the capability, counting its TCP sockets).
    let counting = s.host.counting.clone().unwrap();
    assert_eq!(counting.mechanism, "cgroup_bpf", "{counting:?}");
    assert_eq!(hl.attributed, Attribution::Full);
    assert_eq!(hl.source, "cgroup_bpf");
    assert!(hl.rx_bps > 0.0, "{hl:?}");
    assert_eq!(hl.note, None);

    assert!(t1.join().unwrap() > 0 && t2.join().unwrap() > 0);

    // Accuracy: with both containers measured and quiet, send an exact number of bytes to
    // each; the growth netmoded reports matches it. The veth counts frames, the cgroup
    // counters IP packets: payload plus headers (52 B per segment over loopback: IP, TCP with
    // timestamps).
    let quiet = |s: &api::Status| {
        let b = find(s, &bridge.name)?.live.as_ref()?;
        let h = find(s, &host.name)?.live.as_ref()?;
        (b.rx_bps < 1e6 && h.rx_bps < 1e6).then_some((b.rx_bytes, h.rx_bytes, h.rx_packets))
    };
    let before = daemon.wait_for("the streams to end", Duration::from_secs(10), quiet);
    const N: usize = 20_000_000;
    send_exactly(&format!("{}:18000", bridge.ip()), N);
    send_exactly(&format!("127.0.0.1:{host_port}"), N);
    let after = daemon.wait_for(
        "the exact bytes to be counted",
        Duration::from_secs(10),
        |s| {
            let (b, h, p) = quiet(s)?;
            let payload = (h - before.1).saturating_sub(52 * (p - before.2));
            (b - before.0 >= N as u64 && payload >= N as u64 * 99 / 100).then_some((b, h, p))
        },
    );
    let (db, dh, dp) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    assert!(
        db <= N as u64 + N as u64 / 10,
        "bridge counted {db} for {N} bytes sent"
    );
    // Less the headers of every segment it received, the payload agrees within 1 % (as the
    // socket's own counters, which the fallback reads, count it exactly).
    let payload = dh - 52 * dp;
    eprintln!("host-mode TCP: {dh} B in {dp} packets counted, {payload} B of payload; {N} B sent");
    assert!(
        payload.abs_diff(N as u64) * 100 <= N as u64,
        "host counted {dh} B in {dp} packets for {N} bytes sent"
    );

    // The single-container endpoint, by name and by id prefix.
    let (code, body) = daemon.get(&format!("/v1/containers/{}", bridge.name));
    assert_eq!(code, 200, "{body}");
    let one: api::Container = serde_json::from_str(&body).unwrap();
    assert_eq!(one.id, bridge.id);
    let (code, body) = daemon.get(&format!("/v1/containers/{}", &host.id[..12]));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&host.name));

    // Prometheus text: counters by name (as cAdvisor's), the mode on the info series.
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200);
    for (c, mode) in [(&bridge, "bridge"), (&host, "host")] {
        let info = format!(
            "netmode_container_info{{name=\"{}\",container_id=\"{}\",image=\"{}\",network_mode=\"{mode}\",mode=\"{mode}\",",
            c.name,
            c.id,
            // The name the engine reports (Podman's is fully qualified).
            b.image
        );
        assert!(metrics.contains(&info), "{info} not in\n{metrics}");
        let l = format!(
            "netmode_container_network_receive_bytes_total{{name=\"{}\"}} ",
            c.name
        );
        let v: f64 = metrics
            .lines()
            .find_map(|x| x.strip_prefix(&l))
            .unwrap_or_else(|| panic!("no {l} in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(v > 0.0);
    }
    assert!(metrics.contains("# TYPE netmode_container_network_receive_bytes_total counter"));
    // Host series are node_exporter's unless asked for.
    assert!(!metrics.contains("netmode_host_"), "{metrics}");
    assert!(metrics.contains("netmode_docker_up 1"));

    // advisor status shows both, as a table and as the endpoint's JSON.
    let out = daemon.advisor(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
    };
    let brow =
        row(&bridge.name).unwrap_or_else(|| panic!("no row for {} in\n{table}", bridge.name));
    let hrow = row(&host.name).unwrap_or_else(|| panic!("no row for {} in\n{table}", host.name));
    assert!(brow.split_whitespace().nth(1) == Some("bridge"), "{brow}");
    assert!(hrow.split_whitespace().nth(1) == Some("host"), "{hrow}");
    assert!(table.contains("docker: connected"), "{table}");
    let out = daemon.advisor(&["status", "--json"]);
    assert!(out.status.success());
    let parsed: api::Status = serde_json::from_slice(&out.stdout).unwrap();
    assert!(find(&parsed, &bridge.name).is_some() && find(&parsed, &host.name).is_some());

    // A stopped container leaves the list within two seconds.
    docker(&["kill", &bridge.id]);
    let stopped = Instant::now();
    daemon.wait_for(
        "the killed container to leave",
        Duration::from_secs(2),
        |s| find(s, &bridge.name).is_none().then_some(()),
    );
    docker(&["stop", "-t", "1", &host.id]);
    let stopped_host = Instant::now();
    daemon.wait_for(
        "the stopped container to leave",
        Duration::from_secs(2),
        |s| find(s, &host.name).is_none().then_some(()),
    );
    eprintln!(
        "left the list {:?} after kill, {:?} after stop",
        stopped.elapsed(),
        stopped_host.elapsed()
    );
}

#[test]
fn unknown_containers_and_endpoints_get_json_errors() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let (code, body) = daemon.get("/v1/containers/no-such-container");
    assert_eq!(code, 404);
    let e: api::ApiError = serde_json::from_str(&body).unwrap();
    assert!(e.error.contains("no-such-container"), "{body}");
    let (code, body) = daemon.get("/v2/status");
    assert_eq!(code, 404);
    assert!(body.contains("no such endpoint"), "{body}");
    let (code, body) = http(&format!("{}/v1/status", daemon.endpoint), "DELETE").unwrap();
    assert_eq!(code, 405, "{body}");
    let (code, body) = daemon.get("/healthz");
    assert_eq!(code, 200);
    let h: api::Health = serde_json::from_str(&body).unwrap();
    assert_eq!(h.status, "ok");

    let out = daemon.advisor(&["status", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn containers_started_before_the_daemon_and_renamed_ones_are_tracked() {
    require_docker();
    let before = Container::tcp_sink(
        "early",
        &[
            "--cpus",
            "0.5",
            "-m",
            "64m",
            "-p",
            "127.0.0.1::18000",
            "-l",
            "netmode.policy=bridge",
        ],
        18000,
    );
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let c = daemon.wait_for("the early container", Duration::from_secs(10), |s| {
        find(s, &before.name).cloned()
    });
    assert_eq!(c.limits.cpus, Some(0.5));
    assert_eq!(c.limits.memory_bytes, Some(64 << 20));
    assert_eq!(c.policy_label.as_deref(), Some("bridge"));
    assert_eq!(c.ports.len(), 1, "{:?}", c.ports);
    assert_eq!(c.ports[0].container_port, 18000);
    assert_eq!(c.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert!(c.ports[0].host_port.is_some());

    let new_name = unique("nmt-renamed");
    docker(&["rename", &before.id, &new_name]);
    daemon.wait_for("the new name", Duration::from_secs(5), |s| {
        (find(s, &new_name).is_some() && find(s, &before.name).is_none()).then_some(())
    });

    // A user-defined bridge network: still a veth, measured in full, attachments listed.
    let net = unique("nmt-net");
    docker(&["network", "create", "--label", "netmode-test=1", &net]);
    let on_net = Container::tcp_sink(
        "usernet",
        &["--network", &net, "--network-alias", "api"],
        18000,
    );
    let c = daemon.wait_for(
        "the container on a user network to be measured",
        Duration::from_secs(15),
        |s| {
            let c = find(s, &on_net.name)?;
            c.live.as_ref().map(|_| c.clone())
        },
    );
    assert_eq!(c.network_mode, net);
    assert_eq!(c.mode_kind, ModeKind::Bridge);
    assert_eq!(c.networks[0].driver.as_deref(), Some("bridge"));
    assert!(
        c.networks[0].aliases.contains(&"api".to_string()),
        "{:?}",
        c.networks
    );
    assert_eq!(c.live.unwrap().attributed, Attribution::Full);
    drop(on_net);
    let _ = docker_output(&["network", "rm", &net]);
}

/// One connection, exactly `n` bytes, then close.
fn send_exactly(addr: &str, n: usize) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&vec![0xa5; n]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the peer to close: everything was received.
    let mut sink = [0u8; 16];
    let _ = std::io::Read::read(&mut s, &mut sink);
}
