//! The local HTTP endpoint: versioned JSON under `/v1/`, Prometheus text under `/metrics`,
//! and `/healthz`. hyper 1 on the smol executor.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use netmode_advisor::api::{ApiError, Health, ProbeRequest};
use serde::Serialize;
use smol::lock::Semaphore;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::state::{Lookup, Refused, Shared};

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
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
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

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
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

async fn post_probe(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: ProbeRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        ProbeRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid probe request ({e}); expected {{\"container\": \"NAME\", \"sweep\": false}}"
                    ),
                );
            }
        }
    };
    match shared.enqueue_probe(&request) {
        Ok(run) => json(StatusCode::ACCEPTED, &run),
        Err(Refused(code, message)) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            message,
        ),
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["healthz"] if get => json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                docker: shared.docker().state,
            },
        ),
        ["metrics"] if get => {
            let mut r = Response::new(Full::new(Bytes::from(crate::metrics::render(
                &shared.status(),
            ))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        ["v1", "status"] if get => json(StatusCode::OK, &shared.status()),
        ["v1", "containers"] if get => json(StatusCode::OK, &shared.status().containers),
        ["v1", "containers", key] if get => match shared.container(key) {
            Ok(c) => json(StatusCode::OK, &c),
            Err(Lookup::NotFound) => error(
                StatusCode::NOT_FOUND,
                format!("no running container named or with id {key:?}"),
            ),
            Err(Lookup::Ambiguous(names)) => error(
                StatusCode::BAD_REQUEST,
                format!(
                    "id prefix {key:?} matches several containers ({}); give more of the id",
                    names.join(", ")
                ),
            ),
        },
        ["v1", "recommendations"] if get => match shared.recommendations() {
            Some(r) => json(StatusCode::OK, &r),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the first evaluation has not run yet; try again in a few seconds",
            ),
        },
        ["v1", "probes"] if get => json(StatusCode::OK, &shared.probe_list()),
        ["v1", "probes"] if req.method() == Method::POST => post_probe(shared, req).await,
        ["v1", "probes", id] if get => match shared.probe_run(id) {
            Some(r) => json(StatusCode::OK, &r),
            None => error(StatusCode::NOT_FOUND, format!("no probe run {id:?}")),
        },
        ["v1", "probes"] => method_not_allowed("GET, POST"),
        ["healthz"]
        | ["metrics"]
        | ["v1", "status"]
        | ["v1", "containers"]
        | ["v1", "containers", _]
        | ["v1", "recommendations"]
        | ["v1", "probes", _] => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}
