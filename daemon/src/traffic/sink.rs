//! The probe sink: receives probe traffic (TCP streams and UDP datagrams), counts it per
//! session on the receiving side, answers report queries, and sends to probes that pull
//! (ingress probes: `wire` has the protocol). Plain threads with blocking
//! sockets: the receive path is as short as it can be. Used by `netmoded sink` on an upstream
//! host and, inside its own network namespace, as the daemon's local sink.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netmode_advisor::api::{Direction, Pattern, Protocol};

use super::socket::{self, Batch, grow_receive_buffer};
use super::wire::{self, SessionReport};
use super::{SendSpec, Target};

/// Sessions idle longer than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(300);
const MAX_SESSIONS: usize = 4096;
/// Concurrent TCP connections served; more are closed at once.
const MAX_CONNECTIONS: usize = 256;

#[derive(Default)]
struct Acc {
    bytes: u64,
    datagrams: u64,
    next_seq: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    connections: u32,
    touched: Option<Instant>,
}

#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<u32, Acc>>,
}

impl Sessions {
    fn with<R>(&self, session: u32, f: impl FnOnce(&mut Acc) -> R) -> R {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&session) {
            let now = Instant::now();
            map.retain(|_, a| {
                a.touched
                    .is_some_and(|t| now.duration_since(t) < SESSION_TTL)
            });
            if map.len() >= MAX_SESSIONS {
                // Forget the stalest.
                if let Some(k) = map.iter().min_by_key(|(_, a)| a.touched).map(|(k, _)| *k) {
                    map.remove(&k);
                }
            }
        }
        let acc = map.entry(session).or_default();
        acc.touched = Some(Instant::now());
        f(acc)
    }

    fn report(&self, session: u32) -> SessionReport {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = map.get(&session) else {
            return SessionReport {
                session,
                ..Default::default()
            };
        };
        SessionReport {
            session,
            bytes: a.bytes,
            datagrams: a.datagrams,
            expected: a.next_seq,
            active_s: match (a.first, a.last) {
                (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
                _ => 0.0,
            },
            connections: a.connections,
        }
    }
}

/// A running sink. Dropping it stops it.
pub struct Sink {
    pub tcp_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener_fd: i32,
    udp_fd: i32,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// Serve on sockets already bound in this thread's network namespace.
    pub fn serve(tcp: TcpListener, udp: UdpSocket) -> io::Result<Sink> {
        Sink::serve_with(tcp, udp, Arc::new(UdpSocket::bind))
    }

    /// Serve on sockets already bound (possibly in another network namespace: a socket stays
    /// in the namespace it was created in, whatever thread uses it); `udp_socket` binds the
    /// UDP sockets of ingress probes in the same namespace.
    pub fn serve_with(
        tcp: TcpListener,
        udp: UdpSocket,
        udp_socket: UdpFactory,
    ) -> io::Result<Sink> {
        let tcp_addr = tcp.local_addr()?;
        let sessions = Arc::new(Sessions::default());
        let stop = Arc::new(AtomicBool::new(false));
        // No read timeout: an idle sink sleeps in recvmmsg until a datagram comes or Drop
        // shuts the socket down (a timeout would wake it several times a second for nothing).
        grow_receive_buffer(&udp, 8 << 20);
        let listener_fd = tcp.as_raw_fd();
        let udp_fd = udp.as_raw_fd();
        let mut threads = Vec::new();
        {
            let (sessions, stop) = (sessions.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("sink-udp".into())
                    .spawn(move || udp_loop(udp, &sessions, &stop))?,
            );
        }
        {
            let (sessions, stop) = (sessions.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("sink-tcp".into())
                    .spawn(move || accept_loop(tcp, sessions, stop, udp_socket))?,
            );
        }
        Ok(Sink {
            tcp_addr,
            stop,
            listener_fd,
            udp_fd,
            threads,
        })
    }

    /// Bind TCP and UDP on `addr` (same port for both) and serve.
    pub fn bind(addr: SocketAddr) -> io::Result<Sink> {
        let tcp = TcpListener::bind(addr)?;
        let udp = UdpSocket::bind(tcp.local_addr()?)?;
        Sink::serve(tcp, udp)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept() with an error, and the blocked recvmmsg() (on Linux a
        // shut-down UDP socket returns at once, even unconnected).
        // SAFETY: shutdown on descriptors owned by the accept and UDP threads until they
        // return (we join them below).
        unsafe {
            libc::shutdown(self.listener_fd, libc::SHUT_RDWR);
            libc::shutdown(self.udp_fd, libc::SHUT_RDWR);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Binds a UDP socket where the sink's sockets live (its network namespace).
pub type UdpFactory = Arc<dyn Fn(SocketAddr) -> io::Result<UdpSocket> + Send + Sync>;

fn accept_loop(
    listener: TcpListener,
    sessions: Arc<Sessions>,
    stop: Arc<AtomicBool>,
    udp_socket: UdpFactory,
) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else {
            // EMFILE and the like: do not spin.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (sessions, active, stop) = (sessions.clone(), active.clone(), stop.clone());
        let udp_socket = udp_socket.clone();
        let spawned = std::thread::Builder::new()
            .name("sink-conn".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = serve_conn(conn, &sessions, &stop, &udp_socket);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("sink: cannot start a connection thread");
        }
    }
}

fn serve_conn(
    mut conn: TcpStream,
    sessions: &Sessions,
    stop: &AtomicBool,
    udp_socket: &UdpFactory,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hello = [0u8; wire::HELLO_LEN];
    conn.read_exact(&mut hello)?;
    let Some((kind, session)) = wire::parse_hello(&hello) else {
        return Ok(());
    };
    if kind == wire::KIND_PULL {
        return serve_pull(conn, session, udp_socket);
    }
    if kind == wire::KIND_RR {
        return serve_rr(conn, session, udp_socket);
    }
    if kind == wire::KIND_REPORT {
        let mut line = serde_json::to_vec(&sessions.report(session)).map_err(io::Error::other)?;
        line.push(b'\n');
        conn.write_all(&line)?;
        return Ok(());
    }
    sessions.with(session, |a| a.connections += 1);
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = vec![0u8; 128 * 1024];
    let (mut bytes, mut first, mut last) = (0u64, None, None);
    let mut flush_at = Instant::now() + Duration::from_millis(500);
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                bytes += n as u64;
                first.get_or_insert(now);
                last = Some(now);
                // Merge now and then, so a report asked for mid-stream is not empty.
                if now >= flush_at {
                    merge(sessions, session, &mut bytes, &mut first, last);
                    flush_at = now + Duration::from_millis(500);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    merge(sessions, session, &mut bytes, &mut first, last);
    // Our close tells the sender everything was read.
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

fn merge(
    sessions: &Sessions,
    session: u32,
    bytes: &mut u64,
    first: &mut Option<Instant>,
    last: Option<Instant>,
) {
    if *bytes == 0 && last.is_none() {
        return;
    }
    sessions.with(session, |a| {
        a.bytes += *bytes;
        if let Some(f) = first.take() {
            a.first = Some(a.first.map_or(f, |x| x.min(f)));
        }
        if let Some(l) = last {
            a.last = Some(a.last.map_or(l, |x| x.max(l)));
        }
    });
    *bytes = 0;
}

fn udp_loop(udp: UdpSocket, sessions: &Sessions, stop: &AtomicBool) {
    let fd = udp.as_raw_fd();
    let mut rx = Batch::new();
    let mut batch: HashMap<u32, (u64, u64, u64)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let n = rx.recv(fd);
        // Checked before the batch: after Drop's shutdown the call returns empty datagrams
        // and the buffers still hold old headers.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(n) = n else {
            continue; // EINTR
        };
        let now = Instant::now();
        batch.clear();
        for i in 0..n {
            let (len, head) = rx.datagram(i);
            if let Some((session, seq)) = wire::parse_udp_header(head) {
                let e = batch.entry(session).or_insert((0, 0, 0));
                e.0 += len;
                e.1 += 1;
                e.2 = e.2.max(seq + 1);
            }
        }
        for (session, (bytes, datagrams, next_seq)) in batch.drain() {
            sessions.with(session, |a| {
                a.bytes += bytes;
                a.datagrams += datagrams;
                a.next_seq = a.next_seq.max(next_seq);
                a.first.get_or_insert(now);
                a.last = Some(now);
            });
        }
    }
}

/// Serve a pull (an ingress probe): send what it asks for to the puller.
fn serve_pull(mut conn: TcpStream, session: u32, udp_socket: &UdpFactory) -> io::Result<()> {
    let mut params = [0u8; wire::PULL_LEN];
    conn.read_exact(&mut params)?;
    let Some(pull) = wire::parse_pull(&params) else {
        return Ok(());
    };
    let peer = conn.peer_addr()?;
    let spec = SendSpec {
        target: Target::Netmode(peer),
        protocol: pull.protocol,
        size: pull.size as usize,
        duration: pull.duration,
        rate_bps: None,
        session,
        direction: Direction::Egress,
        pattern: Pattern::Stream,
        in_flight: 1,
    };
    // A receiver that stops reading ends the stream instead of holding a thread forever.
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    match pull.protocol {
        Protocol::Tcp => {
            socket::tcp_stream(&mut conn, &spec)?;
            conn.shutdown(Shutdown::Write)?;
            // Until the receiver has read it all and closed its end.
            conn.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut rest = [0u8; 64];
            while conn.read(&mut rest)? > 0 {}
        }
        Protocol::Udp => {
            let udp = udp_for(&mut conn, udp_socket)?;
            udp.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut d = [0u8; 64];
            // The opener, from the TCP peer's address only.
            let from = loop {
                let (n, from) = udp.recv_from(&mut d)?;
                if from.ip() == peer.ip() && wire::parse_open_datagram(&d[..n]) == Some(session) {
                    break from;
                }
            };
            udp.connect(from)?;
            let out = socket::udp_stream(&udp, &spec, wire::UDP_HEADER_LEN, |buf, seq| {
                wire::write_udp_header(buf, session, seq)
            })?;
            let sent = SessionReport {
                session,
                bytes: out.sent_bytes,
                datagrams: out.sent_messages,
                expected: out.sent_messages + out.send_errors,
                active_s: out.elapsed_s,
                connections: 1,
            };
            let mut line = serde_json::to_vec(&sent).map_err(io::Error::other)?;
            line.push(b'\n');
            conn.write_all(&line)?;
        }
    }
    Ok(())
}

/// A fresh UDP socket on the address `conn` reached the sink at, its port told to the peer.
fn udp_for(conn: &mut TcpStream, udp_socket: &UdpFactory) -> io::Result<UdpSocket> {
    let udp = udp_socket(SocketAddr::new(conn.local_addr()?.ip(), 0))?;
    conn.write_all(&udp.local_addr()?.port().to_le_bytes())?;
    Ok(udp)
}

/// Serve a request/response session: answer each request with as many bytes.
fn serve_rr(mut conn: TcpStream, session: u32, udp_socket: &UdpFactory) -> io::Result<()> {
    let mut params = [0u8; wire::PULL_LEN];
    conn.read_exact(&mut params)?;
    let Some(p) = wire::parse_pull(&params) else {
        return Ok(());
    };
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; p.size as usize];
    match p.protocol {
        Protocol::Tcp => {
            conn.set_nodelay(true)?;
            loop {
                match conn.read_exact(&mut buf) {
                    Ok(()) => conn.write_all(&buf)?,
                    // The prober closed: the session is over.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        Protocol::Udp => {
            let peer = conn.peer_addr()?.ip();
            let udp = udp_for(&mut conn, udp_socket)?;
            udp.set_read_timeout(Some(Duration::from_millis(500)))?;
            // Until the duration is over, or the prober has gone quiet (it asks without
            // pause, waiting at most 200 ms for a lost answer).
            let until = Instant::now() + p.duration + Duration::from_secs(5);
            let mut answered = false;
            while Instant::now() < until {
                let (n, from) = match udp.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if socket::waited(&e) => {
                        if answered {
                            break;
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if from.ip() == peer
                    && wire::parse_rr_header(&buf[..n]).is_some_and(|(s, _)| s == session)
                {
                    udp.send_to(&buf[..n], from)?;
                    answered = true;
                }
            }
            Ok(())
        }
    }
}
