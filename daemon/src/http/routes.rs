//! Which path and method does what. Every answer is JSON (`/metrics` excepted), errors too.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use netmode_advisor::api::{ApplyRequest, Health, ProbeRequest};

use super::App;
use super::{Body, error, json, method_not_allowed, read_json, refused};

async fn post_probe(app: &App, req: Request<Incoming>) -> Response<Body> {
    let example = r#"{"container": "NAME", "sweep": false}"#;
    let request: ProbeRequest = match read_json(req, "probe request", example, true).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::probe::request::request(&app.state, &app.probes, &request) {
        Ok(run) => json(StatusCode::ACCEPTED, &run),
        Err(e) => refused(&e),
    }
}

async fn post_apply(app: &App, req: Request<Incoming>) -> Response<Body> {
    let example = r#"{"container": "NAME", "mode": "host", "dry_run": false}"#;
    let request: ApplyRequest = match read_json(req, "apply request", example, false).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::apply::run::request(&app.changes, &request).await {
        Ok((true, record)) => json(StatusCode::OK, &record),
        Ok((false, record)) => json(StatusCode::ACCEPTED, &record),
        Err(e) => refused(&e),
    }
}

/// The JSON Schema of every /v1 answer, generated from the API types
/// (`netmode_advisor::schema`; the tests check the file is current).
const SCHEMA: &str = include_str!("../../../docs/schema/v1.json");

/// What a request asks for, from its method and path alone (pure: fuzzed by the tests below).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Metrics,
    Schema,
    Status,
    Containers,
    Container(&'a str),
    Recommendations,
    Probes,
    PostProbe,
    Probe(&'a str),
    PostApply,
    Applies,
    Apply(&'a str),
    /// A known path with another method: 405 with this `Allow`.
    NotAllowed(&'static str),
    NotFound,
}

impl Route<'_> {
    /// Needs the token for reads (`http.token_for_reads`): every GET but `/healthz`.
    fn is_read(&self) -> bool {
        !matches!(
            self,
            Route::Healthz
                | Route::PostProbe
                | Route::PostApply
                | Route::NotAllowed(_)
                | Route::NotFound
        )
    }
}

pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segments.as_slice() {
        ["healthz"] if get => Route::Healthz,
        ["metrics"] if get => Route::Metrics,
        ["v1", "schema"] if get => Route::Schema,
        ["v1", "status"] if get => Route::Status,
        ["v1", "containers"] if get => Route::Containers,
        ["v1", "containers", key] if get && !key.is_empty() => Route::Container(key),
        ["v1", "recommendations"] if get => Route::Recommendations,
        ["v1", "probes"] if get => Route::Probes,
        ["v1", "probes"] if post => Route::PostProbe,
        ["v1", "probes", id] if get && !id.is_empty() => Route::Probe(id),
        ["v1", "probes"] => Route::NotAllowed("GET, POST"),
        ["v1", "apply"] if post => Route::PostApply,
        ["v1", "apply"] => Route::NotAllowed("POST"),
        ["v1", "applies"] if get => Route::Applies,
        ["v1", "applies", id] if get && !id.is_empty() => Route::Apply(id),
        ["healthz"]
        | ["metrics"]
        | ["v1", "status"]
        | ["v1", "schema"]
        | ["v1", "containers"]
        | ["v1", "recommendations"]
        | ["v1", "applies"] => Route::NotAllowed("GET"),
        ["v1", "containers" | "probes" | "applies", id] if !id.is_empty() => {
            Route::NotAllowed("GET")
        }
        _ => Route::NotFound,
    }
}

pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let route = route(req.method(), &path);
    if route.is_read()
        && let Err(refused) = super::auth::read(app, req.headers())
    {
        return refused;
    }
    match route {
        Route::Healthz => json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                docker: app.state.docker().state,
            },
        ),
        Route::Metrics => {
            let mut r = Response::new(Full::new(Bytes::from(super::metrics::of(app))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Route::Schema => {
            let mut r = Response::new(Full::new(Bytes::from_static(SCHEMA.as_bytes())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/schema+json"),
            );
            r
        }
        Route::Status => json(
            StatusCode::OK,
            &crate::view::status(&app.state, &app.probes),
        ),
        Route::Containers => json(
            StatusCode::OK,
            &crate::view::status(&app.state, &app.probes).containers,
        ),
        Route::Container(key) => match crate::view::container(&app.state, &app.probes, key) {
            Ok(c) => json(StatusCode::OK, &c),
            Err(e) => refused(&e),
        },
        Route::Recommendations => match app.state.recommendations() {
            Some(r) => json(StatusCode::OK, &r),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the first evaluation has not run yet; try again in a few seconds",
            ),
        },
        Route::Probes => json(StatusCode::OK, &app.probes.list()),
        Route::PostProbe => {
            if let Err(refused) = super::auth::mutation(app, req.headers()) {
                return refused;
            }
            post_probe(app, req).await
        }
        Route::Probe(id) => match app.probes.run(id) {
            Some(r) => json(StatusCode::OK, &r),
            None => error(StatusCode::NOT_FOUND, format!("no probe run {id:?}")),
        },
        Route::PostApply => {
            if let Err(refused) = super::auth::mutation(app, req.headers()) {
                return refused;
            }
            post_apply(app, req).await
        }
        Route::Applies => json(StatusCode::OK, &app.changes.book.list()),
        Route::Apply(id) => match app.changes.book.get(id) {
            Some(r) => json(StatusCode::OK, &r),
            None => error(StatusCode::NOT_FOUND, format!("no change {id:?}")),
        },
        Route::NotAllowed(allow) => method_not_allowed(allow),
        Route::NotFound => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KNOWN: [&str; 11] = [
        "/healthz",
        "/metrics",
        "/v1/schema",
        "/v1/status",
        "/v1/containers",
        "/v1/containers/web",
        "/v1/recommendations",
        "/v1/probes",
        "/v1/probes/p1-1",
        "/v1/applies",
        "/v1/applies/a1-1",
    ];

    fn method() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::GET),
            Just(Method::POST),
            Just(Method::PUT),
            Just(Method::DELETE),
            Just(Method::HEAD),
            Just(Method::OPTIONS),
            Just(Method::PATCH),
            "[A-Z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        ]
    }

    /// Paths near the real ones: known segments, empty ones, dots, odd bytes.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("v1".to_string()),
            Just("v2".to_string()),
            Just("status".to_string()),
            Just("containers".to_string()),
            Just("probes".to_string()),
            Just("apply".to_string()),
            Just("applies".to_string()),
            Just("healthz".to_string()),
            Just("metrics".to_string()),
            Just(String::new()),
            Just("..".to_string()),
            "[a-z0-9%._~-]{1,20}",
            "\\PC{0,8}",
        ];
        prop::collection::vec(segment, 0..6).prop_map(|s| format!("/{}", s.join("/")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any method on any path: a route, never a panic; only GET reads, only POST mutates,
        /// and a 405 names methods that the same path does accept.
        #[test]
        fn every_request_line_has_exactly_one_consistent_answer(m in method(), p in path()) {
            let r = route(&m, &p);
            match &r {
                Route::PostProbe | Route::PostApply => prop_assert_eq!(&m, &Method::POST),
                Route::NotAllowed(allow) => {
                    prop_assert!(!allow.split(", ").any(|a| a == m.as_str()), "{} {} -> {:?}", m, p, r);
                    for a in allow.split(", ") {
                        let again = route(&Method::from_bytes(a.as_bytes()).unwrap(), &p);
                        prop_assert!(
                            !matches!(again, Route::NotAllowed(_) | Route::NotFound),
                            "{} {} allows {} but {} gives {:?}", m, p, a, a, again
                        );
                    }
                }
                Route::NotFound => {
                    // A path is unknown whatever the method.
                    for other in [Method::GET, Method::POST] {
                        prop_assert_eq!(route(&other, &p), Route::NotFound);
                    }
                }
                _ => prop_assert_eq!(&m, &Method::GET),
            }
        }
    }

    #[test]
    fn every_known_path_answers_get_and_refuses_delete() {
        for p in KNOWN {
            assert!(
                !matches!(
                    route(&Method::GET, p),
                    Route::NotAllowed(_) | Route::NotFound
                ),
                "{p}"
            );
            assert!(
                matches!(route(&Method::DELETE, p), Route::NotAllowed(_)),
                "{p}"
            );
        }
        assert_eq!(route(&Method::POST, "/v1/apply"), Route::PostApply);
        assert_eq!(route(&Method::GET, "/v1/containers/"), Route::Containers);
        assert_eq!(route(&Method::GET, "/v1//containers"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/containers/a/b"), Route::NotFound);
    }
}
