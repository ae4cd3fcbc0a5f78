//! The engine is missing at start, appears, restarts, and comes back: netmoded keeps
//! serving, reports `docker: unavailable` meanwhile, reconnects with backoff and resyncs.

use std::time::Duration;

use netmode_e2e::api::DockerState;
use netmode_e2e::*;

#[test]
fn engine_absent_then_present_then_restarting() {
    require_docker();
    let dir = TempDir::new("engine");
    let sock = dir.path().join("docker.sock");
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[docker]\nsocket = \"{}\"\nreconnect_max_backoff = \"300ms\"\n",
            sock.display()
        ),
    );

    // No engine: still serving, and saying so.
    let s = daemon.wait_for("docker unavailable", Duration::from_secs(5), |s| {
        (s.docker.state == DockerState::Unavailable).then(|| s.clone())
    });
    assert_eq!(s.docker.endpoint, format!("unix://{}", sock.display()));
    let err = s.docker.error.unwrap_or_default();
    assert!(
        err.contains(&sock.display().to_string()),
        "names the socket: {err}"
    );
    assert_eq!(daemon.get("/healthz").0, 200);
    let out = daemon.advisor(&["status"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("docker: unavailable"), "{table}");
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("netmode_docker_up 0"), "{metrics}");

    // The engine appears: connected, and the running container is listed.
    let first = Container::tcp_sink("outage-a", &[], 18000);
    let proxy = DockerProxy::start(&sock);
    daemon.wait_for("reconnect and list", Duration::from_secs(5), |s| {
        (s.docker.state == DockerState::Connected && find(s, &first.name).is_some()).then_some(())
    });

    // The engine goes away (all connections cut, as in a restart).
    proxy.stop();
    let s = daemon.wait_for("docker unavailable again", Duration::from_secs(5), |s| {
        (s.docker.state == DockerState::Unavailable).then(|| s.clone())
    });
    // What was known is kept while the engine is away.
    assert!(find(&s, &first.name).is_some());

    // Meanwhile containers change; when the engine is back, netmoded resyncs.
    docker(&["kill", &first.id]);
    let second = Container::tcp_sink("outage-b", &[], 18000);
    let _proxy = DockerProxy::start(&sock);
    daemon.wait_for("resync after the restart", Duration::from_secs(5), |s| {
        (s.docker.state == DockerState::Connected
            && find(s, &second.name).is_some()
            && find(s, &first.name).is_none())
        .then_some(())
    });
}

#[test]
fn docker_host_environment_variable_is_honoured() {
    require_docker();
    let dir = TempDir::new("dockerhost");
    let sock = dir.path().join("engine.sock");
    let _proxy = DockerProxy::start(&sock);
    let c = Container::tcp_sink("dockerhost", &[], 18000);
    let url = format!("unix://{}", sock.display());
    let daemon = Daemon::start_with_env(FAST_SAMPLING, "", &[("DOCKER_HOST", &url)]);
    let s = daemon.wait_for(
        "connected through DOCKER_HOST",
        Duration::from_secs(5),
        |s| {
            (s.docker.state == DockerState::Connected && find(s, &c.name).is_some())
                .then(|| s.clone())
        },
    );
    assert_eq!(s.docker.endpoint, url);
}

/// With no socket configured, netmoded tries Docker's socket and then Podman's, and uses the
/// first whose engine answers: here the first candidate has no engine, the second is the one
/// the tests use. The engine is named by what it says of itself, in `/v1/status` too.
#[test]
fn the_first_engine_that_answers_is_used_and_named() {
    require_docker();
    let dir = TempDir::new("candidates");
    let nothing = dir.path().join("no-engine.sock");
    let real = engine_socket();
    let (engine, socket) = netmoded::rt::block_on(netmoded::docker::Engine::connect_first(
        &[nothing.clone(), real.clone()],
        Duration::from_secs(10),
    ))
    .expect("the second candidate answers");
    assert_eq!(socket, real);
    let expected = if expected_engine() == "podman" {
        "podman"
    } else {
        "docker"
    };
    assert_eq!(engine.version().engine, expected);
    drop(engine);

    // No engine at any candidate: the error names every socket tried.
    let other = dir.path().join("nor-here.sock");
    let err = match netmoded::rt::block_on(netmoded::docker::Engine::connect_first(
        &[nothing.clone(), other.clone()],
        Duration::from_secs(5),
    )) {
        Ok(_) => panic!("no engine listens at {}", nothing.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&nothing.display().to_string()) && err.contains(&other.display().to_string()),
        "{err}"
    );

    // The daemon says which engine it found.
    let url = format!("unix://{}", real.display());
    let daemon = Daemon::start_with_env(FAST_SAMPLING, "", &[("DOCKER_HOST", &url)]);
    let s = daemon.wait_for("connected", Duration::from_secs(10), |s| {
        (s.docker.state == DockerState::Connected).then(|| s.clone())
    });
    assert_eq!(s.docker.engine.as_deref(), Some(expected));
    let table = String::from_utf8_lossy(&daemon.advisor(&["status"]).stdout).to_string();
    assert!(
        table.contains(&format!("docker: connected ({expected} ")),
        "{table}"
    );
}
