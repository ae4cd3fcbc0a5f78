//! netmode's sink protocol (version 1): how a sender identifies its traffic, and how it asks
//! the sink what arrived. Receiver-side figures are what the probes report.
//!
//! - TCP data: the connection starts with a 16-byte hello (`NMT1`, kind 1, session), then the
//!   stream of messages. The sink closes the connection once it has read the sender's EOF.
//! - UDP data: every datagram starts with `NMU1`, the session (u32) and a sequence number
//!   (u64, from 0), all little-endian; the rest is padding to the message size.
//! - Report: a TCP connection with hello kind 2 for a session; the sink answers one JSON line
//!   (`SessionReport`) and closes.
//! - Pull (ingress: the sink sends, the prober receives, as `iperf3 -R`): a TCP connection
//!   with hello kind 3 and 12 more bytes: protocol (u8: 0 TCP, 1 UDP), 3 reserved, message
//!   size (u32), duration in ms (u32). TCP: the sink writes messages on this connection for the
//!   duration and closes it. UDP: the sink answers the port (u16) of a fresh UDP socket of its
//!   own; the receiver sends `NMP1` + session datagrams to it until data arrives (which opens
//!   its NAT), and the sink streams probe datagrams back to the address the opener came from,
//!   accepting it only from the TCP peer's address (so it cannot be aimed at a third party),
//!   then writes a `SessionReport` of what it *sent* as one JSON line and closes.
//! - Request/response (as netperf's TCP_RR and UDP_RR): a TCP connection with hello kind 4
//!   and the same 12 bytes of parameters. TCP: the prober writes a request of `size` bytes,
//!   the sink answers `size` bytes, one transaction at a time, until the prober closes. UDP:
//!   the sink answers the port (u16) of a fresh UDP socket, and echoes every request datagram
//!   (`NMR1`, session, sequence number, padding to `size`) that comes from the TCP peer's
//!   address, for the duration.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use netmode_advisor::api::Protocol;
use serde::{Deserialize, Serialize};

pub const TCP_MAGIC: &[u8; 4] = b"NMT1";
pub const UDP_MAGIC: &[u8; 4] = b"NMU1";
pub const HELLO_LEN: usize = 16;
pub const UDP_HEADER_LEN: usize = 16;
pub const KIND_DATA: u8 = 1;
pub const KIND_REPORT: u8 = 2;
pub const KIND_PULL: u8 = 3;
pub const KIND_RR: u8 = 4;
pub const PULL_LEN: usize = 12;
pub const RR_MAGIC: &[u8; 4] = b"NMR1";
pub const OPEN_MAGIC: &[u8; 4] = b"NMP1";
/// The longest stream a pull may ask for.
pub const MAX_PULL: Duration = Duration::from_secs(3600);

/// What a pull asks the sink to send, or the exchange a request/response session makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pull {
    pub protocol: Protocol,
    pub size: u32,
    pub duration: Duration,
}

/// The hello and parameters of a pull (`KIND_PULL`) or a request/response session
/// (`KIND_RR`).
pub fn pull(kind: u8, session: u32, p: &Pull) -> [u8; HELLO_LEN + PULL_LEN] {
    let mut b = [0u8; HELLO_LEN + PULL_LEN];
    b[..HELLO_LEN].copy_from_slice(&hello(kind, session));
    b[HELLO_LEN] = match p.protocol {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    };
    b[HELLO_LEN + 4..HELLO_LEN + 8].copy_from_slice(&p.size.to_le_bytes());
    let ms = p.duration.min(MAX_PULL).as_millis() as u32;
    b[HELLO_LEN + 8..].copy_from_slice(&ms.to_le_bytes());
    b
}

/// A pull's parameters (the 12 bytes after its hello), or `None` if they are not sane.
pub fn parse_pull(b: &[u8]) -> Option<Pull> {
    if b.len() < PULL_LEN {
        return None;
    }
    let protocol = match b[0] {
        0 => Protocol::Tcp,
        1 => Protocol::Udp,
        _ => return None,
    };
    let size = u32::from_le_bytes(b[4..8].try_into().ok()?);
    let duration = Duration::from_millis(u32::from_le_bytes(b[8..12].try_into().ok()?) as u64);
    let min = match protocol {
        Protocol::Tcp => 1,
        Protocol::Udp => UDP_HEADER_LEN as u32,
    };
    ((min..=protocol.max_message()).contains(&size) && !duration.is_zero() && duration <= MAX_PULL)
        .then_some(Pull {
            protocol,
            size,
            duration,
        })
}

/// The datagram that opens a UDP pull's stream.
pub fn open_datagram(session: u32) -> [u8; 8] {
    let mut d = [0u8; 8];
    d[..4].copy_from_slice(OPEN_MAGIC);
    d[4..].copy_from_slice(&session.to_le_bytes());
    d
}

pub fn parse_open_datagram(d: &[u8]) -> Option<u32> {
    (d.len() >= 8 && &d[..4] == OPEN_MAGIC).then(|| u32::from_le_bytes([d[4], d[5], d[6], d[7]]))
}

/// A request datagram's header: `NMR1`, session, sequence number.
pub fn write_rr_header(buf: &mut [u8], session: u32, seq: u64) {
    write_udp_header(buf, session, seq);
    buf[..4].copy_from_slice(RR_MAGIC);
}

/// `(session, seq)` of a request (or its echo), or `None`.
pub fn parse_rr_header(d: &[u8]) -> Option<(u32, u64)> {
    parse_header(d, RR_MAGIC)
}

pub fn hello(kind: u8, session: u32) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(TCP_MAGIC);
    h[4] = kind;
    h[8..12].copy_from_slice(&session.to_le_bytes());
    h
}

/// `(kind, session)` of a hello, or `None` if it is not one.
pub fn parse_hello(h: &[u8]) -> Option<(u8, u32)> {
    if h.len() < HELLO_LEN
        || &h[..4] != TCP_MAGIC
        || !matches!(h[4], KIND_DATA | KIND_REPORT | KIND_PULL | KIND_RR)
    {
        return None;
    }
    Some((h[4], u32::from_le_bytes(h[8..12].try_into().ok()?)))
}

pub fn write_udp_header(buf: &mut [u8], session: u32, seq: u64) {
    buf[..4].copy_from_slice(UDP_MAGIC);
    buf[4..8].copy_from_slice(&session.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
}

/// `(session, seq)` of a probe datagram, or `None` for anything else.
pub fn parse_udp_header(d: &[u8]) -> Option<(u32, u64)> {
    parse_header(d, UDP_MAGIC)
}

/// `(session, seq)` of a 16-byte header that starts with `magic`.
fn parse_header(d: &[u8], magic: &[u8; 4]) -> Option<(u32, u64)> {
    if d.len() < UDP_HEADER_LEN || &d[..4] != magic {
        return None;
    }
    Some((
        u32::from_le_bytes(d[4..8].try_into().ok()?),
        u64::from_le_bytes(d[8..16].try_into().ok()?),
    ))
}

/// What the sink received for one session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    pub session: u32,
    /// Payload bytes received (TCP: after the hello; UDP: whole datagrams).
    pub bytes: u64,
    /// UDP datagrams received (TCP: 0).
    pub datagrams: u64,
    /// Highest UDP sequence number seen plus one: how many were sent up to the last arrival.
    pub expected: u64,
    /// Seconds from the first byte received to the last.
    pub active_s: f64,
    /// TCP connections that carried this session.
    pub connections: u32,
}

impl SessionReport {
    /// UDP loss over what was sent up to the last arrival (0..1).
    pub fn loss(&self) -> Option<f64> {
        (self.expected > 0)
            .then(|| (self.expected.saturating_sub(self.datagrams)) as f64 / self.expected as f64)
    }
}

/// Ask the sink at `addr` what it received for `session`.
pub fn query(addr: SocketAddr, session: u32, timeout: Duration) -> io::Result<SessionReport> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(&hello(KIND_REPORT, session))?;
    let mut text = String::new();
    s.take(64 * 1024).read_to_string(&mut text)?;
    serde_json::from_str(text.trim()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_header_round_trip() {
        let h = hello(KIND_REPORT, 0xdead_beef);
        assert_eq!(parse_hello(&h), Some((KIND_REPORT, 0xdead_beef)));
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n\r\n"), None);
        let mut d = [0u8; 64];
        write_udp_header(&mut d, 7, 1 << 40);
        assert_eq!(parse_udp_header(&d), Some((7, 1 << 40)));
        assert_eq!(parse_udp_header(&d[..10]), None);
    }

    #[test]
    fn pulls_round_trip_and_insane_ones_are_refused() {
        let p = Pull {
            protocol: Protocol::Udp,
            size: 1024,
            duration: Duration::from_millis(2500),
        };
        let b = pull(KIND_PULL, 42, &p);
        assert_eq!(parse_hello(&b), Some((KIND_PULL, 42)));
        assert_eq!(parse_pull(&b[HELLO_LEN..]), Some(p));
        let with = |f: &dyn Fn(&mut [u8])| {
            let mut b = b;
            f(&mut b[HELLO_LEN..]);
            parse_pull(&b[HELLO_LEN..])
        };
        assert_eq!(with(&|b| b[0] = 9), None);
        // A UDP message must hold the probe header; no empty or endless streams.
        assert_eq!(
            with(&|b| b[4..8].copy_from_slice(&8u32.to_le_bytes())),
            None
        );
        assert_eq!(
            with(&|b| b[8..12].copy_from_slice(&0u32.to_le_bytes())),
            None
        );
        assert_eq!(
            with(&|b| b[8..12].copy_from_slice(&u32::MAX.to_le_bytes())),
            None
        );
        assert_eq!(parse_open_datagram(&open_datagram(7)), Some(7));
        assert_eq!(parse_open_datagram(b"NMU1xxxx"), None);
        let mut d = [0u8; 32];
        write_rr_header(&mut d, 5, 9);
        assert_eq!(parse_rr_header(&d), Some((5, 9)));
        assert_eq!(parse_udp_header(&d), None, "a request is not stream data");
        assert_eq!(parse_hello(&pull(KIND_RR, 1, &p)), Some((KIND_RR, 1)));
    }

    #[test]
    fn loss_is_over_what_was_sent() {
        let r = SessionReport {
            datagrams: 90,
            expected: 100,
            ..Default::default()
        };
        assert_eq!(r.loss(), Some(0.1));
        assert_eq!(SessionReport::default().loss(), None);
    }
}
