//! Live traffic: every `sample_interval`, each container's counters and the host's CPU
//! figures, turned into rates. The sampler gathers (this file: the kernel behind
//! `kernel::Kernel`) and then computes (`compute`, pure).
//!
//! - Bridge and user-defined bridge networks: the host side of the container's veth pairs,
//!   found through the netns id the host gives the container's namespace (64-bit link stats,
//!   rtnetlink). Host rx is container tx.
//! - Host network: the container shares the host's interfaces, so interface counters cannot
//!   tell it apart. Where the per-cgroup counters run (`sys::cgskb`: BPF programs at the
//!   cgroup-v2 root count every packet by its socket's cgroup) and the container has a
//!   cgroup-v2 group of its own, every packet it sends and receives is counted there, of every
//!   protocol. Otherwise its TCP traffic is attributed from the sockets its own processes hold
//!   (sock_diag, TCP_INFO byte counters), UDP is not seen, and the output says why.
//! - Whom a container talks to (`local_share`): by the peer of each packet in its cgroup's
//!   counters where they run (every protocol), else by its TCP sockets' peers.

pub mod compute;
pub mod kernel;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use netmode_advisor::api::{self, Live};

pub use compute::IN_PLACE_NOTE;
use compute::{Round, Seen, Track};
use kernel::{Kernel, System};

use crate::state::Shared;
use crate::sys::hoststat;
use crate::sys::netlink::Netlink;

pub struct Sampler<K: Kernel = System> {
    kernel: K,
    host_netns: u64,
    prev_cpu: Option<hoststat::CpuSnapshot>,
    tracks: HashMap<String, Track>,
}

impl Sampler<System> {
    pub fn new(netlink: Netlink) -> std::io::Result<Sampler<System>> {
        let host_netns = crate::sys::netns::inode(std::process::id())?;
        Ok(Sampler::with_kernel(System::new(netlink), host_netns))
    }

    /// Take one sample and publish it in `shared`.
    pub async fn sample(&mut self, shared: &Shared) {
        self.sample_host(shared).await;
        let containers: Vec<api::Container> =
            shared.inventory().into_values().map(|r| r.info).collect();
        let last = shared.live();
        let live = self
            .containers(
                containers,
                &|id, since| shared.in_place_probe_since(id, since),
                &last,
            )
            .await;
        shared.set_live(live);
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
        let counting = match self.kernel.counting() {
            Ok(()) => api::Counting {
                mechanism: "cgroup_bpf".into(),
                reason: None,
            },
            Err(why) => api::Counting {
                mechanism: "veth_sock_diag".into(),
                reason: Some(why.to_string()),
            },
        };
        shared.update_host(|h| {
            h.counting = Some(counting);
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
}

impl<K: Kernel> Sampler<K> {
    pub fn with_kernel(kernel: K, host_netns: u64) -> Sampler<K> {
        Sampler {
            kernel,
            host_netns,
            prev_cpu: None,
            tracks: HashMap::new(),
        }
    }

    /// One round over `containers` (the running ones): gather, then compute. `probed` and
    /// `last` as `compute::compute` takes them.
    pub async fn containers(
        &mut self,
        containers: Vec<api::Container>,
        probed: &(dyn Fn(&str, Instant) -> bool + Sync),
        last: &HashMap<String, Live>,
    ) -> HashMap<String, Live> {
        let round = self.gather(containers).await;
        compute::compute(&mut self.tracks, round, probed, last)
    }

    /// Read what this round needs from the kernel.
    async fn gather(&mut self, containers: Vec<api::Container>) -> Round {
        let now = Instant::now();
        let mut seen = Vec::new();
        // The gateway's container addresses: peers there are traffic between containers.
        let mut gateway = HashMap::new();
        let mut own_ips: HashMap<String, Vec<std::net::IpAddr>> = HashMap::new();
        for i in containers {
            for n in &i.networks {
                if let Some(ip) = n.ip_address.as_deref().and_then(|a| a.parse().ok()) {
                    gateway.insert(ip, i.name.clone());
                    own_ips.entry(i.id.clone()).or_default().push(ip);
                }
            }
            // A container whose init process is gone is about to leave the inventory.
            let Some(netns) = self.kernel.netns(i.pid) else {
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
        let host_netns = self.host_netns;
        let own_ns = |s: &&Seen| s.netns != host_netns;
        let links = if seen.iter().any(|s| own_ns(&s)) {
            self.kernel.links().await
        } else {
            Vec::new()
        };
        let mut nsids = HashMap::new();
        for s in seen.iter().filter(own_ns) {
            let known = self.tracks.get(&s.id).and_then(|t| t.nsid(s.netns));
            let id = match known {
                Some(id) => Some(id),
                None => self.kernel.netnsid(s.pid).await,
            };
            nsids.insert(s.id.clone(), id);
        }
        // Every container's cgroup counters (its local peers among the gateway's addresses);
        // a host-mode container counted there needs no socket dump.
        let local = gateway
            .keys()
            .filter_map(|ip| match ip {
                std::net::IpAddr::V4(a) => Some(*a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        let all = seen.iter().map(|s| (s.id.clone(), s.pid)).collect();
        let cgroups = self.kernel.cgroup_traffic(all, local).await;
        let host: Vec<(String, u32)> = seen
            .iter()
            .filter(|s| s.netns == host_netns && cgroups.groups(&s.id).is_none())
            .map(|s| (s.id.clone(), s.pid))
            .collect();
        let closed = self.kernel.closed(!host.is_empty());
        let host_sockets = self.kernel.host_sockets(host).await;
        // TCP inside each container's own namespace. A dump walks the kernel's whole TCP hash
        // table whichever namespace asks, so a container whose veth saw no packet since the
        // last sample is not scanned: none of its sockets can have sent, received or closed
        // anything off the host, and its socket counters carry over.
        let mut idle = HashSet::new();
        let mut own = Vec::new();
        for s in seen.iter().filter(own_ns) {
            let quiet = self
                .tracks
                .get(&s.id)
                .is_some_and(|t| t.veth_quiet(s.netns, &links));
            if quiet {
                idle.insert(s.id.clone());
            } else {
                own.push((s.id.clone(), s.pid));
            }
        }
        let tcp_inside = self.kernel.tcp_inside(own).await;
        let pids = seen.iter().map(|s| (s.id.clone(), s.pid)).collect();
        let cpu_ns = self.kernel.cpu_ns(pids).await;
        Round {
            now,
            host_netns,
            seen,
            gateway,
            own_ips,
            links,
            nsids,
            host_sockets,
            tcp_inside,
            idle,
            cpu_ns,
            closed,
            cgroups,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The gathering against a recorded kernel (the test double): what it asks for and what
    //! it leaves alone; the arithmetic's own tests are in `compute`.

    use std::sync::Mutex;

    use netmode_advisor::api::{ModeKind, NetworkAttachment};

    use super::compute::HostSockets;
    use super::*;
    use crate::sys::netlink::Link;
    use crate::sys::sockdiag::{Closed, TcpCounters};

    const HOST_NS: u64 = 1;

    /// A kernel that answers from what the test put in and writes down what was asked.
    #[derive(Default)]
    struct Recorded {
        netns: HashMap<u32, u64>,
        links: Mutex<Vec<Link>>,
        nsids: HashMap<u32, i32>,
        host: Mutex<HashMap<String, HostSockets>>,
        inside: Mutex<HashMap<String, Vec<TcpCounters>>>,
        closed: Mutex<Vec<Closed>>,
        /// The per-cgroup counters' answer (`Off` when unset).
        cgroups: Option<compute::CgroupRound>,
        asked: Mutex<Vec<String>>,
    }

    impl Recorded {
        fn ask(&self, what: String) {
            self.asked.lock().unwrap().push(what);
        }
    }

    impl Kernel for Recorded {
        fn netns(&self, pid: u32) -> Option<u64> {
            self.netns.get(&pid).copied()
        }
        async fn links(&self) -> Vec<Link> {
            self.ask("links".into());
            self.links.lock().unwrap().clone()
        }
        async fn netnsid(&self, pid: u32) -> Option<i32> {
            self.ask(format!("netnsid {pid}"));
            self.nsids.get(&pid).copied()
        }
        async fn cgroup_traffic(
            &mut self,
            containers: Vec<(String, u32)>,
            local: Vec<std::net::Ipv4Addr>,
        ) -> compute::CgroupRound {
            let mut ids: Vec<String> = containers.into_iter().map(|(id, _)| id).collect();
            ids.sort();
            self.ask(format!("cgroups {ids:?} local {local:?}"));
            self.cgroups
                .clone()
                .unwrap_or_else(|| compute::CgroupRound::Off("no BPF here".into()))
        }
        async fn host_sockets(&mut self, host: Vec<(String, u32)>) -> HashMap<String, HostSockets> {
            self.ask(format!("host sockets {host:?}"));
            let all = self.host.lock().unwrap();
            host.iter()
                .filter_map(|(id, _)| Some((id.clone(), all.get(id)?.clone())))
                .collect()
        }
        async fn tcp_inside(&self, own: Vec<(String, u32)>) -> HashMap<String, Vec<TcpCounters>> {
            self.ask(format!("tcp inside {own:?}"));
            let all = self.inside.lock().unwrap();
            own.iter()
                .filter_map(|(id, _)| Some((id.clone(), all.get(id)?.clone())))
                .collect()
        }
        async fn cpu_ns(&self, pids: Vec<(String, u32)>) -> HashMap<String, u64> {
            pids.into_iter()
                .map(|(id, pid)| (id, pid as u64 * 1_000_000))
                .collect()
        }
        fn closed(&self, wanted: bool) -> Option<Vec<Closed>> {
            self.ask(format!("closed wanted={wanted}"));
            Some(std::mem::take(&mut *self.closed.lock().unwrap()))
        }
    }

    fn veth(index: u32, nsid: i32, rx: u64, tx: u64) -> Link {
        Link {
            index,
            name: format!("veth{index}"),
            kind: Some("veth".into()),
            peer_netnsid: Some(nsid),
            rx_bytes: rx,
            tx_bytes: tx,
            rx_packets: rx / 1000,
            tx_packets: tx / 1000,
        }
    }

    fn containers() -> Vec<api::Container> {
        let mut web = crate::testing::container("aaa", "web", "bridge", ModeKind::Bridge);
        web.pid = 10;
        web.networks = vec![NetworkAttachment {
            name: "bridge".into(),
            driver: Some("bridge".into()),
            ip_address: Some("172.17.0.2".into()),
            aliases: vec![],
            links: vec![],
        }];
        let mut mqtt = crate::testing::container("bbb", "mqtt", "host", ModeKind::Host);
        mqtt.pid = 20;
        // Its process has gone: about to leave the inventory, not sampled.
        let mut gone = crate::testing::container("ccc", "gone", "bridge", ModeKind::Bridge);
        gone.pid = 30;
        vec![web, mqtt, gone]
    }

    async fn round(s: &mut Sampler<Recorded>) -> HashMap<String, Live> {
        s.containers(containers(), &|_, _| false, &HashMap::new())
            .await
    }

    #[test]
    fn gathering_asks_the_kernel_only_for_what_moved() {
        let kernel = Recorded {
            netns: HashMap::from([(10, 100), (20, HOST_NS)]),
            links: Mutex::new(vec![veth(7, 3, 5_000, 9_000)]),
            nsids: HashMap::from([(10, 3)]),
            host: Mutex::new(HashMap::from([("bbb".to_string(), HostSockets::default())])),
            ..Default::default()
        };
        let mut s = Sampler::with_kernel(kernel, HOST_NS);
        smol::block_on(round(&mut s));
        let asked = std::mem::take(&mut *s.kernel.asked.lock().unwrap());
        assert_eq!(
            asked,
            [
                "links",
                "netnsid 10",
                r#"cgroups ["aaa", "bbb"] local [172.17.0.2]"#,
                "closed wanted=true",
                r#"host sockets [("bbb", 20)]"#,
                r#"tcp inside [("aaa", 10)]"#,
            ],
            "the first round asks for everything"
        );
        assert!(s.tracks.contains_key("aaa") && s.tracks.contains_key("bbb"));
        assert!(
            !s.tracks.contains_key("ccc"),
            "a container without a process"
        );

        // Nothing moved on web's veth: its namespace is not dumped, its netns id is known.
        smol::block_on(round(&mut s));
        let asked = std::mem::take(&mut *s.kernel.asked.lock().unwrap());
        assert_eq!(
            asked,
            [
                "links",
                r#"cgroups ["aaa", "bbb"] local [172.17.0.2]"#,
                "closed wanted=true",
                r#"host sockets [("bbb", 20)]"#,
                "tcp inside []",
            ]
        );

        // A packet on the veth: dumped again.
        *s.kernel.links.lock().unwrap() = vec![veth(7, 3, 6_000, 9_000)];
        smol::block_on(round(&mut s));
        let asked = s.kernel.asked.lock().unwrap().clone();
        assert!(
            asked.contains(&r#"tcp inside [("aaa", 10)]"#.to_string()),
            "{asked:?}"
        );
    }

    #[test]
    fn a_host_mode_container_counted_by_its_cgroup_needs_no_socket_dump() {
        use crate::sys::cgskb::{CgroupTraffic, Flow, Peer};
        let traffic = |rx: u64, tx: u64| CgroupTraffic {
            rx: HashMap::from([(
                Peer::Other,
                Flow {
                    bytes: rx,
                    packets: rx / 100,
                },
            )]),
            tx: HashMap::from([(
                Peer::Local("172.17.0.2".parse().unwrap()),
                Flow {
                    bytes: tx,
                    packets: tx / 100,
                },
            )]),
        };
        let on = |rx, tx| {
            compute::CgroupRound::On(HashMap::from([
                (
                    "bbb".to_string(),
                    Ok(compute::CgroupCount {
                        groups: vec![(77, traffic(rx, tx))],
                        udp_drops: Some(3),
                    }),
                ),
                ("aaa".to_string(), Err(crate::sys::procs::NotOwnGroup::Root)),
            ]))
        };
        let kernel = Recorded {
            netns: HashMap::from([(10, 100), (20, HOST_NS)]),
            links: Mutex::new(vec![veth(7, 3, 5_000, 9_000)]),
            nsids: HashMap::from([(10, 3)]),
            cgroups: Some(on(1_000, 2_000)),
            ..Default::default()
        };
        let mut s = Sampler::with_kernel(kernel, HOST_NS);
        smol::block_on(round(&mut s));
        std::thread::sleep(std::time::Duration::from_millis(250));
        s.kernel.cgroups = Some(on(31_000, 92_000));
        let live = smol::block_on(round(&mut s));
        let asked = s.kernel.asked.lock().unwrap().clone();
        assert!(
            !asked.iter().any(|a| a.starts_with("host sockets [(")),
            "no socket dump for a container its cgroup counts: {asked:?}"
        );
        assert!(
            asked.iter().all(|a| a != "closed wanted=true"),
            "nor destroy broadcasts: {asked:?}"
        );
        let mqtt = &live["bbb"];
        assert_eq!(mqtt.source, "cgroup_bpf");
        assert_eq!(mqtt.attributed, api::Attribution::Full);
        assert_eq!((mqtt.rx_bytes, mqtt.tx_bytes), (30_000, 90_000));
        // 90 kB to web (a container of the gateway), 30 kB from elsewhere.
        assert_eq!(mqtt.local_share, Some(0.75));
        assert_eq!(mqtt.local_peers, ["web"]);
        assert_eq!(mqtt.note, None);
        assert_eq!(mqtt.udp_drops, Some(3));
        // web has no group of its own: its figures are its veth's, its peers its sockets'.
        assert_eq!(live["aaa"].source, "veth");
    }

    #[test]
    fn a_bridge_container_with_nothing_measured_yet_is_not_quiet() {
        // No netns id (the kernel did not say): nothing can tell it quiet, so it is dumped.
        let kernel = Recorded {
            netns: HashMap::from([(10, 100)]),
            ..Default::default()
        };
        let mut s = Sampler::with_kernel(kernel, HOST_NS);
        let web = containers().remove(0);
        for _ in 0..2 {
            let live =
                smol::block_on(s.containers(vec![web.clone()], &|_, _| false, &HashMap::new()));
            assert!(live.is_empty(), "no rate before 200 ms: {live:?}");
        }
        let asked = s.kernel.asked.lock().unwrap().clone();
        assert_eq!(
            asked
                .iter()
                .filter(|a| a.starts_with("tcp inside [(\"aaa\""))
                .count(),
            2,
            "{asked:?}"
        );
        assert_eq!(
            asked.iter().filter(|a| *a == "closed wanted=false").count(),
            2,
            "no host-mode container: destroy broadcasts are not kept"
        );
    }
}
