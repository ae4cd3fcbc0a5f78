//! Hostile and broken clients against a real daemon, over real sockets: every malformed
//! request gets a JSON error with the right status, and slow clients cannot keep a good one
//! from being answered. (Latency under attack is measured by bench/slowloris, not here.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use netmode_e2e::*;

fn daemon() -> Daemon {
    Daemon::start(FAST_SAMPLING, &probe_section("enabled = false"))
}

fn addr(daemon: &Daemon) -> String {
    daemon.endpoint.trim_start_matches("http://").to_string()
}

/// Send `request` as raw bytes; the status and the body of the answer (read to EOF or to
/// its content-length).
fn raw(daemon: &Daemon, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr(daemon)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before it has read everything: ignore EPIPE/reset.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(len) = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(String::from)
            })
            && body.len() >= len.trim().parse::<usize>().unwrap()
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no answer to {:?}: {text:?}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        )
    });
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn json_error(status: u16, head: &str, body: &str) -> String {
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{status}: {head}"
    );
    let e: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body:?}"));
    e["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

#[test]
fn every_malformed_request_gets_a_json_error_naming_what_is_wrong() {
    require_docker();
    let daemon = daemon();
    let token = daemon.token();

    // Header over 16 KiB, and too many header fields: 431.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (code, head, body) = raw(&daemon, big.as_bytes());
    assert_eq!(code, 431, "{head}");
    assert!(
        json_error(code, &head, &body).contains("too large"),
        "{body}"
    );
    let many: String = (0..100).map(|i| format!("X-F{i}: v\r\n")).collect();
    let (code, head, body) = raw(
        &daemon,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(code, 431, "{head}");
    json_error(code, &head, &body);

    // Not HTTP at all: 400.
    let (code, head, body) = raw(&daemon, b"HELLO THERE\r\n\r\n");
    assert_eq!(code, 400, "{head}");
    assert!(
        json_error(code, &head, &body).contains("malformed"),
        "{body}"
    );

    // A body over 64 KiB: 413, before anything is queued.
    let huge = format!("{{\"container\": \"{}\"}}", "x".repeat(100 * 1024));
    let (code, head, body) = raw(
        &daemon,
        format!(
            "POST /v1/probes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{huge}",
            huge.len()
        )
        .as_bytes(),
    );
    assert_eq!(code, 413, "{head}");
    assert!(json_error(code, &head, &body).contains("64"), "{body}");

    // Bad JSON, and JSON of the wrong shape: 400 naming what was expected.
    for bad in [
        "{\"container\": ",
        "[1, 2]",
        "{\"container\": 5}",
        "{\"sweep\": \"yes\"}",
    ] {
        let (code, body) = daemon.post("/v1/probes", bad);
        assert_eq!(code, 400, "{bad}: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            e["error"].as_str().unwrap().contains("expected"),
            "{bad}: {body}"
        );
    }
    let (code, body) = daemon.post("/v1/apply", "{\"container\": \"x\", \"mode\": \"ipvlan\"}");
    assert_eq!(code, 400, "{body}");

    // Unknown paths: 404; wrong methods: 405 with Allow.
    for path in [
        "/v2/status",
        "/v1/status/extra",
        "/../etc/passwd",
        "/v1/containers/a/b",
    ] {
        let (code, head, body) = raw(
            &daemon,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(code, 404, "{path}: {head}");
        json_error(code, &head, &body);
    }
    for (method, path, allow) in [
        ("DELETE", "/v1/status", "GET"),
        ("PUT", "/v1/probes", "GET, POST"),
        ("GET", "/v1/apply", "POST"),
    ] {
        let (code, head, body) = raw(
            &daemon,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(code, 405, "{method} {path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{head}"
        );
        json_error(code, &head, &body);
    }

    // None of it hurt: the daemon answers and nothing was queued.
    assert_eq!(daemon.get("/healthz").0, 200);
    let (_, probes) = daemon.get("/v1/probes");
    let list: netmode_e2e::api::ProbeList = serde_json::from_str(&probes).unwrap();
    assert!(list.runs.is_empty() && list.queued.is_empty(), "{list:?}");
}

/// A slow client that never finishes its request head.
fn slow(daemon: &Daemon) -> TcpStream {
    let mut s = TcpStream::connect(addr(daemon)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Has the server closed this connection (EOF or reset)?
fn closed(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

fn metric(daemon: &Daemon, line_prefix: &str) -> f64 {
    let (_, text) = daemon.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .unwrap_or_else(|| panic!("{line_prefix} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn slow_clients_lose_their_place_and_time_out_while_good_ones_are_answered() {
    require_docker();
    let daemon = daemon();
    // 200 connections that send half a head and hold it (the old endpoint had 64 slots for
    // everyone: /healthz then waited for the 10 s head timeout, twice over).
    let mut slow_conns: Vec<TcpStream> = (0..200).map(|_| slow(&daemon)).collect();
    for i in 0..20 {
        let (code, body) = http_get(&format!("{}/healthz", daemon.endpoint))
            .unwrap_or_else(|e| panic!("GET /healthz #{i} under attack: {e}"));
        assert_eq!(code, 200, "{body}");
        for s in &mut slow_conns {
            let _ = s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes());
        }
    }
    // The endpoint closed the oldest idle ones to make room: at most its per-peer share is
    // left open (it counts the client's own connections too, by then closed).
    let evicted = metric(
        &daemon,
        "netmode_http_connections_closed_total{reason=\"idle_evicted\"}",
    );
    assert!(evicted >= 168.0, "{evicted}");
    let still_open = slow_conns.iter().filter(|s| !closed(s)).count();
    assert!(still_open <= 32, "{still_open} slow connections still open");
    // The rest are timed out by the head timeout (10 s), trickling or not.
    let start = Instant::now();
    loop {
        for s in &mut slow_conns {
            let _ = s.write_all(b"X-More: 1\r\n");
        }
        let open = slow_conns.iter().filter(|s| !closed(s)).count();
        if open == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{open} slow connections outlived the head timeout"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(daemon.get("/healthz").0, 200);
    assert!(metric(&daemon, "netmode_http_connections ") <= 2.0);
}
