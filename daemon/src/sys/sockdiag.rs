//! sock_diag: the host's TCP sockets with their TCP_INFO byte counters, and its listening
//! sockets. Blocking netlink calls; run them off the event loop.

use std::net::IpAddr;

use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla,
};
use rtnetlink::packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::error::NetlinkError;

type Result<T> = std::result::Result<T, NetlinkError>;

/// One TCP socket's counters (from `struct tcp_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpCounters {
    pub inode: u32,
    /// Unique for the socket's lifetime (inodes are reused, cookies are not).
    pub cookie: u64,
    /// Payload bytes the peer acknowledged (sent).
    pub bytes_acked: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    /// The remote end's address (unspecified where the kernel did not say).
    pub peer: IpAddr,
    /// A connection that ended and waits out TIME_WAIT: no counters, but who it was with.
    pub time_wait: bool,
}

/// A socket bound for incoming traffic (TCP listening, or UDP bound to a port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: &'static str,
    pub address: IpAddr,
    pub port: u16,
    pub inode: u32,
}

fn sock_err(what: &'static str, e: impl std::fmt::Display) -> NetlinkError {
    NetlinkError {
        what,
        reason: e.to_string(),
    }
}

/// Dump inet sockets of `protocol` in `states` for both address families, each handed to
/// `each` as it is parsed (a busy host has tens of thousands: none is kept here).
fn dump(
    protocol: u8,
    states: StateFlags,
    extensions: ExtensionFlags,
    mut each: impl FnMut(&netlink_packet_sock_diag::inet::InetResponse),
) -> Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| sock_err("open sock_diag", e))?;
    socket
        .bind_auto()
        .and_then(|_| socket.connect(&SocketAddr::new(0, 0)))
        .map_err(|e| sock_err("bind sock_diag", e))?;
    for family in [AF_INET, AF_INET6] {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut packet = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol,
                extensions: extensions.clone(),
                states: states.clone(),
                socket_id: if family == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            })
            .into(),
        );
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        socket
            .send(&buf, 0)
            .map_err(|e| sock_err("send sock_diag request", e))?;

        let mut rx = vec![0u8; 64 * 1024];
        'recv: loop {
            let n = socket
                .recv(&mut &mut rx[..], 0)
                .map_err(|e| sock_err("receive sock_diag", e))?;
            let mut offset = 0;
            while offset < n {
                let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..n])
                    .map_err(|e| sock_err("parse sock_diag answer", e))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(&r),
                    NetlinkPayload::Done(_) => break 'recv,
                    NetlinkPayload::Error(e) => {
                        // IPv6 disabled in the kernel: nothing to dump for that family.
                        if family == AF_INET6 {
                            break 'recv;
                        }
                        return Err(sock_err("sock_diag dump", e));
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }
    Ok(())
}

/// Kernel TCP state of a connection in TIME_WAIT (include/net/tcp_states.h).
const TCP_TIME_WAIT: u8 = 6;

/// Which TCP connections a dump reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWait {
    /// Also those in TIME_WAIT (peer only): a container's own namespace, where every
    /// connection is the container's.
    Included,
    /// Not those: the host's namespace, where a TIME_WAIT connection has no owner to match
    /// (no inode), and a busy host has tens of thousands of them.
    Left,
}

/// Every established-or-closing TCP socket of the calling thread's namespace with its
/// counters and peer, and (`TimeWait::Included`) the connections in TIME_WAIT (peer only).
pub fn tcp_counters(time_wait: TimeWait) -> Result<Vec<TcpCounters>> {
    let mut states = StateFlags::all() - StateFlags::LISTEN;
    if time_wait == TimeWait::Left {
        states -= StateFlags::TIME_WAIT;
    }
    let mut out = Vec::new();
    dump(IPPROTO_TCP, states, ExtensionFlags::INFO, |r| {
        let info = r.nlas.iter().find_map(|n| match n {
            Nla::TcpInfo(b) => Some(b.as_slice()),
            _ => None,
        });
        let id = &r.header.socket_id;
        let parsed = info.and_then(|b| parse_tcp_info(r.header.inode, id.cookie, b));
        let c = match parsed {
            Some(c) => c,
            None if r.header.state == TCP_TIME_WAIT => TcpCounters {
                inode: 0,
                cookie: u64::from_ne_bytes(id.cookie),
                bytes_acked: 0,
                bytes_received: 0,
                segs_out: 0,
                segs_in: 0,
                peer: id.destination_address,
                time_wait: true,
            },
            None => return,
        };
        out.push(TcpCounters {
            peer: id.destination_address,
            ..c
        });
    })?;
    Ok(out)
}

/// TCP counters inside other network namespaces: for each (key, pid), the sockets of the
/// namespace `pid` lives in.
pub fn tcp_counters_in(
    namespaces: Vec<(String, u32)>,
) -> std::collections::HashMap<String, Vec<TcpCounters>> {
    super::netns::in_each("tcp-scan", namespaces, || {
        tcp_counters(TimeWait::Included).ok()
    })
    .into_iter()
    .collect()
}

/// The host's listening TCP sockets and bound UDP sockets.
pub fn listeners() -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    for (proto, name, states) in [
        (IPPROTO_TCP, "tcp", StateFlags::LISTEN),
        (IPPROTO_UDP, "udp", StateFlags::all()),
    ] {
        dump(proto, states, ExtensionFlags::empty(), |r| {
            let id = &r.header.socket_id;
            // A connected UDP socket is a client, not a listener.
            if name == "udp" && id.destination_port != 0 {
                return;
            }
            out.push(Listener {
                protocol: name,
                address: id.source_address,
                port: id.source_port,
                inode: r.header.inode,
            });
        })?;
    }
    Ok(out)
}

/// A TCP socket the kernel destroyed, with its final counters (sock_diag destroy broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub local_port: u16,
    pub counters: TcpCounters,
}

/// Kernel multicast groups of TCP socket destruction (enum sknetlink_groups).
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;

/// Subscribe to TCP socket destruction: the kernel sends each socket's final TCP_INFO as it
/// goes, so bytes moved since the last sample are not lost when a connection closes.
/// Needs CAP_NET_ADMIN.
pub fn closed_sockets() -> Result<async_io::Async<Socket>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| sock_err("open sock_diag", e))?;
    socket
        .bind_auto()
        .map_err(|e| sock_err("bind sock_diag", e))?;
    for g in [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY] {
        socket
            .add_membership(g)
            .map_err(|e| sock_err("join the TCP destroy group (needs CAP_NET_ADMIN)", e))?;
    }
    // Bursts of closes must not overflow the queue between two reads.
    let _ = socket.set_rx_buf_sz(4 * 1024 * 1024);
    async_io::Async::new(socket).map_err(|e| sock_err("register sock_diag socket", e))
}

/// Parse one datagram of destroy broadcasts.
pub fn parse_closed(buf: &[u8]) -> Vec<Closed> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let Ok(msg) = <NetlinkMessage<SockDiagMessage>>::deserialize(&buf[offset..]) else {
            break;
        };
        let len = msg.header.length as usize;
        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) = msg.payload {
            let info = r.nlas.iter().find_map(|n| match n {
                Nla::TcpInfo(b) => Some(b.as_slice()),
                _ => None,
            });
            if let Some(c) = info.and_then(|b| parse_tcp_info(0, r.header.socket_id.cookie, b)) {
                out.push(Closed {
                    local_port: r.header.socket_id.source_port,
                    counters: c,
                });
            }
        }
        if len == 0 {
            break;
        }
        offset += len;
    }
    out
}

/// Offsets in `struct tcp_info` (linux/tcp.h), stable since Linux 4.2.
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_SEGS_OUT: usize = 136;
const TCPI_SEGS_IN: usize = 140;

/// Read the counters out of a raw `tcp_info`. Parsed by offset rather than as a whole struct
/// so that older kernels (a shorter struct) and newer ones (a longer one) both work.
pub fn parse_tcp_info(inode: u32, cookie: [u8; 8], b: &[u8]) -> Option<TcpCounters> {
    let u64_at = |o: usize| Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
    Some(TcpCounters {
        inode,
        cookie: u64::from_ne_bytes(cookie),
        bytes_acked: u64_at(TCPI_BYTES_ACKED)?,
        bytes_received: u64_at(TCPI_BYTES_RECEIVED)?,
        segs_out: u32_at(TCPI_SEGS_OUT)?,
        segs_in: u32_at(TCPI_SEGS_IN)?,
        peer: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        time_wait: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn inode_of(fd: i32) -> u32 {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let s = link.to_string_lossy();
        s.trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap()
    }

    #[test]
    fn short_tcp_info_is_rejected_not_misread() {
        assert_eq!(parse_tcp_info(1, [0; 8], &[0u8; 100]), None);
        let mut b = vec![0u8; 232];
        b[TCPI_BYTES_ACKED..TCPI_BYTES_ACKED + 8].copy_from_slice(&7u64.to_ne_bytes());
        b[TCPI_SEGS_IN..TCPI_SEGS_IN + 4].copy_from_slice(&3u32.to_ne_bytes());
        let c = parse_tcp_info(1, [0; 8], &b).unwrap();
        assert_eq!((c.bytes_acked, c.segs_in), (7, 3));
    }

    /// A real loopback connection: the kernel's counters for our own sockets match the
    /// bytes we moved.
    #[test]
    fn counts_bytes_of_a_real_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&vec![7u8; 100_000]).unwrap();
        let mut got = vec![0u8; 100_000];
        s.read_exact(&mut got).unwrap();
        // Let the ACKs come back.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let all = tcp_counters(TimeWait::Included).unwrap();
        let client = all
            .iter()
            .find(|t| t.inode == inode_of(c.as_raw_fd()))
            .expect("client socket");
        let server = all
            .iter()
            .find(|t| t.inode == inode_of(s.as_raw_fd()))
            .expect("server socket");
        // The kernel counts the SYN as one acknowledged byte.
        assert!(
            (100_000..=100_001).contains(&client.bytes_acked),
            "{client:?}"
        );
        assert!(
            (100_000..=100_001).contains(&server.bytes_received),
            "{server:?}"
        );
        assert!(client.segs_out > 0 && server.segs_in > 0);
        assert_ne!(client.cookie, server.cookie);

        let ls = listeners().unwrap();
        assert!(
            ls.iter().any(|x| x.protocol == "tcp"
                && x.port == port
                && x.inode == inode_of(l.as_raw_fd()))
        );
    }

    /// A real connection closed by this side waits in TIME_WAIT: reported with
    /// `TimeWait::Included` (peer only), left out with `TimeWait::Left`.
    #[test]
    fn time_wait_connections_only_when_asked_for() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let local = c.local_addr().unwrap().port();
        // The side that closes first keeps the TIME_WAIT.
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let waiting = |all: &[TcpCounters]| all.iter().filter(|t| t.time_wait).count();
        let with = tcp_counters(TimeWait::Included).unwrap();
        assert!(waiting(&with) >= 1, "no TIME_WAIT seen for port {local}");
        let without = tcp_counters(TimeWait::Left).unwrap();
        assert_eq!(waiting(&without), 0);
    }

    /// Closing a real connection makes the kernel broadcast its final counters.
    #[test]
    fn destroyed_sockets_report_final_counters() {
        let watch = closed_sockets().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&vec![1u8; 50_000]).unwrap();
        let mut got = vec![0u8; 50_000];
        s.read_exact(&mut got).unwrap();
        drop(c);
        drop(s);
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = vec![0u8; 64 * 1024];
        while std::time::Instant::now() < deadline {
            watch.get_ref().set_non_blocking(true).unwrap();
            match watch.get_ref().recv(&mut &mut buf[..], 0) {
                Ok(n) => seen.extend(parse_closed(&buf[..n])),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
            if seen
                .iter()
                .any(|x| x.local_port == port && x.counters.bytes_received >= 50_000)
            {
                return;
            }
        }
        panic!("no destroy broadcast for the server side of port {port}: {seen:?}");
    }
}
