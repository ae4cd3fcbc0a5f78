//! The sender for a netmode sink: a TCP stream of `size`-byte writes, or a stream of
//! `size`-byte UDP datagrams sent in batches (sendmmsg), for a fixed duration, with an optional
//! rate cap. The receiver's report is the result.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netmode_advisor::api::Protocol;

use super::{Outcome, SendSpec, sink, wire};
use crate::error::TrafficError;

/// Paces a sender to a bit rate.
pub struct Pacer {
    start: Instant,
    bytes_per_s: Option<f64>,
}

impl Pacer {
    pub fn new(rate_bps: Option<u64>) -> Pacer {
        Pacer {
            start: Instant::now(),
            bytes_per_s: rate_bps.filter(|r| *r > 0).map(|r| r as f64 / 8.0),
        }
    }

    /// Sleep if `sent` bytes are ahead of the rate.
    pub fn pace(&self, sent: u64) {
        if let Some(rate) = self.bytes_per_s {
            let due = self.start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

pub fn run(spec: &SendSpec) -> Result<Outcome, TrafficError> {
    let addr = spec.target.addr();
    let mut out = match spec.protocol {
        Protocol::Tcp => send_tcp(addr, spec),
        Protocol::Udp => send_udp(addr, spec),
    }
    .map_err(TrafficError::io(format!("sending to {addr}")))?;
    let report = sink::query(addr, spec.session, Duration::from_secs(10)).map_err(
        TrafficError::io(format!("asking the sink at {addr} for its report")),
    )?;
    out.received_bytes = report.bytes;
    out.received_active_s = report.active_s;
    out.loss = match spec.protocol {
        Protocol::Udp => report.loss(),
        Protocol::Tcp => None,
    };
    Ok(out)
}

fn send_tcp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Outcome> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.write_all(&wire::hello(wire::KIND_DATA, spec.session))?;
    let out = tcp_stream(&mut s, spec)?;
    // The sink closes once it has read everything we sent.
    s.shutdown(Shutdown::Write)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(out)
}

/// Write `spec.size`-byte messages to `s` for `spec.duration` (paced to `spec.rate_bps`).
pub(super) fn tcp_stream(s: &mut TcpStream, spec: &SendSpec) -> io::Result<Outcome> {
    let msg = vec![0x6eu8; spec.size.max(1)];
    let pacer = Pacer::new(spec.rate_bps);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let (mut bytes, mut messages) = (0u64, 0u64);
    loop {
        s.write_all(&msg)?;
        bytes += msg.len() as u64;
        messages += 1;
        // Reading the clock is cheap, but not free at 64-byte writes.
        if messages % 32 == 0 {
            if Instant::now() >= deadline {
                break;
            }
            pacer.pace(bytes);
        }
    }
    Ok(Outcome {
        sent_bytes: bytes,
        sent_messages: messages,
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// Datagrams per sendmmsg call.
const BATCH: usize = 32;

fn send_udp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Outcome> {
    let s = udp_socket(addr)?;
    let session = spec.session;
    let out = udp_stream(&s, spec, wire::UDP_HEADER_LEN, |buf, seq| {
        wire::write_udp_header(buf, session, seq)
    })?;
    // Let datagrams in flight arrive before asking.
    std::thread::sleep(Duration::from_millis(300));
    Ok(out)
}

/// A UDP socket connected to `addr`.
pub(super) fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    let s = UdpSocket::bind(bind)?;
    s.connect(addr)?;
    Ok(s)
}

/// Send `spec.size`-byte datagrams on the connected socket `s` for `spec.duration`,
/// `header(buf, seq)` writing each datagram's header (`header_len` bytes, sequence numbers
/// from 0), in batches of `BATCH` through sendmmsg.
pub(super) fn udp_stream(
    s: &UdpSocket,
    spec: &SendSpec,
    header_len: usize,
    mut header: impl FnMut(&mut [u8], u64),
) -> io::Result<Outcome> {
    if spec.size < header_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UDP message size must be at least {header_len} bytes (the probe header)"),
        ));
    }
    let fd = s.as_raw_fd();
    let size = spec.size;
    let mut bufs = vec![0x75u8; size * BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(size)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: size,
        })
        .collect();
    // SAFETY: zeroed mmsghdr is a valid empty header; each points at one iovec.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let pacer = Pacer::new(spec.rate_bps);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let (mut seq, mut bytes, mut messages, mut errors) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        for (i, chunk) in bufs.chunks_mut(size).enumerate() {
            header(chunk, seq + i as u64);
        }
        let mut done = 0usize;
        while done < BATCH {
            // SAFETY: hdrs[done..] point into `bufs`, alive for the call.
            let n =
                unsafe { libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (BATCH - done) as _, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // The sink's port is closed (ICMP port unreachable): nothing will arrive.
                    Some(libc::ECONNREFUSED) => return Err(e),
                    Some(libc::EINTR) => continue,
                    // Queue full: the datagram is lost, as on a real link. Count it.
                    _ => {
                        errors += 1;
                        done += 1;
                        std::thread::yield_now();
                        continue;
                    }
                }
            }
            let n = n as usize;
            bytes += (n * size) as u64;
            messages += n as u64;
            done += n;
        }
        // Sequence numbers advance per attempt so the receiver's loss figure is honest.
        seq += BATCH as u64;
        pacer.pace(bytes);
    }
    Ok(Outcome {
        sent_bytes: bytes,
        sent_messages: messages,
        send_errors: errors,
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::{SendSpec, Target, sink::Sink};
    use super::*;

    fn spec(addr: SocketAddr, protocol: Protocol, size: usize, ms: u64) -> SendSpec {
        SendSpec {
            target: Target::Netmode(addr),
            protocol,
            size,
            duration: Duration::from_millis(ms),
            rate_bps: None,
            session: super::super::new_session(),
        }
    }

    /// A real sink on loopback: what it received equals what was sent (TCP loses nothing).
    #[test]
    fn tcp_to_a_real_sink_counts_every_byte() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for size in [64, 1024] {
            let o = run(&spec(sink.tcp_addr, Protocol::Tcp, size, 300)).unwrap();
            assert!(o.sent_bytes > 0);
            assert_eq!(o.received_bytes, o.sent_bytes, "{o:?}");
            assert_eq!(o.sent_bytes, o.sent_messages * size as u64);
            assert!(o.goodput_bps() > 0.0 && o.loss.is_none());
        }
    }

    #[test]
    fn udp_to_a_real_sink_reports_loss_and_goodput() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let o = run(&spec(sink.tcp_addr, Protocol::Udp, 1024, 300)).unwrap();
        assert!(
            o.received_bytes > 0 && o.received_bytes <= o.sent_bytes,
            "{o:?}"
        );
        let loss = o.loss.unwrap();
        assert!((0.0..1.0).contains(&loss), "{o:?}");
        // Received = sent minus what was lost (up to the last datagram that arrived).
        assert!(o.received_bytes.is_multiple_of(1024));
    }

    #[test]
    fn rate_cap_is_respected() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = spec(sink.tcp_addr, Protocol::Tcp, 1024, 1000);
        s.rate_bps = Some(8_000_000);
        let o = run(&s).unwrap();
        let rate = o.sent_bps();
        assert!(
            rate < 8_000_000.0 * 1.15 && rate > 8_000_000.0 * 0.7,
            "{rate}"
        );
    }

    #[test]
    fn a_closed_port_and_tiny_datagrams_are_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = run(&spec(port, Protocol::Tcp, 64, 100)).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let e = run(&spec(sink.tcp_addr, Protocol::Udp, 8, 100)).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
    }
}
