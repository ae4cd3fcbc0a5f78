//! The Docker engine itself restarted in the middle of a mode change, after each step: the
//! change is held right after the step (a test hook), the engine is stopped (as a restart or
//! a crash stops every container), the change is released while the engine is down (its next
//! step fails, and it keeps retrying its rollback), then the engine comes back. netmoded keeps
//! serving meanwhile, and the end is exactly one container under the name, running, with its
//! data; the journal closed.
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test
//! sees its engine go away.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netmode_e2e::api::{ApplyList, ApplyState, DockerState};
use netmode_e2e::*;

/// How the engine on this machine is stopped and started again: by systemd when it runs
/// the engine, else by signalling the process and starting it again with its own command
/// line (how `.ci/run` started it).
enum Engine {
    Systemd,
    Process {
        cmdline: Vec<String>,
    },
    /// A second engine `tests/engines/<name>` runs (`NETMODE_E2E_ENGINE_RIG` names the
    /// script): `kill` stops it as a restart would, `start` brings it back.
    Rig {
        script: PathBuf,
    },
}

impl Engine {
    fn find() -> Engine {
        if let Some(script) = std::env::var_os("NETMODE_E2E_ENGINE_RIG") {
            return Engine::Rig {
                script: script.into(),
            };
        }
        let systemd = Command::new("systemctl")
            .args(["is-active", "--quiet", "docker"])
            .status()
            .is_ok_and(|s| s.success());
        if systemd {
            return Engine::Systemd;
        }
        let pid = std::fs::read_to_string("/var/run/docker.pid")
            .expect("the engine's pid file /var/run/docker.pid")
            .trim()
            .to_string();
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd's cmdline");
        let cmdline = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Engine::Process { cmdline }
    }

    fn stop(&self) {
        match self {
            Engine::Rig { script } => {
                assert!(Command::new(script).arg("kill").status().unwrap().success());
            }
            Engine::Systemd => {
                assert!(
                    Command::new("systemctl")
                        .args(["stop", "docker.socket", "docker"])
                        .status()
                        .unwrap()
                        .success()
                );
            }
            Engine::Process { .. } => {
                let pid = std::fs::read_to_string("/var/run/docker.pid").unwrap();
                let pid = pid.trim().to_string();
                assert!(Command::new("kill").arg(&pid).status().unwrap().success());
                let deadline = Instant::now() + Duration::from_secs(90);
                while PathBuf::from(format!("/proc/{pid}")).exists() {
                    assert!(Instant::now() < deadline, "dockerd {pid} did not stop");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        assert!(
            !docker_output(&["info"]).status.success(),
            "the engine still answers"
        );
    }

    fn start(&self) {
        match self {
            Engine::Rig { script } => {
                let out = Command::new(script).arg("start").output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Engine::Systemd => {
                assert!(
                    Command::new("systemctl")
                        .args(["start", "docker"])
                        .status()
                        .unwrap()
                        .success()
                );
            }
            Engine::Process { cmdline } => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open("/var/log/netmode-test-dockerd.log")
                    .unwrap();
                // `setsid -f`: dockerd is not our child (it would linger as a zombie when
                // stopped next time, and it outlives this test).
                let started = Command::new("setsid")
                    .arg("-f")
                    .args(cmdline)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .status()
                    .expect("start dockerd again");
                assert!(started.success());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while !docker_output(&["info"]).status.success() {
            assert!(Instant::now() < deadline, "the engine did not come back");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whatever happens to the test, the engine is started again.
struct Restart<'a>(&'a Engine, bool);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if self.1 && !docker_output(&["info"]).status.success() {
            self.0.start();
        }
    }
}

#[test]
fn the_engine_restarted_after_any_step_leaves_one_whole_container() {
    require_docker();
    let engine = Engine::find();
    let mut daemon = Daemon::start(
        FAST_SAMPLING,
        "[docker]\nreconnect_max_backoff = \"1s\"\n[apply]\nverify = \"1s\"\nwatch = \"1s\"\n",
    );
    let volume = unique("nmt-er-vol");
    let c = Container::run(
        "er",
        &[
            "-v",
            &format!("{volume}:/named"),
            "-v",
            "/anon",
            "--restart",
            "unless-stopped",
            "--stop-timeout",
            "2",
        ],
        busybox_image(),
        &["sleep", "100000"],
    );
    struct Vol(String);
    impl Drop for Vol {
        fn drop(&mut self) {
            let _ = docker_output(&["volume", "rm", &self.0]);
        }
    }
    let _vol = Vol(volume);
    docker(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        // The last in its own filesystem: every change carries it over (commit step).
        "echo named > /named/data; echo anon > /anon/data; echo layer > /layer",
    ]);
    /// The container first (it uses the image and the volumes), then the carried images and
    /// the anonymous volume (bound by name after a change: `rm -v` keeps it).
    struct Carried(String, String);
    impl Drop for Carried {
        fn drop(&mut self) {
            let _ = docker_output(&["rm", "-f", "-v", &self.0]);
            remove_carried_images(&self.0);
            let _ = docker_output(&["volume", "rm", &self.1]);
        }
    }
    let _carried = Carried(c.name.clone(), volume_at(&c.id, "/anon"));
    let whole = |step: &str| {
        assert_eq!(containers_named(&c.name), vec![c.name.as_str()], "{step}");
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", &c.name]),
            "true",
            "{step}"
        );
        for (path, want) in [
            ("/named/data", "named"),
            ("/anon/data", "anon"),
            ("/layer", "layer"),
        ] {
            // An engine that has just restarted the container may refuse an exec for a
            // moment with no message (seen on Docker 26): the data is what is judged.
            let tried = Instant::now();
            let out = loop {
                let out = docker_output(&["exec", &c.name, "cat", path]);
                if out.status.success() || tried.elapsed() > Duration::from_secs(10) {
                    break out;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            assert!(
                out.status.success(),
                "{step}: docker exec cat {path}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                want,
                "{step}: {path}"
            );
        }
        docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &c.name])
    };

    let mut outcomes = Vec::new();
    for step in APPLY_STEPS {
        let mode = whole(step);
        let target = if mode == "host" { "bridge" } else { "host" };
        daemon.terminate();
        daemon.set_env("NETMODE_TEST_HOLD_APPLY_AFTER", Some(step));
        daemon.spawn();
        daemon.wait_container(&c.name);
        let state = daemon.state_dir();
        let token = daemon.token();
        let (code, body) = http_post_with(
            &format!("{}/v1/apply", daemon.endpoint),
            &format!(
                "{{\"container\": \"{}\", \"mode\": \"{target}\", \"carry_writable_layer\": true}}",
                c.name
            ),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
        )
        .unwrap();
        assert_eq!(code, 202, "{step}: {body}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !state.join("test-held").exists() {
            assert!(
                Instant::now() < deadline,
                "{step}: never held\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        // The engine goes down; the change goes on without it (and fails), then it is back.
        let mut guard = Restart(&engine, true);
        engine.stop();
        std::fs::write(state.join("test-release"), "").unwrap();
        daemon.wait_for("docker unavailable", Duration::from_secs(20), |s| {
            (s.docker.state == DockerState::Unavailable).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(daemon.get("/healthz").0, 200, "{step}: still serving");
        engine.start();
        guard.1 = false;

        let deadline = Instant::now() + Duration::from_secs(120);
        while state.join("apply-journal.json").exists() {
            assert!(
                Instant::now() < deadline,
                "{step}: journal still open\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let now = whole(step);
        let (_, text) = daemon.get("/v1/applies");
        let list: ApplyList = serde_json::from_str(&text).unwrap();
        let last = &list.applies[0];
        match last.state {
            ApplyState::Applied => {
                assert_eq!(
                    now,
                    if target == "host" {
                        "host"
                    } else {
                        default_network_mode()
                    }
                )
            }
            ApplyState::RolledBack => assert_eq!(now, mode, "{step}"),
            other => panic!("{step}: {other:?} {last:?}"),
        }
        outcomes.push(format!("{step}: {:?}", last.state));
    }
    eprintln!("engine restarted after each step: {outcomes:?}");
}
