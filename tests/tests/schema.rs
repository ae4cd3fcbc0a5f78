//! The JSON Schema of the API (`docs/schema/v1.json`, `/v1/schema`) cannot drift from the
//! code: the file is what the types generate, the daemon serves that file, and real answers of
//! every endpoint (containers of every mode, a probe run with a sweep, a dry-run change, the
//! history, an error) validate against it, with Python's jsonschema (draft 2020-12).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netmode_e2e::*;
use serde_json::Value;

fn schema_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/v1.json")
}

#[test]
fn the_schema_file_is_what_the_types_generate() {
    let file = std::fs::read_to_string(schema_file()).unwrap();
    assert!(
        file == netmode_advisor::schema::text(),
        "docs/schema/v1.json is stale: regenerate it with\n  cargo run -p netmode-advisor --features schema --example schema > docs/schema/v1.json"
    );
}

/// The fragment that names an endpoint's response schema.
fn pointer(endpoint: &str) -> String {
    let escaped = endpoint.replace('~', "~0").replace('/', "~1");
    // `~` stays as it is (unreserved); the rest of the key is percent-encoded.
    format!(
        "#/endpoints/{}/response",
        netmoded::docker::raw::encode(&escaped)
    )
}

#[test]
fn real_answers_validate_against_the_served_schema() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[apply]\nverify = \"1s\"\nwatch = \"1s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false\n\
                 max_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]"
            )
        ),
    );
    let bridge = Container::tcp_sink("schema-b", &["-p", "127.0.0.1::18000"], 18000);
    let host_port = free_port();
    let host = Container::tcp_sink("schema-h", &["--network", "host"], host_port);
    let _none = Container::run(
        "schema-n",
        &["--network", "none"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_for("the containers", Duration::from_secs(10), |st| {
        (find(st, &bridge.name).is_some() && find(st, &host.name).is_some()).then_some(())
    });
    let probe = daemon.probe(
        &format!("{{\"container\": \"{}\", \"sweep\": true}}", bridge.name),
        Duration::from_secs(120),
    );
    let out = daemon.advisor(&[
        "apply",
        &bridge.name,
        "--mode",
        "host",
        "--dry-run",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The daemon serves the file.
    let (code, served) = daemon.get("/v1/schema");
    assert_eq!(code, 200);
    assert_eq!(served, std::fs::read_to_string(schema_file()).unwrap());

    let mut answers: Vec<(&str, Value)> = Vec::new();
    let mut get = |endpoint: &'static str, path: &str| {
        let (code, body) = daemon.get(path);
        assert!(code < 500, "{path}: {code} {body}");
        answers.push((endpoint, serde_json::from_str(&body).unwrap()));
    };
    get("GET /healthz", "/healthz");
    get("GET /v1/status", "/v1/status");
    get("GET /v1/containers", "/v1/containers");
    get(
        "GET /v1/containers/{name-or-id}",
        &format!("/v1/containers/{}", host.name),
    );
    get("GET /v1/recommendations", "/v1/recommendations");
    get("GET /v1/probes", "/v1/probes");
    get("GET /v1/probes/{id}", &format!("/v1/probes/{}", probe.id));
    get("GET /v1/applies", "/v1/applies");
    get("any 4xx or 5xx", "/v1/containers/no-such-container");
    answers.push(("POST /v1/apply", dry));
    let status = &answers[1].1;
    assert!(
        status["containers"].as_array().unwrap().len() >= 3 && status["probe"]["sweep"].is_object(),
        "the answers hold what the schema must describe: {status}"
    );

    let dir = TempDir::new("schema");
    let mut cases: Vec<Value> = answers
        .iter()
        .map(|(e, v)| serde_json::json!({"endpoint": e, "ref": pointer(e), "answer": v}))
        .collect();
    // The check can fail: a status whose container lacks its mode must be rejected.
    let mut broken = status.clone();
    broken["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("mode_kind");
    cases.push(serde_json::json!({
        "endpoint": "GET /v1/status (a container without mode_kind)",
        "ref": pointer("GET /v1/status"),
        "answer": broken,
        "invalid": true,
    }));
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
failed = 0
for case in json.load(open(sys.argv[2])):
    s = dict(schema)
    s["$ref"] = case["ref"]
    v = jsonschema.Draft202012Validator(s)
    errors = sorted(v.iter_errors(case["answer"]), key=lambda e: list(e.path))
    if case.get("invalid"):
        if errors:
            print("%s: rejected" % case["endpoint"])
        else:
            failed += 1
            print("%s: accepted, but it is invalid" % case["endpoint"])
        continue
    for e in errors[:5]:
        failed += 1
        print("%s: %s at %s" % (case["endpoint"], e.message[:300], "/".join(map(str, e.path))))
    if not errors:
        print("%s: valid" % case["endpoint"])
sys.exit(1 if failed else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(schema_file())
        .arg(&cases_file)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "answers that do not validate (python3-jsonschema must be installed):\n{text}"
    );
    assert_eq!(text.matches(": valid").count(), answers.len(), "{text}");
    assert_eq!(text.matches(": rejected").count(), 1, "{text}");
}
