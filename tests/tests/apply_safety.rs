//! Applying a mode change against an adversary, on the real engine: each test is named after
//! what it protects, and each was a way to lose a container, its data or another container
//! (issue 20). The writable layer, anonymous `--mount` volumes, two changes at once, a name
//! someone else holds (or that the engine resolves as another container's id prefix),
//! dependents, an abandoned stop, SIGTERM mid-change, what host mode keeps, a crash after
//! verification, the defaults container's volumes.

use std::time::{Duration, Instant};

use netmode_e2e::api::{ApplyList, ApplyRecord, ApplyState};
use netmode_e2e::*;
use serde_json::Value;

const APPLY: &str = "[apply]\nverify = \"1s\"\nwatch = \"1s\"\nhealth_timeout = \"20s\"";

fn inspect(name: &str) -> Value {
    serde_json::from_str::<Value>(&docker(&["inspect", name])).unwrap()[0].clone()
}

fn apply_cli(daemon: &Daemon, args: &[&str]) -> (std::process::Output, Option<ApplyRecord>) {
    let mut a = vec!["apply"];
    a.extend_from_slice(args);
    a.push("--json");
    let out = daemon.advisor(&a);
    let r = serde_json::from_slice(&out.stdout).ok();
    (out, r)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn volumes() -> Vec<String> {
    let mut v: Vec<String> = docker(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// `POST /v1/apply` of `name` to `mode`, accepted (202).
fn start_change(daemon: &Daemon, name: &str, mode: &str) {
    let (code, text) = daemon.post(
        "/v1/apply",
        &format!("{{\"container\": \"{name}\", \"mode\": \"{mode}\"}}"),
    );
    assert_eq!(code, 202, "{text}");
}

/// The change's end, from the history.
fn outcome(daemon: &Daemon, timeout: Duration) -> ApplyRecord {
    daemon.wait_for("the change's end", timeout, |_| {
        let (_, t) = daemon.get("/v1/applies");
        let l: ApplyList = serde_json::from_str(&t).ok()?;
        l.running
            .is_none()
            .then(|| l.applies.into_iter().next())
            .flatten()
    })
}

/// Removes named containers and volumes at the end, whatever happened.
struct Cleanup(Vec<&'static str>, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kind = self.0.clone();
        for (k, n) in kind.iter().zip(&self.1) {
            match *k {
                "volume" => {
                    let _ = docker_output(&["volume", "rm", "-f", n]);
                }
                _ => {
                    // The container, then the images its writable layer was carried into.
                    let _ = docker_output(&["rm", "-f", "-v", n]);
                    remove_carried_images(n);
                }
            }
        }
    }
}

/// Files a container wrote into its own filesystem are not destroyed: the change is refused
/// (naming the size and paths) unless asked to carry them over, and then they are there in
/// the new container; an anonymous `--mount` volume comes back with its content, not as a
/// new empty volume; a dry run leaves no volume behind.
#[test]
fn the_writable_layer_and_anonymous_mount_volumes_are_kept() {
    require_docker();
    let image = busybox_image_with("netmode-test-busybox-vol:1", &["VOLUME /cache"]);
    // Pinned to host: the policy recommends the switch whatever the traffic.
    let c = Container::run(
        "layer",
        &[
            "--mount",
            "type=volume,dst=/data",
            "--label",
            "netmode.policy=host",
        ],
        &image,
        &["sleep", "100000"],
    );
    let anon = |i: &Value, dst: &str| {
        i["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == dst)
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let before = inspect(&c.name);
    let (data_vol, cache_vol) = (anon(&before, "/data"), anon(&before, "/cache"));
    let _cleanup = Cleanup(
        vec!["container", "volume", "volume"],
        vec![c.name.clone(), data_vol.clone(), cache_vol.clone()],
    );
    docker(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "mkdir -p /srv && echo rows > /srv/app.db && echo mounted > /data/f && echo cached > /cache/f",
    ]);
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    daemon.wait_container(&c.name);

    // The recommendation says why the switch cannot be applied (so the advisor never
    // applies it by itself).
    let rec = daemon.wait_for(
        "the writable layer blocker",
        Duration::from_secs(30),
        |st| {
            find(st, &c.name)?
                .recommendation
                .clone()
                .filter(|r| r.blockers.iter().any(|b| b.kind == "writable_layer"))
        },
    );
    assert!(!rec.applicable, "{rec:?}");
    let b = rec
        .blockers
        .iter()
        .find(|b| b.kind == "writable_layer")
        .unwrap();
    assert!(b.message.contains("/srv/app.db"), "{}", b.message);
    assert!(
        !b.message.contains("/data") && !b.message.contains("/cache"),
        "{}",
        b.message
    );

    // A dry run leaks nothing: the defaults container's anonymous volume (the image's
    // VOLUME /cache) goes with it.
    let vols = volumes();
    let out = daemon.advisor(&[
        "apply",
        &c.name,
        "--mode",
        "host",
        "--dry-run",
        "--carry-writable-layer",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(volumes(), vols, "a dry run left a volume behind");

    // Refused, with the size and the path, and nothing changed.
    let (out, _) = apply_cli(&daemon, &[&c.name, "--mode", "host"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("keeps files in its own filesystem") && e.contains("/srv/app.db"),
        "{e}"
    );
    assert!(e.contains("--carry-writable-layer"), "{e}");
    assert_eq!(
        inspect(&c.name)["Id"],
        before["Id"],
        "a refused change acted"
    );

    // Carried over.
    let (out, r) = apply_cli(
        &daemon,
        &[&c.name, "--mode", "host", "--carry-writable-layer"],
    );
    let r = r.unwrap_or_else(|| panic!("{}", stderr(&out)));
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    let carried = r.carried_image.clone().expect("carried_image");
    let host = inspect(&c.name);
    assert_eq!(host["HostConfig"]["NetworkMode"], "host");
    assert_eq!(host["Image"].as_str(), Some(carried.as_str()));
    for (path, want) in [
        ("/srv/app.db", "rows"),
        ("/data/f", "mounted"),
        ("/cache/f", "cached"),
    ] {
        assert_eq!(docker(&["exec", &c.name, "cat", path]), want, "{path}");
    }
    assert_eq!(
        anon(&host, "/data"),
        data_vol,
        "a new empty volume at /data"
    );
    assert_eq!(
        anon(&host, "/cache"),
        cache_vol,
        "a new empty volume at /cache"
    );
    assert_eq!(
        host["HostConfig"]["Mounts"][0]["Source"].as_str(),
        Some(data_vol.as_str())
    );

    // And back: the files are in the image now, the layer is empty, no carry is needed.
    let (out, r) = apply_cli(&daemon, &[&c.name, "--mode", "bridge"]);
    let r = r.unwrap_or_else(|| panic!("{}", stderr(&out)));
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    assert_eq!(docker(&["exec", &c.name, "cat", "/srv/app.db"]), "rows");
    assert_eq!(docker(&["exec", &c.name, "cat", "/data/f"]), "mounted");
    let back = inspect(&c.name);
    assert!(
        back["Config"]["Labels"]["netmode.apply.restore"]
            .as_str()
            .is_none_or(str::is_empty),
        "{}",
        back["Config"]["Labels"]
    );
}

/// Two requests for one container at once: one is taken, the other is refused at once (409),
/// and the container ends up whole, in the new mode, exactly once.
#[test]
fn two_changes_at_once_one_is_refused_at_once() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let c = Container::run("twice", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let body = format!("{{\"container\": \"{}\", \"mode\": \"host\"}}", c.name);
    let codes: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| daemon.post("/v1/apply", &body)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = codes.iter().map(|c| c.0).collect();
    statuses.sort();
    assert_eq!(statuses, vec![202, 409], "{codes:?}");
    let refused = &codes.iter().find(|c| c.0 == 409).unwrap().1;
    assert!(refused.contains("in progress"), "{refused}");
    let r = outcome(&daemon, Duration::from_secs(60));
    assert_eq!(r.state, ApplyState::Applied, "{r:?}");
    let named = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", c.name),
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert_eq!(named, format!("{} running", c.name), "{named}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &c.name]),
        "host"
    );
    // The slot is free again.
    start_change(&daemon, &c.name, "bridge");
    assert_eq!(
        outcome(&daemon, Duration::from_secs(60)).state,
        ApplyState::Applied
    );
}

/// A change is rolled back after a crash without touching any container it did not make:
/// neither one whose id starts with the changed container's name (the engine resolves id
/// prefixes), nor one a user started under the name while it was free.
#[test]
fn rollback_removes_no_container_by_name() {
    require_docker();
    // (1) A container whose name is the first hex digits of another container's id.
    let other = Container::run("victim", &[], busybox_image(), &["sleep", "100000"]);
    let prefix: String = other.id.chars().take(8).collect();
    let mut daemon = Daemon::start_with_env(
        FAST_SAMPLING,
        APPLY,
        &[("NETMODE_TEST_ABORT_APPLY_AFTER", "stop")],
    );
    let hex = Container {
        id: docker(&[
            "run",
            "-d",
            "--name",
            &prefix,
            "--label",
            "netmode-test=1",
            "--restart",
            "unless-stopped",
            busybox_image(),
            "sleep",
            "100000",
        ]),
        name: prefix.clone(),
    };
    daemon.wait_container(&hex.name);
    let _ = daemon.post(
        "/v1/apply",
        &format!("{{\"container\": \"{}\", \"mode\": \"host\"}}", hex.name),
    );
    let st = daemon.wait_exit(Duration::from_secs(60));
    assert!(!st.success(), "the daemon should have aborted after stop");
    daemon.set_env("NETMODE_TEST_ABORT_APPLY_AFTER", None);
    daemon.spawn();
    let r = outcome(&daemon, Duration::from_secs(60));
    assert_eq!(r.state, ApplyState::RolledBack, "{r:?}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &other.id]),
        format!("{} true", other.id),
        "the container whose id starts with the name was touched"
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}} {{.Name}}",
            &hex.id
        ]),
        format!("{} true /{}", hex.id, hex.name)
    );

    // (2) The name taken by someone else while the original was aside.
    daemon.terminate();
    daemon.set_env("NETMODE_TEST_HOLD_APPLY_AFTER", Some("stop"));
    daemon.spawn();
    let c = Container::run(
        "taken",
        &["--restart", "unless-stopped"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_container(&c.name);
    start_change(&daemon, &c.name, "host");
    let state = daemon.state_dir();
    daemon.wait_for("the hold", Duration::from_secs(60), |_| {
        state.join("test-held").exists().then_some(())
    });
    let squatter = docker(&[
        "run",
        "-d",
        "--name",
        &c.name,
        "--label",
        "netmode-test=1",
        busybox_image(),
        "sleep",
        "100000",
    ]);
    std::fs::write(state.join("test-release"), "").unwrap();
    let r = outcome(&daemon, Duration::from_secs(60));
    assert_eq!(r.state, ApplyState::Failed, "{r:?}");
    let err = r.error.clone().unwrap_or_default();
    assert!(err.contains("taken meanwhile"), "{err}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &squatter]),
        format!("{squatter} true"),
        "the other container under the name was touched"
    );
    // The original runs, set aside, with its restart policy back.
    let aside = docker(&[
        "inspect",
        "-f",
        "{{.Name}} {{.State.Running}} {{.HostConfig.RestartPolicy.Name}}",
        &c.id,
    ]);
    assert!(
        aside.starts_with(&format!("/{}-netmode-", c.name))
            && aside.ends_with(" true unless-stopped"),
        "{aside}"
    );
    docker(&["rm", "-f", &squatter]);
    assert!(!state.join("apply-journal.json").exists());
}

/// Containers that depend on this one (its network, PID or IPC namespace, its volumes, a
/// link), running or stopped, are named and the change is refused, `--mode` or not.
#[test]
fn dependents_are_named_and_the_change_refused() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let c = Container::run(
        "dep",
        &["--ipc", "shareable"],
        busybox_image(),
        &["sleep", "100000"],
    );
    let sidecar = Container::run(
        "sidecar",
        &["--network", &format!("container:{}", c.name)],
        busybox_image(),
        &["sleep", "100000"],
    );
    let backup = Container {
        name: unique("nmt-backup"),
        id: String::new(),
    };
    docker(&[
        "create",
        "--name",
        &backup.name,
        "--label",
        "netmode-test=1",
        "--volumes-from",
        &c.name,
        "--pid",
        &format!("container:{}", c.name),
        busybox_image(),
        "true",
    ]);
    daemon.wait_container(&c.name);
    let (out, _) = apply_cli(&daemon, &[&c.name, "--mode", "host"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "{} (--network container:{}, running)",
            sidecar.name, c.name
        )),
        "{e}"
    );
    assert!(
        e.contains(&backup.name) && e.contains("--volumes-from") && e.contains("stopped"),
        "{e}"
    );
    assert!(e.contains("--pid container:"), "{e}");
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &c.name]), c.id);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &sidecar.name]),
        "true"
    );
}

/// A daemon killed while the old container's stop is under way (its process ignores SIGTERM,
/// so the engine's stop runs its whole timeout): after recovery the original runs, and is
/// still running once the abandoned stop's timeout has passed.
#[test]
fn an_abandoned_stop_does_not_leave_the_container_stopped() {
    require_docker();
    let mut daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let c = Container::run(
        "stubborn",
        &["--restart", "unless-stopped", "--stop-timeout", "4"],
        busybox_image(),
        &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
    );
    daemon.wait_container(&c.name);
    start_change(&daemon, &c.name, "host");
    let journal = daemon.state_dir().join("apply-journal.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = std::fs::read_to_string(&journal).unwrap_or_default();
        if j.contains("\"step\": \"stop\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never reached its stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(800));
    daemon.kill9();
    daemon.spawn();
    let r = outcome(&daemon, Duration::from_secs(60));
    assert_eq!(r.state, ApplyState::RolledBack, "{r:?}");
    // Past the abandoned stop's timeout.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}} {{.HostConfig.RestartPolicy.Name}} {{.Name}}",
            &c.name
        ]),
        format!("{} true unless-stopped /{}", c.id, c.name)
    );
}

/// SIGTERM (`systemctl stop`, an upgrade) in the middle of a change: netmoded settles it
/// before it exits, and the original runs under its name with its restart policy.
#[test]
fn sigterm_mid_change_settles_it_before_exiting() {
    require_docker();
    let mut daemon = Daemon::start(
        FAST_SAMPLING,
        "[apply]\nverify = \"1s\"\nwatch = \"60s\"\nhealth_timeout = \"20s\"",
    );
    let c = Container::run(
        "sigterm",
        &["--restart", "always", "--stop-timeout", "2"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_container(&c.name);
    start_change(&daemon, &c.name, "host");
    let journal = daemon.state_dir().join("apply-journal.json");
    daemon.wait_for("the watch", Duration::from_secs(60), |_| {
        std::fs::read_to_string(&journal)
            .ok()
            .filter(|j| j.contains("\"step\": \"watch\""))
            .map(|_| ())
    });
    let t = Instant::now();
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(!journal.exists(), "the change was left unsettled");
    assert!(
        daemon.log_text().contains("rolled back"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}}",
            &c.name
        ]),
        format!("{} true always {}", c.id, default_network_mode())
    );
    let named = docker(&["ps", "-a", "--filter", &format!("name={}", c.name), "-q"]);
    assert_eq!(named.lines().count(), 1, "{named}");
}

/// Host mode keeps what the engine accepts there (hostname, DNS, extra hosts), and a user's
/// entrypoint keeps its arguments even when they equal the image's CMD; the round trip gives
/// them back.
#[test]
fn host_mode_keeps_hostname_dns_extra_hosts_and_the_command() {
    require_docker();
    let image = busybox_image_with(
        "netmode-test-busybox-cmd:1",
        &[r#"CMD ["sleep", "100000"]"#],
    );
    let daemon = Daemon::start(FAST_SAMPLING, APPLY);
    let c = Container::run(
        "names",
        &[
            "--hostname",
            "sensor-7",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "lan",
            "--add-host",
            "broker:192.0.2.7",
            "--entrypoint",
            "/bin/busybox",
        ],
        &image,
        &["sleep", "100000"],
    );
    daemon.wait_container(&c.name);
    let seen = |name: &str| {
        docker(&[
            "exec",
            name,
            "sh",
            "-c",
            "cat /etc/hostname; grep broker /etc/hosts; grep -E 'nameserver|search' /etc/resolv.conf",
        ])
    };
    let before = seen(&c.name);
    assert!(
        before.contains("sensor-7") && before.contains("192.0.2.7"),
        "{before}"
    );
    for mode in ["host", "bridge"] {
        let (out, r) = apply_cli(&daemon, &[&c.name, "--mode", mode]);
        let r = r.unwrap_or_else(|| panic!("{}", stderr(&out)));
        assert_eq!(r.state, ApplyState::Applied, "{mode}: {r:?}");
        assert_eq!(seen(&c.name), before, "{mode}");
        let i = inspect(&c.name);
        assert_eq!(
            i["Config"]["Cmd"],
            serde_json::json!(["sleep", "100000"]),
            "{mode}"
        );
        assert_eq!(
            i["Config"]["Entrypoint"],
            serde_json::json!(["/bin/busybox"]),
            "{mode}"
        );
    }
}

/// A new container that fails a few seconds after it was verified (here: a host-mode start
/// that dies after 3 s) is rolled back while the old one still exists.
#[test]
fn a_crash_after_verification_is_rolled_back() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        "[apply]\nverify = \"1s\"\nwatch = \"8s\"\nhealth_timeout = \"20s\"",
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let script = format!(
        "if [ \"$(cat /etc/hostname)\" = \"{}\" ]; then sleep 3; exit 4; fi; exec sleep 100000",
        host.trim()
    );
    let c = Container::run(
        "late",
        &["--restart", "unless-stopped"],
        busybox_image(),
        &["sh", "-c", &script],
    );
    daemon.wait_container(&c.name);
    let t = Instant::now();
    let (out, r) = apply_cli(&daemon, &[&c.name, "--mode", "host"]);
    let r = r.unwrap_or_else(|| panic!("{}", stderr(&out)));
    assert_eq!(out.status.code(), Some(6), "{r:?}");
    assert_eq!(r.state, ApplyState::RolledBack, "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("into the watch"),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(40));
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}} {{.HostConfig.NetworkMode}}",
            &c.name
        ]),
        format!("{} true {}", c.id, default_network_mode())
    );
}
