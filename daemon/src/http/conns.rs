//! The endpoint's connections, kept from starving each other.
//!
//! Every host-mode container shares the host's loopback, so a misbehaving client cannot be
//! told from a good one by its address. Instead of a fixed number of slots that slow clients
//! can hold (200 half-sent headers once delayed `/healthz` by 18.7 s), the endpoint keeps
//! accepting and, when too many connections sit *idle* (waiting for a request head, or
//! between requests), closes the one idle the longest: a client that sends its request at
//! once is served; one that trickles it loses its place to the next.
//!
//! - per peer address at most `PER_PEER_IDLE` idle connections, at most `MAX_IDLE` in all;
//! - at most `MAX_OPEN` connections in all: past that, with nothing idle to close, a new
//!   connection is closed at once;
//! - hyper times out a request head after `HEAD_TIMEOUT`, the handler a body after
//!   `BODY_TIMEOUT` (408); a connection with no I/O for `IDLE_TIMEOUT` outside a request is
//!   closed.
//!
//! `Guarded` wraps each socket: it records I/O progress for the idle timeout, and gives the
//! answers hyper writes by itself for requests it cannot parse (400, 414, 431, 505: a status
//! line and no body) a JSON body like every other error of the endpoint.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use netmode_advisor::api::ApiError;
use smol::io::{AsyncRead, AsyncWrite};

use crate::rt::mono_ms as now_ms;

pub const PER_PEER_IDLE: usize = 32;
pub const MAX_IDLE: usize = 128;
pub const MAX_OPEN: usize = 512;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request body must arrive within this (it is read inside the handler: busy).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection as the registry and its task see it.
pub struct ConnState {
    /// Inside the handler of a request (not idle, not evictable).
    busy: AtomicBool,
    /// When the connection last became idle (accepted, or a request handled), ms.
    idle_since_ms: AtomicU64,
    /// Last read or write that moved bytes, ms.
    progress_ms: AtomicU64,
}

impl ConnState {
    fn new() -> ConnState {
        let now = now_ms();
        ConnState {
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(now),
            progress_ms: AtomicU64::new(now),
        }
    }

    /// Mark the connection busy until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> BusyGuard {
        self.busy.store(true, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// Idle with no I/O for longer than `IDLE_TIMEOUT`?
    pub fn stalled(&self) -> bool {
        !self.busy.load(Ordering::Relaxed)
            && now_ms().saturating_sub(self.progress_ms.load(Ordering::Relaxed))
                > IDLE_TIMEOUT.as_millis() as u64
    }

    fn progress(&self) {
        self.progress_ms.store(now_ms(), Ordering::Relaxed);
    }
}

pub struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

struct Entry {
    peer: IpAddr,
    state: Arc<ConnState>,
    close: smol::channel::Sender<()>,
}

/// What to do with a connection just accepted.
pub enum Admit {
    /// Serve it: its state, the receiver that closes it, and its id for `Conns::gone`.
    Serve(u64, Arc<ConnState>, smol::channel::Receiver<()>),
    /// Too many connections, none idle: close it.
    Refuse,
}

/// Every open connection of the endpoint.
#[derive(Default)]
pub struct Conns {
    inner: Mutex<Inner>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Entry>,
}

impl Conns {
    pub fn admit(&self, peer: IpAddr) -> Admit {
        let mut inner = crate::rt::lock(&self.inner);
        let idle = |e: &Entry| !e.state.busy.load(Ordering::Relaxed);
        let peer_idle = inner
            .open
            .values()
            .filter(|e| e.peer == peer && idle(e))
            .count();
        let all_idle = inner.open.values().filter(|e| idle(e)).count();
        let victim = if peer_idle >= PER_PEER_IDLE {
            oldest_idle(&inner.open, Some(peer))
        } else if all_idle >= MAX_IDLE || inner.open.len() >= MAX_OPEN {
            oldest_idle(&inner.open, None)
        } else {
            None
        };
        if let Some(id) = victim {
            if let Some(e) = inner.open.remove(&id) {
                let _ = e.close.try_send(());
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        } else if inner.open.len() >= MAX_OPEN {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Admit::Refuse;
        }
        inner.next += 1;
        let id = inner.next;
        let state = Arc::new(ConnState::new());
        let (close, closed) = smol::channel::bounded(1);
        inner.open.insert(
            id,
            Entry {
                peer,
                state: state.clone(),
                close,
            },
        );
        Admit::Serve(id, state, closed)
    }

    /// The connection's task ended.
    pub fn gone(&self, id: u64) {
        crate::rt::lock(&self.inner).open.remove(&id);
    }

    /// (open, idle-closed to make room, refused) for `/metrics`.
    pub fn counts(&self) -> (usize, u64, u64) {
        (
            crate::rt::lock(&self.inner).open.len(),
            self.evicted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

fn oldest_idle(open: &HashMap<u64, Entry>, peer: Option<IpAddr>) -> Option<u64> {
    open.iter()
        .filter(|(_, e)| !e.state.busy.load(Ordering::Relaxed))
        .filter(|(_, e)| peer.is_none_or(|p| e.peer == p))
        .min_by_key(|(id, e)| (e.state.idle_since_ms.load(Ordering::Relaxed), **id))
        .map(|(id, _)| *id)
}

/// A socket that records progress and gives hyper's own error answers a JSON body.
pub struct Guarded<S> {
    inner: S,
    state: Arc<ConnState>,
    /// A replacement answer still to be written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Guarded<S> {
        Guarded {
            inner,
            state,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.state.progress();
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.state.progress();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if let Some(answer) = json_error_answer(buf) {
            self.pending = answer;
            // Written by the next poll_write/flush/close if the socket is full now.
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.state.progress();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// hyper answers a request it cannot parse by itself, with a status line, headers and an
/// empty body (`content-length: 0`); every answer of netmoded's own has a body. Such a head
/// is rewritten into the same answer with a JSON body naming what was wrong.
pub fn json_error_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    let rest = head.strip_prefix("HTTP/1.1 ")?;
    if !head.ends_with("\r\n\r\n") {
        return None;
    }
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let empty = head
        .split("\r\n")
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    if !empty {
        return None;
    }
    let reason = rest.get(4..)?.split("\r\n").next()?;
    let message = match status {
        431 => "request header too large (at most 16 KiB and 64 fields)".to_string(),
        414 => "request target (URI) too long".to_string(),
        400 => "malformed HTTP/1.1 request".to_string(),
        505 => "HTTP version not supported: use HTTP/1.1".to_string(),
        _ => format!("request refused: {reason}"),
    };
    let mut body = serde_json::to_vec(&ApiError { error: message }).ok()?;
    body.push(b'\n');
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodiless_error_heads_get_a_json_body() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(json_error_answer(head).unwrap()).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(h.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(h.contains(&format!("content-length: {}", body.len())));
        let e: ApiError = serde_json::from_str(body).unwrap();
        assert!(e.error.contains("too large"), "{}", e.error);
    }

    #[test]
    fn answers_with_bodies_and_successes_pass_unchanged() {
        for head in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-length: 31\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{\"x\"",
            b"{\"error\":\"HTTP/1.1 400 \"}",
        ] {
            assert!(json_error_answer(head).is_none());
        }
    }

    #[test]
    fn one_peer_cannot_hold_more_than_its_idle_share() {
        let conns = Conns::default();
        let bad: IpAddr = "127.0.0.1".parse().unwrap();
        let good: IpAddr = "127.0.0.2".parse().unwrap();
        let mut receivers = Vec::new();
        for _ in 0..PER_PEER_IDLE {
            match conns.admit(bad) {
                Admit::Serve(_, _, r) => receivers.push(r),
                Admit::Refuse => panic!("refused below the limit"),
            }
        }
        assert!(receivers.iter().all(|r| r.try_recv().is_err()));
        // One more from the same peer closes its oldest idle connection, not another peer's.
        let Admit::Serve(_, _, other) = conns.admit(good) else {
            panic!()
        };
        let Admit::Serve(..) = conns.admit(bad) else {
            panic!()
        };
        assert!(receivers[0].try_recv().is_ok(), "the oldest was closed");
        assert!(receivers[1..].iter().all(|r| r.try_recv().is_err()));
        assert!(other.try_recv().is_err());
        assert_eq!(conns.counts(), (PER_PEER_IDLE + 1, 1, 0));
    }

    #[test]
    fn busy_connections_are_never_closed_to_make_room() {
        let conns = Conns::default();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut guards = Vec::new();
        for _ in 0..MAX_OPEN {
            let Admit::Serve(_, state, r) = conns.admit(peer) else {
                panic!()
            };
            guards.push((state.request(), r));
        }
        assert!(matches!(conns.admit(peer), Admit::Refuse));
        assert!(guards.iter().all(|(_, r)| r.try_recv().is_err()));
        assert_eq!(conns.counts(), (MAX_OPEN, 0, 1));
        // A request handled: its connection is idle again, and the first to go.
        guards.truncate(1);
        guards.clear();
        assert!(matches!(conns.admit(peer), Admit::Serve(..)));
    }
}
