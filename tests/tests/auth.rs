//! Who may change anything: every mutating request carries netmoded's token and a JSON body.
//! A real daemon, a real HTTP client; after each refusal nothing was queued.

use std::process::Command;
use std::time::Duration;

use netmode_e2e::api::ProbeList;
use netmode_e2e::*;

fn nothing_queued(daemon: &Daemon) {
    let (code, body) = daemon.get("/v1/probes");
    assert_eq!(code, 200, "{body}");
    let list: ProbeList = serde_json::from_str(&body).unwrap();
    assert!(
        list.running.is_none() && list.queued.is_empty() && list.runs.is_empty(),
        "a refused request changed something: {list:?}"
    );
}

#[test]
fn mutations_need_the_token_and_json_and_nothing_happens_without() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, &probe_section("enabled = false"));
    let c = Container::run("auth", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let token = daemon.token();
    assert_eq!(token.len(), 64, "{token}");
    let mode = std::fs::metadata(daemon.state_dir().join("token"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600, "{mode:o}");
    let url = format!("{}/v1/probes", daemon.endpoint);
    let body = format!("{{\"container\": \"{}\"}}", c.name);
    let good = format!("Bearer {token}");
    let json = ("content-type", "application/json");

    // No credential: 401, with the way to get one.
    let (code, text) = http_post(&url, &body).unwrap();
    assert_eq!(code, 401, "{text}");
    assert!(
        text.contains("token") && text.contains("\"error\""),
        "{text}"
    );
    // A wrong one, or not a bearer token: 403 / 401.
    let (code, text) = http_post_with(
        &url,
        &body,
        &[
            json,
            ("authorization", &format!("Bearer {}", "0".repeat(64))),
        ],
    )
    .unwrap();
    assert_eq!(code, 403, "{text}");
    let (code, text) = http_post_with(&url, &body, &[json, ("authorization", &token)]).unwrap();
    assert_eq!(code, 401, "{text}");
    // The right token, but a body a browser form could send: 415.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let (code, text) = http_post_with(
            &url,
            &body,
            &[("content-type", ct), ("authorization", &good)],
        )
        .unwrap();
        assert_eq!(code, 415, "{ct}: {text}");
    }
    let (code, text) = http_post_with(&url, &body, &[("authorization", &good)]).unwrap();
    assert_eq!(code, 415, "no content type: {text}");
    nothing_queued(&daemon);

    // The same for a mode change: refused, and the container is untouched.
    let id = docker(&["inspect", "-f", "{{.Id}}", &c.name]);
    let apply_url = format!("{}/v1/apply", daemon.endpoint);
    let apply = format!("{{\"container\": \"{}\", \"mode\": \"host\"}}", c.name);
    assert_eq!(http_post(&apply_url, &apply).unwrap().0, 401);
    let wrong = format!("Bearer {}", "1".repeat(64));
    assert_eq!(
        http_post_with(&apply_url, &apply, &[json, ("authorization", &wrong)])
            .unwrap()
            .0,
        403
    );
    assert_eq!(
        http_post_with(
            &apply_url,
            &apply,
            &[("content-type", "text/plain"), ("authorization", &good)]
        )
        .unwrap()
        .0,
        415
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.HostConfig.NetworkMode}}",
            &c.name
        ]),
        format!("{id} default")
    );
    assert_eq!(
        daemon.get("/v1/applies").1.trim(),
        "{\"running\":null,\"applies\":[]}"
    );

    // GET stays open.
    assert_eq!(
        http_get(&format!("{}/v1/status", daemon.endpoint))
            .unwrap()
            .0,
        200
    );

    // advisor: a wrong token file is exit 5 and nothing happens; the right one works.
    let dir = TempDir::new("auth");
    let wrong = dir.path().join("token");
    std::fs::write(&wrong, "f".repeat(64)).unwrap();
    // A wrong token, then a token file that does not exist.
    let missing = dir.path().join("absent");
    for (file, says) in [
        (&wrong, "wrong token"),
        (&missing, "cannot read the token file"),
    ] {
        let out = std::process::Command::new(bin("advisor"))
            .args(["--endpoint", &daemon.endpoint, "--token-file"])
            .arg(file)
            .args(["probe", &c.name, "--no-wait"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    nothing_queued(&daemon);
    let out = daemon.advisor(&["probe", &c.name, "--no-wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, text) = daemon.get("/v1/probes");
    let list: ProbeList = serde_json::from_str(&text).unwrap();
    assert_eq!(
        list.running.iter().count() + list.queued.len() + list.runs.len(),
        1,
        "{list:?}"
    );
}

/// `http.token_for_reads`: every read but `/healthz` needs the token too (an endpoint on a
/// LAN address); `advisor` sends it on reads; without it, exit 5.
#[test]
fn with_token_for_reads_every_read_but_healthz_needs_the_token() {
    let daemon = Daemon::start(FAST_SAMPLING, "token_for_reads = true\n");
    let token = daemon.token();
    for path in ["/v1/status", "/v1/containers", "/metrics", "/v1/applies"] {
        let url = format!("{}{path}", daemon.endpoint);
        let (code, body) = http_get(&url).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("token_for_reads"), "{path}: {body}");
        let (code, _) = http_get_with(&url, &[("authorization", "Bearer nope")]).unwrap();
        assert_eq!(code, 403, "{path}");
        let (code, body) =
            http_get_with(&url, &[("authorization", &format!("Bearer {token}"))]).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
    }
    assert_eq!(daemon.get("/healthz").0, 200);
    let out = daemon.advisor(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin("advisor"))
        .args([
            "--endpoint",
            &daemon.endpoint,
            "--token-file",
            "/nonexistent/token",
        ])
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("/nonexistent/token"), "{stderr}");
    let out = Command::new(bin("advisor"))
        .args(["--endpoint", &daemon.endpoint])
        .env("NETMODE_TOKEN_FILE", "/nonexistent/token")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
