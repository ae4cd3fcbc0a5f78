//! What the sampler reads from the kernel, behind a small trait (`Kernel`), so that the
//! sampler's gathering can run against a recorded double in the unit tests. `System` is the
//! real one: netlink links and netns ids, sock_diag dumps and destroy broadcasts, /proc and
//! cgroup files, and the per-cgroup packet counters in the kernel (`sys::cgskb`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use super::compute::{CgroupCount, CgroupRound, HostSockets, socket_counters};
use crate::sys::cgskb::CgroupCounters;
use crate::sys::netlink::{Link, Netlink};
use crate::sys::{hoststat, netns, procs, sockdiag};

/// The kernel as the sampler sees it. Errors are logged where they happen and read as
/// "nothing seen": a sample goes on with what it could read.
pub trait Kernel: Send + Sync {
    /// The network namespace (inode) of process `pid`; `None` when it is gone.
    fn netns(&self, pid: u32) -> Option<u64>;
    /// The host's links with their counters.
    fn links(&self) -> impl Future<Output = Vec<Link>> + Send;
    /// The host's netns id for the namespace of process `pid`.
    fn netnsid(&self, pid: u32) -> impl Future<Output = Option<i32>> + Send;
    /// Per container (id, pid): the packet counters of its cgroup-v2 groups, kept in the
    /// kernel for every protocol and mode; `local` are the gateway's container addresses (a
    /// packet to or from one counts as local, with that address).
    fn cgroup_traffic(
        &mut self,
        containers: Vec<(String, u32)>,
        local: Vec<std::net::Ipv4Addr>,
    ) -> impl Future<Output = CgroupRound> + Send;
    /// Per host-mode container (id, pid): its own TCP sockets.
    fn host_sockets(
        &mut self,
        host: Vec<(String, u32)>,
    ) -> impl Future<Output = HashMap<String, HostSockets>> + Send;
    /// The TCP sockets inside each (id, pid)'s own namespace, by id.
    fn tcp_inside(
        &self,
        own: Vec<(String, u32)>,
    ) -> impl Future<Output = HashMap<String, Vec<sockdiag::TcpCounters>>> + Send;
    /// The CPU time of each (id, pid)'s cgroup, ns, by id.
    fn cpu_ns(&self, pids: Vec<(String, u32)>)
    -> impl Future<Output = HashMap<String, u64>> + Send;
    /// Host TCP sockets destroyed since the last call (kept only while `wanted`: host-mode
    /// containers exist); `None` without the broadcasts.
    fn closed(&self, wanted: bool) -> Option<Vec<sockdiag::Closed>>;
}

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

/// Why the per-cgroup counters do not count.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotCounting {
    #[error("cgroup v2 is not mounted")]
    NoCgroupV2,
    #[error(transparent)]
    Attach(Arc<crate::sys::cgskb::CgskbError>),
}

/// The per-cgroup counters, or why there are none.
type Counting = Result<Arc<std::sync::Mutex<CgroupCounters>>, NotCounting>;

/// Load and attach the per-cgroup counters at the cgroup-v2 root, or say why not.
fn attach_counters(cgroups: &procs::CgroupMounts) -> Counting {
    let Some(root) = cgroups.unified() else {
        return Err(NotCounting::NoCgroupV2);
    };
    match CgroupCounters::attach(root) {
        Ok(c) => {
            log::info!(
                "per-cgroup packet counters attached at {}: every container with a cgroup-v2 group of its own is counted in the kernel",
                root.display()
            );
            Ok(Arc::new(std::sync::Mutex::new(c)))
        }
        Err(e) => {
            log::warn!(
                "per-cgroup packet counters unavailable ({e}): host-mode containers are counted by their TCP sockets alone"
            );
            Err(NotCounting::Attach(Arc::new(e)))
        }
    }
}

/// How many rounds a container's cgroup-v2 groups are taken as found (a minute at the
/// default 5 s sampling): reading them is most of what the counters cost an idle gateway.
const GROUP_REFRESH_ROUNDS: u32 = 12;

/// Datagrams dropped by the UDP sockets the processes of the container with init process `pid`
/// hold (in whichever namespace it lives: the host's in host mode).
fn udp_drops(cgroups: &procs::CgroupMounts, pid: u32) -> Option<u64> {
    let all = procs::udp_drops(pid)
        .map_err(|e| log::debug!("UDP drops of process {pid}: {e}"))
        .ok()?;
    if all.values().all(|d| *d == 0) {
        return Some(0);
    }
    let own = procs::socket_inodes(&cgroups.container_pids(pid));
    Some(
        all.iter()
            .filter(|(inode, _)| own.contains(inode))
            .map(|(_, d)| d)
            .sum(),
    )
}

/// A container's cgroup-v2 group ids as last found (or why it has none of its own), and
/// how many refreshes ago.
type CachedGroups = (Result<Vec<u64>, procs::NotOwnGroup>, u32);

/// The real kernel.
pub struct System {
    netlink: Netlink,
    closed: Option<Arc<ClosedQueue>>,
    counting: Counting,
    /// Per container at the last read (id, init process): its cgroup-v2 groups as last
    /// found, and how many rounds ago. A container's group is fixed for its life; groups made
    /// below it later (a systemd inside) are found at the next refresh.
    group_cache: HashMap<(String, u32), CachedGroups>,
    /// The local addresses given to the counters.
    local_peers: Vec<std::net::Ipv4Addr>,
    /// Per container: its received bytes at the last read, and its UDP drops then (read
    /// again only when it received something).
    udp_drops: HashMap<String, (u64, Option<u64>)>,
    cgroups: Arc<procs::CgroupMounts>,
    /// The host namespace's last TCP socket dump, with the namespace's TCP segment counters
    /// when it was taken: while they stand still no socket's counters can have moved.
    host_tcp: Option<(u64, Arc<Vec<sockdiag::TcpCounters>>)>,
}

impl System {
    pub fn new(netlink: Netlink) -> System {
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
        let cgroups = Arc::new(procs::CgroupMounts::discover());
        System {
            netlink,
            closed,
            counting: attach_counters(&cgroups),
            group_cache: HashMap::new(),
            local_peers: Vec::new(),
            udp_drops: HashMap::new(),
            cgroups,
            host_tcp: None,
        }
    }

    /// Whether the per-cgroup counters count, or why not (for `/v1/status`).
    pub fn counting(&self) -> Result<(), NotCounting> {
        self.counting.as_ref().map(|_| ()).map_err(Clone::clone)
    }
}

impl Kernel for System {
    fn netns(&self, pid: u32) -> Option<u64> {
        netns::inode(pid).ok()
    }

    async fn links(&self) -> Vec<Link> {
        self.netlink.links().await.unwrap_or_else(|e| {
            log::warn!("{e}");
            Vec::new()
        })
    }

    async fn netnsid(&self, pid: u32) -> Option<i32> {
        let f = netns::open(pid).ok()?;
        self.netlink.netnsid(&f).await.unwrap_or_else(|e| {
            log::debug!("netns id of process {pid}: {e}");
            None
        })
    }

    async fn cgroup_traffic(
        &mut self,
        containers: Vec<(String, u32)>,
        mut local: Vec<std::net::Ipv4Addr>,
    ) -> CgroupRound {
        let counters = match &self.counting {
            Ok(c) => c.clone(),
            Err(why) => return CgroupRound::Off(why.to_string()),
        };
        local.sort();
        local.dedup();
        let new_local = (local != self.local_peers).then_some(local.clone());
        self.local_peers = local;
        let cgroups = self.cgroups.clone();
        let drops_before = std::mem::take(&mut self.udp_drops);
        let mut cache = std::mem::take(&mut self.group_cache);
        let (round, drops, cache) = smol::unblock(move || {
            let mut c = counters.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(addrs) = new_local
                && let Err(e) = c.set_local_peers(&addrs)
            {
                log::warn!("local peers of the per-cgroup counters: {e}");
            }
            // The groups counted at the last read: those of the containers then.
            let before: HashSet<u64> = cache
                .values()
                .filter_map(|(g, _)| g.as_ref().ok())
                .flatten()
                .copied()
                .collect();
            let mut groups = HashSet::new();
            let mut kept = HashMap::with_capacity(containers.len());
            let own: Vec<_> = containers
                .into_iter()
                .map(|(id, pid)| {
                    let (g, age) = match cache.remove(&(id.clone(), pid)) {
                        Some((g, age)) if age < GROUP_REFRESH_ROUNDS => (g, age + 1),
                        _ => (cgroups.container_v2_groups(pid, &id), 1),
                    };
                    if !matches!(g, Err(procs::NotOwnGroup::Gone)) {
                        kept.insert((id.clone(), pid), (g.clone(), age));
                    }
                    if let Ok(g) = &g {
                        groups.extend(g.iter().copied());
                    }
                    (id, pid, g)
                })
                .collect();
            let all = match c.read() {
                Ok(all) => all,
                Err(e) => return (CgroupRound::Off(e.to_string()), HashMap::new(), kept),
            };
            // Every cgroup of the machine is counted; the groups of containers that left
            // are dropped, and when the map fills (a group has about six entries: two
            // directions, a few peers), every group that is no container's.
            let full = all.len() * 8 > CgroupCounters::CAPACITY;
            let gone = |g: u64| before.contains(&g) && !groups.contains(&g);
            if (full || all.keys().any(|g| gone(*g)))
                && let Err(e) = c.forget(|g| groups.contains(&g) || (!full && !gone(g)))
            {
                log::debug!("per-cgroup counters: {e}");
            }
            drop(c);
            let mut drops = HashMap::new();
            let by_id = own
                .into_iter()
                .map(|(id, pid, g)| {
                    let counted = g.map(|ids| {
                        let groups: Vec<_> = ids
                            .into_iter()
                            .map(|gid| (gid, all.get(&gid).cloned().unwrap_or_default()))
                            .collect();
                        let rx: u64 = groups.iter().map(|(_, t)| t.totals().0.bytes).sum();
                        // Its sockets' drops, read again only when it received something.
                        let udp_drops = match drops_before.get(&id) {
                            Some(&(was, d)) if was == rx => d,
                            _ => udp_drops(&cgroups, pid),
                        };
                        drops.insert(id.clone(), (rx, udp_drops));
                        CgroupCount { groups, udp_drops }
                    });
                    (id, counted)
                })
                .collect();
            (CgroupRound::On(by_id), drops, kept)
        })
        .await;
        self.group_cache = cache;
        self.udp_drops = drops;
        round
    }

    async fn host_sockets(&mut self, host: Vec<(String, u32)>) -> HashMap<String, HostSockets> {
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
                _ => match sockdiag::tcp_counters(sockdiag::TimeWait::Left) {
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
                let sockets: Vec<sockdiag::TcpCounters> = socks
                    .iter()
                    .filter(|t| inodes.contains(&t.inode))
                    .copied()
                    .collect();
                let counters = sockets
                    .iter()
                    .map(|t| (t.cookie, socket_counters(t)))
                    .collect();
                let listening = listeners
                    .iter()
                    .filter(|l| l.protocol == "tcp" && inodes.contains(&l.inode))
                    .map(|l| l.port)
                    .collect();
                out.insert(
                    id,
                    HostSockets {
                        counters,
                        listening,
                        sockets,
                    },
                );
            }
            (out, segments.map(|n| (n, socks)))
        })
        .await;
        self.host_tcp = dumped;
        out
    }

    async fn tcp_inside(
        &self,
        own: Vec<(String, u32)>,
    ) -> HashMap<String, Vec<sockdiag::TcpCounters>> {
        smol::unblock(move || sockdiag::tcp_counters_in(own)).await
    }

    async fn cpu_ns(&self, pids: Vec<(String, u32)>) -> HashMap<String, u64> {
        let cgroups = self.cgroups.clone();
        smol::unblock(move || {
            pids.into_iter()
                .filter_map(|(id, pid)| Some((id, cgroups.cpu_usage_ns(pid)?)))
                .collect()
        })
        .await
    }

    fn closed(&self, wanted: bool) -> Option<Vec<sockdiag::Closed>> {
        let q = self.closed.as_ref()?;
        q.wanted.store(wanted, std::sync::atomic::Ordering::Relaxed);
        Some(std::mem::take(
            &mut *q.items.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}
