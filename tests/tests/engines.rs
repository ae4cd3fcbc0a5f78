//! What every engine netmode supports must do (Docker 20.10, Docker 26, Podman 4.3, Podman 5;
//! `tests/run` runs this file against each): a container with a named and an anonymous volume,
//! and no restart policy, goes bridge -> host -> bridge with its data, under its name, nothing
//! set aside. A container on two user networks comes back with its addresses, aliases, MAC
//! address and hostname. A container with a restart policy is changed where the engine can
//! change that policy (Docker, Podman 5), and refused before anything is touched where it
//! cannot (Podman 4), with the reason.

use std::time::Duration;

use netmode_e2e::api::{ApplyRecord, ApplyState, DockerState, ModeKind};
use netmode_e2e::*;
use serde_json::Value;

const APPLY: &str = "[apply]\nverify = \"1s\"\nwatch = \"1s\"\nhealth_timeout = \"20s\"";

fn mode_of(name: &str) -> String {
    docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", name])
}

fn read(name: &str, path: &str) -> String {
    docker(&["exec", name, "cat", path])
}

fn apply(daemon: &Daemon, name: &str, mode: &str) -> Result<ApplyRecord, String> {
    let out = daemon.advisor(&["apply", name, "--mode", mode, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

#[test]
fn a_container_goes_to_host_and_back_with_its_volumes() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let s = daemon.wait_for("the engine", Duration::from_secs(20), |s| {
        (s.docker.state == DockerState::Connected).then(|| s.clone())
    });
    assert_eq!(s.docker.engine.as_deref(), Some(expected_engine()));
    let volume = unique("nmt-eng-vol");
    let c = Container::run(
        "eng",
        &["-v", &format!("{volume}:/named"), "-v", "/anon"],
        busybox_image(),
        &["sleep", "100000"],
    );
    docker(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "echo named > /named/data; echo anon > /anon/data",
    ]);
    let anon = volume_at(&c.id, "/anon");
    daemon.wait_container(&c.name);

    // The container now under the name: each change makes a new one.
    let mut current = c.id.clone();
    for (to, kind) in [("host", ModeKind::Host), ("bridge", ModeKind::Bridge)] {
        let r = apply(&daemon, &c.name, to).unwrap_or_else(|e| panic!("apply {to}: {e}"));
        assert_eq!(r.state, ApplyState::Applied, "{r:?}");
        current = r
            .new_id
            .clone()
            .expect("an applied change names its new container");
        // Back in bridge mode, the engine's own word for its default network.
        let want = if to == "bridge" {
            default_network_mode()
        } else {
            to
        };
        assert_eq!(mode_of(&c.name), want);
        assert_eq!(read(&c.name, "/named/data"), "named");
        assert_eq!(read(&c.name, "/anon/data"), "anon");
        assert_eq!(
            volume_at(&c.name, "/anon"),
            anon,
            "the same anonymous volume"
        );
        let seen = daemon.wait_for(
            &format!("{} in {to} mode", c.name),
            Duration::from_secs(20),
            |s| find(s, &c.name).filter(|x| x.mode_kind == kind).cloned(),
        );
        assert_eq!(seen.id, current);
        assert_eq!(containers_named(&c.name), [c.name.as_str()]);
    }
    // By the id the change recorded, not by name.
    let _ = docker_output(&["rm", "-f", "-v", &current]);
    let _ = docker_output(&["volume", "rm", &volume, &anon]);
}

#[test]
fn a_restart_policy_is_kept_or_the_change_refused_before_anything_is_touched() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let c = Container::run(
        "engrs",
        &["--restart", "always"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_container(&c.name);
    // Podman before 5 has no /containers/{id}/update.
    let version = docker(&["version", "--format", "{{.Server.Version}}"]);
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let old_podman = expected_engine() == "podman" && major < 5;
    match apply(&daemon, &c.name, "host") {
        Ok(r) => {
            assert!(!old_podman, "Podman 4 cannot do this: {r:?}");
            assert_eq!(r.state, ApplyState::Applied, "{r:?}");
            assert_eq!(mode_of(&c.name), "host");
            assert_eq!(
                docker(&[
                    "inspect",
                    "-f",
                    "{{.HostConfig.RestartPolicy.Name}}",
                    &c.name
                ]),
                "always"
            );
        }
        Err(e) => {
            assert!(old_podman, "refused where it can be done: {e}");
            assert!(
                e.contains("restart policy \"always\"") && e.contains("--restart=no"),
                "{e}"
            );
            // Untouched: the same container, running, in its mode, with its policy.
            assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &c.name]), c.id);
            assert_eq!(mode_of(&c.name), "bridge");
            assert_eq!(
                docker(&[
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}",
                    &c.name
                ]),
                "true always"
            );
        }
    }
}

/// On user-defined networks, a bridge -> host -> bridge round trip gives back every network,
/// the static address, the aliases, the MAC address and the hostname. Podman reports neither
/// the static address nor the MAC address a container was made with, and Podman 5 adds the
/// hostname to the aliases by itself: the way back asks for the addresses the container had,
/// and the hostname alias is not passed back twice.
#[test]
fn user_networks_aliases_address_mac_and_hostname_survive_the_round_trip() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let third = (std::process::id() % 200) + 20;
    let (a, b) = (unique("nmt-neta"), unique("nmt-netb"));
    let subnet = format!("10.231.{third}.0/24");
    let ip = format!("10.231.{third}.10");
    docker(&[
        "network",
        "create",
        "--label",
        "netmode-test=1",
        "--subnet",
        &subnet,
        &a,
    ]);
    docker(&["network", "create", "--label", "netmode-test=1", &b]);
    struct Nets(Vec<String>);
    impl Drop for Nets {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = docker_output(&["network", "rm", n]);
            }
        }
    }
    let _nets = Nets(vec![a.clone(), b.clone()]);
    // Through the API: the CLI refuses --mac-address for engines older than API 1.44.
    let name = unique("nmt-nets");
    let body = serde_json::json!({
        "Image": busybox_image(),
        "Cmd": ["sleep", "100000"],
        "Hostname": "gateway-svc",
        "MacAddress": "02:42:0a:e7:00:99",
        "Labels": {"netmode-test": "1"},
        "HostConfig": {"NetworkMode": a},
        // Docker's API 1.41 takes the MAC address here; Podman 4 only in the endpoint.
        "NetworkingConfig": {"EndpointsConfig": {&a: {
            "IPAMConfig": {"IPv4Address": ip},
            "Aliases": ["svc"],
            "MacAddress": "02:42:0a:e7:00:99",
        }}},
    });
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(engine_socket())
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!(
            "http://localhost/v1.41/containers/create?name={name}"
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let c = Container {
        id: docker(&["inspect", "-f", "{{.Id}}", &name]),
        name,
    };
    docker(&["start", &c.name]);
    docker(&["network", "connect", "--alias", "second", &b, &c.name]);
    let fields = |name: &str| {
        let v: Value = serde_json::from_str(&docker(&["inspect", name])).unwrap();
        let i = &v[0];
        let nets = i["NetworkSettings"]["Networks"].as_object().unwrap();
        let mut out: Vec<String> = nets
            .iter()
            .map(|(n, ep)| {
                let mut aliases: Vec<String> = ep["Aliases"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            // Docker adds the short container id as an alias by itself.
                            .filter(|x| !i["Id"].as_str().unwrap().starts_with(x))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                aliases.sort();
                format!(
                    "{n} ip={} static={} aliases={aliases:?}",
                    ep["IPAddress"], ep["IPAMConfig"]["IPv4Address"]
                )
            })
            .collect();
        out.sort();
        out.push(format!("mode={}", i["HostConfig"]["NetworkMode"]));
        out.push(format!("hostname={}", i["Config"]["Hostname"]));
        out.push(format!(
            "mac={}",
            i["NetworkSettings"]["Networks"][&a]["MacAddress"]
        ));
        out
    };
    let before = fields(&c.name);
    assert!(before.iter().any(|f| f.contains(&ip)), "{before:?}");
    assert!(
        before.iter().any(|f| f.contains("02:42:0a:e7:00:99")),
        "the engine took the MAC address asked for: {before:?}"
    );
    daemon.wait_container(&c.name);
    let r = apply(&daemon, &c.name, "host").expect("to host");
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    let dropped = r.dropped.join("\n");
    assert!(dropped.contains(&a) && dropped.contains(&b), "{dropped}");
    daemon.wait_for("host mode seen", Duration::from_secs(10), |st| {
        find(st, &c.name)
            .filter(|x| x.network_mode == "host")
            .map(|_| ())
    });
    let r = apply(&daemon, &c.name, "bridge").expect("back to bridge");
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    assert_eq!(fields(&c.name), before);
}
