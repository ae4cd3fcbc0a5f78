//! Every file in the state directory found corrupt or truncated at start (a power cut, a full
//! disk, a hand edit): moved aside, reported, never a crash; what could be read is kept.

use std::path::Path;
use std::time::Duration;

use netmode_e2e::api::{ProbeList, RunState};
use netmode_e2e::*;

fn aside(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&format!("{name}.corrupt-")))
        .collect()
}

#[test]
fn corrupt_state_files_are_moved_aside_and_the_daemon_starts() {
    require_docker();
    let mut daemon = Daemon::start(
        FAST_SAMPLING,
        &probe_section("enabled = false\nduration = \"1s\"\nprotocols = [\"udp\"]\nsizes = [64]"),
    );
    let c = Container::run("state", &[], busybox_image(), &["sleep", "100000"]);
    daemon.wait_container(&c.name);
    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", c.name),
        Duration::from_secs(60),
    );
    assert_eq!(run.state, RunState::Done, "{run:?}");
    // The advisor's memory is written within a few evaluations.
    let state = daemon.state_dir();
    daemon.wait_for("advisor.json", Duration::from_secs(30), |_| {
        state.join("advisor.json").exists().then_some(())
    });
    let old_token = daemon.token();
    assert!(daemon.terminate().success());

    // A power cut and a hand edit, everywhere at once.
    let probes = std::fs::read_to_string(state.join("probes.jsonl")).unwrap();
    std::fs::write(
        state.join("probes.jsonl"),
        format!("not json\n{probes}{{\"id\": \"p17"),
    )
    .unwrap();
    std::fs::write(state.join("applies.jsonl"), "{\"id\": 3}\n\0\0\0").unwrap();
    std::fs::write(state.join("advisor.json"), "{\"containers\": {\"x\": [1,").unwrap();
    std::fs::write(state.join("apply-journal.json"), "{\"step\": \"cre").unwrap();
    std::fs::write(state.join("token"), "").unwrap();
    std::fs::write(state.join("instance-id"), "\0\0\0\0").unwrap();

    daemon.spawn();
    assert_eq!(daemon.get("/healthz").0, 200);
    let log = daemon.log_text();
    for name in [
        "probes.jsonl",
        "applies.jsonl",
        "advisor.json",
        "apply-journal.json",
        "token",
        "instance-id",
    ] {
        let moved = aside(&state, name);
        assert_eq!(moved.len(), 1, "{name}: {moved:?}\n{log}");
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{name}: ")) && l.contains(&moved[0])),
            "{name} moved to {} without a word:\n{log}",
            moved[0]
        );
    }
    // The probe run that could be read is still in the history, and the file holds only it.
    let (_, body) = daemon.get("/v1/probes");
    let list: ProbeList = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [run.id.as_str()]
    );
    let kept = std::fs::read_to_string(state.join("probes.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 1, "{kept}");
    // A new token (the old one is gone with its file), a new instance id.
    let token = daemon.token();
    assert!(token.len() == 64 && token != old_token);
    assert_eq!(daemon.instance().len(), 16);
    // The interrupted change it cannot read is reported with where to look.
    assert!(
        log.contains("docker ps -a --filter name=-netmode-a"),
        "{log}"
    );
    // And it works: a mutation with the new token is accepted.
    daemon.wait_container(&c.name);
    let (code, body) = daemon.post("/v1/probes", &format!("{{\"container\": \"{}\"}}", c.name));
    assert_eq!(code, 202, "{body}");
}
