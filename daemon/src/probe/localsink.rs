//! The default sink: a network namespace of the daemon's own, behind a veth pair, so that
//! probe traffic crosses a real interface (not loopback) in both modes and the bridge path's
//! extra hops are what the comparison shows.
//!
//! ```text
//!  probe container (bridge) -- veth -- docker0 --+                     +-- sink namespace --+
//!                                                 >-- host routing -- nmsk<id> ==== nmsp<id> 198.18.78.2
//!  probe container (host)  ----------------------+   198.18.78.1/30   +--------------------+
//! ```
//!
//! The namespace is anonymous: it lives exactly as long as the daemon holds it, so a daemon
//! killed with SIGKILL leaves nothing behind (the kernel removes the namespace and the veth
//! pair). A host-side link of the same name found at start is stale and is removed.

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::mpsc;

use crate::config::SinkSubnet;
use crate::error::{Error, ProbeError, Result};
use crate::sys::netlink::Netlink;

use crate::traffic::sink::{Sink, UdpFactory};

pub struct LocalSink {
    pub addr: SocketAddr,
    host_link: String,
    netlink: Netlink,
    sink: Option<Sink>,
    /// Holds the namespace open.
    _ns: File,
}

fn sink_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Probe(ProbeError::LocalSink {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// Link names: at most 15 bytes, unique per daemon instance.
pub fn link_names(instance: &str) -> (String, String) {
    let id = &instance[..instance.len().min(8)];
    (format!("nmsk{id}"), format!("nmsp{id}"))
}

/// Does `subnet` overlap a route the host already has (other than the default route and
/// our own link)?
pub fn overlapping_route(
    subnet: &SinkSubnet,
    routes: &[crate::sys::netlink::Route4],
    ours: Option<u32>,
) -> Option<String> {
    let (net, len) = (u32::from(subnet.network), subnet.prefix);
    for r in routes {
        if r.prefix == 0 || (ours.is_some() && r.oif == ours) {
            continue;
        }
        let common = len.min(r.prefix);
        let mask = if common == 0 {
            0
        } else {
            u32::MAX << (32 - common)
        };
        if net & mask == u32::from(r.destination) & mask {
            return Some(format!("{}/{}", r.destination, r.prefix));
        }
    }
    None
}

/// A request for a UDP socket bound in the sink's namespace, and where to answer.
type UdpRequest = (SocketAddr, mpsc::Sender<std::io::Result<UdpSocket>>);

/// The namespace thread's socket service: the sink's own sockets, then ingress probes' UDP.
struct Binder {
    bind: mpsc::Sender<SocketAddr>,
    sockets: mpsc::Receiver<std::io::Result<(TcpListener, UdpSocket)>>,
    udp: mpsc::Sender<UdpRequest>,
}

/// What the namespace thread hands back: the namespace and a netlink socket inside it.
struct InNamespace {
    ns: File,
    netlink: OwnedFd,
    bind: mpsc::Sender<SocketAddr>,
    sockets: mpsc::Receiver<std::io::Result<(TcpListener, UdpSocket)>>,
    udp: mpsc::Sender<UdpRequest>,
}

/// A thread that moves itself into a new network namespace, opens a handle on it and a
/// netlink socket in it, binds the sink's sockets there when told the address, and then
/// stays to bind the UDP sockets of ingress probes (a socket is made in the namespace of the
/// thread that makes it) until the sink is gone.
fn spawn_namespace() -> Result<InNamespace> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (bind_tx, bind_rx) = mpsc::channel::<SocketAddr>();
    let (sock_tx, sock_rx) = mpsc::channel();
    let (udp_tx, udp_rx) = mpsc::channel::<UdpRequest>();
    std::thread::Builder::new()
        .name("sink-netns".into())
        .spawn(move || {
            // SAFETY: unshare affects only this thread's network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let _ = ready_tx.send(Err(std::io::Error::last_os_error()));
                return;
            }
            let opened = File::open("/proc/thread-self/ns/net").and_then(|ns| {
                let sock = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
                // SAFETY: the fd comes from a socket we own and give away.
                Ok((ns, unsafe { OwnedFd::from_raw_fd(sock.into_raw_fd()) }))
            });
            let _ = ready_tx.send(opened);
            if let Ok(addr) = bind_rx.recv() {
                let bound = TcpListener::bind(addr).and_then(|t| Ok((t, UdpSocket::bind(addr)?)));
                let _ = sock_tx.send(bound);
            }
            while let Ok((addr, reply)) = udp_rx.recv() {
                let _ = reply.send(UdpSocket::bind(addr));
            }
        })
        .map_err(|e| sink_err("start the namespace thread", e))?;
    let (ns, netlink) = ready_rx
        .recv()
        .map_err(|e| sink_err("namespace thread", e))?
        .map_err(|e| sink_err("create a network namespace (needs CAP_SYS_ADMIN)", e))?;
    Ok(InNamespace {
        ns,
        netlink,
        bind: bind_tx,
        sockets: sock_rx,
        udp: udp_tx,
    })
}

impl LocalSink {
    /// Build the namespace, the veth pair and the sink. `instance` names the links.
    pub async fn build(
        host: &Netlink,
        subnet: &SinkSubnet,
        port: u16,
        instance: &str,
    ) -> Result<LocalSink> {
        let (host_name, peer_name) = link_names(instance);
        if let Some(stale) = host.link_index(&host_name).await? {
            log::info!("removing stale sink link {host_name} left by an earlier run");
            host.delete_link(stale).await?;
        }
        // A sink removed a moment ago (a restart, a study resumed at once) can leave a route
        // to its address for a little while: look again before calling it a conflict.
        let mut overlap = overlapping_route(subnet, &host.routes_v4().await?, None);
        for _ in 0..6 {
            if overlap.is_none() {
                break;
            }
            async_io::Timer::after(std::time::Duration::from_millis(500)).await;
            overlap = overlapping_route(subnet, &host.routes_v4().await?, None);
        }
        if let Some(route) = overlap {
            return Err(sink_err(
                "probe.sink_subnet",
                format!(
                    "{subnet} overlaps the host's route to {route}; set probe.sink_subnet to a free /30"
                ),
            ));
        }
        let inside = smol::unblock(spawn_namespace).await?;
        let ns_netlink = Netlink::from_socket(inside.netlink)?;

        host.add_veth(&host_name, &peer_name).await?;
        let mut sink = LocalSink {
            addr: SocketAddr::V4(SocketAddrV4::new(subnet.sink_ip(), port)),
            host_link: host_name.clone(),
            netlink: host.clone(),
            sink: None,
            _ns: inside.ns,
        };
        // From here on, a failure removes the veth pair it created.
        let binder = Binder {
            bind: inside.bind,
            sockets: inside.sockets,
            udp: inside.udp,
        };
        match sink
            .configure(host, &ns_netlink, subnet, &peer_name, binder)
            .await
        {
            Ok(()) => {
                log::info!(
                    "local probe sink at {} (namespace behind {host_name}, {subnet})",
                    sink.addr
                );
                Ok(sink)
            }
            Err(e) => {
                sink.teardown().await;
                Err(e)
            }
        }
    }

    async fn configure(
        &mut self,
        host: &Netlink,
        ns_netlink: &Netlink,
        subnet: &SinkSubnet,
        peer_name: &str,
        binder: Binder,
    ) -> Result<()> {
        let Binder {
            bind,
            sockets,
            udp: udp_requests,
        } = binder;
        let host_name = self.host_link.clone();
        let host_idx = host
            .link_index(&host_name)
            .await?
            .ok_or_else(|| sink_err("veth", "host side vanished"))?;
        let peer_idx = host
            .link_index(peer_name)
            .await?
            .ok_or_else(|| sink_err("veth", "peer vanished"))?;
        host.move_to_namespace(peer_idx, &self._ns).await?;
        host.add_address(host_idx, subnet.host_ip(), subnet.prefix)
            .await?;
        host.set_up(host_idx).await?;

        let peer_idx = ns_netlink
            .link_index(peer_name)
            .await?
            .ok_or_else(|| sink_err("veth", "peer not found in the sink namespace"))?;
        if let Some(lo) = ns_netlink.link_index("lo").await? {
            ns_netlink.set_up(lo).await?;
        }
        ns_netlink
            .add_address(peer_idx, subnet.sink_ip(), subnet.prefix)
            .await?;
        ns_netlink.set_up(peer_idx).await?;
        ns_netlink.add_default_route(subnet.host_ip()).await?;

        bind.send(self.addr)
            .map_err(|e| sink_err("namespace thread", e))?;
        let (tcp, udp) = smol::unblock(move || sockets.recv())
            .await
            .map_err(|e| sink_err("namespace thread", e))?
            .map_err(|e| sink_err(&format!("bind {}", self.addr), e))?;
        let udp_requests = std::sync::Mutex::new(udp_requests);
        let factory: UdpFactory = std::sync::Arc::new(move |addr| {
            let (tx, rx) = mpsc::channel();
            let gone = || std::io::Error::other("the sink's namespace thread is gone");
            udp_requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send((addr, tx))
                .map_err(|_| gone())?;
            rx.recv().map_err(|_| gone())?
        });
        self.sink = Some(Sink::serve_with(tcp, udp, factory).map_err(|e| sink_err("start", e))?);
        Ok(())
    }

    /// Remove the veth pair now (dropping the namespace handle removes the rest).
    pub async fn teardown(&mut self) {
        self.sink.take();
        if let Ok(Some(i)) = self.netlink.link_index(&self.host_link).await {
            let _ = self.netlink.delete_link(i).await;
        }
        self.host_link.clear();
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        // Without an executor at hand, the kernel does the rest when the namespace goes.
        self.sink.take();
    }
}

impl std::fmt::Display for LocalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "local {}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::Route4;

    fn r(d: &str, p: u8, oif: u32) -> Route4 {
        Route4 {
            destination: d.parse().unwrap(),
            prefix: p,
            oif: Some(oif),
        }
    }

    #[test]
    fn overlaps_are_found_and_the_default_route_is_not_one() {
        let s: SinkSubnet = "198.18.78.0/30".parse().unwrap();
        let routes = [r("0.0.0.0", 0, 1), r("172.17.0.0", 16, 2)];
        assert_eq!(overlapping_route(&s, &routes, None), None);
        let routes = [r("198.18.0.0", 15, 3)];
        assert_eq!(
            overlapping_route(&s, &routes, None).as_deref(),
            Some("198.18.0.0/15")
        );
        let routes = [r("198.18.78.0", 30, 9)];
        assert_eq!(
            overlapping_route(&s, &routes, Some(9)),
            None,
            "our own link's route"
        );
        let routes = [r("198.18.78.4", 30, 3)];
        assert_eq!(
            overlapping_route(&s, &routes, None),
            None,
            "the neighbouring /30"
        );
    }

    /// A real namespace and veth pair: traffic from the host reaches the sink through the
    /// veth (its counters grow by what was sent), and teardown removes the link.
    #[test]
    fn builds_a_reachable_sink_and_tears_it_down() {
        crate::rt::block_on(async {
            let host = Netlink::new().unwrap();
            let subnet: SinkSubnet = "198.18.79.0/30".parse().unwrap();
            let instance = format!("{:08x}", std::process::id());
            let mut sink = LocalSink::build(&host, &subnet, 5291, &instance)
                .await
                .unwrap();
            let (host_link, _) = link_names(&instance);
            let before = host
                .links()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.name == host_link)
                .unwrap();
            let spec = crate::traffic::SendSpec {
                target: crate::traffic::Target::Netmode(sink.addr),
                protocol: netmode_advisor::api::Protocol::Tcp,
                size: 1024,
                duration: std::time::Duration::from_millis(300),
                rate_bps: None,
                session: 99,
                direction: netmode_advisor::api::Direction::Egress,
                pattern: netmode_advisor::api::Pattern::Stream,
                in_flight: 1,
            };
            let mut ingress = spec.clone();
            let report = smol::unblock(move || crate::traffic::send(&spec, true)).await;
            let out = report.outcome.expect("sent through the veth");
            assert_eq!(out.received_bytes, out.sent_bytes);
            // Ingress: the sink sends back, TCP on the connection, UDP from a socket it binds
            // in its own namespace.
            ingress.direction = netmode_advisor::api::Direction::Ingress;
            for protocol in [
                netmode_advisor::api::Protocol::Tcp,
                netmode_advisor::api::Protocol::Udp,
            ] {
                let spec = crate::traffic::SendSpec {
                    protocol,
                    ..ingress.clone()
                };
                let report = smol::unblock(move || crate::traffic::send(&spec, true)).await;
                let out = report
                    .outcome
                    .unwrap_or_else(|| panic!("{protocol:?} ingress: {:?}", report.error));
                assert!(out.received_bytes > 0, "{protocol:?} {out:?}");
            }
            let after = host
                .links()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.name == host_link)
                .unwrap();
            assert!(
                after.tx_bytes - before.tx_bytes >= out.sent_bytes,
                "{before:?} {after:?}"
            );

            // A second sink on the same subnet is refused: the route overlaps.
            let other = format!("{:08x}", std::process::id() ^ 0xffff);
            let e = LocalSink::build(&host, &subnet, 5291, &other)
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("overlaps"), "{e}");

            sink.teardown().await;
            assert_eq!(host.link_index(&host_link).await.unwrap(), None);
        });
    }

    #[test]
    fn link_names_fit_ifnamsiz() {
        let (h, p) = link_names("0123456789abcdef");
        assert_eq!((h.as_str(), p.as_str()), ("nmsk01234567", "nmsp01234567"));
        assert!(h.len() <= 15);
    }
}
