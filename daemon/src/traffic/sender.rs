//! The sender for a netmode sink: a TCP stream of `size`-byte writes, or a stream of
//! `size`-byte UDP datagrams sent in batches (sendmmsg), for a fixed duration, with an optional
//! rate cap. The receiver's report is the result. For an ingress probe the roles turn round:
//! the sink sends (a pull, see `wire`) and this end receives and counts.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netmode_advisor::api::{Direction, Pattern, Protocol};

use super::socket::{self, tcp_stream, udp_socket, udp_stream, waited};
use super::{Outcome, SendSpec, wire};
use crate::error::TrafficError;

pub fn run(spec: &SendSpec) -> Result<Outcome, TrafficError> {
    let addr = spec.target.addr();
    // Request/response and ingress: this end counts what it gets, no report to ask for.
    let receiving = match (spec.pattern, spec.direction, spec.protocol) {
        (Pattern::RequestResponse, _, Protocol::Tcp) => {
            Some(("request/response with", in_flight(spec, addr, rr_tcp)))
        }
        (Pattern::RequestResponse, _, Protocol::Udp) => {
            Some(("request/response with", in_flight(spec, addr, rr_udp)))
        }
        (Pattern::Stream, Direction::Ingress, Protocol::Tcp) => {
            Some(("receiving from", pull_tcp(addr, spec)))
        }
        (Pattern::Stream, Direction::Ingress, Protocol::Udp) => {
            Some(("receiving from", pull_udp(addr, spec)))
        }
        (Pattern::Stream, Direction::Egress, _) => None,
    };
    if let Some((what, r)) = receiving {
        return r.map_err(TrafficError::io(format!("{what} the sink at {addr}")));
    }
    let mut out = match spec.protocol {
        Protocol::Tcp => send_tcp(addr, spec),
        Protocol::Udp => send_udp(addr, spec),
    }
    .map_err(TrafficError::io(format!("sending to {addr}")))?;
    let report = wire::query(addr, spec.session, Duration::from_secs(10)).map_err(
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

/// First and last arrival, and bytes: what a receiver counts.
#[derive(Default)]
pub(super) struct Arrivals {
    pub bytes: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Arrivals {
    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.bytes += bytes;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    pub fn active_s(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

fn pull_hello(spec: &SendSpec) -> [u8; wire::HELLO_LEN + wire::PULL_LEN] {
    let kind = match spec.pattern {
        Pattern::Stream => wire::KIND_PULL,
        Pattern::RequestResponse => wire::KIND_RR,
    };
    wire::pull(
        kind,
        spec.session,
        &wire::Pull {
            protocol: spec.protocol,
            size: spec.size as u32,
            duration: spec.duration,
        },
    )
}

/// Ingress TCP: the sink writes for the duration; read until it closes.
fn pull_tcp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.write_all(&pull_hello(spec))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 128 * 1024];
    let mut got = Arrivals::default();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.add(n as u64, Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome {
        sent_bytes: got.bytes,
        sent_messages: got.bytes / spec.size.max(1) as u64,
        elapsed_s: start.elapsed().as_secs_f64(),
        received_bytes: got.bytes,
        received_active_s: got.active_s(),
        ..Default::default()
    })
}

/// Ingress UDP: open the sink's stream (the opener datagram, resent until data flows), count
/// what arrives for the duration, then read the sink's account of what it sent.
fn pull_udp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut control = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    control.write_all(&pull_hello(spec))?;
    control.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut port = [0u8; 2];
    control.read_exact(&mut port)?;
    let s = udp_socket(SocketAddr::new(addr.ip(), u16::from_le_bytes(port)))?;
    socket::grow_receive_buffer(&s, 8 << 20);
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let opener = wire::open_datagram(spec.session);
    let mut rx = socket::Batch::new();
    let mut got = Arrivals::default();
    let (mut datagrams, mut next_seq) = (0u64, 0u64);
    let give_up = start + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        match got.first {
            None if now >= give_up => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the sink's UDP stream never arrived (a firewall or NAT in the way?)",
                ));
            }
            // Not open yet: (re)send the opener; datagrams get lost.
            None => {
                let _ = s.send(&opener);
            }
            // The stream lasts the duration from its first datagram; a little more for the
            // ones in flight, and done early when it has gone quiet.
            Some(first) => {
                let quiet = got
                    .last
                    .is_some_and(|l| now.duration_since(l) > Duration::from_millis(500));
                if now >= first + spec.duration + Duration::from_millis(300) || quiet {
                    break;
                }
            }
        }
        let n = match rx.recv(s.as_raw_fd()) {
            Ok(n) => n,
            Err(e) if waited(&e) => continue,
            // ICMP errors of the opener before the sink listened: try again.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => continue,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        for i in 0..n {
            let (len, head) = rx.datagram(i);
            if let Some((session, seq)) = wire::parse_udp_header(head)
                && session == spec.session
            {
                got.add(len, now);
                datagrams += 1;
                next_seq = next_seq.max(seq + 1);
            }
        }
    }
    // What the sink sent, by its own account once its stream is over.
    let mut line = String::new();
    let sent: Option<wire::SessionReport> = (&mut control)
        .take(64 * 1024)
        .read_to_string(&mut line)
        .ok()
        .and_then(|_| serde_json::from_str(line.trim()).ok());
    let (sent_messages, sent_bytes) = match &sent {
        Some(r) => (r.datagrams, r.bytes),
        None => (next_seq, next_seq * spec.size as u64),
    };
    Ok(Outcome {
        sent_bytes,
        sent_messages,
        elapsed_s: start.elapsed().as_secs_f64(),
        received_bytes: got.bytes,
        received_active_s: got.active_s(),
        loss: (sent_messages > 0)
            .then(|| sent_messages.saturating_sub(datagrams) as f64 / sent_messages as f64),
        ..Default::default()
    })
}

/// Round-trip times of transactions, to summarise.
#[derive(Default)]
struct Rtts(Vec<u32>);

impl Rtts {
    fn add(&mut self, since: Instant) {
        self.0
            .push(since.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }

    /// The outcome of `n` transactions of `size` bytes each way over `elapsed`.
    fn outcome(mut self, size: usize, elapsed: Duration, lost: u64) -> Outcome {
        self.0.sort_unstable();
        let n = self.0.len() as u64;
        let at = |q: f64| {
            (!self.0.is_empty())
                .then(|| self.0[((self.0.len() as f64 * q) as usize).min(self.0.len() - 1)] as f64)
        };
        let bytes = n * size as u64;
        Outcome {
            sent_bytes: (n + lost) * size as u64,
            sent_messages: n + lost,
            elapsed_s: elapsed.as_secs_f64(),
            received_bytes: bytes,
            received_active_s: elapsed.as_secs_f64(),
            loss: None,
            transactions: n,
            latency_p50_us: at(0.5),
            latency_p99_us: at(0.99),
            ..Default::default()
        }
    }
}

/// `spec.in_flight` exchanges at once, each on its own connection (a thread each): their
/// transactions summed, round trips pooled, over the longest one's time.
/// UDP's loss is the share of requests that got no answer in time.
fn in_flight(
    spec: &SendSpec,
    addr: SocketAddr,
    one: fn(SocketAddr, &SendSpec) -> io::Result<Exchanges>,
) -> io::Result<Outcome> {
    // The others on threads of their own, the first on this one.
    let others: Vec<_> = (1..spec.in_flight.max(1))
        .map(|_| {
            let spec = spec.clone();
            std::thread::spawn(move || one(addr, &spec))
        })
        .collect();
    let mut results = vec![one(addr, spec)];
    for h in others {
        results.push(
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("an exchange thread panicked"))),
        );
    }
    let (mut rtts, mut elapsed, mut lost, mut sent) = (Rtts::default(), Duration::ZERO, 0, 0);
    for r in results {
        let x = r?;
        rtts.0.extend(x.rtts.0);
        elapsed = elapsed.max(x.elapsed);
        lost += x.lost;
        sent += x.sent;
    }
    let mut out = rtts.outcome(spec.size, elapsed, lost);
    out.loss = (spec.protocol == Protocol::Udp && sent > 0).then(|| lost as f64 / sent as f64);
    Ok(out)
}

/// What one connection's exchanges came to.
struct Exchanges {
    rtts: Rtts,
    elapsed: Duration,
    /// Requests that got no answer in time (UDP).
    lost: u64,
    sent: u64,
}

/// Request/response over TCP: a request of `size` bytes, the answer, the next request.
fn rr_tcp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Exchanges> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.write_all(&pull_hello(spec))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = vec![0x72u8; spec.size.max(1)];
    let mut rtts = Rtts::default();
    let start = Instant::now();
    while start.elapsed() < spec.duration {
        let t = Instant::now();
        s.write_all(&req)?;
        s.read_exact(&mut req)?;
        rtts.add(t);
    }
    let elapsed = start.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    let sent = rtts.0.len() as u64;
    Ok(Exchanges {
        rtts,
        elapsed,
        lost: 0,
        sent,
    })
}

/// Request/response over UDP: a request datagram, its echo (or 200 ms without one: lost),
/// the next request.
fn rr_udp(addr: SocketAddr, spec: &SendSpec) -> io::Result<Exchanges> {
    if spec.size < wire::UDP_HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "UDP message size must be at least {} bytes (the probe header)",
                wire::UDP_HEADER_LEN
            ),
        ));
    }
    let mut control = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    control.write_all(&pull_hello(spec))?;
    control.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut port = [0u8; 2];
    control.read_exact(&mut port)?;
    let s = udp_socket(SocketAddr::new(addr.ip(), u16::from_le_bytes(port)))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut req = vec![0x72u8; spec.size];
    let mut answer = vec![0u8; spec.size + 64];
    let (mut rtts, mut lost) = (Rtts::default(), 0u64);
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < spec.duration {
        wire::write_rr_header(&mut req, spec.session, seq);
        let t = Instant::now();
        s.send(&req)?;
        let deadline = t + Duration::from_millis(200);
        loop {
            match s.recv(&mut answer) {
                // An answer to an earlier, given-up request: keep waiting for this one.
                Ok(n) if wire::parse_rr_header(&answer[..n]) == Some((spec.session, seq)) => {
                    rtts.add(t);
                    break;
                }
                Ok(_) => {}
                Err(e) if waited(&e) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                lost += 1;
                break;
            }
        }
        seq += 1;
    }
    Ok(Exchanges {
        rtts,
        elapsed: start.elapsed(),
        lost,
        sent: seq,
    })
}

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
            direction: Direction::Egress,
            pattern: Pattern::Stream,
            in_flight: 1,
        }
    }

    /// A real sink on loopback: what it received equals what was sent (TCP loses nothing).
    #[test]
    fn tcp_to_a_real_sink_counts_every_byte() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for size in [64, 1024, Protocol::Tcp.max_message() as usize] {
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

    /// Ingress: a real sink sends, this end counts; TCP gets every byte the sink wrote, UDP
    /// compares with the sink's own account of what it sent.
    #[test]
    fn ingress_from_a_real_sink() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for (protocol, size) in [
            (Protocol::Tcp, 64),
            (Protocol::Tcp, 1024),
            (Protocol::Tcp, Protocol::Tcp.max_message() as usize),
            (Protocol::Udp, 1024),
        ] {
            let mut s = spec(sink.tcp_addr, protocol, size, 400);
            s.direction = Direction::Ingress;
            let o = run(&s).unwrap();
            assert!(o.received_bytes > 0, "{protocol:?} {o:?}");
            assert!(o.received_bytes <= o.sent_bytes, "{protocol:?} {o:?}");
            // It lasted about the duration asked for, timed from the first arrival.
            assert!(
                (0.2..1.0).contains(&o.received_active_s),
                "{protocol:?} {o:?}"
            );
            match protocol {
                Protocol::Tcp => assert_eq!(o.loss, None),
                Protocol::Udp => {
                    let loss = o.loss.unwrap();
                    assert!((0.0..1.0).contains(&loss), "{o:?}");
                    assert!(o.received_bytes.is_multiple_of(1024), "{o:?}");
                }
            }
        }
    }

    /// Request/response with a real sink: transactions counted, latencies ordered, and
    /// the goodput is the requests' bytes.
    #[test]
    fn request_response_with_a_real_sink() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let mut s = spec(sink.tcp_addr, protocol, 64, 300);
            s.pattern = Pattern::RequestResponse;
            let o = run(&s).unwrap();
            assert!(o.transactions > 100, "{protocol:?} {o:?}");
            let (p50, p99) = (o.latency_p50_us.unwrap(), o.latency_p99_us.unwrap());
            assert!(p50 > 0.0 && p50 <= p99 && p99 < 200_000.0, "{o:?}");
            assert_eq!(o.received_bytes, o.transactions * 64);
            if protocol == Protocol::Udp {
                assert!(o.loss.is_some_and(|l| l < 0.5), "{o:?}");
            }
        }
    }

    /// Several exchanges in flight: each on a connection of its own, all open at once, and
    /// every exchange of every connection counted (an echo server of the test's own counts
    /// the connections; the real sink answers the UDP ones).
    #[test]
    fn exchanges_in_flight_each_have_a_connection() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, most, accepted) = (
            std::sync::Arc::new(AtomicUsize::new(0)),
            std::sync::Arc::new(AtomicUsize::new(0)),
            std::sync::Arc::new(AtomicUsize::new(0)),
        );
        let (o2, m2, a2) = (open.clone(), most.clone(), accepted.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                a2.fetch_add(1, SeqCst);
                let now = o2.fetch_add(1, SeqCst) + 1;
                m2.fetch_max(now, SeqCst);
                let o3 = o2.clone();
                std::thread::spawn(move || {
                    let mut hello = [0u8; wire::HELLO_LEN + wire::PULL_LEN];
                    let mut msg = [0u8; 64];
                    if conn.read_exact(&mut hello).is_ok() {
                        while conn.read_exact(&mut msg).is_ok() && conn.write_all(&msg).is_ok() {}
                    }
                    o3.fetch_sub(1, SeqCst);
                });
            }
        });
        let mut s = spec(addr, Protocol::Tcp, 64, 300);
        s.pattern = Pattern::RequestResponse;
        s.in_flight = 8;
        let o = run(&s).unwrap();
        assert_eq!(accepted.load(SeqCst), 8, "{o:?}");
        assert_eq!(most.load(SeqCst), 8, "all eight open at once: {o:?}");
        assert!(
            o.transactions >= 8 && o.received_bytes == o.transactions * 64,
            "{o:?}"
        );
        assert!(o.loss.is_none(), "{o:?}");

        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = spec(sink.tcp_addr, Protocol::Udp, 64, 300);
        s.pattern = Pattern::RequestResponse;
        s.in_flight = 4;
        let o = run(&s).unwrap();
        assert!(
            o.transactions > 4 && o.received_bytes == o.transactions * 64,
            "{o:?}"
        );
        assert!(o.loss.is_some_and(|l| l < 0.5), "{o:?}");
    }

    /// A pull that asks for nonsense (a UDP size below the header, or above a datagram's
    /// largest, a TCP write above its largest) gets nothing, not a stream.
    #[test]
    fn insane_pulls_are_refused() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        for (protocol, size) in [
            (Protocol::Udp, 8),
            (Protocol::Udp, Protocol::Udp.max_message() as usize + 1),
            (Protocol::Tcp, Protocol::Tcp.max_message() as usize + 1),
        ] {
            let mut s = spec(sink.tcp_addr, protocol, size, 200);
            s.direction = Direction::Ingress;
            let refused = match run(&s) {
                Err(_) => true,
                Ok(o) => o.received_bytes == 0,
            };
            assert!(refused, "{protocol:?} {size}");
        }
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
