//! `advisor.mode = "apply"` against the real engine: a mode that probes show clearly better is
//! applied by the advisor itself, once, and not flipped back within the cooldown; with
//! `recommend` (the default) the same evidence changes nothing; `off` recommends nothing; a
//! decided container is left out of scheduled probe runs.
//!
//! What makes one mode clearly better here: a user-defined bridge network whose forwarded
//! traffic is policed to 16 Mbit/s (an iptables hashlimit in DOCKER-USER, as a slow uplink
//! would), so a container on it sends far less in bridge mode than in host mode, where its
//! traffic is not forwarded.

use std::process::Command;
use std::time::Duration;

use netmode_e2e::api::{
    Action, AdvisorMode, ApplyList, ApplyState, CellKind, Decision, ModeKind, ProbeList,
    Recommendations, RunState, Trigger,
};
use netmode_e2e::*;

/// A user-defined bridge network whose containers' forwarded traffic is policed; both
/// removed on drop.
struct SlowNetwork {
    name: String,
    rule: Vec<String>,
}

impl SlowNetwork {
    fn new(tag: &str) -> SlowNetwork {
        let name = unique(&format!("nmt-{tag}"));
        docker(&["network", "create", "--label", "netmode-test=1", &name]);
        let subnet = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &name,
        ]);
        let rule: Vec<String> = [
            "DOCKER-USER",
            "-s",
            &subnet,
            "-m",
            "hashlimit",
            "--hashlimit-above",
            "2mb/s",
            "--hashlimit-burst",
            "4mb",
            "--hashlimit-mode",
            "srcip",
            "--hashlimit-name",
            &name[..name.len().min(15)],
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = Command::new("iptables")
            .arg("-I")
            .args(&rule)
            .output()
            .expect("iptables");
        assert!(
            out.status.success(),
            "iptables -I {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        SlowNetwork { name, rule }
    }
}

impl Drop for SlowNetwork {
    fn drop(&mut self) {
        let _ = Command::new("iptables").arg("-D").args(&self.rule).output();
        let _ = docker_output(&["network", "rm", &self.name]);
    }
}

/// The decision thresholds (min_gain, min_probability) at their defaults: TCP under a
/// policer varies a lot from one 1 s cell to the next (22 vs 48 Mbit/s beside 2.5 Gbit/s in
/// host mode), and that is still decided in one round. Only the clocks are shortened, and the
/// probes send (egress), the direction the network polices: the subject itself receives, and
/// `auto` would probe it with ingress cells, alike in both modes, whenever its traffic is
/// measured before the run plans its cells (it was when the probe image was being built).
fn config(mode: &str) -> String {
    format!(
        "[advisor]\nmode = \"{mode}\"\napply_after = \"0s\"\nactive_window = \"1s\"\n\
         cooldown = \"1h\"\n\
         [apply]\nverify = \"1s\"\nwatch = \"1s\"\n{}",
        probe_section(
            "enabled = false\nduration = \"1s\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false\n\
             traffic = [\"egress\"]"
        )
    )
}

fn applies(daemon: &Daemon) -> ApplyList {
    let (code, body) = daemon.get("/v1/applies");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn recommendation(daemon: &Daemon, name: &str) -> Option<netmode_e2e::api::Recommendation> {
    let (code, body) = daemon.get("/v1/recommendations");
    if code != 200 {
        return None;
    }
    let r: Recommendations = serde_json::from_str(&body).unwrap();
    r.containers
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.recommendation)
}

/// A network-active bridge container on a policed network, probed `rounds` times: host mode
/// is measured clearly better. In `apply` mode the advisor may act as soon as the first round
/// is in (apply_after 0 s), renaming the container aside: a second round would race with it.
fn probed_subject(daemon: &Daemon, net: &SlowNetwork, rounds: usize) -> Container {
    let port = free_port();
    let c = Container::tcp_sink("auto", &["--network", &net.name], port);
    daemon.wait_container(&c.name);
    // Traffic into it keeps it network-active (host -> container is not forwarded: not policed).
    let _ = stream_tcp(format!("{}:{port}", c.ip()), Duration::from_secs(90));
    for _ in 0..rounds {
        let out = daemon.advisor(&["probe", &c.name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    c
}

#[test]
fn a_clearly_better_mode_is_applied_by_the_advisor_once() {
    require_docker();
    let net = SlowNetwork::new("slow");
    let daemon = Daemon::start(FAST_SAMPLING, &config("apply"));
    let c = probed_subject(&daemon, &net, 1);

    let done = daemon.wait_for("the advisor's change", Duration::from_secs(90), |_| {
        applies(&daemon)
            .applies
            .into_iter()
            .find(|r| r.container == c.name && r.state != ApplyState::Running)
    });
    assert_eq!(done.trigger, Trigger::Advisor, "{done:?}");
    assert_eq!(done.state, ApplyState::Applied, "{done:?}");
    assert_eq!((done.from, done.to), (ModeKind::Bridge, ModeKind::Host));
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.NetworkMode}} {{.State.Running}}",
            &c.name
        ]),
        "host true"
    );
    let log = daemon.log_text();
    assert!(log.contains("advisor: applying"), "{log}");

    // Evaluations go on; within the cooldown nothing is changed again, and the advisor says
    // why a switch back (if the evidence asked for one) waits.
    std::thread::sleep(Duration::from_secs(5));
    let list = applies(&daemon);
    assert!(list.running.is_none(), "{list:?}");
    assert_eq!(
        list.applies
            .iter()
            .filter(|r| r.container == c.name)
            .count(),
        1,
        "{list:?}"
    );
    let r = daemon.wait_for(
        "a recommendation in host mode",
        Duration::from_secs(10),
        |_| recommendation(&daemon, &c.name),
    );
    assert!(
        !(r.action == Action::Switch && r.held_until_ms.is_none()),
        "no switch back outside the cooldown: {r:?}"
    );
    let (_, metrics) = daemon.get("/metrics");
    for line in [
        "netmode_applies_total{trigger=\"advisor\",outcome=\"applied\"} 1",
        "netmode_advisor_mode_info{mode=\"apply\"} 1",
        "netmode_apply_running 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let (_, body) = daemon.get("/v1/status");
    let s: netmode_e2e::api::Status = serde_json::from_str(&body).unwrap();
    assert_eq!(s.advisor.unwrap().mode, AdvisorMode::Apply);
}

#[test]
fn recommend_mode_changes_nothing_and_off_recommends_nothing() {
    require_docker();
    let net = SlowNetwork::new("slowr");
    let daemon = Daemon::start(FAST_SAMPLING, &config("recommend"));
    let c = probed_subject(&daemon, &net, 2);
    let r = daemon.wait_for("the switch to host", Duration::from_secs(30), |_| {
        recommendation(&daemon, &c.name).filter(|r| r.action == Action::Switch && r.applicable)
    });
    assert_eq!(r.mode, ModeKind::Host, "{r:?}");
    // Recommended and applicable, yet nothing happens by itself.
    std::thread::sleep(Duration::from_secs(4));
    assert!(applies(&daemon).applies.is_empty());
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &c.name]),
        net.name
    );
    let out = daemon.advisor(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("advisor recommend"));

    let off = Daemon::start(FAST_SAMPLING, &config("off"));
    let recs = off.wait_for("an answer", Duration::from_secs(10), |_| {
        let (code, body) = off.get("/v1/recommendations");
        (code == 200).then(|| serde_json::from_str::<Recommendations>(&body).unwrap())
    });
    assert_eq!(recs.mode, AdvisorMode::Off);
    assert!(recs.containers.is_empty(), "{recs:?}");
    let out = off.advisor(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("advisor off"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A container whose mode is decided is not probed again by scheduled runs while its traffic
/// stays what it was probed with: the run says so in its notes, and the sweep still runs.
/// The container sends (to the host, not forwarded: not policed; about 30 Mbit/s) from its
/// first second, so it is probed with the kind of traffic it keeps having: egress, which the
/// policed bridge makes clear.
#[test]
fn scheduled_runs_leave_out_a_decided_container() {
    require_docker();
    let net = SlowNetwork::new("slows");
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[advisor]\nmode = \"recommend\"\nactive_window = \"1s\"\n{}",
            probe_section(
                "enabled = true\ninterval = \"15s\"\nduration = \"1s\"\nprotocols = [\"tcp\"]\n\
                 sizes = [1024]\nin_place = false\nmax_concurrency = 1\n\
                 sweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]\nmax_duty_cycle = 1.0\n\
                 skip_above_cpu = 1.0\nskip_above_traffic = \"100Gbit\""
            )
        ),
    );
    let gateway = network_gateway(&net.name);
    let port = discard_listener();
    let c = Container::streaming("sends", &["--network", &net.name], &gateway, port);
    daemon.wait_for("its traffic measured", Duration::from_secs(30), |s| {
        (find(s, &c.name)?.live.as_ref()?.tx_bps > 1e5).then_some(())
    });
    let out = daemon.advisor(&["probe", &c.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.wait_for("a decided switch", Duration::from_secs(30), |_| {
        recommendation(&daemon, &c.name).filter(|r| r.decision == Decision::Switch)
    });
    let decided_at = netmoded::rt::now_ms();
    let run = daemon.wait_for(
        "a scheduled run after the decision",
        Duration::from_secs(120),
        |_| {
            let list: ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).ok()?;
            list.runs.into_iter().find(|r| {
                r.trigger == Trigger::Schedule
                    && r.state == RunState::Done
                    && r.started_at_ms.is_some_and(|t| t > decided_at)
            })
        },
    );
    let kinds = |r: &netmode_e2e::api::ProbeRun| -> Vec<String> {
        r.containers
            .iter()
            .filter(|p| p.target.name == c.name)
            .flat_map(|p| &p.cells)
            .map(|x| format!("{:?} {}", x.mode, CellKind::of(x).label()))
            .collect()
    };
    let list: ProbeList = serde_json::from_str(&daemon.get("/v1/probes").1).unwrap();
    let manual: Vec<Vec<String>> = list
        .runs
        .iter()
        .filter(|r| r.trigger == Trigger::Manual)
        .map(kinds)
        .collect();
    assert!(
        run.containers.iter().all(|p| p.target.name != c.name),
        "the decided container was probed again: {:?}; probed before with {manual:?}; notes {:?}",
        kinds(&run),
        run.notes
    );
    assert!(
        run.notes
            .iter()
            .any(|n| n.contains("left out") && n.contains(&c.name)),
        "{:?}",
        run.notes
    );
    assert!(run.sweep.is_some(), "the sweep still runs: {run:?}");
}
