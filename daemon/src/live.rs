//! Live traffic: every `sample_interval`, each container's counters and the host's CPU
//! figures, turned into rates.
//!
//! - Bridge and user-defined bridge networks: the host side of the container's veth pairs,
//!   found through the netns id the host gives the container's namespace (64-bit link stats,
//!   rtnetlink). Host rx is container tx.
//! - Host network: the container shares the host's interfaces, so interface counters cannot
//!   tell it apart. Its TCP traffic is attributed from the sockets its own processes hold
//!   (sock_diag, TCP_INFO byte counters). UDP has no such counters; the output says so.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use netmode_advisor::api::{Attribution, Live, ModeKind};

use crate::state::Shared;
use crate::sys::netlink::{Link, Netlink};
use crate::sys::{hoststat, netns, procs, sockdiag};

/// Cumulative counters from the container's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.rx_bytes += o.rx_bytes;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.tx_packets += o.tx_packets;
    }

    /// Growth from `prev` to `self`; a counter that went backwards was reset (interface
    /// recreated), so all of its current value is new.
    fn since(&self, prev: &Counters) -> Counters {
        let d = |c: u64, p: u64| if c >= p { c - p } else { c };
        Counters {
            rx_bytes: d(self.rx_bytes, prev.rx_bytes),
            tx_bytes: d(self.tx_bytes, prev.tx_bytes),
            rx_packets: d(self.rx_packets, prev.rx_packets),
            tx_packets: d(self.tx_packets, prev.tx_packets),
        }
    }
}

/// Traffic since the previous sample, summed over a container's counter sources (veths by
/// ifindex, sockets by cookie). A source seen for the first time counts in full, except in
/// the container's first sample, which only sets the baseline.
/// Rates are not taken over a shorter interval than this (seconds): a few packets more or
/// less would swing them.
const MIN_RATE_INTERVAL_S: f64 = 0.2;

/// What a container's live figures say while an in-place probe sends from its namespace.
pub const IN_PLACE_NOTE: &str =
    "an in-place probe is sending from its namespace: rates held from before it";

pub fn delta(
    prev: &HashMap<u64, Counters>,
    cur: &HashMap<u64, Counters>,
    first_sample: bool,
) -> Counters {
    let mut total = Counters::default();
    if first_sample {
        return total;
    }
    for (key, c) in cur {
        match prev.get(key) {
            Some(p) => total.add(&c.since(p)),
            None => total.add(c),
        }
    }
    total
}

/// Rates over `dt` seconds.
pub fn rates(d: &Counters, dt: f64) -> (f64, f64, f64, f64, Option<f64>) {
    let packets = d.rx_packets + d.tx_packets;
    let mean = (packets > 0).then(|| (d.rx_bytes + d.tx_bytes) as f64 / packets as f64);
    (
        d.rx_bytes as f64 * 8.0 / dt,
        d.tx_bytes as f64 * 8.0 / dt,
        d.rx_packets as f64 / dt,
        d.tx_packets as f64 / dt,
        mean,
    )
}

/// Below this much traffic in an interval, shares and costs per byte are noise.
const PROFILE_MIN_BYTES: u64 = 1 << 20;

/// What the container's traffic looks like: the TCP share of its bytes (TCP payload against
/// its veth's frames; bridge mode only, as host mode shows TCP alone), and the CPU seconds
/// its cgroup spends per GB moved.
pub fn profile(
    d: &Counters,
    tcp: &Counters,
    cpu_s: Option<f64>,
    host_mode: bool,
) -> (Option<f64>, Option<f64>) {
    let bytes = d.rx_bytes + d.tx_bytes;
    if bytes < PROFILE_MIN_BYTES {
        return (None, None);
    }
    let tcp_share = (!host_mode).then(|| {
        // Frames carry 40-70 bytes of headers a TCP payload count lacks.
        let overhead = 54.0 * (d.rx_packets + d.tx_packets) as f64;
        let payload = (bytes as f64 - overhead).max(1.0);
        ((tcp.rx_bytes + tcp.tx_bytes) as f64 / payload).clamp(0.0, 1.0)
    });
    let cpu_s_per_gb = cpu_s.map(|c| c / (bytes as f64 / 1e9));
    (tcp_share, cpu_s_per_gb)
}

/// What the sampler remembers of one container between samples.
struct Track {
    netns: u64,
    nsid: Option<i32>,
    sources: HashMap<u64, Counters>,
    /// Sockets that left the dump recently, with their last counters and age in samples:
    /// their destroy broadcast may arrive a little later.
    retired: HashMap<u64, (Counters, u8)>,
    totals: Counters,
    at: Instant,
    /// TCP sockets inside the container's own namespace (bridge mode), by cookie: what share
    /// of its traffic is TCP.
    tcp_sources: HashMap<u64, Counters>,
    /// CPU time of the container's cgroup at the last sample, ns.
    cpu_ns: Option<u64>,
    /// Its TCP peers at the last sample.
    peers: PeerTrack,
}

impl Track {
    /// Account closed sockets: the growth since they were last seen for sockets of this
    /// container, their whole counters for connections accepted on its listening ports that
    /// opened and closed between two samples. Matched entries are removed from `closed`.
    fn account_closed(
        &mut self,
        cur: &HashMap<u64, Counters>,
        ports: &HashSet<u16>,
        closed: &mut Vec<sockdiag::Closed>,
    ) -> Counters {
        let mut total = Counters::default();
        closed.retain(|c| {
            let final_ = socket_counters(&c.counters);
            let last = self
                .sources
                .get(&c.counters.cookie)
                .or_else(|| self.retired.get(&c.counters.cookie).map(|(c, _)| c));
            match last {
                Some(last) if !cur.contains_key(&c.counters.cookie) => {
                    total.add(&final_.since(last));
                    self.retired.remove(&c.counters.cookie);
                    false
                }
                None if ports.contains(&c.local_port) => {
                    total.add(&final_);
                    false
                }
                _ => true,
            }
        });
        // Sockets gone from the dump without a broadcast yet wait two samples for it.
        for (cookie, c) in &self.sources {
            if !cur.contains_key(cookie) {
                self.retired.insert(*cookie, (*c, 0));
            }
        }
        self.retired.retain(|_, (_, age)| {
            *age += 1;
            *age <= 2
        });
        total
    }
}

/// A TCP share of nothing is unknown, not 0, when new TCP connections were seen: they opened
/// and closed between two samples (a poller's), so their bytes were never counted.
pub fn unless_unseen(share: Option<f64>, tcp: &Counters, new_sockets: usize) -> Option<f64> {
    let none_counted = tcp.rx_bytes + tcp.tx_bytes == 0;
    share.filter(|_| !(none_counted && new_sockets > 0))
}

/// Below this many TCP bytes in an interval, the local share is taken from the connections
/// first seen in it, if any: a poller opening a connection per request moves a few hundred
/// bytes on each, and they close between samples.
const PEER_MIN_BYTES: u64 = 16 * 1024;

/// What the last sample saw of a container's TCP peers: bytes per socket toward containers
/// of the gateway and elsewhere, and the connections seen in TIME_WAIT (the cookie stays
/// the connection's).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PeerTrack {
    local: HashMap<u64, u64>,
    upstream: HashMap<u64, u64>,
    time_wait: HashSet<u64>,
}

/// Share of a container's TCP traffic with containers of this gateway, and their names:
/// `gateway` maps the gateway's container addresses to names; `own` are the container's own
/// addresses; `loopback` is whose a loopback peer is (`None` for a container's own
/// namespace, where loopback never leaves it). Bytes when enough moved, else the
/// connections first seen since the last sample (in any state: a poller's connections live
/// a millisecond, and only the side that closes first keeps them in TIME_WAIT); `None` when
/// neither says anything. In the first sample sockets only set the baseline.
pub fn peer_share(
    prev: &PeerTrack,
    socks: &[sockdiag::TcpCounters],
    gateway: &HashMap<std::net::IpAddr, String>,
    own: &[std::net::IpAddr],
    loopback: Option<&str>,
    first: bool,
) -> (PeerTrack, Option<f64>, Vec<String>) {
    let mut next = PeerTrack::default();
    let (mut bytes, mut opened) = ([0u64; 2], [0u64; 2]);
    let mut names: Vec<String> = Vec::new();
    for t in socks {
        let ip = match t.peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(t.peer, std::net::IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() || own.contains(&ip) {
            continue;
        }
        let name = if ip.is_loopback() {
            match loopback {
                Some(n) => Some(n.to_string()),
                None => continue,
            }
        } else {
            gateway.get(&ip).cloned()
        };
        let k = usize::from(name.is_none());
        if let Some(n) = name {
            names.push(n);
        }
        let known = prev.local.contains_key(&t.cookie)
            || prev.upstream.contains_key(&t.cookie)
            || prev.time_wait.contains(&t.cookie);
        if !first && !known {
            opened[k] += 1;
        }
        if t.time_wait {
            next.time_wait.insert(t.cookie);
            continue;
        }
        let now = t.bytes_acked + t.bytes_received;
        let before = if k == 0 { &prev.local } else { &prev.upstream };
        if !first {
            bytes[k] += match before.get(&t.cookie) {
                Some(&b) if now >= b => now - b,
                _ => now,
            };
        }
        if k == 0 {
            next.local.insert(t.cookie, now);
        } else {
            next.upstream.insert(t.cookie, now);
        }
    }
    names.sort();
    names.dedup();
    let share = |v: [u64; 2]| v[0] as f64 / (v[0] + v[1]) as f64;
    let s = if bytes[0] + bytes[1] >= PEER_MIN_BYTES {
        Some(share(bytes))
    } else if opened[0] + opened[1] > 0 {
        Some(share(opened))
    } else {
        None
    };
    (next, s, names)
}

fn socket_counters(t: &sockdiag::TcpCounters) -> Counters {
    Counters {
        rx_bytes: t.bytes_received,
        tx_bytes: t.bytes_acked,
        rx_packets: t.segs_in as u64,
        tx_packets: t.segs_out as u64,
    }
}

/// A host-mode container's TCP counters by cookie, its listening ports, its sockets.
type HostSockets = (
    HashMap<u64, Counters>,
    HashSet<u16>,
    Vec<sockdiag::TcpCounters>,
);

/// Destroyed TCP sockets of the host's namespace, collected between samples.
#[derive(Default)]
struct ClosedQueue {
    items: std::sync::Mutex<Vec<sockdiag::Closed>>,
    /// Only kept while host-mode containers exist.
    wanted: std::sync::atomic::AtomicBool,
}

/// Beyond this many closes per interval the oldest are dropped (bounded memory).
const CLOSED_CAP: usize = 16 * 1024;

async fn collect_closed(sock: async_io::Async<rtnetlink::sys::Socket>, queue: Arc<ClosedQueue>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sock.read_with(|s| s.recv(&mut &mut buf[..], 0)).await {
            Ok(n) => {
                if !queue.wanted.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let mut items = queue.items.lock().unwrap_or_else(|e| e.into_inner());
                items.extend(sockdiag::parse_closed(&buf[..n]));
                if items.len() > CLOSED_CAP {
                    let excess = items.len() - CLOSED_CAP;
                    items.drain(..excess);
                }
            }
            // ENOBUFS: the kernel dropped broadcasts under a burst; keep going.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                log::debug!("sock_diag destroy broadcasts were dropped (burst of closes)");
            }
            Err(e) => {
                log::warn!("closed-socket accounting stopped: {e}");
                return;
            }
        }
    }
}

/// One container in this round.
struct Seen {
    id: String,
    name: String,
    pid: u32,
    mode_kind: ModeKind,
    network_mode: String,
    driver: Option<String>,
    netns: u64,
}

pub struct Sampler {
    netlink: Netlink,
    closed: Option<Arc<ClosedQueue>>,
    cgroups: Arc<procs::CgroupMounts>,
    host_netns: u64,
    prev_cpu: Option<hoststat::CpuSnapshot>,
    tracks: HashMap<String, Track>,
    /// The host namespace's last TCP socket dump, with the namespace's TCP segment counters
    /// when it was taken: while they stand still no socket's counters can have moved.
    host_tcp: Option<(u64, Arc<Vec<sockdiag::TcpCounters>>)>,
}

const HOST_NOTE: &str = "host network: TCP is counted from the container's own sockets; \
                         UDP and other protocols share the host's interfaces and are not seen";
const HOST_NOTE_NO_CLOSED: &str = "host network: TCP is counted from the container's own sockets, \
     but bytes of connections that close between samples are missed (no CAP_NET_ADMIN for \
     sock_diag destroy events); UDP and other protocols are not seen";

impl Sampler {
    pub fn new(netlink: Netlink) -> std::io::Result<Sampler> {
        let closed = match sockdiag::closed_sockets() {
            Ok(sock) => {
                let q = Arc::new(ClosedQueue::default());
                crate::rt::spawn(collect_closed(sock, q.clone())).detach();
                Some(q)
            }
            Err(e) => {
                log::warn!("{e}: host-mode connections that close between samples will be missed");
                None
            }
        };
        Ok(Sampler {
            netlink,
            closed,
            cgroups: Arc::new(procs::CgroupMounts::discover()),
            host_netns: netns::inode(std::process::id())?,
            prev_cpu: None,
            tracks: HashMap::new(),
            host_tcp: None,
        })
    }

    /// Take one sample and publish it in `shared`.
    pub async fn sample(&mut self, shared: &Shared) {
        self.sample_host(shared).await;
        self.sample_containers(shared).await;
    }

    async fn sample_host(&mut self, shared: &Shared) {
        let snap = match smol::unblock(hoststat::read).await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot read /proc/stat: {e}");
                return;
            }
        };
        let r = self
            .prev_cpu
            .as_ref()
            .and_then(|p| hoststat::rates(p, &snap));
        self.prev_cpu = Some(snap);
        shared.update_host(|h| {
            h.cpus = snap.cpus;
            if let Some(r) = r {
                h.cpu_utilisation = Some(r.utilisation);
                h.softirq_share = Some(r.softirq_share);
                h.context_switches_per_s = Some(r.context_switches_per_s);
                h.net_rx_softirqs_per_s = Some(r.net_rx_softirqs_per_s);
                h.net_tx_softirqs_per_s = Some(r.net_tx_softirqs_per_s);
            }
        });
    }

    async fn sample_containers(&mut self, shared: &Shared) {
        let now = Instant::now();
        let mut seen = Vec::new();
        // The gateway's container addresses: peers there are traffic between containers.
        let mut gateway: HashMap<std::net::IpAddr, String> = HashMap::new();
        let mut own_ips: HashMap<String, Vec<std::net::IpAddr>> = HashMap::new();
        for r in shared.inventory().into_values() {
            let i = r.info;
            for n in &i.networks {
                if let Some(ip) = n.ip_address.as_deref().and_then(|a| a.parse().ok()) {
                    gateway.insert(ip, i.name.clone());
                    own_ips.entry(i.id.clone()).or_default().push(ip);
                }
            }
            // A container whose init process is gone is about to leave the inventory.
            let Ok(netns) = netns::inode(i.pid) else {
                continue;
            };
            let driver = i
                .networks
                .iter()
                .find(|n| n.name == i.network_mode)
                .and_then(|n| n.driver.clone());
            seen.push(Seen {
                id: i.id,
                name: i.name,
                pid: i.pid,
                mode_kind: i.mode_kind,
                network_mode: i.network_mode,
                driver,
                netns,
            });
        }
        self.tracks.retain(|id, _| seen.iter().any(|s| &s.id == id));

        let mut by_netns: HashMap<u64, Vec<String>> = HashMap::new();
        for s in &seen {
            by_netns.entry(s.netns).or_default().push(s.name.clone());
        }

        let need_links = seen.iter().any(|s| s.netns != self.host_netns);
        let links = if need_links {
            match self.netlink.links().await {
                Ok(l) => l,
                Err(e) => {
                    log::warn!("{e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let any_host = seen.iter().any(|s| s.netns == self.host_netns);
        let mut closed = match &self.closed {
            Some(q) => {
                q.wanted
                    .store(any_host, std::sync::atomic::Ordering::Relaxed);
                std::mem::take(&mut *q.items.lock().unwrap_or_else(|e| e.into_inner()))
            }
            None => Vec::new(),
        };
        let mut host_sockets = self.host_sockets(&seen).await;
        // TCP inside each container's own namespace, and each container's CPU time. A dump
        // walks the kernel's whole TCP hash table whichever namespace asks, so a container
        // whose veth saw no packet since the last sample is not scanned: none of its sockets
        // can have sent, received or closed anything off the host, and its socket counters
        // carry over.
        let mut idle: HashSet<String> = HashSet::new();
        let own: Vec<(String, u32)> = seen
            .iter()
            .filter(|s| s.netns != self.host_netns)
            .filter(|s| {
                let quiet = self.veth_quiet(s, &links);
                if quiet {
                    idle.insert(s.id.clone());
                }
                !quiet
            })
            .map(|s| (s.id.clone(), s.pid))
            .collect();
        let pids: Vec<(String, u32)> = seen.iter().map(|s| (s.id.clone(), s.pid)).collect();
        let cgroups = self.cgroups.clone();
        let (mut tcp_inside, cpu) = smol::unblock(move || {
            let tcp = sockdiag::tcp_counters_in(own);
            let cpu: HashMap<String, u64> = pids
                .into_iter()
                .filter_map(|(id, pid)| Some((id, cgroups.cpu_usage_ns(pid)?)))
                .collect();
            (tcp, cpu)
        })
        .await;

        let mut live = HashMap::new();
        for s in &seen {
            let track_is_new = !self.tracks.contains_key(&s.id)
                || self.tracks.get(&s.id).is_some_and(|t| t.netns != s.netns);
            if track_is_new {
                self.tracks.insert(
                    s.id.clone(),
                    Track {
                        netns: s.netns,
                        nsid: None,
                        sources: HashMap::new(),
                        retired: HashMap::new(),
                        totals: Counters::default(),
                        at: now,
                        tcp_sources: HashMap::new(),
                        cpu_ns: None,
                        peers: PeerTrack::default(),
                    },
                );
            }
            let mut listening = HashSet::new();
            let is_host = s.netns == self.host_netns;
            // The container's TCP sockets, when dumped this sample: whom it talks to.
            let mut socks: Option<Vec<sockdiag::TcpCounters>> = None;
            let (sources, attributed, source, interfaces, note) = if is_host {
                let (sources, ports, mine) = host_sockets.remove(&s.id).unwrap_or_default();
                listening = ports;
                socks = Some(mine);
                let note = if self.closed.is_some() {
                    HOST_NOTE
                } else {
                    HOST_NOTE_NO_CLOSED
                };
                (
                    sources,
                    Attribution::TcpOnly,
                    "sock_diag",
                    Vec::new(),
                    Some(note.to_string()),
                )
            } else {
                let nsid = self.nsid_for(s).await;
                let veths: Vec<&Link> = match nsid {
                    Some(id) => links
                        .iter()
                        .filter(|l| l.peer_netnsid == Some(id) && l.kind.as_deref() == Some("veth"))
                        .collect(),
                    None => Vec::new(),
                };
                let sources: HashMap<u64, Counters> = veths
                    .iter()
                    .map(|l| {
                        (
                            l.index as u64,
                            // The host side receives what the container sends.
                            Counters {
                                rx_bytes: l.tx_bytes,
                                tx_bytes: l.rx_bytes,
                                rx_packets: l.tx_packets,
                                tx_packets: l.rx_packets,
                            },
                        )
                    })
                    .collect();
                let names: Vec<String> = veths.iter().map(|l| l.name.clone()).collect();
                let sharers: Vec<&String> = by_netns[&s.netns]
                    .iter()
                    .filter(|n| **n != s.name)
                    .collect();
                if !sharers.is_empty() {
                    let list: Vec<&str> = sharers.iter().map(|s| s.as_str()).collect();
                    let note = format!(
                        "shares its network namespace with {}: the figures are the whole namespace's",
                        list.join(", ")
                    );
                    let a = if veths.is_empty() {
                        Attribution::None
                    } else {
                        Attribution::Shared
                    };
                    (
                        sources,
                        a,
                        if veths.is_empty() { "none" } else { "veth" },
                        names,
                        Some(note),
                    )
                } else if !veths.is_empty() {
                    (sources, Attribution::Full, "veth", names, None)
                } else {
                    let note = match s.mode_kind {
                        ModeKind::None => {
                            "network mode none: loopback only, no traffic leaves the container"
                                .to_string()
                        }
                        _ => format!(
                            "network {} (driver {}) gives the container no host-side interface; its traffic is not measured yet",
                            s.network_mode,
                            s.driver.as_deref().unwrap_or("unknown")
                        ),
                    };
                    (sources, Attribution::None, "none", names, Some(note))
                }
            };
            let track = self.tracks.get_mut(&s.id).expect("inserted above");
            let mut d = delta(&track.sources, &sources, track_is_new);
            if is_host && !track_is_new {
                d.add(&track.account_closed(&sources, &listening, &mut closed));
            }
            track.totals.add(&d);
            let dt = now.duration_since(track.at).as_secs_f64();
            let probed = shared.in_place_probe_since(&s.id, track.at);
            track.sources = sources;
            track.at = now;
            let tcp_now: HashMap<u64, Counters> = if idle.contains(&s.id) {
                track.tcp_sources.clone()
            } else {
                let inside = tcp_inside.remove(&s.id).unwrap_or_default();
                let counters = inside
                    .iter()
                    .map(|t| (t.cookie, socket_counters(t)))
                    .collect();
                if !is_host {
                    socks = Some(inside);
                }
                counters
            };
            // Loopback in host mode reaches the host's processes and host-mode containers;
            // in a container's own namespace it never leaves the container.
            let (local_share, local_peers) = match &socks {
                Some(socks) => {
                    let (next, share, names) = peer_share(
                        &track.peers,
                        socks,
                        &gateway,
                        own_ips.get(&s.id).map_or(&[][..], |v| v.as_slice()),
                        is_host.then_some("host"),
                        track_is_new,
                    );
                    track.peers = next;
                    (share, names)
                }
                None => (None, Vec::new()),
            };
            let tcp = delta(&track.tcp_sources, &tcp_now, track_is_new);
            let new_sockets = tcp_now
                .keys()
                .filter(|k| !track.tcp_sources.contains_key(k))
                .count();
            track.tcp_sources = tcp_now;
            let cpu_now = cpu.get(&s.id).copied();
            let cpu_used = match (track.cpu_ns, cpu_now) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e9),
                _ => None,
            };
            track.cpu_ns = cpu_now;
            if track_is_new || dt <= 0.0 {
                continue;
            }
            if probed || dt < MIN_RATE_INTERVAL_S {
                // An in-place probe sent from its namespace in this interval: the rates are
                // the probe's, not the container's. Or a sample came right after another (an
                // engine event): too short a time to tell a rate. Keep the last ones.
                if let Some(mut l) = shared.live_of(&s.id) {
                    if probed {
                        l.note = Some(IN_PLACE_NOTE.to_string());
                    }
                    live.insert(s.id.clone(), l);
                }
                continue;
            }
            let (rx_bps, tx_bps, rx_pps, tx_pps, mean) = rates(&d, dt);
            let (tcp_share, cpu_s_per_gb) = profile(&d, &tcp, cpu_used, is_host);
            let tcp_share = unless_unseen(tcp_share, &tcp, new_sockets);
            let t = track.totals;
            live.insert(
                s.id.clone(),
                Live {
                    rx_bps,
                    tx_bps,
                    rx_pps,
                    tx_pps,
                    mean_packet_bytes: mean,
                    attributed,
                    source: source.to_string(),
                    interfaces,
                    rx_bytes: t.rx_bytes,
                    tx_bytes: t.tx_bytes,
                    rx_packets: t.rx_packets,
                    tx_packets: t.tx_packets,
                    interval_s: dt,
                    note,
                    tcp_share,
                    cpu_s_per_gb,
                    local_share,
                    local_peers,
                },
            );
        }
        shared.set_live(live);
    }

    /// The host's netns id for the container's namespace (kept for the container's life).
    /// Whether a container's veth pair (known from an earlier sample) has carried no packet
    /// since then. Unknown or new containers are never quiet.
    fn veth_quiet(&self, s: &Seen, links: &[Link]) -> bool {
        let Some(track) = self.tracks.get(&s.id) else {
            return false;
        };
        let Some(nsid) = track.nsid else {
            return false;
        };
        if track.netns != s.netns || track.sources.is_empty() {
            return false;
        }
        let mut found = 0;
        for l in links
            .iter()
            .filter(|l| l.peer_netnsid == Some(nsid) && l.kind.as_deref() == Some("veth"))
        {
            found += 1;
            match track.sources.get(&(l.index as u64)) {
                Some(c) if c.rx_packets == l.tx_packets && c.tx_packets == l.rx_packets => {}
                _ => return false,
            }
        }
        found == track.sources.len()
    }

    async fn nsid_for(&mut self, s: &Seen) -> Option<i32> {
        if let Some(id) = self.tracks.get(&s.id).and_then(|t| t.nsid) {
            return Some(id);
        }
        let f = netns::open(s.pid).ok()?;
        let id = match self.netlink.netnsid(&f).await {
            Ok(id) => id,
            Err(e) => {
                log::debug!("netns id of {}: {e}", s.name);
                None
            }
        };
        if let Some(t) = self.tracks.get_mut(&s.id) {
            t.nsid = id;
        }
        id
    }

    /// Per host-mode container: its TCP sockets' counters keyed by socket cookie, and the
    /// TCP ports it listens on.
    async fn host_sockets(&mut self, seen: &[Seen]) -> HashMap<String, HostSockets> {
        let host: Vec<(String, u32)> = seen
            .iter()
            .filter(|s| s.netns == self.host_netns)
            .map(|s| (s.id.clone(), s.pid))
            .collect();
        if host.is_empty() {
            return HashMap::new();
        }
        let cgroups = self.cgroups.clone();
        let last = self.host_tcp.clone();
        let (out, dumped) = smol::unblock(move || {
            // A dump walks the kernel's whole TCP hash table (262,144 buckets on a 24 GiB
            // machine), so it is skipped while the namespace has sent and received nothing.
            let segments = hoststat::tcp_segments();
            let socks = match (&last, segments) {
                (Some((was, socks)), Some(now)) if *was == now => socks.clone(),
                _ => match sockdiag::tcp_counters() {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        log::warn!("{e}");
                        return (HashMap::new(), None);
                    }
                },
            };
            let listeners = sockdiag::listeners().unwrap_or_else(|e| {
                log::debug!("{e}");
                Vec::new()
            });
            let mut out = HashMap::new();
            for (id, pid) in host {
                let inodes: HashSet<u32> = procs::socket_inodes(&cgroups.container_pids(pid));
                let own: Vec<sockdiag::TcpCounters> = socks
                    .iter()
                    .filter(|t| inodes.contains(&t.inode))
                    .copied()
                    .collect();
                let mine: HashMap<u64, Counters> =
                    own.iter().map(|t| (t.cookie, socket_counters(t))).collect();
                let ports: HashSet<u16> = listeners
                    .iter()
                    .filter(|l| l.protocol == "tcp" && inodes.contains(&l.inode))
                    .map(|l| l.port)
                    .collect();
                out.insert(id, (mine, ports, own));
            }
            (out, segments.map(|n| (n, socks)))
        })
        .await;
        self.host_tcp = dumped;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(cookie: u64, peer: &str, bytes: u64, time_wait: bool) -> sockdiag::TcpCounters {
        sockdiag::TcpCounters {
            inode: 1,
            cookie,
            bytes_acked: bytes / 2,
            bytes_received: bytes - bytes / 2,
            segs_out: 0,
            segs_in: 0,
            peer: peer.parse().unwrap(),
            time_wait,
        }
    }

    #[test]
    fn a_tcp_share_of_nothing_with_new_connections_is_unknown() {
        let none = Counters::default();
        // A poller: connections seen (in TIME_WAIT), no byte counted: unknown.
        assert_eq!(unless_unseen(Some(0.0), &none, 3), None);
        // UDP only, no TCP socket at all: 0.
        assert_eq!(unless_unseen(Some(0.0), &none, 0), Some(0.0));
        // TCP counted: as measured.
        assert_eq!(unless_unseen(Some(0.4), &c(1000, 0), 3), Some(0.4));
        assert_eq!(unless_unseen(None, &none, 3), None);
    }

    #[test]
    fn traffic_with_containers_of_the_gateway_is_told_from_upstream() {
        let gateway: HashMap<std::net::IpAddr, String> = [
            ("172.18.0.2".parse().unwrap(), "web".to_string()),
            ("172.18.0.3".parse().unwrap(), "sensor".to_string()),
        ]
        .into();
        let own = ["172.18.0.3".parse().unwrap()];
        // First sample: a baseline.
        let s1 = [
            sock(1, "172.18.0.2", 1_000, false),
            sock(2, "203.0.113.9", 1_000, false),
            sock(3, "127.0.0.1", 50_000, false),
        ];
        let (t, share, names) = peer_share(&PeerTrack::default(), &s1, &gateway, &own, None, true);
        assert_eq!((share, names), (None, vec!["web".to_string()]));
        // 90 kB more with web, 10 kB upstream (an IPv4-mapped address), loopback ignored in
        // the container's own namespace.
        let s2 = [
            sock(1, "172.18.0.2", 91_000, false),
            sock(2, "::ffff:203.0.113.9", 11_000, false),
            sock(3, "127.0.0.1", 900_000, false),
        ];
        let (t, share, _) = peer_share(&t, &s2, &gateway, &own, None, false);
        assert!((share.unwrap() - 0.9).abs() < 1e-9, "{share:?}");
        // A poller: connections too short to be seen open, three to web and one upstream
        // seen in TIME_WAIT; one seen before does not count again.
        let s3 = [
            sock(1, "172.18.0.2", 91_000, false),
            sock(10, "172.18.0.2", 0, true),
            sock(11, "172.18.0.2", 0, true),
            sock(12, "172.18.0.2", 0, true),
            sock(13, "198.51.100.7", 0, true),
        ];
        let (t, share, _) = peer_share(&t, &s3, &gateway, &own, None, false);
        assert_eq!(share, Some(0.75));
        let (_, share, _) = peer_share(&t, &s3[..2], &gateway, &own, None, false);
        assert_eq!(share, None, "nothing new");
        // Host mode: loopback reaches the host and host-mode containers.
        let host = [sock(20, "127.0.0.1", 0, false)];
        let (t, _, _) = peer_share(
            &PeerTrack::default(),
            &host,
            &gateway,
            &[],
            Some("host"),
            true,
        );
        let host = [sock(20, "127.0.0.1", 40_000, false)];
        let (_, share, names) = peer_share(&t, &host, &gateway, &[], Some("host"), false);
        assert_eq!((share, names), (Some(1.0), vec!["host".to_string()]));
    }

    fn c(rx: u64, tx: u64) -> Counters {
        Counters {
            rx_bytes: rx,
            tx_bytes: tx,
            rx_packets: rx / 100,
            tx_packets: tx / 100,
        }
    }

    #[test]
    fn first_sample_only_sets_the_baseline() {
        let cur = HashMap::from([(1, c(1000, 2000))]);
        assert_eq!(delta(&HashMap::new(), &cur, true), Counters::default());
    }

    #[test]
    fn growth_new_sources_and_resets() {
        let prev = HashMap::from([(1, c(1000, 2000)), (2, c(500, 500))]);
        // 1 grew, 2 was reset (recreated interface), 3 is new (a new socket).
        let cur = HashMap::from([(1, c(1500, 2600)), (2, c(100, 0)), (3, c(300, 0))]);
        let d = delta(&prev, &cur, false);
        assert_eq!((d.rx_bytes, d.tx_bytes), (500 + 100 + 300, 600));
    }

    #[test]
    fn traffic_profile_from_tcp_bytes_and_cpu() {
        let d = Counters {
            rx_bytes: 0,
            tx_bytes: 10_540_000,
            rx_packets: 0,
            tx_packets: 10_000,
        };
        let tcp = Counters {
            tx_bytes: 10_000_000,
            ..Counters::default()
        };
        let (share, cpb) = profile(&d, &tcp, Some(0.5), false);
        assert!((share.unwrap() - 1.0).abs() < 0.01, "{share:?}");
        assert!((cpb.unwrap() - 0.5 / 0.01054).abs() < 1e-6);
        // UDP only: no TCP bytes.
        assert_eq!(
            profile(&d, &Counters::default(), None, false),
            (Some(0.0), None)
        );
        // Host mode: the share cannot be known.
        assert_eq!(profile(&d, &tcp, None, true).0, None);
        // Too little traffic to tell.
        assert_eq!(
            profile(&Counters::default(), &tcp, Some(1.0), false),
            (None, None)
        );
    }

    #[test]
    fn rates_and_mean_packet_size() {
        let d = Counters {
            rx_bytes: 1_000_000,
            tx_bytes: 0,
            rx_packets: 1000,
            tx_packets: 0,
        };
        let (rx_bps, tx_bps, rx_pps, _, mean) = rates(&d, 2.0);
        assert_eq!(
            (rx_bps, tx_bps, rx_pps, mean),
            (4_000_000.0, 0.0, 500.0, Some(1000.0))
        );
        assert_eq!(rates(&Counters::default(), 1.0).4, None);
    }
}
