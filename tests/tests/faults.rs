//! A user removes containers under netmoded's feet: while it samples and probes them, and
//! while it changes one's mode. The daemon keeps serving, reports what happened, settles by
//! itself, and leaks no probe container, network namespace, veth, file descriptor, thread or
//! task.

use std::time::{Duration, Instant};

use netmode_e2e::api::{ApplyList, ApplyState, RunState};
use netmode_e2e::*;

/// What a leak would grow: the daemon's fds and threads, the host's veths and namespaces.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Footprint {
    fds: usize,
    threads: usize,
    veths: usize,
    netns: usize,
    tasks: usize,
}

fn footprint(daemon: &Daemon) -> Footprint {
    let pid = daemon.pid();
    let count = |p: String| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    let veths = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-o", "link", "show", "type", "veth"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .count();
    let (_, metrics) = daemon.get("/metrics");
    let tasks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("netmode_runtime_tasks "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("netmode_runtime_tasks") as usize;
    Footprint {
        tasks,
        fds: count(format!("/proc/{pid}/fd")),
        threads: count(format!("/proc/{pid}/task")),
        veths,
        netns: count("/run/netns".into()),
    }
}

/// Wait until the footprint is back to `before` (fds may differ by a few pooled connections).
fn settles(daemon: &Daemon, before: Footprint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = footprint(daemon);
        let ok = now.veths <= before.veths
            && now.netns <= before.netns
            && now.threads <= before.threads + 2
            && now.fds <= before.fds + 4
            && now.tasks <= before.tasks + 2;
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leaked: before {before:?}, after {now:?}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_container_removed_while_sampled_and_probed_leaves_nothing_behind() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section(
            "enabled = false\nduration = \"2s\"\nprotocols = [\"tcp\", \"udp\"]\nsizes = [64, 1024]",
        ),
    );
    // A warm-up probe: the local sink, the probe image and the pools exist before counting.
    let warm = Container::run("fault-warm", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&warm.name);
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", warm.name),
        Duration::from_secs(120),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");
    let before = footprint(&daemon);

    for round in 0..3 {
        let c = Container::run("fault", &[], busybox_image(), &["sleep", "100000"]);
        daemon.wait_container(&c.name);
        let (code, body) = daemon.post("/v1/probes", &format!("{{\"container\": \"{}\"}}", c.name));
        assert_eq!(code, 202, "{body}");
        let queued: netmode_e2e::api::ProbeRun = serde_json::from_str(&body).unwrap();
        // Removed while its probe runs (at a different moment each round).
        daemon.wait_for("the probe running", Duration::from_secs(30), |_| {
            let (_, b) = daemon.get(&format!("/v1/probes/{}", queued.id));
            let r: netmode_e2e::api::ProbeRun = serde_json::from_str(&b).unwrap();
            (r.state == RunState::Running).then_some(())
        });
        std::thread::sleep(Duration::from_millis(700 * round));
        docker(&["rm", "-f", &c.id]);
        let run = daemon.wait_for("the probe's end", Duration::from_secs(120), |_| {
            let (_, b) = daemon.get(&format!("/v1/probes/{}", queued.id));
            let r: netmode_e2e::api::ProbeRun = serde_json::from_str(&b).unwrap();
            (!matches!(r.state, RunState::Queued | RunState::Running)).then_some(r)
        });
        // It ends, either way; if not done, it says why.
        assert!(
            run.state == RunState::Done || run.error.as_deref().is_some_and(|e| !e.is_empty()),
            "round {round}: {run:?}"
        );
        eprintln!("round {round}: {:?} {:?}", run.state, run.error);
        daemon.wait_for("the container gone", Duration::from_secs(10), |s| {
            find(s, &c.name).is_none().then_some(())
        });
        assert_eq!(daemon.get("/healthz").0, 200);
        let left = daemon.probe_containers();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut left = left;
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            left = daemon.probe_containers();
        }
        assert!(
            left.is_empty(),
            "round {round}: probe containers left: {left:?}"
        );
    }
    settles(&daemon, before);
}

#[test]
fn the_new_container_removed_in_the_middle_of_a_change_is_rolled_back_to_the_original() {
    require_docker();
    // The CI accident: something removed the new container between its creation and its
    // start (`docker rm -f NAME`, which by then names the new one).
    let daemon = Daemon::start_with_env(
        FAST_SAMPLING,
        "[apply]\nverify = \"1s\"\nwatch = \"1s\"\n",
        &[("NETMODE_TEST_HOLD_APPLY_AFTER", "create")],
    );
    let c = Container::run("fault-apply", &[], busybox_image(), &["sleep", "100000"]);
    // In its own filesystem: the change carries it over (committed to an image), so a
    // rollback must also remove that image.
    docker(&["exec", &c.id, "sh", "-c", "echo kept > /data"]);
    daemon.wait_container(&c.name);
    let before = footprint(&daemon);
    let (code, body) = daemon.post(
        "/v1/apply",
        &format!(
            "{{\"container\": \"{}\", \"mode\": \"host\", \"carry_writable_layer\": true}}",
            c.name
        ),
    );
    assert_eq!(code, 202, "{body}");
    let state = daemon.state_dir();
    daemon.wait_for("the hold", Duration::from_secs(60), |_| {
        state.join("test-held").exists().then_some(())
    });
    docker(&["rm", "-f", &c.name]);
    std::fs::write(state.join("test-release"), "").unwrap();
    let done = daemon.wait_for("the change's end", Duration::from_secs(60), |_| {
        let (_, t) = daemon.get("/v1/applies");
        let l: ApplyList = serde_json::from_str(&t).unwrap();
        l.running
            .is_none()
            .then(|| l.applies.into_iter().next())
            .flatten()
    });
    assert_eq!(done.state, ApplyState::RolledBack, "{done:?}");
    assert!(done.error.is_some(), "{done:?}");
    let carried = done.carried_image.clone().expect("the layer was committed");
    assert!(
        !docker_output(&["image", "inspect", &carried])
            .status
            .success(),
        "the carried image {carried} outlived the rollback"
    );
    // The original is back under its name, running, in bridge mode, with its data; nothing
    // else carries the name.
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.HostConfig.NetworkMode}} {{.State.Running}}",
            &c.name
        ]),
        format!("{} {} true", c.id, default_network_mode())
    );
    assert_eq!(docker(&["exec", &c.id, "cat", "/data"]), "kept");
    let named = docker(&["ps", "-a", "--filter", &format!("name={}", c.name), "-q"]);
    assert_eq!(named.lines().count(), 1, "{named}");
    assert!(!state.join("apply-journal.json").exists());
    assert_eq!(daemon.get("/healthz").0, 200);
    settles(&daemon, before);
}
