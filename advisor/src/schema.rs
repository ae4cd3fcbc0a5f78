//! The JSON Schema (draft 2020-12) of every `/v1` answer and request body, generated from the
//! API types (feature `schema`). `docs/schema/v1.json` is this document; netmoded serves it at
//! `/v1/schema`, and the end-to-end tests check that the file is what the types give and that
//! real answers validate against it.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::api::*;

/// The whole document: `$defs` for every type, and `endpoints`: for each method and path,
/// the answer's type (and the request body's).
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    let mut endpoints = Map::new();
    let mut answer = |key: &str, schema: schemars::Schema, request: Option<schemars::Schema>| {
        let mut e = json!({ "response": schema });
        if let Some(r) = request {
            e["request"] = r.to_value();
        }
        endpoints.insert(key.to_string(), e);
    };
    answer("GET /healthz", g.subschema_for::<Health>(), None);
    answer("GET /v1/status", g.subschema_for::<Status>(), None);
    answer(
        "GET /v1/containers",
        g.subschema_for::<Vec<Container>>(),
        None,
    );
    answer(
        "GET /v1/containers/{name-or-id}",
        g.subschema_for::<Container>(),
        None,
    );
    answer(
        "GET /v1/recommendations",
        g.subschema_for::<Recommendations>(),
        None,
    );
    answer("GET /v1/probes", g.subschema_for::<ProbeList>(), None);
    answer("GET /v1/probes/{id}", g.subschema_for::<ProbeRun>(), None);
    let req = g.subschema_for::<ProbeRequest>();
    answer("POST /v1/probes", g.subschema_for::<ProbeRun>(), Some(req));
    let req = g.subschema_for::<ApplyRequest>();
    answer(
        "POST /v1/apply",
        g.subschema_for::<ApplyRecord>(),
        Some(req),
    );
    answer("GET /v1/applies", g.subschema_for::<ApplyList>(), None);
    answer(
        "GET /v1/applies/{id}",
        g.subschema_for::<ApplyRecord>(),
        None,
    );
    answer("any 4xx or 5xx", g.subschema_for::<ApiError>(), None);
    let defs: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netmode.invalid/schema/v1.json",
        "title": format!("netmode API {API_VERSION}"),
        "description": "Every /v1 answer and request body of netmoded (docs/api.md). Validate an answer of ENDPOINT against {\"$ref\": \"#/endpoints/ENDPOINT/response\"} within this document.",
        "endpoints": endpoints,
        "$defs": defs,
    })
}

/// The document as `docs/schema/v1.json` holds it (pretty, with a final newline).
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}
