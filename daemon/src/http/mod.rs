//! The local HTTP endpoint: versioned JSON under `/v1/`, Prometheus text under `/metrics`,
//! and `/healthz`. hyper 1 on the smol executor.
//!
//! - this file: accepting connections, their limits, and the JSON answer helpers;
//! - `routes`: which path and method does what;
//! - `metrics`: the Prometheus text.

mod auth;
pub mod conns;
pub mod metrics;
pub mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use netmode_advisor::api::ApiError;
use serde::Serialize;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::apply::Changes;
use crate::error::RequestError;
use crate::probe::queue::ProbeQueue;
use crate::state::Shared;
use conns::{Admit, Guarded};

/// Request bodies are small JSON documents; anything bigger is refused.
const MAX_BODY: usize = 64 * 1024;
/// A request head (request line and header fields) is at most this big (hyper's read
/// buffer, whose floor is 8 KiB) and has at most `MAX_HEADERS` fields; else 431.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

pub type Body = Full<Bytes>;

/// What the endpoint serves and changes, handed to it at start.
pub struct App {
    /// What the daemon observes.
    pub state: Arc<Shared>,
    /// Probe requests, the run in progress and the history.
    pub probes: Arc<ProbeQueue>,
    /// Mode changes: the book and what a change needs.
    pub changes: Changes,
    /// The bearer token every mutating request must carry (`<state_dir>/token`).
    pub token: String,
    /// The endpoint's open connections.
    pub conns: conns::Conns,
}

/// Accept connections forever; `conns` keeps slow clients from starving the others.
pub async fn serve(listener: smol::net::TcpListener, app: Arc<App>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept: {e}");
                async_io::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, state, closed) = match app.conns.admit(peer.ip()) {
            Admit::Serve(id, state, closed) => (id, state, closed),
            Admit::Refuse => {
                log::debug!("http connection from {peer} refused: too many open");
                continue;
            }
        };
        let app = app.clone();
        crate::rt::spawn(async move {
            let busy = state.clone();
            let svc_app = app.clone();
            let svc = hyper::service::service_fn(move |req| {
                let app = svc_app.clone();
                let _busy = busy.request();
                async move {
                    let _busy = _busy;
                    Ok::<_, Infallible>(routes::handle(&app, req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(SmolTimer::new())
                .header_read_timeout(conns::HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .serve_connection(FuturesIo::new(Guarded::new(stream, state.clone())), svc);
            let watchdog = async {
                loop {
                    async_io::Timer::after(Duration::from_secs(1)).await;
                    if state.stalled() {
                        return "no I/O for the idle timeout";
                    }
                }
            };
            let closed = async {
                let _ = closed.recv().await;
                "idle while the endpoint needed room"
            };
            let outcome = futures_lite::future::or(
                async { conn.await.err().map(|e| e.to_string()) },
                async { Some(futures_lite::future::or(watchdog, closed).await.to_string()) },
            )
            .await;
            if let Some(why) = outcome {
                log::debug!("http connection from {peer} closed: {why}");
            }
            app.conns.gone(id);
        })
        .detach();
    }
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode answer: {e}\"}}").into_bytes());
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ApiError {
            error: message.into(),
        },
    )
}

/// A refused request as its status and JSON message.
pub fn refused(e: &RequestError) -> Response<Body> {
    error(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        e.to_string(),
    )
}

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Read a JSON request body into `T`: 400 naming what is wrong and showing `example`. With
/// `empty_ok`, an empty body is `T::default()`.
pub async fn read_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
    what: &str,
    example: &str,
    empty_ok: bool,
) -> Result<T, Response<Body>> {
    let body = read_body(req).await?;
    if empty_ok && body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what} ({e}); expected {example}"),
        )
    })
}

/// Read a request body of at most `MAX_BODY` bytes, within `conns::BODY_TIMEOUT` (a body
/// that stalls would otherwise hold its connection busy, where nothing closes it).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let collect = async {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(_) => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over {} KiB ({MAX_BODY} bytes); netmoded's requests are small JSON documents",
                    MAX_BODY / 1024
                ),
            )),
        }
    };
    let timeout = async {
        async_io::Timer::after(conns::BODY_TIMEOUT).await;
        Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                conns::BODY_TIMEOUT.as_secs()
            ),
        ))
    };
    futures_lite::future::or(collect, timeout).await
}
