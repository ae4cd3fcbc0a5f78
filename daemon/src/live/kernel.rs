//! What the sampler reads from the kernel, behind a small trait (`Kernel`), so that the
//! sampler's gathering can run against a recorded double in the unit tests. `System` is the
//! real one: netlink links and netns ids, sock_diag dumps and destroy broadcasts, /proc and
//! cgroup files.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use super::compute::{HostSockets, socket_counters};
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

/// The real kernel.
pub struct System {
    netlink: Netlink,
    closed: Option<Arc<ClosedQueue>>,
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
        System {
            netlink,
            closed,
            cgroups: Arc::new(procs::CgroupMounts::discover()),
            host_tcp: None,
        }
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
