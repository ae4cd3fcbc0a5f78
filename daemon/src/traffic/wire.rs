//! netmode's sink protocol (version 1): how a sender identifies its traffic, and how it asks
//! the sink what arrived. Receiver-side figures are what the probes report.
//!
//! - TCP data: the connection starts with a 16-byte hello (`NMT1`, kind 1, session), then the
//!   stream of messages. The sink closes the connection once it has read the sender's EOF.
//! - UDP data: every datagram starts with `NMU1`, the session (u32) and a sequence number
//!   (u64, from 0), all little-endian; the rest is padding to the message size.
//! - Report: a TCP connection with hello kind 2 for a session; the sink answers one JSON line
//!   (`SessionReport`) and closes.

use serde::{Deserialize, Serialize};

pub const TCP_MAGIC: &[u8; 4] = b"NMT1";
pub const UDP_MAGIC: &[u8; 4] = b"NMU1";
pub const HELLO_LEN: usize = 16;
pub const UDP_HEADER_LEN: usize = 16;
pub const KIND_DATA: u8 = 1;
pub const KIND_REPORT: u8 = 2;

pub fn hello(kind: u8, session: u32) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(TCP_MAGIC);
    h[4] = kind;
    h[8..12].copy_from_slice(&session.to_le_bytes());
    h
}

/// `(kind, session)` of a hello, or `None` if it is not one.
pub fn parse_hello(h: &[u8]) -> Option<(u8, u32)> {
    if h.len() < HELLO_LEN || &h[..4] != TCP_MAGIC || !matches!(h[4], KIND_DATA | KIND_REPORT) {
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
    if d.len() < UDP_HEADER_LEN || &d[..4] != UDP_MAGIC {
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
