//! Every packet of every container, counted in the kernel by its cgroup (`sys::cgskb`): UDP
//! of known sizes and counts sent and received by a host-mode container, UDP between two
//! bridge containers, each counted with its peer. The programs in the containers are the
//! host's python3 (its /usr mounted read-only into the busybox image): real sockets, in the
//! containers' own cgroups, sending datagrams whose number and size the test knows.

use std::net::UdpSocket;
use std::time::Duration;

use netmode_e2e::api::{Attribution, ModeKind};
use netmode_e2e::*;

/// `docker run` arguments that give a busybox container the host's python3, read-only.
const PYTHON: [&str; 6] = [
    "-v",
    "/usr:/usr:ro",
    "-v",
    "/lib:/lib:ro",
    "-v",
    "/lib64:/lib64:ro",
];

/// A container running `script` in python3 with `extra` docker arguments.
fn python(tag: &str, extra: &[&str], script: &str) -> Container {
    let mut args: Vec<&str> = PYTHON.to_vec();
    args.extend_from_slice(extra);
    Container::run(
        tag,
        &args,
        busybox_image(),
        &["/usr/bin/python3", "-u", "-c", script],
    )
}

/// Run python3 `script` inside `c` (its cgroup, its namespace): its stdout.
fn exec_python(c: &Container, script: &str) -> String {
    docker(&["exec", &c.id, "/usr/bin/python3", "-u", "-c", script])
}

/// Datagrams of 64 B and 1024 B, `n` of each: their bytes as IP packets (20 B IPv4 and 8 B
/// UDP headers each).
fn udp_bytes(n: u64) -> u64 {
    n * (64 + 28) + n * (1024 + 28)
}

/// A receiver that counts datagrams until 3 s pass without one, then prints the count and
/// sleeps (the container stays up).
fn receiver(bind: &str, port: u16) -> String {
    format!(
        r#"
import socket, time
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
r.bind(("{bind}", {port}))
print("ready", flush=True)
n = 0
r.settimeout(None)
r.recv(4096); n += 1
r.settimeout(3)
try:
    while True:
        r.recv(4096); n += 1
except socket.timeout:
    pass
print("got", n, flush=True)
time.sleep(100000)
"#
    )
}

/// A sender of `n` datagrams of 64 B and `n` of 1024 B to `to`, paced so that no socket
/// buffer overflows.
fn sender(to: &str, port: u16, n: u64) -> String {
    format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for size in (64, 1024):
    for i in range({n}):
        s.sendto(b"u" * size, ("{to}", {port}))
        if i % 10 == 9: time.sleep(0.002)
print("sent", flush=True)
"#
    )
}

fn wait_log(c: &Container, line: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = docker_output(&["logs", &c.id]);
        let logs = String::from_utf8_lossy(&out.stdout);
        if let Some(l) = logs.lines().find(|l| l.starts_with(line)) {
            return l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: no {line:?} in its output:\n{logs}{}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The container's totals once two samples in a row agree (nothing more is moving), from
/// samples taken after the call (three sample intervals go by first).
fn settled(daemon: &Daemon, name: &str) -> api::Live {
    std::thread::sleep(Duration::from_millis(1500));
    let mut last: Option<(u64, u64)> = None;
    daemon.wait_for("the counters to settle", Duration::from_secs(20), |s| {
        let l = find(s, name)?.live.clone()?;
        let now = (l.rx_bytes, l.tx_bytes);
        let same = last == Some(now) && l.rx_bps == 0.0 && l.tx_bps == 0.0;
        last = Some(now);
        same.then_some(l)
    })
}

#[test]
fn a_host_mode_containers_udp_is_counted_exactly_both_ways() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let s = daemon.wait_for("the first sample", Duration::from_secs(10), |s| {
        s.host.counting.clone()
    });
    assert_eq!(
        s.mechanism, "cgroup_bpf",
        "this machine counts by cgroup: {s:?}"
    );
    let port = free_port();
    let c = python(
        "udp-host",
        &["--network", "host"],
        &receiver("127.0.0.1", port),
    );
    wait_log(&c, "ready");
    let before = daemon.wait_for("its baseline", Duration::from_secs(20), |s| {
        let l = find(s, &c.name)?.live.clone()?;
        (l.source == "cgroup_bpf").then_some(l)
    });
    assert_eq!(before.attributed, Attribution::Full, "{before:?}");
    assert_eq!(before.note, None, "{before:?}");

    // Received: the test sends 500 datagrams of each size to the container's socket.
    const N: u64 = 500;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for size in [64, 1024] {
        for i in 0..N {
            sock.send_to(&vec![b'r'; size], ("127.0.0.1", port))
                .unwrap();
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    assert_eq!(wait_log(&c, "got"), format!("got {}", 2 * N));

    // Sent: a process of the container sends as many to a socket of the test's.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let counter = std::thread::spawn(move || {
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = 0u64;
        while sink.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    assert_eq!(exec_python(&c, &sender("127.0.0.1", sink_port, N)), "sent");
    assert_eq!(counter.join().unwrap(), 2 * N, "every datagram arrived");

    let after = settled(&daemon, &c.name);
    let (rx, tx) = (
        after.rx_bytes - before.rx_bytes,
        after.tx_bytes - before.tx_bytes,
    );
    let want = udp_bytes(N);
    eprintln!("host-mode UDP: received {rx} B, sent {tx} B; {want} B each way were sent");
    for (what, got) in [("received", rx), ("sent", tx)] {
        assert!(
            got.abs_diff(want) * 100 <= want,
            "{what}: counted {got} B, {want} B moved"
        );
    }
    assert_eq!(after.source, "cgroup_bpf");
    assert_eq!(
        after.rx_packets - before.rx_packets,
        2 * N,
        "one packet per datagram: {after:?}"
    );
    // Over loopback, in host mode: the host's, a local peer.
    assert_eq!(after.local_peers, ["host"], "{after:?}");

    assert_eq!(after.udp_drops, Some(0), "nothing was dropped: {after:?}");

    // Its receiver reads no more: what overflows its socket's buffer is counted as
    // received, and reported as dropped beside.
    const FLOOD: u64 = 10_000;
    for _ in 0..FLOOD {
        sock.send_to(&[b'f'; 1024], ("127.0.0.1", port)).unwrap();
    }
    let flooded = settled(&daemon, &c.name);
    let drops = flooded.udp_drops.unwrap_or(0);
    eprintln!("flood of {FLOOD} datagrams to a socket nobody reads: {drops} dropped");
    assert_eq!(flooded.rx_packets - after.rx_packets, FLOOD, "{flooded:?}");
    assert!(drops > 0 && drops < FLOOD, "{flooded:?}");

    // /metrics says which mechanism counted it.
    let (_, metrics) = daemon.get("/metrics");
    let info = metrics
        .lines()
        .find(|l| l.starts_with("netmode_container_info{") && l.contains(&c.name))
        .unwrap_or_else(|| panic!("no info series for {} in\n{metrics}", c.name));
    assert!(info.contains("source=\"cgroup_bpf\""), "{info}");
}

#[test]
fn udp_between_two_containers_is_local_with_the_peer_named() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "");
    let port = free_port();
    let b = python("udp-b", &[], &receiver("0.0.0.0", port));
    wait_log(&b, "ready");
    let a = python("udp-a", &[], "import time; time.sleep(100000)");
    for c in [&a, &b] {
        daemon.wait_for("its baseline", Duration::from_secs(20), |s| {
            find(s, &c.name)?.live.as_ref().map(|_| ())
        });
    }
    let before = settled(&daemon, &b.name);
    const N: u64 = 2000;
    assert_eq!(exec_python(&a, &sender(&b.ip(), port, N)), "sent");
    assert_eq!(wait_log(&b, "got"), format!("got {}", 2 * N));
    // While the datagrams were counted: each names the other, and all of it was local.
    let (la, lb) = daemon.wait_for("both to show the exchange", Duration::from_secs(20), |s| {
        let la = find(s, &a.name)?.live.clone()?;
        let lb = find(s, &b.name)?.live.clone()?;
        (la.local_peers == [b.name.clone()] && lb.local_peers == [a.name.clone()])
            .then_some((la, lb))
    });
    for (c, l) in [(&a, &la), (&b, &lb)] {
        assert!(l.local_share.is_some_and(|s| s > 0.99), "{}: {l:?}", c.name);
        assert_eq!(
            l.source, "veth",
            "bridge containers keep their veth's bytes"
        );
    }
    // The bytes are the veth's frames: the datagrams with their Ethernet headers, and the
    // ARP exchange before them.
    let after = settled(&daemon, &b.name);
    let rx = after.rx_bytes - before.rx_bytes;
    let frames = udp_bytes(N) + 2 * N * 14;
    assert!(
        rx >= frames && rx - frames < 1000,
        "received {rx} B, {frames} B of frames sent"
    );
    let s = daemon.status();
    assert_eq!(find(&s, &a.name).unwrap().mode_kind, ModeKind::Bridge);
}
