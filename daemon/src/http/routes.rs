//! Which path and method does what. Every answer is JSON (`/metrics` excepted), errors too.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use netmode_advisor::api::{ApplyRequest, Health, ProbeRequest};

use super::{Body, error, json, method_not_allowed, read_json, refused};
use crate::state::Shared;

async fn post_probe(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let example = r#"{"container": "NAME", "sweep": false}"#;
    let request: ProbeRequest = match read_json(req, "probe request", example, true).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::probe::request::request(shared, &request) {
        Ok(run) => json(StatusCode::ACCEPTED, &run),
        Err(e) => refused(&e),
    }
}

async fn post_apply(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let example = r#"{"container": "NAME", "mode": "host", "dry_run": false}"#;
    let request: ApplyRequest = match read_json(req, "apply request", example, false).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::apply::run::request(shared, &request).await {
        Ok((true, record)) => json(StatusCode::OK, &record),
        Ok((false, record)) => json(StatusCode::ACCEPTED, &record),
        Err(e) => refused(&e),
    }
}

/// The JSON Schema of every /v1 answer, generated from the API types
/// (`netmode_advisor::schema`; the tests check the file is current).
const SCHEMA: &str = include_str!("../../../docs/schema/v1.json");

pub async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    if get
        && segments.as_slice() != ["healthz"]
        && let Err(refused) = super::auth::read(shared, req.headers())
    {
        return refused;
    }
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
            let mut r = Response::new(Full::new(Bytes::from(super::metrics::of(shared))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        ["v1", "schema"] if get => {
            let mut r = Response::new(Full::new(Bytes::from_static(SCHEMA.as_bytes())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/schema+json"),
            );
            r
        }
        ["v1", "status"] if get => json(StatusCode::OK, &shared.status()),
        ["v1", "containers"] if get => json(StatusCode::OK, &shared.status().containers),
        ["v1", "containers", key] if get => match shared.container(key) {
            Ok(c) => json(StatusCode::OK, &c),
            Err(e) => refused(&e),
        },
        ["v1", "recommendations"] if get => match shared.recommendations() {
            Some(r) => json(StatusCode::OK, &r),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the first evaluation has not run yet; try again in a few seconds",
            ),
        },
        ["v1", "probes"] if get => json(StatusCode::OK, &shared.probes.list()),
        ["v1", "probes"] if req.method() == Method::POST => {
            if let Err(refused) = super::auth::mutation(shared, req.headers()) {
                return refused;
            }
            post_probe(shared, req).await
        }
        ["v1", "probes", id] if get => match shared.probes.run(id) {
            Some(r) => json(StatusCode::OK, &r),
            None => error(StatusCode::NOT_FOUND, format!("no probe run {id:?}")),
        },
        ["v1", "probes"] => method_not_allowed("GET, POST"),
        ["v1", "apply"] if req.method() == Method::POST => {
            if let Err(refused) = super::auth::mutation(shared, req.headers()) {
                return refused;
            }
            post_apply(shared, req).await
        }
        ["v1", "apply"] => method_not_allowed("POST"),
        ["v1", "applies"] if get => json(StatusCode::OK, &shared.applies.list()),
        ["v1", "applies", id] if get => match shared.applies.get(id) {
            Some(r) => json(StatusCode::OK, &r),
            None => error(StatusCode::NOT_FOUND, format!("no change {id:?}")),
        },
        ["healthz"]
        | ["metrics"]
        | ["v1", "status"]
        | ["v1", "schema"]
        | ["v1", "containers"]
        | ["v1", "containers", _]
        | ["v1", "recommendations"]
        | ["v1", "probes", _]
        | ["v1", "applies"]
        | ["v1", "applies", _] => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}
