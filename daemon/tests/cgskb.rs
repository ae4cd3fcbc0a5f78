//! The per-cgroup counters (`sys::cgskb`) on real kernel parts: processes placed in cgroup-v2
//! groups of their own, in network namespaces joined by a veth pair, exchanging UDP datagrams
//! of 64 and 1024 B whose number is known, then TCP, then loopback. Every packet of a group is
//! counted under its id, whatever the protocol, with its peer class. Needs root (BPF, cgroups,
//! namespaces): `tests/run` runs it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use netmoded::sys::cgskb::{CgroupCounters, Flow, Peer};
use netmoded::sys::procs::CgroupMounts;

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair, and a cgroup-v2 group per side; all removed on drop.
struct Rig {
    ns: [String; 2],
    groups: [PathBuf; 2],
    addrs: [Ipv4Addr; 2],
}

impl Rig {
    fn new(root: &Path) -> Rig {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id());
        let ns = [format!("nmcg{id}a"), format!("nmcg{id}b")];
        let third = ((std::process::id() * 2 + n) % 200) as u8 + 20;
        let addrs = [
            Ipv4Addr::new(198, 18, third, 1),
            Ipv4Addr::new(198, 18, third, 2),
        ];
        let groups = [
            root.join(format!("netmode-test-{id}-a")),
            root.join(format!("netmode-test-{id}-b")),
        ];
        let rig = Rig { ns, groups, addrs };
        for (i, n) in rig.ns.iter().enumerate() {
            run(&["ip", "netns", "add", n]);
            run(&[
                "ip",
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
            std::fs::create_dir(&rig.groups[i]).unwrap();
        }
        let (va, vb) = (format!("nmcg{id}x"), format!("nmcg{id}y"));
        run(&[
            "ip", "link", "add", &va, "netns", &rig.ns[0], "type", "veth", "peer", "name", &vb,
            "netns", &rig.ns[1],
        ]);
        for (i, v) in [&va, &vb].into_iter().enumerate() {
            run(&[
                "ip",
                "-n",
                &rig.ns[i],
                "addr",
                "add",
                &format!("{}/24", rig.addrs[i]),
                "dev",
                v,
            ]);
            run(&["ip", "-n", &rig.ns[i], "link", "set", v, "up"]);
        }
        rig
    }

    /// Run python3 `code` in side `i`'s namespace and group; its stdout.
    fn py(&self, i: usize, code: &str) -> std::process::Child {
        let procs = self.groups[i].join("cgroup.procs");
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && exec ip netns exec {} python3 -c \"$0\"",
                procs.display(),
                self.ns[i]
            ))
            .arg(code)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The group's id as the kernel gives it to the programs (on 64-bit, its inode).
    fn id(&self, i: usize) -> u64 {
        netmoded::sys::procs::cgroup_id(&self.groups[i]).unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        for g in &self.groups {
            // The processes have exited; a group with none left can be removed.
            for _ in 0..50 {
                if std::fs::remove_dir(g).is_ok() || !g.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// Wait for `c` to print its "ready" line (read byte by byte: nothing after it is consumed).
fn ready(c: &mut std::process::Child) {
    use std::io::Read;
    let out = c.stdout.as_mut().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    assert_eq!(String::from_utf8_lossy(&line), "ready");
}

fn output(c: std::process::Child) -> String {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const RECEIVER: &str = r#"
import socket, sys
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: past rmem_max
r.bind(("0.0.0.0", 7001))
print("ready", flush=True)
r.settimeout(3)
n = 0
try:
    while True:
        r.recv(4096); n += 1
except socket.timeout:
    pass
print(n)
"#;

fn sender(to: Ipv4Addr, sizes: &[(usize, usize)]) -> String {
    let sends: Vec<String> = sizes
        .iter()
        .map(|(count, size)| {
            format!(
                "for _ in range({count}):\n    s.sendto(b'x' * {size}, ('{to}', 7001)); time.sleep(0.0005)\n"
            )
        })
        .collect();
    format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n{}",
        sends.join("")
    )
}

/// UDP datagrams of `payload` bytes: IP (20) and UDP (8) headers on each.
fn udp(datagrams: &[(usize, usize)]) -> Flow {
    Flow {
        bytes: datagrams.iter().map(|(n, s)| (n * (s + 28)) as u64).sum(),
        packets: datagrams.iter().map(|(n, _)| *n as u64).sum(),
    }
}

#[test]
fn every_udp_packet_is_counted_under_its_cgroup_with_its_peer_class() {
    let mounts = CgroupMounts::discover();
    let root = mounts
        .unified()
        .expect("cgroup v2 is mounted (alone or beside v1)")
        .to_path_buf();
    let mut counters = CgroupCounters::attach(&root).expect("attach at the cgroup-v2 root");
    let rig = Rig::new(&root);

    // Phase 1: 500 datagrams of 64 B and 500 of 1024 B from a to b; b is no known peer.
    let phase1 = [(500, 64), (500, 1024)];
    let mut rx = rig.py(1, RECEIVER);
    ready(&mut rx);
    output(rig.py(0, &sender(rig.addrs[1], &phase1)));
    let received: u64 = output(rx).parse().unwrap();
    assert_eq!(received, 1000, "every datagram reached the receiver");
    let c = counters.read().unwrap();
    let (a, b) = (&c[&rig.id(0)], &c[&rig.id(1)]);
    assert_eq!(
        a.tx.get(&Peer::Other),
        Some(&udp(&phase1)),
        "sent by a: {a:?}"
    );
    assert_eq!(
        b.rx.get(&Peer::Other),
        Some(&udp(&phase1)),
        "received by b: {b:?}"
    );
    assert_eq!(a.rx, Default::default(), "a received nothing: {a:?}");
    assert_eq!(b.tx, Default::default(), "b sent nothing: {b:?}");

    // Phase 2: b's address is a container of this gateway's: the same traffic is local.
    counters
        .set_local_peers(&[rig.addrs[0], rig.addrs[1]])
        .unwrap();
    let phase2 = [(300, 1024)];
    let mut rx = rig.py(1, RECEIVER);
    ready(&mut rx);
    output(rig.py(0, &sender(rig.addrs[1], &phase2)));
    assert_eq!(output(rx), "300");
    let c = counters.read().unwrap();
    let (a, b) = (&c[&rig.id(0)], &c[&rig.id(1)]);
    // Each side names the other by its address.
    assert_eq!(
        a.tx.get(&Peer::Local(rig.addrs[1])),
        Some(&udp(&phase2)),
        "{a:?}"
    );
    assert_eq!(
        b.rx.get(&Peer::Local(rig.addrs[0])),
        Some(&udp(&phase2)),
        "{b:?}"
    );
    assert_eq!(
        a.tx.get(&Peer::Other),
        Some(&udp(&phase1)),
        "earlier counts kept"
    );

    // Phase 3: loopback inside a's namespace: both directions, in a's group alone.
    let lo = output(rig.py(
        0,
        r#"
import socket
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 7002))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    s.sendto(b"y" * 100, ("127.0.0.1", 7002)); r.recv(4096)
print("done")
"#,
    ));
    assert_eq!(lo, "done");
    let c = counters.read().unwrap();
    let a = &c[&rig.id(0)];
    assert_eq!(
        a.tx.get(&Peer::Loopback),
        Some(&udp(&[(200, 100)])),
        "{a:?}"
    );
    assert_eq!(
        a.rx.get(&Peer::Loopback),
        Some(&udp(&[(200, 100)])),
        "{a:?}"
    );
}

#[test]
fn tcp_is_counted_by_segments_on_both_sides() {
    let mounts = CgroupMounts::discover();
    let root = mounts.unified().unwrap().to_path_buf();
    let counters = CgroupCounters::attach(&root).expect("attach");
    let rig = Rig::new(&root);
    let mut server = rig.py(
        1,
        r#"
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7003)); l.listen(1); print("ready", flush=True)
c, _ = l.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.close(); print(n)
"#,
    );
    ready(&mut server);
    // The id a process's group is found by is the one its packets are counted under.
    assert_eq!(mounts.v2_cgroup_id(server.id()), Some(rig.id(1)));
    let payload = 8 << 20;
    // The sender reports what its socket put on the wire (tcp_info): bytes_sent counts the
    // payload of retransmitted segments again, and segments are retransmitted on this
    // machine now and then (an RTO while the 2 CPUs are busy; the receiver then counts the
    // duplicates too). It half-closes and waits for the server's FIN so that the figures are
    // final, then closes.
    let sender = output(rig.py(
        0,
        &format!(
            r#"
import socket, struct
s = socket.create_connection(('{}', 7003))
s.sendall(b'z' * {payload})
s.shutdown(socket.SHUT_WR)
while s.recv(65536): pass
i = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
total_retrans, = struct.unpack_from("I", i, 100)
bytes_sent, = struct.unpack_from("Q", i, 200)
print(bytes_sent, total_retrans)
s.close()"#,
            rig.addrs[1]
        ),
    ));
    let got: u64 = output(server).parse().unwrap();
    assert_eq!(got, payload);
    let (bytes_sent, retrans) = match sender.split_whitespace().collect::<Vec<_>>()[..] {
        [b, r] => (b.parse::<u64>().unwrap(), r.parse::<u64>().unwrap()),
        _ => panic!("sender printed {sender:?}"),
    };
    assert!(bytes_sent >= payload, "{sender}");
    let c = counters.read().unwrap();
    let (a, b) = (c[&rig.id(0)].totals(), c[&rig.id(1)].totals());
    // What a sent, b received, and back, segment for segment (GSO on one side, GRO on the
    // other: counted in segments both times), headers included. Each side's socket is full
    // (in a cgroup) until its close; the last ACK of the exchange may be sent by a socket
    // already in time-wait, which has no cgroup: one packet of 52 B (IP, TCP with
    // timestamps) at most each way. A retransmitted segment may be lost before the
    // receiver's hook (then only the sender counts it) or arrive twice (both count it).
    for (what, sent, received) in [("a to b", a.1, b.0), ("b to a", b.1, a.0)] {
        let missed = sent.packets.abs_diff(received.packets);
        let bytes = sent.bytes.abs_diff(received.bytes);
        if retrans == 0 {
            assert!(
                missed <= 1 && bytes == 52 * missed,
                "{what}: sent {sent:?}, received {received:?}"
            );
        } else {
            assert!(
                missed <= 1 + retrans,
                "{what}: sent {sent:?}, received {received:?}, {retrans} retransmitted"
            );
        }
    }
    // Every segment with its own headers, as on the wire (a GSO packet is counted as its
    // segments): 52 B each (IP, TCP with timestamps), 60 for the SYN (its options), over
    // the payload the socket sent, retransmissions included.
    let headers = a.1.bytes - bytes_sent;
    assert!(
        headers >= 52 * a.1.packets && headers <= 52 * a.1.packets + 8,
        "bytes sent {bytes_sent} ({retrans} segments retransmitted) plus 52 B per segment: {a:?}"
    );
}

/// The object netmoded embeds is the one its source builds to (Debian's clang, `daemon/bpf/build`).
#[test]
fn bpf_object_matches_its_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let out = std::env::temp_dir().join(format!("cgcount-{}.bpf.o", std::process::id()));
    let status = Command::new(dir.join("build"))
        .arg(&out)
        .status()
        .expect("daemon/bpf/build runs (needs clang, llvm and libbpf-dev)");
    assert!(status.success(), "daemon/bpf/build failed");
    let built = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let embedded = std::fs::read(dir.join("cgcount.bpf.o")).unwrap();
    assert!(
        built == embedded,
        "daemon/bpf/cgcount.bpf.o is not what daemon/bpf/cgcount.bpf.c builds to: run daemon/bpf/build"
    );
}
