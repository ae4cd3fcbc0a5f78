//! The local HTTP endpoint: versioned JSON under `/v1/`, Prometheus text under `/metrics`,
//! and `/healthz`. hyper 1 on the smol executor.
//!
//! - this file: accepting connections, their limits, and the JSON answer helpers;
//! - `routes`: which path and method does what;
//! - `metrics`: the Prometheus text.

mod auth;
pub mod metrics;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use netmode_advisor::api::ApiError;
use serde::Serialize;
use smol::lock::Semaphore;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::error::RequestError;
use crate::state::Shared;

/// More connections than this wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// Request bodies are small JSON documents; anything bigger is refused.
const MAX_BODY: usize = 64 * 1024;

pub type Body = Full<Bytes>;

/// Accept connections forever.
pub async fn serve(listener: smol::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.acquire_arc().await;
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept: {e}");
                async_io::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        crate::rt::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(routes::handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(SmolTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(FuturesIo::new(stream), svc);
            if let Err(e) = conn.await {
                log::debug!("http connection from {peer}: {e}");
            }
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

/// Read a request body of at most `MAX_BODY` bytes.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes"),
        )),
    }
}
