//! The Docker operations a mode change needs (stop, rename, restart policy), called through
//! netmoded's own Docker layer against the real engine, on a container of the test's own.

use std::path::Path;
use std::time::Duration;

use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
use netmode_e2e::{Container, busybox_image, docker, require_docker, unique};
use netmoded::docker::Engine;

#[test]
fn stop_rename_and_restart_policy_on_a_real_container() {
    require_docker();
    let c = Container::run(
        "ops",
        &["--restart", "always", "--stop-timeout", "1"],
        busybox_image(),
        &["sleep", "300"],
    );
    let aside = unique("nmt-ops-aside");
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let missing = netmoded::rt::block_on(async {
        let engine = Engine::connect(Path::new(&socket), Duration::from_secs(30))
            .await
            .expect("connect to the engine");
        engine
            .set_restart_policy(
                &c.id,
                RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                },
            )
            .await
            .expect("update the restart policy");
        engine
            .rename_container(&c.id, &aside)
            .await
            .expect("rename");
        engine.stop_container(&c.id, None).await.expect("stop");
        // Stopping a stopped container is not an error.
        engine
            .stop_container(&c.id, Some(1))
            .await
            .expect("stop again");
        engine
            .rename_container("nmt-no-such-container", "x")
            .await
            .unwrap_err()
    });
    let inspect = |f: &str| docker(&["inspect", "-f", f, &c.id]);
    assert_eq!(inspect("{{.Name}}"), format!("/{aside}"));
    assert_eq!(inspect("{{.State.Running}}"), "false");
    assert_eq!(inspect("{{.HostConfig.RestartPolicy.Name}}"), "no");
    // Nothing was removed: the container is still there, under its new name.
    assert_eq!(
        docker(&["ps", "-aq", "--no-trunc", "-f", &format!("name={aside}")]),
        c.id
    );
    // The Docker layer's errors are the engine's own.
    assert!(
        missing.is_not_found(),
        "expected a Docker 404, got {missing}"
    );
}
