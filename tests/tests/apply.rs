//! Applying a mode change against the real engine: a container with every kind of data and
//! setting survives bridge -> host -> bridge with its data and its definition; a new
//! container that fails is rolled back; a daemon killed after any step leaves exactly one
//! container under the name, running, with its data.

use std::time::Duration;

use netmode_e2e::api::{ApplyList, ApplyRecord, ApplyState};
use netmode_e2e::*;
use serde_json::Value;

const APPLY: &str = "[apply]\nverify = \"1s\"\nwatch = \"1s\"\nhealth_timeout = \"20s\"";

/// A container with a named volume, an anonymous volume, a bind mount, a healthcheck, env,
/// labels, a restart policy, a CPU limit and a published port. Its command never writes to
/// the volumes: what is there was put there by the test. In a container whose hostname is H
/// (in host mode: the host's), it exits at once when /named/fail-H exists, and its
/// healthcheck fails while /named/unhealthy-H does: a fault only the new container sees.
struct Subject {
    c: Container,
    volume: String,
    /// The anonymous volume at /anon (bound by name after a change: `rm -v` keeps it).
    anon: String,
    /// The bind-mounted directory, removed with the subject.
    _bind: TempDir,
}

impl Subject {
    fn new(tag: &str) -> Subject {
        let volume = unique(&format!("nmt-{tag}-vol"));
        let bind = TempDir::new(tag);
        let port = free_port().to_string();
        let c = Container::run(
            tag,
            &[
                "-v",
                &format!("{volume}:/named"),
                "-v",
                "/anon",
                "-v",
                &format!("{}:/bind", bind.path().display()),
                "--health-cmd",
                "test ! -e /named/unhealthy-$(hostname)",
                "--health-interval",
                "1s",
                "-e",
                "FOO=bar",
                "-l",
                "nmt.label=yes",
                "--restart",
                "unless-stopped",
                "--cpus",
                "0.5",
                "-p",
                &format!("{port}:80"),
                "--stop-timeout",
                "2",
            ],
            busybox_image(),
            &[
                "sh",
                "-c",
                "test -e /named/fail-$(hostname) && exit 3; exec sleep 100000",
            ],
        );
        // Data in every volume, written from inside.
        docker(&[
            "exec",
            &c.id,
            "sh",
            "-c",
            "echo named > /named/data; echo anon > /anon/data; echo bind > /bind/data",
        ]);
        let anon = volume_at(&c.id, "/anon");
        Subject {
            c,
            volume,
            anon,
            _bind: bind,
        }
    }

    fn name(&self) -> &str {
        &self.c.name
    }

    fn inspect(&self) -> Value {
        let out = docker(&["inspect", self.name()]);
        serde_json::from_str::<Value>(&out).unwrap()[0].clone()
    }

    /// Exactly one container under the name, running, its data in every volume.
    fn assert_whole(&self) -> Value {
        assert_eq!(
            containers_named(self.name()),
            vec![self.name()],
            "one container under the name, none set aside"
        );
        let i = self.inspect();
        assert_eq!(i["State"]["Running"], Value::Bool(true), "{}", i["State"]);
        for (path, want) in [
            ("/named/data", "named"),
            ("/anon/data", "anon"),
            ("/bind/data", "bind"),
        ] {
            assert_eq!(docker(&["exec", self.name(), "cat", path]), want, "{path}");
        }
        i
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        // The container first (Container's own drop runs after this), then its volumes.
        let _ = docker_output(&["rm", "-f", "-v", &self.c.name]);
        let _ = docker_output(&["volume", "rm", &self.volume]);
        let _ = docker_output(&["volume", "rm", &self.anon]);
        remove_carried_images(&self.c.name);
    }
}

fn apply(daemon: &Daemon, name: &str, mode: &str) -> (std::process::Output, ApplyRecord) {
    let out = daemon.advisor(&["apply", name, "--mode", mode, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let r: ApplyRecord = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "advisor apply --json ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, r)
}

/// "Nothing asked for": null, [], {}, "" and 0 say the same.
fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Fields of `a` and `b` (inspect's Config or HostConfig) that differ, but for those named.
fn differences(section: &str, a: &Value, b: &Value, allowed: &[&str]) -> Vec<String> {
    let (a, b) = (
        a[section].as_object().unwrap(),
        b[section].as_object().unwrap(),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !allowed.contains(&k.as_str()))
        .filter(|k| {
            let (x, y) = (
                a.get(*k).unwrap_or(&Value::Null),
                b.get(*k).unwrap_or(&Value::Null),
            );
            x != y && !(empty(x) && empty(y))
        })
        .map(|k| {
            format!(
                "{section}.{k}: {} -> {}",
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect()
}

#[test]
fn bridge_host_bridge_keeps_data_and_definition() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let s = Subject::new("rt");
    daemon.wait_for("the container", Duration::from_secs(10), |st| {
        find(st, s.name()).map(|_| ())
    });
    let original = s.assert_whole();
    let anon_volume = original["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .unwrap()["Name"]
        .clone();

    // A dry run changes nothing and says what would.
    let out = daemon.advisor(&["apply", s.name(), "--mode", "host", "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "HostConfig.NetworkMode: \"{}\" -> \"host\"",
            default_network_mode()
        )) && text.contains("PortBindings"),
        "{text}"
    );
    assert_eq!(s.inspect()["Id"], original["Id"], "a dry run recreated it");

    // An operator's lock forbids changes (a dry run still answers).
    let lock = daemon.state_dir().join("apply.lock");
    std::fs::write(&lock, "maintenance").unwrap();
    let out = daemon.advisor(&["apply", s.name(), "--mode", "host"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.inspect()["Id"],
        original["Id"],
        "a locked change recreated it"
    );
    std::fs::remove_file(&lock).unwrap();

    // Bridge -> host.
    let (out, r) = apply(&daemon, s.name(), "host");
    assert!(
        out.status.success(),
        "{r:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    let host = s.assert_whole();
    assert_eq!(host["HostConfig"]["NetworkMode"], "host");
    assert_ne!(host["Id"], original["Id"]);
    // The same anonymous volume, not a new empty one.
    assert!(
        host["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == anon_volume),
        "{}",
        host["Mounts"]
    );
    // What host mode must change, and nothing else.
    let host_allowed = [
        "Hostname",
        "Volumes",
        "ExposedPorts",
        "Labels",
        "NetworkMode",
        "PortBindings",
        "Binds",
    ];
    let mut d = differences("Config", &original, &host, &host_allowed);
    d.extend(differences("HostConfig", &original, &host, &host_allowed));
    assert_eq!(d, Vec::<String>::new());
    assert_eq!(host["Config"]["Labels"]["nmt.label"], "yes");
    assert!(host["Config"]["Labels"]["netmode.apply.restore"].is_string());

    // Host -> bridge: the original back, ports included.
    let (out, r) = apply(&daemon, s.name(), "bridge");
    assert!(
        out.status.success(),
        "{r:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut back = s.assert_whole();
    // netmode's one mark: the change that made it (how rollback and recovery find it).
    let mark = back["Config"]["Labels"]
        .as_object_mut()
        .unwrap()
        .remove("netmode.apply.id");
    assert_eq!(mark.as_ref().and_then(Value::as_str), Some(r.id.as_str()));
    // Fields that must differ: the id-derived hostname; the anonymous volume is now bound by
    // its name (Binds) instead of declared (Volumes): the same volume at the same path.
    let allowed = ["Hostname", "Volumes", "Binds"];
    let mut d = differences("Config", &original, &back, &allowed);
    d.extend(differences("HostConfig", &original, &back, &allowed));
    assert_eq!(
        d,
        Vec::<String>::new(),
        "the round trip changed the container's definition"
    );
    assert_eq!(
        back["HostConfig"]["PortBindings"],
        original["HostConfig"]["PortBindings"]
    );
    assert!(
        back["Config"]["Labels"]
            .get("netmode.apply.restore")
            .is_none()
    );
    let binds: Vec<&str> = back["HostConfig"]["Binds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        binds.contains(&format!("{}:/anon", anon_volume.as_str().unwrap()).as_str()),
        "{binds:?}"
    );

    // History: both changes, newest first.
    let (_, text) = daemon.get("/v1/applies");
    let list: ApplyList = serde_json::from_str(&text).unwrap();
    let outcomes: Vec<(String, ApplyState)> = list
        .applies
        .iter()
        .map(|r| (r.to.as_str().to_string(), r.state))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("bridge".into(), ApplyState::Applied),
            ("host".into(), ApplyState::Applied)
        ]
    );
    let out = daemon.advisor(&["history"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .matches("applied")
            .count()
            == 2
    );
}

#[test]
fn a_new_container_that_fails_is_rolled_back() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let s = Subject::new("fail");
    daemon.wait_for("the container", Duration::from_secs(10), |st| {
        find(st, s.name()).map(|_| ())
    });
    let id = s.inspect()["Id"].clone();
    // (1) Its command exits at once in the new container; (2) its healthcheck never passes.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    for (file, why) in [("fail", "exit code 3"), ("unhealthy", "healthcheck")] {
        let file = format!("{file}-{host}");
        docker(&[
            "exec",
            s.name(),
            "sh",
            "-c",
            &format!("touch /named/{file}"),
        ]);
        let (out, r) = apply(&daemon, s.name(), "host");
        assert_eq!(out.status.code(), Some(6), "{r:?}");
        assert_eq!(r.state, ApplyState::RolledBack, "{r:?}");
        assert!(r.error.as_deref().unwrap_or("").contains(why), "{r:?}");
        docker(&["exec", s.name(), "sh", "-c", &format!("rm /named/{file}")]);
        let i = s.assert_whole();
        assert_eq!(i["Id"], id, "the original is back, not a copy");
        assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
        assert_eq!(i["HostConfig"]["NetworkMode"], default_network_mode());
    }
    // (3) The port it serves is taken on the engine's host (by a host-mode container: the
    // engine's host network, wherever the engine runs): in host mode it cannot listen.
    let port = free_port();
    let holder = Container::run(
        "holder",
        &["--network", "host"],
        busybox_image(),
        &["nc", "-l", "-p", &port.to_string()],
    );
    let nc = Container::run(
        "nc",
        &[
            "--restart",
            "on-failure:3",
            "-p",
            &format!("{}:{port}", free_port()),
        ],
        busybox_image(),
        &["nc", "-l", "-p", &port.to_string()],
    );
    daemon.wait_for("the listener", Duration::from_secs(10), |st| {
        find(st, &nc.name).map(|_| ())
    });
    let nc_id = docker(&["inspect", "-f", "{{.Id}}", &nc.name]);
    let (out, r) = apply(&daemon, &nc.name, "host");
    assert_eq!(out.status.code(), Some(6), "{r:?}");
    assert_eq!(r.state, ApplyState::RolledBack, "{r:?}");
    drop(holder);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}} {{.HostConfig.RestartPolicy.Name}}",
            &nc.name
        ]),
        format!("{nc_id} true on-failure")
    );
    let left = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", nc.name),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left.lines().count(), 1, "{left}");
}

#[test]
fn a_daemon_killed_after_any_step_leaves_one_whole_container() {
    require_docker();
    let mut daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let s = Subject::new("kill");
    daemon.wait_for("the container", Duration::from_secs(10), |st| {
        find(st, s.name()).map(|_| ())
    });
    // A file in its own filesystem, carried over by every change (committed to an image).
    docker(&["exec", s.name(), "sh", "-c", "echo layer > /layer"]);
    let mut mode = "bridge";
    for step in APPLY_STEPS {
        let before = s.inspect()["Id"].clone();
        daemon.terminate();
        daemon.set_env("NETMODE_TEST_ABORT_APPLY_AFTER", Some(step));
        daemon.spawn();
        daemon.wait_for("the container", Duration::from_secs(10), |st| {
            find(st, s.name()).map(|_| ())
        });
        let target = if mode == "bridge" { "host" } else { "bridge" };
        let token = daemon.token();
        let _ = http_post_with(
            &format!("{}/v1/apply", daemon.endpoint),
            &format!(
                "{{\"container\": \"{}\", \"mode\": \"{target}\", \"carry_writable_layer\": true}}",
                s.name()
            ),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
        );
        let status = daemon.wait_exit(Duration::from_secs(60));
        assert!(!status.success(), "{step}: the daemon should have aborted");
        assert!(
            daemon.state_dir().join("apply-journal.json").exists(),
            "{step}: no journal left"
        );
        // Restart without the fault: the journal is finished or rolled back.
        daemon.set_env("NETMODE_TEST_ABORT_APPLY_AFTER", None);
        daemon.spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while daemon.state_dir().join("apply-journal.json").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{step}: journal still open:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let i = s.assert_whole();
        assert_eq!(
            docker(&["exec", s.name(), "cat", "/layer"]),
            "layer",
            "{step}: the writable layer"
        );
        let (_, text) = daemon.get("/v1/applies");
        let list: ApplyList = serde_json::from_str(&text).unwrap();
        let last = &list.applies[0];
        if step == "remove_old" {
            // Verified before the kill: the change is finished.
            assert_eq!(last.state, ApplyState::Applied, "{step}: {last:?}");
            assert_eq!(
                i["HostConfig"]["NetworkMode"],
                if target == "host" {
                    "host"
                } else {
                    default_network_mode()
                }
            );
            mode = target;
        } else {
            assert_eq!(last.state, ApplyState::RolledBack, "{step}: {last:?}");
            assert_eq!(i["Id"], before, "{step}: the original is back");
            assert_eq!(
                i["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped",
                "{step}"
            );
        }
    }
}

/// A Compose project's container is not recreated behind Compose's back: `advisor apply`
/// writes an override file, exits 7 and changes nothing; the override, given to the real
/// Compose, puts the service in host mode.
#[test]
fn a_compose_container_gets_an_override_that_compose_applies() {
    require_docker();
    let compose = if docker_output(&["compose", "version"]).status.success() {
        "docker compose"
    } else {
        assert!(
            std::process::Command::new("docker-compose")
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "Docker Compose must be installed (apt-get install docker-compose)"
        );
        "docker-compose"
    };
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let dir = TempDir::new("compose");
    let project = unique("nmtc").replace('-', "");
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "version: \"3.7\"\nservices:\n  web:\n    image: {}\n    command: [\"sleep\", \"100000\"]\n    \
             labels:\n      netmode-test: \"1\"\n    volumes:\n      - data:/data\nvolumes:\n  data: {{}}\n",
            busybox_image()
        ),
    )
    .unwrap();
    let sh = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    struct Down(String, std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(&self.0)
                .current_dir(&self.1)
                .output();
        }
    }
    let _down = Down(
        format!("{compose} -p {project} down -v"),
        dir.path().to_path_buf(),
    );
    sh(&format!("{compose} -p {project} up -d"));
    let name = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    docker(&["exec", &name, "sh", "-c", "echo kept > /data/file"]);
    let id = docker(&["inspect", "-f", "{{.Id}}", &name]);
    daemon.wait_for("the Compose container", Duration::from_secs(10), |st| {
        find(st, &name).map(|_| ())
    });

    let (out, r) = apply(&daemon, &name, "host");
    assert_eq!(out.status.code(), Some(7), "{r:?}");
    assert_eq!(r.state, ApplyState::ComposeOverride, "{r:?}");
    let o = r.compose_override.clone().expect("the override");
    assert!(
        o.file
            .starts_with(&daemon.state_dir().display().to_string()),
        "{o:?}"
    );
    assert_eq!(std::fs::read_to_string(&o.file).unwrap(), o.content);
    assert!(o.content.contains("network_mode: host"), "{}", o.content);
    assert!(o.content.contains("version: \"3.7\""), "{}", o.content);
    // Nothing was changed.
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &name]),
        format!("{id} true")
    );
    let text = daemon.advisor(&["apply", &name, "--mode", "host"]);
    assert_eq!(text.status.code(), Some(7));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&o.file) && stdout.contains("docker compose"),
        "{stdout}"
    );
    let history = daemon.advisor(&["history"]);
    assert!(String::from_utf8_lossy(&history.stdout).contains("override"));

    // Compose itself applies it: the service now runs in host mode, its volume kept.
    sh(&o.command.replacen("docker compose", compose, 1));
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.NetworkMode}} {{.State.Running}}",
            &name
        ]),
        "host true"
    );
    assert_eq!(docker(&["exec", &name, "cat", "/data/file"]), "kept");
}
