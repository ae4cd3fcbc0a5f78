//! A client for a stock iperf3 server (`iperf3 -s`), so users can point probes at servers they
//! already run. One stream, TCP or UDP, `len` = the message size; the receiver-side figures
//! come from the server's own results.
//!
//! The protocol: a control connection that starts with a 37-byte cookie; the server drives
//! the client through signed one-byte states; JSON messages are prefixed with a 4-byte
//! big-endian length. Data streams open with the cookie (TCP) or a 4-byte hello answered by
//! the server (UDP). UDP datagrams carry seconds, microseconds and a packet count (from 1),
//! big-endian. At the end the client sends its results first, then reads the server's.
//! Ingress (`reverse`, as `iperf3 -R`): the server sends on the same streams, the client
//! counts what arrives, and the client's timer still ends the test (TEST_END).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netmode_advisor::api::{Direction, Pattern, Protocol};
use serde_json::{Value, json};

use super::sender::Arrivals;
use super::socket::{tcp_stream, udp_socket, udp_stream, waited};
use super::{Outcome, SendSpec};
use crate::error::TrafficError;

const COOKIE_LEN: usize = 37;
const TEST_START: i8 = 1;
const TEST_RUNNING: i8 = 2;
const TEST_END: i8 = 4;
const PARAM_EXCHANGE: i8 = 9;
const CREATE_STREAMS: i8 = 10;
const SERVER_TERMINATE: i8 = 11;
const EXCHANGE_RESULTS: i8 = 13;
const DISPLAY_RESULTS: i8 = 14;
const IPERF_DONE: i8 = 16;
const ACCESS_DENIED: i8 = -1;
/// How long a busy server (ACCESS_DENIED) is waited for before the cell fails.
const BUSY_WAIT: Duration = Duration::from_secs(5);
const SERVER_ERROR: i8 = -2;
/// The UDP stream hello, as bytes on the wire.
const UDP_HELLO: &[u8; 4] = b"9876";
/// Largest JSON message accepted from the server.
const MAX_JSON: u32 = 1 << 20;
/// iperf3's UDP header: sec, usec, 32-bit packet count.
const UDP_HEADER: usize = 12;

fn cookie(session: u32) -> [u8; COOKIE_LEN] {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut c = [0u8; COOKIE_LEN];
    let mut x = session as u64 ^ 0x2545_f491_4f6c_dd1d ^ super::new_session() as u64;
    for b in c.iter_mut().take(COOKIE_LEN - 1) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = ALPHABET[(x % 32) as usize];
    }
    c
}

fn state_name(s: i8) -> String {
    match s {
        ACCESS_DENIED => "ACCESS_DENIED (the server is busy with another test)".into(),
        SERVER_ERROR => "SERVER_ERROR".into(),
        SERVER_TERMINATE => "SERVER_TERMINATE".into(),
        other => format!("state {other}"),
    }
}

fn read_state(c: &mut TcpStream) -> io::Result<i8> {
    let mut b = [0u8; 1];
    c.read_exact(&mut b)?;
    Ok(b[0] as i8)
}

fn expect(c: &mut TcpStream, want: i8, what: &str) -> Result<(), TrafficError> {
    let got = read_state(c).map_err(TrafficError::io(format!(
        "iperf3 control connection, waiting for {what}"
    )))?;
    if got == want {
        return Ok(());
    }
    if got == SERVER_ERROR {
        let mut codes = [0u8; 8];
        if c.read_exact(&mut codes).is_ok() {
            let i_errno = i32::from_be_bytes(codes[..4].try_into().unwrap());
            let errno = i32::from_be_bytes(codes[4..].try_into().unwrap());
            return Err(TrafficError::Protocol(format!(
                "iperf3 server error while waiting for {what} (iperf error {i_errno}, errno {errno}: {})",
                io::Error::from_raw_os_error(errno)
            )));
        }
    }
    Err(TrafficError::Protocol(format!(
        "iperf3 server sent {} while netmode waited for {what}",
        state_name(got)
    )))
}

fn write_json(c: &mut TcpStream, v: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(v).map_err(io::Error::other)?;
    c.write_all(&(body.len() as u32).to_be_bytes())?;
    c.write_all(&body)
}

fn read_json(c: &mut TcpStream) -> Result<Value, TrafficError> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)
        .map_err(TrafficError::io("iperf3 results"))?;
    let len = u32::from_be_bytes(len);
    if len > MAX_JSON {
        return Err(TrafficError::Protocol(format!(
            "iperf3 results of {len} bytes refused"
        )));
    }
    let mut body = vec![0u8; len as usize];
    c.read_exact(&mut body)
        .map_err(TrafficError::io("iperf3 results"))?;
    serde_json::from_slice(&body)
        .map_err(|e| TrafficError::Protocol(format!("iperf3 results are not JSON: {e}")))
}

pub fn run(spec: &SendSpec) -> Result<Outcome, TrafficError> {
    let addr = spec.target.addr();
    if spec.pattern == Pattern::RequestResponse {
        return Err(TrafficError::Protocol(
            "iperf3 has no request/response test: request/response probes need a netmode sink (probe.target = \"\" or netmode://)".into(),
        ));
    }
    if spec.protocol == Protocol::Udp && spec.size < UDP_HEADER {
        return Err(TrafficError::Protocol(format!(
            "UDP message size must be at least {UDP_HEADER} bytes (iperf3's header)"
        )));
    }
    let ctx = |e: io::Error| TrafficError::Io {
        what: format!("iperf3 server {addr}"),
        source: e,
    };
    let cookie = cookie(spec.session);
    // A stock iperf3 -s serves one test at a time and answers ACCESS_DENIED while it is
    // still closing the previous one (a cell right after another): wait for it, briefly.
    let busy_until = Instant::now() + BUSY_WAIT;
    let mut ctrl = loop {
        let mut ctrl = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(ctx)?;
        ctrl.set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(ctx)?;
        let _ = ctrl.set_nodelay(true);
        ctrl.write_all(&cookie).map_err(ctx)?;
        let got = match read_state(&mut ctrl) {
            // A busy server that closes at once, our cookie unread, resets the connection,
            // and the reset can overtake its ACCESS_DENIED: busy, too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && Instant::now() < busy_until => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            r => r.map_err(TrafficError::io(
                "iperf3 control connection, waiting for PARAM_EXCHANGE",
            ))?,
        };
        match got {
            PARAM_EXCHANGE => break ctrl,
            ACCESS_DENIED if Instant::now() < busy_until => {
                drop(ctrl);
                std::thread::sleep(Duration::from_millis(100));
            }
            other => {
                return Err(TrafficError::Protocol(format!(
                    "iperf3 server sent {} while netmode waited for PARAM_EXCHANGE",
                    state_name(other)
                )));
            }
        }
    };

    let udp = spec.protocol == Protocol::Udp;
    let reverse = spec.direction == Direction::Ingress;
    let mut params = json!({
        "omit": 0,
        "time": spec.duration.as_secs_f64().ceil().max(1.0) as u64,
        "num": 0,
        "blockcount": 0,
        "parallel": 1,
        "len": spec.size,
        "pacing_timer": 1000,
        "client_version": "3.12",
    });
    if udp {
        params["udp"] = json!(true);
        // 0: unlimited (`-b 0`); the server does not pace, the client does.
        params["bandwidth"] = json!(spec.rate_bps.unwrap_or(0));
    } else {
        params["tcp"] = json!(true);
    }
    if reverse {
        params["reverse"] = json!(true);
    }
    write_json(&mut ctrl, &params).map_err(ctx)?;
    expect(&mut ctrl, CREATE_STREAMS, "CREATE_STREAMS")?;

    enum Data {
        Tcp(TcpStream),
        Udp(std::net::UdpSocket),
    }
    let data = if udp {
        let s = udp_socket(addr).map_err(ctx)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(ctx)?;
        s.send(UDP_HELLO).map_err(ctx)?;
        let mut reply = [0u8; 4];
        s.recv(&mut reply).map_err(TrafficError::io(format!(
            "iperf3 server {addr}: no answer to the UDP stream hello"
        )))?;
        Data::Udp(s)
    } else {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(ctx)?;
        s.write_all(&cookie).map_err(ctx)?;
        Data::Tcp(s)
    };
    expect(&mut ctrl, TEST_START, "TEST_START")?;
    expect(&mut ctrl, TEST_RUNNING, "TEST_RUNNING")?;

    let mut out = match &data {
        Data::Tcp(s) if reverse => receive_tcp(s, spec.duration),
        Data::Udp(s) if reverse => receive_udp(s, spec.duration),
        Data::Tcp(s) => {
            let mut s = s.try_clone().map_err(ctx)?;
            tcp_stream(&mut s, spec)
        }
        Data::Udp(s) => udp_stream(s, spec, UDP_HEADER, |buf, seq| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            buf[..4].copy_from_slice(&(now.as_secs() as u32).to_be_bytes());
            buf[4..8].copy_from_slice(&now.subsec_micros().to_be_bytes());
            buf[8..12].copy_from_slice(&((seq + 1) as u32).to_be_bytes());
        }),
    }
    .map_err(TrafficError::io(format!("sending to iperf3 server {addr}")))?;

    // TEST_END goes out before the data streams close.
    ctrl.write_all(&[TEST_END as u8]).map_err(ctx)?;
    expect(&mut ctrl, EXCHANGE_RESULTS, "EXCHANGE_RESULTS")?;
    let mine = json!({
        "cpu_util_total": 0.0,
        "cpu_util_user": 0.0,
        "cpu_util_system": 0.0,
        "sender_has_retransmits": -1,
        "streams": [{
            "id": 1,
            "bytes": if reverse { out.received_bytes } else { out.sent_bytes },
            "retransmits": -1,
            "jitter": 0.0,
            "errors": if reverse { out.sent_messages.saturating_sub(out.send_errors) } else { 0 },
            "packets": out.sent_messages,
            "start_time": 0.0,
            "end_time": out.elapsed_s,
        }],
    });
    write_json(&mut ctrl, &mine).map_err(ctx)?;
    let theirs = read_json(&mut ctrl)?;
    expect(&mut ctrl, DISPLAY_RESULTS, "DISPLAY_RESULTS")?;
    let _ = ctrl.write_all(&[IPERF_DONE as u8]);
    drop(data);

    let stream = theirs["streams"].get(0).ok_or_else(|| {
        TrafficError::Protocol(format!("iperf3 server results without streams: {theirs}"))
    })?;
    let num = |k: &str| stream[k].as_f64();
    if reverse {
        // The server sent; what arrived is ours. (For the receive functions `sent_messages`
        // is the datagrams the sequence numbers say were sent, `send_errors` those that
        // arrived.)
        let (expected, arrived) = (out.sent_messages, out.send_errors);
        out.sent_bytes = num("bytes").map_or(out.received_bytes, |b| b as u64);
        out.send_errors = 0;
        if udp {
            out.sent_messages = num("packets").map_or(expected, |p| p as u64);
            out.loss =
                (expected > 0).then(|| expected.saturating_sub(arrived) as f64 / expected as f64);
        } else {
            out.sent_messages = out.sent_bytes / spec.size.max(1) as u64;
        }
        return Ok(out);
    }
    out.received_bytes = num("bytes")
        .ok_or_else(|| TrafficError::Protocol("iperf3 server results without bytes".into()))?
        as u64;
    out.received_active_s = match (num("start_time"), num("end_time")) {
        (Some(s), Some(e)) if e > s => e - s,
        _ => out.elapsed_s,
    };
    if udp {
        let (errors, packets) = (num("errors").unwrap_or(0.0), num("packets").unwrap_or(0.0));
        out.loss = (packets > 0.0).then(|| (errors / packets).clamp(0.0, 1.0));
    }
    Ok(out)
}

/// Ingress over TCP: count what the server sends until the test's time is up.
fn receive_tcp(s: &TcpStream, duration: Duration) -> io::Result<Outcome> {
    let mut s = s.try_clone()?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut buf = vec![0u8; 128 * 1024];
    let mut got = Arrivals::default();
    while start.elapsed() < duration {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.add(n as u64, Instant::now()),
            Err(e) if waited(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome {
        received_bytes: got.bytes,
        received_active_s: got.active_s(),
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// Ingress over UDP: count the server's datagrams until the test's time is up. Returns the
/// datagrams sent by their sequence numbers in `sent_messages` and those that arrived in
/// `send_errors` (`run` turns them into loss).
fn receive_udp(s: &std::net::UdpSocket, duration: Duration) -> io::Result<Outcome> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut got = Arrivals::default();
    let (mut arrived, mut expected) = (0u64, 0u64);
    while start.elapsed() < duration {
        match s.recv(&mut buf) {
            Ok(n) if n >= UDP_HEADER => {
                got.add(n as u64, Instant::now());
                arrived += 1;
                let seq = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as u64;
                expected = expected.max(seq);
            }
            Ok(_) => {}
            Err(e) if waited(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome {
        received_bytes: got.bytes,
        received_active_s: got.active_s(),
        sent_messages: expected,
        send_errors: arrived,
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::{SendSpec, Target};
    use super::*;

    #[test]
    fn cookies_are_36_characters_of_the_iperf3_alphabet() {
        let c = cookie(42);
        assert_eq!(c[36], 0);
        assert!(
            c[..36]
                .iter()
                .all(|b| b"abcdefghijklmnopqrstuvwxyz234567".contains(b))
        );
        assert_ne!(cookie(42)[..36], cookie(43)[..36]);
    }

    /// Against the real iperf3 server from Debian's package (installed by tests/run).
    #[test]
    fn speaks_to_a_real_iperf3_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = std::process::Command::new("iperf3")
            .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 must be installed (apt-get install iperf3)");
        let target = Target::Iperf3(format!("127.0.0.1:{port}").parse().unwrap());
        let probe = |protocol, size, direction| {
            for _ in 0..50 {
                let r = run(&SendSpec {
                    target,
                    protocol,
                    size,
                    duration: Duration::from_millis(1200),
                    rate_bps: None,
                    session: 1,
                    direction,
                    pattern: netmode_advisor::api::Pattern::Stream,
                    in_flight: 1,
                });
                if r.as_ref().is_err_and(|e| e.to_string().contains("refused")) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                return r;
            }
            Err(TrafficError::Protocol("iperf3 never listened".into()))
        };
        let tcp = probe(Protocol::Tcp, 1024, Direction::Egress);
        let udp = probe(Protocol::Udp, 1024, Direction::Egress);
        let small = probe(Protocol::Udp, 8, Direction::Egress);
        let tcp_in = probe(Protocol::Tcp, 1024, Direction::Ingress);
        // Unpaced (`-b 0`), as every probe is.
        let udp_in = probe(Protocol::Udp, 1024, Direction::Ingress);
        let _ = server.kill();
        let _ = server.wait();

        let o = tcp.unwrap();
        // The server counts what it read before TEST_END: nearly all of it.
        assert!(
            o.received_bytes <= o.sent_bytes
                && o.received_bytes as f64 >= 0.9 * o.sent_bytes as f64,
            "{o:?}"
        );
        assert!(o.received_active_s > 1.0 && o.loss.is_none(), "{o:?}");

        let o = udp.unwrap();
        assert!(
            o.received_bytes > 0 && o.received_bytes <= o.sent_bytes,
            "{o:?}"
        );
        assert!(o.received_bytes % 1024 == 0, "whole datagrams: {o:?}");
        assert!(o.loss.is_some_and(|l| (0.0..1.0).contains(&l)), "{o:?}");

        assert!(small.unwrap_err().to_string().contains("at least 12"));

        // Ingress (-R): what arrived here, no more than the server says it sent.
        let o = tcp_in.unwrap();
        assert!(
            o.received_bytes > 0 && o.received_bytes <= o.sent_bytes,
            "{o:?}"
        );
        assert!(o.received_active_s > 1.0 && o.loss.is_none(), "{o:?}");
        let o = udp_in.unwrap();
        assert!(
            o.received_bytes > 0 && o.received_bytes % 1024 == 0,
            "{o:?}"
        );
        assert!(o.loss.is_some_and(|l| (0.0..1.0).contains(&l)), "{o:?}");
    }
}
