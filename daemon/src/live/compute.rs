//! The sampler's arithmetic, pure: what one round gathered from the kernel (`Round`) and what
//! the sampler remembers of each container (`Track`) become its live figures. No I/O: unit
//! tested with recorded inputs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use netmode_advisor::api::{Attribution, Live, ModeKind};

use crate::sys::cgskb::{CgroupTraffic, Peer};
use crate::sys::netlink::Link;
use crate::sys::procs::NotOwnGroup;
use crate::sys::sockdiag;

/// Cumulative counters from the container's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
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

/// Rates over an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    /// Bytes per packet, both directions (none without packets).
    pub mean_packet_bytes: Option<f64>,
}

/// Rates over `dt` seconds.
pub fn rates(d: &Counters, dt: f64) -> Rates {
    let packets = d.rx_packets + d.tx_packets;
    Rates {
        rx_bps: d.rx_bytes as f64 * 8.0 / dt,
        tx_bps: d.tx_bytes as f64 * 8.0 / dt,
        rx_pps: d.rx_packets as f64 / dt,
        tx_pps: d.tx_packets as f64 / dt,
        mean_packet_bytes: (packets > 0).then(|| (d.rx_bytes + d.tx_bytes) as f64 / packets as f64),
    }
}

/// Below this much traffic in an interval, shares and costs per byte are noise.
const PROFILE_MIN_BYTES: u64 = 1 << 20;
/// Below this many packets in an interval, the cost per packet is noise (a server answering
/// 100 requests a second moves about 200 a second, and too few bytes for the cost per GB).
const PROFILE_MIN_PACKETS: u64 = 100;

/// What the container's traffic looks like (the shares and the cost per GB `None` below
/// `PROFILE_MIN_BYTES`, the cost per packet below `PROFILE_MIN_PACKETS`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Profile {
    /// The TCP share of its bytes (TCP payload against its veth's frames; bridge mode only,
    /// as host mode shows TCP alone).
    pub tcp_share: Option<f64>,
    /// The CPU seconds its cgroup spends per GB moved.
    pub cpu_s_per_gb: Option<f64>,
    /// The CPU microseconds its cgroup spends per packet moved, either way.
    pub cpu_us_per_packet: Option<f64>,
}

pub fn profile(d: &Counters, tcp: &Counters, cpu_s: Option<f64>, host_mode: bool) -> Profile {
    let bytes = d.rx_bytes + d.tx_bytes;
    let packets = d.rx_packets + d.tx_packets;
    let cpu_us_per_packet = cpu_s
        .filter(|_| packets >= PROFILE_MIN_PACKETS)
        .map(|c| c * 1e6 / packets as f64);
    if bytes < PROFILE_MIN_BYTES {
        return Profile {
            cpu_us_per_packet,
            ..Profile::default()
        };
    }
    let tcp_share = (!host_mode).then(|| {
        // Frames carry 40-70 bytes of headers a TCP payload count lacks.
        let overhead = 54.0 * (d.rx_packets + d.tx_packets) as f64;
        let payload = (bytes as f64 - overhead).max(1.0);
        ((tcp.rx_bytes + tcp.tx_bytes) as f64 / payload).clamp(0.0, 1.0)
    });
    Profile {
        tcp_share,
        cpu_s_per_gb: cpu_s.map(|c| c / (bytes as f64 / 1e9)),
        cpu_us_per_packet,
    }
}

/// What the sampler remembers of one container between samples.
pub struct Track {
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
    /// Bytes (both directions) by cgroup-v2 group and peer at the last sample, from the
    /// per-cgroup counters.
    cgroup_peers: CgroupPeerBytes,
    /// The last local share and peers the per-cgroup counters showed, kept while nothing
    /// moves (where a container's traffic goes does not change when it pauses).
    cgroup_local: (Option<f64>, Vec<String>),
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
#[derive(Debug, Clone, PartialEq)]
pub struct PeerShare {
    /// What to compare the next sample with.
    pub track: PeerTrack,
    /// The share of its TCP traffic with containers of the gateway.
    pub share: Option<f64>,
    /// Their names (and "host" for loopback in host mode), sorted.
    pub peers: Vec<String>,
}

pub fn peer_share(
    prev: &PeerTrack,
    socks: &[sockdiag::TcpCounters],
    gateway: &HashMap<std::net::IpAddr, String>,
    own: &[std::net::IpAddr],
    loopback: Option<&str>,
    first: bool,
) -> PeerShare {
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
    PeerShare {
        track: next,
        share: s,
        peers: names,
    }
}

pub fn socket_counters(t: &sockdiag::TcpCounters) -> Counters {
    Counters {
        rx_bytes: t.bytes_received,
        tx_bytes: t.bytes_acked,
        rx_packets: t.segs_in as u64,
        tx_packets: t.segs_out as u64,
    }
}

impl Track {
    fn new(netns: u64, nsid: Option<i32>, at: Instant) -> Track {
        Track {
            netns,
            nsid,
            sources: HashMap::new(),
            retired: HashMap::new(),
            totals: Counters::default(),
            at,
            tcp_sources: HashMap::new(),
            cpu_ns: None,
            peers: PeerTrack::default(),
            cgroup_peers: HashMap::new(),
            cgroup_local: (None, Vec::new()),
        }
    }

    /// The host's netns id for the container's namespace, known from an earlier sample of
    /// the same namespace (`netns`).
    pub fn nsid(&self, netns: u64) -> Option<i32> {
        self.nsid.filter(|_| self.netns == netns)
    }

    /// Whether the container's veth pair (known from an earlier sample of namespace
    /// `netns`) has carried no packet since then.
    pub fn veth_quiet(&self, netns: u64, links: &[Link]) -> bool {
        let Some(nsid) = self.nsid else {
            return false;
        };
        if self.netns != netns || self.sources.is_empty() {
            return false;
        }
        let mut found = 0;
        for l in veths(links, nsid) {
            found += 1;
            match self.sources.get(&(l.index as u64)) {
                Some(c) if c.rx_packets == l.tx_packets && c.tx_packets == l.rx_packets => {}
                _ => return false,
            }
        }
        found == self.sources.len()
    }
}

/// The host sides of the veth pairs whose peers live in the namespace with netns id `nsid`.
fn veths(links: &[Link], nsid: i32) -> impl Iterator<Item = &Link> {
    links
        .iter()
        .filter(move |l| l.peer_netnsid == Some(nsid) && l.kind.as_deref() == Some("veth"))
}

/// A host-mode container's own TCP sockets (those its processes hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSockets {
    /// Their counters, by socket cookie.
    pub counters: HashMap<u64, Counters>,
    /// The TCP ports it listens on.
    pub listening: HashSet<u16>,
    /// The sockets themselves (whom it talks to).
    pub sockets: Vec<sockdiag::TcpCounters>,
}

/// What the per-cgroup counters said this round.
#[derive(Debug, Clone, PartialEq)]
pub enum CgroupRound {
    /// They do not count on this gateway: why (no capability, no cgroup v2, a kernel
    /// without cgroup BPF).
    Off(String),
    /// By container id: its counts, or why it has no group of its own.
    On(HashMap<String, Result<CgroupCount, NotOwnGroup>>),
}

/// A container's counts in the per-cgroup counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupCount {
    /// The counters of each of its cgroup-v2 groups, by group id.
    pub groups: Vec<(u64, CgroupTraffic)>,
    /// Datagrams its UDP sockets dropped after they were counted as received (receive buffer
    /// full), over the sockets it holds now; `None` when they could not be read.
    pub udp_drops: Option<u64>,
}

impl Default for CgroupRound {
    fn default() -> CgroupRound {
        CgroupRound::Off("not read".into())
    }
}

impl CgroupRound {
    /// The container's groups, when it is counted by them.
    pub fn groups(&self, id: &str) -> Option<&[(u64, CgroupTraffic)]> {
        self.count(id).map(|c| c.groups.as_slice())
    }

    /// The container's counts, when it is counted by them.
    pub fn count(&self, id: &str) -> Option<&CgroupCount> {
        match self {
            CgroupRound::On(m) => m.get(id)?.as_ref().ok(),
            CgroupRound::Off(_) => None,
        }
    }

    /// Why the container is not counted by them, if it is not.
    pub fn why_not(&self, id: &str) -> Option<String> {
        match self {
            CgroupRound::Off(why) => Some(why.clone()),
            CgroupRound::On(m) => match m.get(id) {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => Some("not read".into()),
            },
        }
    }
}

/// Bytes (both directions) by cgroup-v2 group and peer: what `cgroup_peer_share` compares
/// the next sample with.
pub type CgroupPeerBytes = HashMap<(u64, Peer), u64>;

/// A container's cgroup counters as counter sources (by group id), from its point of view.
fn cgroup_sources(groups: &[(u64, CgroupTraffic)]) -> HashMap<u64, Counters> {
    groups
        .iter()
        .map(|(gid, t)| {
            let (rx, tx) = t.totals();
            (
                *gid,
                Counters {
                    rx_bytes: rx.bytes,
                    tx_bytes: tx.bytes,
                    rx_packets: rx.packets,
                    tx_packets: tx.packets,
                },
            )
        })
        .collect()
}

/// Share of a container's traffic (every protocol) with containers of this gateway, from its
/// cgroups' counters by peer, and those containers' names: bytes since the last sample
/// (`prev`, by group and peer). Loopback is the host's in host mode ("host"), and never
/// leaves a container's own namespace (not counted either way there). `None` when nothing
/// moved, or in the container's first sample (a baseline).
pub fn cgroup_peer_share(
    prev: &CgroupPeerBytes,
    groups: &[(u64, CgroupTraffic)],
    gateway: &HashMap<IpAddr, String>,
    own: &[IpAddr],
    host_mode: bool,
    first: bool,
) -> (CgroupPeerBytes, Option<f64>, Vec<String>) {
    let mut next = HashMap::new();
    let (mut local, mut upstream) = (0u64, 0u64);
    let mut names = Vec::new();
    for (gid, t) in groups {
        let mut by_peer: HashMap<Peer, u64> = HashMap::new();
        for (p, f) in t.rx.iter().chain(t.tx.iter()) {
            *by_peer.entry(*p).or_default() += f.bytes;
        }
        for (peer, now) in by_peer {
            next.insert((*gid, peer), now);
            let moved = match prev.get(&(*gid, peer)) {
                Some(&b) if now >= b => now - b,
                Some(_) => now,
                None if first => 0,
                None => now,
            };
            if moved == 0 {
                continue;
            }
            match peer {
                Peer::Loopback if host_mode => {
                    local += moved;
                    names.push("host".to_string());
                }
                Peer::Loopback => {}
                Peer::Local(a) if own.contains(&IpAddr::V4(a)) => {}
                Peer::Local(a) => match gateway.get(&IpAddr::V4(a)) {
                    Some(n) => {
                        local += moved;
                        names.push(n.clone());
                    }
                    // An address the gateway no longer has.
                    None => upstream += moved,
                },
                Peer::Other => upstream += moved,
            }
        }
    }
    names.sort();
    names.dedup();
    let share = (local + upstream > 0).then(|| local as f64 / (local + upstream) as f64);
    (next, share, names)
}

/// One container in this round.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    pub name: String,
    pub pid: u32,
    pub mode_kind: ModeKind,
    pub network_mode: String,
    pub driver: Option<String>,
    /// Its network namespace (inode).
    pub netns: u64,
}

/// Everything one round read from the kernel, as plain data.
#[derive(Debug, Clone)]
pub struct Round {
    pub now: Instant,
    /// The host's own network namespace (inode).
    pub host_netns: u64,
    /// The containers whose init process was still there.
    pub seen: Vec<Seen>,
    /// The gateway's container addresses and whose they are.
    pub gateway: HashMap<IpAddr, String>,
    /// Each container's own addresses, by id.
    pub own_ips: HashMap<String, Vec<IpAddr>>,
    /// The host's links (empty when no container has a namespace of its own).
    pub links: Vec<Link>,
    /// The host's netns id for each container with a namespace of its own, by id.
    pub nsids: HashMap<String, Option<i32>>,
    /// Host-mode containers' sockets, by id.
    pub host_sockets: HashMap<String, HostSockets>,
    /// TCP sockets inside each container's own namespace, by id (not dumped for an idle one).
    pub tcp_inside: HashMap<String, Vec<sockdiag::TcpCounters>>,
    /// Containers whose veth carried nothing since the last round: not dumped.
    pub idle: HashSet<String>,
    /// CPU time of each container's cgroup, ns, by id.
    pub cpu_ns: HashMap<String, u64>,
    /// Host TCP sockets destroyed since the last round; `None` without the broadcasts (no
    /// CAP_NET_ADMIN).
    pub closed: Option<Vec<sockdiag::Closed>>,
    /// The per-cgroup counters.
    pub cgroups: CgroupRound,
}

const HOST_NOTE: &str = "host network: TCP is counted from the container's own sockets; \
                         UDP and other protocols share the host's interfaces and are not seen";
const HOST_NOTE_NO_CLOSED: &str = "host network: TCP is counted from the container's own sockets, \
     but bytes of connections that close between samples are missed (no CAP_NET_ADMIN for \
     sock_diag destroy events); UDP and other protocols are not seen";

/// Where a container's counters came from this round, and what the figures cover.
struct Sources {
    counters: HashMap<u64, Counters>,
    attributed: Attribution,
    source: &'static str,
    interfaces: Vec<String>,
    note: Option<String>,
}

/// A container sharing its namespace's counters (bridge-like, by veth).
fn veth_sources(s: &Seen, nsid: Option<i32>, links: &[Link], sharers: &[&str]) -> Sources {
    let veths: Vec<&Link> = match nsid {
        Some(id) => veths(links, id).collect(),
        None => Vec::new(),
    };
    let counters: HashMap<u64, Counters> = veths
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
    let interfaces: Vec<String> = veths.iter().map(|l| l.name.clone()).collect();
    if !sharers.is_empty() {
        let note = format!(
            "shares its network namespace with {}: the figures are the whole namespace's",
            sharers.join(", ")
        );
        let (attributed, source) = if veths.is_empty() {
            (Attribution::None, "none")
        } else {
            (Attribution::Shared, "veth")
        };
        Sources {
            counters,
            attributed,
            source,
            interfaces,
            note: Some(note),
        }
    } else if !veths.is_empty() {
        Sources {
            counters,
            attributed: Attribution::Full,
            source: "veth",
            interfaces,
            note: None,
        }
    } else {
        let note = match s.mode_kind {
            ModeKind::None => {
                "network mode none: loopback only, no traffic leaves the container".to_string()
            }
            _ => format!(
                "network {} (driver {}) gives the container no host-side interface; its traffic is not measured yet",
                s.network_mode,
                s.driver.as_deref().unwrap_or("unknown")
            ),
        };
        Sources {
            counters,
            attributed: Attribution::None,
            source: "none",
            interfaces,
            note: Some(note),
        }
    }
}

/// One round's live figures, by container id: `tracks` (what the sampler remembers) is
/// brought up to `round`. `probed(id, since)`: an in-place probe sent from the container's
/// namespace since then; `last`: the figures published last time (kept while a probe sends
/// or when too little time passed). A container's first round only sets its baseline.
pub fn compute(
    tracks: &mut HashMap<String, Track>,
    mut round: Round,
    probed: &(dyn Fn(&str, Instant) -> bool + Sync),
    last: &HashMap<String, Live>,
) -> HashMap<String, Live> {
    let now = round.now;
    tracks.retain(|id, _| round.seen.iter().any(|s| &s.id == id));
    let mut by_netns: HashMap<u64, Vec<&str>> = HashMap::new();
    for s in &round.seen {
        by_netns.entry(s.netns).or_default().push(&s.name);
    }
    let has_closed = round.closed.is_some();
    let mut closed = round.closed.take().unwrap_or_default();
    let mut live = HashMap::new();
    for s in &round.seen {
        let is_new = tracks.get(&s.id).is_none_or(|t| t.netns != s.netns);
        let nsid = round.nsids.get(&s.id).copied().flatten();
        if is_new {
            tracks.insert(s.id.clone(), Track::new(s.netns, nsid, now));
        }
        let track = tracks.get_mut(&s.id).expect("inserted above");
        if track.nsid.is_none() {
            track.nsid = nsid;
        }
        let is_host = s.netns == round.host_netns;
        // The container's TCP sockets, when dumped this round: whom it talks to.
        let mut socks: Option<Vec<sockdiag::TcpCounters>> = None;
        let mut listening = HashSet::new();
        let groups = round.cgroups.groups(&s.id);
        let by_cgroup = is_host && groups.is_some();
        let src = if let (true, Some(groups)) = (is_host, groups) {
            // Every packet of its sockets, counted in the kernel under its cgroup.
            Sources {
                counters: cgroup_sources(groups),
                attributed: Attribution::Full,
                source: "cgroup_bpf",
                interfaces: Vec::new(),
                note: None,
            }
        } else if is_host {
            let h = round.host_sockets.remove(&s.id).unwrap_or_default();
            listening = h.listening;
            socks = Some(h.sockets);
            let note = if has_closed {
                HOST_NOTE
            } else {
                HOST_NOTE_NO_CLOSED
            };
            let why = round.cgroups.why_not(&s.id).unwrap_or_default();
            Sources {
                counters: h.counters,
                attributed: Attribution::TcpOnly,
                source: "sock_diag",
                interfaces: Vec::new(),
                note: Some(format!("{note} (per-cgroup counters: {why})")),
            }
        } else {
            let sharers: Vec<&str> = by_netns[&s.netns]
                .iter()
                .copied()
                .filter(|n| *n != s.name)
                .collect();
            veth_sources(s, track.nsid, &round.links, &sharers)
        };
        let mut d = delta(&track.sources, &src.counters, is_new);
        if is_host && !by_cgroup && !is_new {
            d.add(&track.account_closed(&src.counters, &listening, &mut closed));
        }
        track.totals.add(&d);
        let dt = now.duration_since(track.at).as_secs_f64();
        let in_place = probed(&s.id, track.at);
        track.sources = src.counters;
        track.at = now;
        let tcp_now: HashMap<u64, Counters> = if round.idle.contains(&s.id) {
            track.tcp_sources.clone()
        } else {
            let inside = round.tcp_inside.remove(&s.id).unwrap_or_default();
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
        let own_ips = round.own_ips.get(&s.id).map_or(&[][..], |v| v.as_slice());
        let (local_share, local_peers) = match (groups, &socks) {
            // Every protocol, by the peer of each packet.
            (Some(groups), _) => {
                let (next, share, names) = cgroup_peer_share(
                    &track.cgroup_peers,
                    groups,
                    &round.gateway,
                    own_ips,
                    is_host,
                    is_new,
                );
                track.cgroup_peers = next;
                if share.is_some() {
                    track.cgroup_local = (share, names);
                }
                track.cgroup_local.clone()
            }
            (None, Some(socks)) => {
                let p = peer_share(
                    &track.peers,
                    socks,
                    &round.gateway,
                    own_ips,
                    is_host.then_some("host"),
                    is_new,
                );
                track.peers = p.track;
                (p.share, p.peers)
            }
            (None, None) => (None, Vec::new()),
        };
        let tcp = delta(&track.tcp_sources, &tcp_now, is_new);
        let new_sockets = tcp_now
            .keys()
            .filter(|k| !track.tcp_sources.contains_key(k))
            .count();
        track.tcp_sources = tcp_now;
        let cpu_now = round.cpu_ns.get(&s.id).copied();
        let cpu_used = match (track.cpu_ns, cpu_now) {
            (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e9),
            _ => None,
        };
        track.cpu_ns = cpu_now;
        if is_new || dt <= 0.0 {
            continue;
        }
        if in_place || dt < MIN_RATE_INTERVAL_S {
            // An in-place probe sent from its namespace in this interval: the rates are the
            // probe's, not the container's. Or a sample came right after another (an engine
            // event): too short a time to tell a rate. Keep the last ones.
            if let Some(mut l) = last.get(&s.id).cloned() {
                if in_place {
                    l.note = Some(IN_PLACE_NOTE.to_string());
                }
                live.insert(s.id.clone(), l);
            }
            continue;
        }
        let r = rates(&d, dt);
        let p = profile(&d, &tcp, cpu_used, is_host);
        let t = track.totals;
        live.insert(
            s.id.clone(),
            Live {
                rx_bps: r.rx_bps,
                tx_bps: r.tx_bps,
                rx_pps: r.rx_pps,
                tx_pps: r.tx_pps,
                mean_packet_bytes: r.mean_packet_bytes,
                attributed: src.attributed,
                source: src.source.to_string(),
                interfaces: src.interfaces,
                rx_bytes: t.rx_bytes,
                tx_bytes: t.tx_bytes,
                rx_packets: t.rx_packets,
                tx_packets: t.tx_packets,
                interval_s: dt,
                note: src.note,
                tcp_share: unless_unseen(p.tcp_share, &tcp, new_sockets),
                cpu_s_per_gb: p.cpu_s_per_gb,
                cpu_us_per_packet: p.cpu_us_per_packet,
                local_share,
                local_peers,
                udp_drops: round.cgroups.count(&s.id).and_then(|c| c.udp_drops),
            },
        );
    }
    live
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
    fn every_protocols_peers_come_from_the_cgroup_counters() {
        use crate::sys::cgskb::Flow;
        let web: std::net::Ipv4Addr = "172.18.0.2".parse().unwrap();
        let me: std::net::Ipv4Addr = "172.18.0.3".parse().unwrap();
        let gone: std::net::Ipv4Addr = "172.18.0.9".parse().unwrap();
        let gateway: HashMap<IpAddr, String> = [
            (IpAddr::V4(web), "web".to_string()),
            (IpAddr::V4(me), "sensor".to_string()),
        ]
        .into();
        let own = [IpAddr::V4(me)];
        let f = |bytes| Flow { bytes, packets: 1 };
        let groups = |k: u64| {
            vec![(
                5,
                CgroupTraffic {
                    rx: HashMap::from([(Peer::Local(web), f(k * 300)), (Peer::Other, f(k * 100))]),
                    tx: HashMap::from([
                        (Peer::Loopback, f(k * 1_000)),
                        (Peer::Local(me), f(k * 50)),
                        (Peer::Local(gone), f(k * 100)),
                    ]),
                },
            )]
        };
        // The first sample is a baseline.
        let (t, share, names) =
            cgroup_peer_share(&HashMap::new(), &groups(1), &gateway, &own, false, true);
        assert_eq!((share, names.len()), (None, 0));
        // Own namespace: loopback never leaves it, its own address neither; an address the
        // gateway no longer has is elsewhere. 300 with web of 500.
        let (t2, share, names) = cgroup_peer_share(&t, &groups(2), &gateway, &own, false, false);
        assert_eq!(share, Some(0.6));
        assert_eq!(names, ["web"]);
        // Host mode: loopback is the host's, local. 1300 of 1500.
        let (_, share, names) = cgroup_peer_share(&t, &groups(2), &gateway, &own, true, false);
        assert!((share.unwrap() - 1300.0 / 1500.0).abs() < 1e-9);
        assert_eq!(names, ["host", "web"]);
        // Nothing moved: no share this interval.
        let (_, share, names) = cgroup_peer_share(&t2, &groups(2), &gateway, &own, false, false);
        assert_eq!((share, names.len()), (None, 0));
        // A group seen for the first time after the baseline (the container's cgroup was
        // recreated) counts in full.
        let mut moved = groups(1);
        moved[0].0 = 6;
        let (_, share, _) = cgroup_peer_share(&t2, &moved, &gateway, &own, false, false);
        assert_eq!(share, Some(0.6));
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
        let p = peer_share(&PeerTrack::default(), &s1, &gateway, &own, None, true);
        assert_eq!((p.share, p.peers), (None, vec!["web".to_string()]));
        let t = p.track;
        // 90 kB more with web, 10 kB upstream (an IPv4-mapped address), loopback ignored in
        // the container's own namespace.
        let s2 = [
            sock(1, "172.18.0.2", 91_000, false),
            sock(2, "::ffff:203.0.113.9", 11_000, false),
            sock(3, "127.0.0.1", 900_000, false),
        ];
        let p = peer_share(&t, &s2, &gateway, &own, None, false);
        assert!((p.share.unwrap() - 0.9).abs() < 1e-9, "{:?}", p.share);
        let t = p.track;
        // A poller: connections too short to be seen open, three to web and one upstream
        // seen in TIME_WAIT; one seen before does not count again.
        let s3 = [
            sock(1, "172.18.0.2", 91_000, false),
            sock(10, "172.18.0.2", 0, true),
            sock(11, "172.18.0.2", 0, true),
            sock(12, "172.18.0.2", 0, true),
            sock(13, "198.51.100.7", 0, true),
        ];
        let p = peer_share(&t, &s3, &gateway, &own, None, false);
        assert_eq!(p.share, Some(0.75));
        let p = peer_share(&p.track, &s3[..2], &gateway, &own, None, false);
        assert_eq!(p.share, None, "nothing new");
        // Host mode: loopback reaches the host and host-mode containers.
        let host = [sock(20, "127.0.0.1", 0, false)];
        let t = peer_share(
            &PeerTrack::default(),
            &host,
            &gateway,
            &[],
            Some("host"),
            true,
        )
        .track;
        let host = [sock(20, "127.0.0.1", 40_000, false)];
        let p = peer_share(&t, &host, &gateway, &[], Some("host"), false);
        assert_eq!((p.share, p.peers), (Some(1.0), vec!["host".to_string()]));
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
        let p = profile(&d, &tcp, Some(0.5), false);
        assert!((p.tcp_share.unwrap() - 1.0).abs() < 0.01, "{p:?}");
        assert!((p.cpu_s_per_gb.unwrap() - 0.5 / 0.01054).abs() < 1e-6);
        assert!((p.cpu_us_per_packet.unwrap() - 50.0).abs() < 1e-9, "{p:?}");
        // UDP only: no TCP bytes.
        assert_eq!(
            profile(&d, &Counters::default(), None, false),
            Profile {
                tcp_share: Some(0.0),
                cpu_s_per_gb: None,
                cpu_us_per_packet: None,
            }
        );
        // Host mode: the share cannot be known.
        assert_eq!(profile(&d, &tcp, None, true).tcp_share, None);
        // Too little traffic to tell.
        assert_eq!(
            profile(&Counters::default(), &tcp, Some(1.0), false),
            Profile::default()
        );
        // A server answering 100 requests a second: too few bytes for the shares and the
        // cost per GB, enough packets for the cost per packet (0.03 s over 200 packets).
        let light = Counters {
            rx_bytes: 11_000,
            tx_bytes: 9_000,
            rx_packets: 100,
            tx_packets: 100,
        };
        let p = profile(&light, &tcp, Some(0.03), false);
        assert_eq!((p.tcp_share, p.cpu_s_per_gb), (None, None));
        assert!((p.cpu_us_per_packet.unwrap() - 150.0).abs() < 1e-9, "{p:?}");
        // 99 packets: none.
        let fewer = Counters {
            tx_packets: 99,
            rx_packets: 0,
            ..light
        };
        assert_eq!(profile(&fewer, &tcp, Some(0.03), false), Profile::default());
    }

    #[test]
    fn rates_and_mean_packet_size() {
        let d = Counters {
            rx_bytes: 1_000_000,
            tx_bytes: 0,
            rx_packets: 1000,
            tx_packets: 0,
        };
        let r = rates(&d, 2.0);
        assert_eq!(
            (r.rx_bps, r.tx_bps, r.rx_pps, r.mean_packet_bytes),
            (4_000_000.0, 0.0, 500.0, Some(1000.0))
        );
        assert_eq!(rates(&Counters::default(), 1.0).mean_packet_bytes, None);
    }

    fn seen(id: &str, name: &str, netns: u64, kind: ModeKind) -> Seen {
        Seen {
            id: id.into(),
            name: name.into(),
            pid: 1,
            mode_kind: kind,
            network_mode: if kind == ModeKind::Host {
                "host"
            } else {
                "bridge"
            }
            .into(),
            driver: None,
            netns,
        }
    }

    fn link(index: u32, nsid: i32, rx: u64, rx_packets: u64) -> Link {
        Link {
            index,
            name: format!("veth{index}"),
            kind: Some("veth".into()),
            peer_netnsid: Some(nsid),
            rx_bytes: rx,
            tx_bytes: 0,
            rx_packets,
            tx_packets: 0,
        }
    }

    fn host_sockets(received: u64) -> HostSockets {
        let s = sockdiag::TcpCounters {
            inode: 9,
            cookie: 5,
            bytes_acked: 0,
            bytes_received: received,
            segs_out: 0,
            segs_in: 10,
            peer: "127.0.0.1".parse().unwrap(),
            time_wait: false,
        };
        HostSockets {
            counters: HashMap::from([(5, socket_counters(&s))]),
            listening: HashSet::from([1883]),
            sockets: vec![s],
        }
    }

    /// Two recorded rounds, two seconds apart: web (bridge, its namespace shared with side)
    /// sent 1 MB through its veth; mqtt (host mode) received 500 kB on a connection it holds
    /// and 100 kB on one accepted on its port that opened and closed between the rounds.
    fn rounds(t0: Instant) -> (Round, Round) {
        let seen = vec![
            seen("aaa", "web", 100, ModeKind::Bridge),
            seen("sss", "side", 100, ModeKind::Container),
            seen("bbb", "mqtt", 1, ModeKind::Host),
        ];
        let base = Round {
            now: t0,
            host_netns: 1,
            seen,
            gateway: HashMap::new(),
            own_ips: HashMap::new(),
            links: vec![link(7, 3, 1_000, 1)],
            nsids: HashMap::from([("aaa".into(), Some(3)), ("sss".into(), Some(3))]),
            host_sockets: HashMap::from([("bbb".into(), host_sockets(1_000))]),
            tcp_inside: HashMap::new(),
            idle: HashSet::new(),
            cpu_ns: HashMap::new(),
            closed: Some(Vec::new()),
            cgroups: CgroupRound::Off("no CAP_BPF".into()),
        };
        let mut next = base.clone();
        next.now = t0 + std::time::Duration::from_secs(2);
        next.links = vec![link(7, 3, 1_001_000, 1_001)];
        next.host_sockets = HashMap::from([("bbb".into(), host_sockets(501_000))]);
        let mut closed = host_sockets(100_000).sockets[0];
        closed.cookie = 6;
        next.closed = Some(vec![sockdiag::Closed {
            local_port: 1883,
            counters: closed,
        }]);
        (base, next)
    }

    #[test]
    fn recorded_rounds_become_rates_attributions_and_notes() {
        let t0 = Instant::now();
        let (first, second) = rounds(t0);
        let mut tracks = HashMap::new();
        let none = HashMap::new();
        let live = compute(&mut tracks, first, &|_, _| false, &none);
        assert!(
            live.is_empty(),
            "the first round only sets the baseline: {live:?}"
        );
        let live = compute(&mut tracks, second.clone(), &|_, _| false, &none);

        let web = &live["aaa"];
        assert_eq!((web.tx_bps, web.rx_bps), (4_000_000.0, 0.0));
        assert_eq!((web.tx_bytes, web.tx_packets), (1_000_000, 1_000));
        assert_eq!(web.attributed, Attribution::Shared);
        assert_eq!(web.interfaces, ["veth7"]);
        assert!(
            web.note.as_deref().unwrap().contains("with side"),
            "{web:?}"
        );
        assert_eq!(web.interval_s, 2.0);
        assert!(live["sss"].note.as_deref().unwrap().contains("with web"));

        let mqtt = &live["bbb"];
        assert_eq!(mqtt.rx_bytes, 600_000, "held and closed sockets");
        assert_eq!(mqtt.rx_bps, 600_000.0 * 8.0 / 2.0);
        assert_eq!(
            (mqtt.attributed, mqtt.source.as_str()),
            (Attribution::TcpOnly, "sock_diag")
        );
        assert_eq!(
            mqtt.note,
            Some(format!("{HOST_NOTE} (per-cgroup counters: no CAP_BPF)"))
        );

        // Without destroy broadcasts the note says what is missed.
        let mut t2 = HashMap::new();
        let (mut a, mut b) = rounds(t0);
        (a.closed, b.closed) = (None, None);
        compute(&mut t2, a, &|_, _| false, &none);
        let live2 = compute(&mut t2, b, &|_, _| false, &none);
        assert_eq!(live2["bbb"].rx_bytes, 500_000);
        assert!(
            live2["bbb"]
                .note
                .as_deref()
                .unwrap()
                .starts_with(HOST_NOTE_NO_CLOSED),
            "{:?}",
            live2["bbb"].note
        );

        // An in-place probe sent from web's namespace: its last figures are held, so noted.
        let mut third = second;
        third.now = t0 + std::time::Duration::from_secs(4);
        third.closed = Some(Vec::new());
        let held = compute(&mut tracks, third.clone(), &|id, _| id == "aaa", &live);
        assert_eq!(held["aaa"].tx_bps, 4_000_000.0);
        assert_eq!(held["aaa"].note.as_deref(), Some(IN_PLACE_NOTE));
        assert_eq!(held["bbb"].rx_bps, 0.0, "nothing moved for mqtt");

        // A round without mqtt forgets it; a new namespace for web starts a new baseline.
        let mut fourth = third;
        fourth.now = t0 + std::time::Duration::from_secs(6);
        fourth.seen.retain(|s| s.id != "bbb");
        fourth.seen[0].netns = 200;
        let live = compute(&mut tracks, fourth, &|_, _| false, &none);
        assert!(!tracks.contains_key("bbb"));
        assert!(
            !live.contains_key("aaa"),
            "web's new namespace: a baseline again"
        );
    }

    #[test]
    fn a_sample_right_after_another_keeps_the_last_rates() {
        let t0 = Instant::now();
        let (first, mut second) = rounds(t0);
        second.now = t0 + std::time::Duration::from_millis(150);
        let mut tracks = HashMap::new();
        compute(&mut tracks, first, &|_, _| false, &HashMap::new());
        let mut last = HashMap::new();
        let held = Live {
            rx_bps: 1.0,
            tx_bps: 2.0,
            rx_pps: 0.0,
            tx_pps: 0.0,
            mean_packet_bytes: None,
            attributed: Attribution::Full,
            source: "veth".into(),
            interfaces: vec!["veth7".into()],
            rx_bytes: 0,
            tx_bytes: 0,
            rx_packets: 0,
            tx_packets: 0,
            interval_s: 1.0,
            note: None,
            tcp_share: None,
            cpu_s_per_gb: None,
            cpu_us_per_packet: None,
            local_share: None,
            local_peers: vec![],
            udp_drops: None,
        };
        last.insert("aaa".to_string(), held.clone());
        let live = compute(&mut tracks, second, &|_, _| false, &last);
        assert_eq!(live.get("aaa"), Some(&held));
        assert!(!live.contains_key("bbb"), "none to hold for mqtt");
    }
}
