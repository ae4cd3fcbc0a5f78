//! Generated requests against a real daemon over real sockets: whatever arrives, the answer is
//! HTTP with a status from the documented set and (but for /metrics and the schema) a JSON
//! body, nothing panics, and the daemon keeps serving. First the corpus in tests/fuzz/http
//! (requests that once mattered, `{TOKEN}` standing for the daemon's token) is replayed; then
//! proptest generates more (its failures are kept in proptest-regressions/ beside this file).
//! `FUZZ_CASES` sets how many (default 2000, a few seconds; 30,000 passed in 45 s).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use netmode_e2e::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const STATUSES: [u16; 17] = [
    200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 422, 429, 431, 503, 505,
];

/// Send raw bytes; the answer's status, content type and body (the first answer only).
fn exchange(addr: &str, request: &[u8]) -> Result<(u16, String, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    // Half-close: a request missing its end gets its answer (or a timeout) now.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = s.take(4 << 20).read_to_end(&mut got);
    if got.is_empty() {
        return Ok((0, String::new(), Vec::new()));
    }
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no answer head in {:?}", String::from_utf8_lossy(&got)))?;
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let len: Option<usize> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    let body = &got[end + 4..];
    let body = len.map_or(body, |n| &body[..n.min(body.len())]);
    Ok((status, ctype, body.to_vec()))
}

/// The checks every answer must pass.
fn check(addr: &str, request: &[u8]) -> Result<(), String> {
    let (status, ctype, body) = exchange(addr, request)?;
    // No answer: only for a request cut short by EOF. HEAD: a head without its body.
    if status == 0 || request.starts_with(b"HEAD ") {
        return Ok(());
    }
    let shown = || {
        format!(
            "{status} {ctype} {:?} for {:?}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&request[..request.len().min(300)])
        )
    };
    if !STATUSES.contains(&status) {
        return Err(format!("unexpected status: {}", shown()));
    }
    if ctype.starts_with("text/plain") || ctype.starts_with("application/schema+json") {
        return if status == 200 { Ok(()) } else { Err(shown()) };
    }
    if !ctype.starts_with("application/json") {
        return Err(format!("not JSON: {}", shown()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("bad JSON ({e}): {}", shown()))?;
    if status >= 400 && v["error"].as_str().is_none_or(|e| e.is_empty()) {
        return Err(format!("an error without its message: {}", shown()));
    }
    Ok(())
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_string()),
        4 => Just("POST".to_string()),
        1 => Just("PUT".to_string()),
        1 => Just("DELETE".to_string()),
        1 => Just("HEAD".to_string()),
        1 => Just("OPTIONS".to_string()),
        1 => "[A-Za-z]{1,10}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("v1"),
        Just("status"),
        Just("containers"),
        Just("probes"),
        Just("apply"),
        Just("applies"),
        Just("recommendations"),
        Just("schema"),
        Just("healthz"),
        Just("metrics"),
        Just(""),
        Just(".."),
        Just("%2e%2e"),
        Just("nmt-fuzz-none"),
    ]
    .prop_map(str::to_string);
    let seg = prop_oneof![4 => seg, 1 => "[a-zA-Z0-9%._~!$&'()*+,;=:@-]{1,16}"];
    (
        prop::collection::vec(seg, 0..5),
        prop::option::of("[a-z=&0-9]{0,12}"),
    )
        .prop_map(|(s, q)| {
            let p = format!("/{}", s.join("/"));
            match q {
                Some(q) => format!("{p}?{q}"),
                None => p,
            }
        })
}

/// A body: valid requests, each field mutated, or junk.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::json!("nmt-fuzz-none")),
        Just(serde_json::json!("host")),
        Just(serde_json::json!("bridge")),
        Just(serde_json::json!("macvlan")),
        Just(serde_json::json!(true)),
        Just(serde_json::json!(false)),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({"nested": {"deep": [1, 2, 3]}})),
        "\\PC{0,24}".prop_map(serde_json::Value::from),
    ];
    let key = prop_oneof![
        Just("container".to_string()),
        Just("mode".to_string()),
        Just("dry_run".to_string()),
        Just("all".to_string()),
        Just("sweep".to_string()),
        "[a-z_]{1,8}",
    ];
    let object = prop::collection::btree_map(key, value, 0..5).prop_map(|m| {
        // Never a real change: the container named does not exist, and no `all` probe.
        let mut m: serde_json::Map<_, _> = m.into_iter().collect();
        if m.contains_key("container") {
            m.insert("container".into(), "nmt-fuzz-none".into());
        }
        m.remove("all");
        serde_json::to_vec(&m).unwrap()
    });
    prop_oneof![
        4 => object,
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "[\\[\\]{}\":,0-9a-z ]{0,40}".prop_map(String::into_bytes),
        1 => Just(Vec::new()),
    ]
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Wrong,
    Right,
}

#[derive(Debug, Clone)]
enum Length {
    Exact,
    Missing,
    Short,
    Long,
}

fn request(token: &str) -> impl Strategy<Value = Vec<u8>> {
    let token = token.to_string();
    (
        method(),
        path(),
        prop_oneof![Just(Auth::None), Just(Auth::Wrong), Just(Auth::Right)],
        prop_oneof![
            Just(Some("application/json".to_string())),
            Just(Some("Application/JSON; charset=utf-8".to_string())),
            Just(Some("text/plain".to_string())),
            Just(None),
            "[ -~]{0,20}".prop_map(Some),
        ],
        prop_oneof![
            6 => Just(Length::Exact),
            1 => Just(Length::Missing),
            1 => Just(Length::Short),
            1 => Just(Length::Long),
        ],
        prop::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,30}"), 0..4),
        body(),
    )
        .prop_map(move |(m, p, auth, ctype, length, extra, body)| {
            let mut r = format!("{m} {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
            match auth {
                Auth::None => {}
                Auth::Wrong => r.extend_from_slice(b"Authorization: Bearer 0000\r\n"),
                Auth::Right => {
                    r.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes())
                }
            }
            if let Some(c) = ctype {
                r.extend_from_slice(format!("Content-Type: {c}\r\n").as_bytes());
            }
            for (k, v) in extra {
                r.extend_from_slice(format!("X-{k}: {v}\r\n").as_bytes());
            }
            let n = match length {
                Length::Exact => Some(body.len()),
                Length::Missing => None,
                Length::Short => Some(body.len() / 2),
                Length::Long => Some(body.len() + 7),
            };
            if let Some(n) = n {
                r.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            r.extend_from_slice(&body);
            r
        })
}

#[test]
fn generated_requests_get_documented_answers_and_the_daemon_holds() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, &probe_section("enabled = false"));
    let addr = daemon.endpoint.trim_start_matches("http://").to_string();
    let token = daemon.token();

    // The corpus first.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/http");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "req"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        let raw = String::from_utf8_lossy(&raw)
            .replace("{TOKEN}", &token)
            .into_bytes();
        if let Err(e) = check(&addr, &raw) {
            panic!("{}: {e}", f.display());
        }
    }

    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        source_file: Some(file!()),
        ..Config::default()
    });
    let result = runner.run(&request(&token), |r| {
        check(&addr, &r).map_err(proptest::test_runner::TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}\n{}", daemon.log_text());
    }
    // Still serving, nothing started.
    assert_eq!(daemon.get("/healthz").0, 200);
    let (_, applies) = daemon.get("/v1/applies");
    let list: netmode_e2e::api::ApplyList = serde_json::from_str(&applies).unwrap();
    assert!(
        list.applies
            .iter()
            .all(|a| a.container == "nmt-fuzz-none"
                || a.state == netmode_e2e::api::ApplyState::Refused),
        "{list:?}"
    );
    assert!(!daemon.log_text().contains("panicked"));
}
