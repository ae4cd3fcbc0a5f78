//! The study's scenario end to end, with the daemon in apply mode: one network-active
//! container alone, then four together on the gateway. After each phase's probes and sweep,
//! the daemon must reach, by itself, the state its own measurements favour: every container
//! in the mode its recommendation names, no applicable switch left, every change made by the
//! advisor. (Which mode wins on this machine is not asserted: that is the measurement's job.)

use std::time::{Duration, Instant};

use netmode_e2e::api::{Action, ApplyList, Recommendations, Trigger};
use netmode_e2e::*;

/// A container that streams about 30 Mbit/s to the discard listener, in either mode.
fn sender(tag: &str, gateway: &str, port: u16) -> Container {
    Container::streaming(tag, &["--stop-timeout", "1"], gateway, port)
}

/// Wait until no change runs and every container named runs in its recommended mode, with
/// no switch recommended; the recommendations then.
fn settled(daemon: &Daemon, names: &[&str], phase: &str) -> Recommendations {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut stable_since: Option<Instant> = None;
    loop {
        let (code, body) = daemon.get("/v1/recommendations");
        let (_, applies) = daemon.get("/v1/applies");
        let list: ApplyList = serde_json::from_str(&applies).unwrap();
        let st = daemon.status();
        let ok = code == 200 && list.running.is_none() && {
            let r: Recommendations = serde_json::from_str(&body).unwrap();
            names.iter().all(|n| {
                let rec = r.containers.iter().find(|c| c.name == *n);
                let now = find(&st, n);
                match (rec, now) {
                    (Some(rec), Some(now)) => {
                        rec.recommendation.action == Action::Keep
                            && rec.recommendation.mode == now.mode_kind
                            && r.network_active.iter().any(|a| a == n)
                    }
                    _ => false,
                }
            })
        };
        if ok {
            let since = *stable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(5) {
                return serde_json::from_str(&body).unwrap();
            }
        } else {
            stable_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "{phase}: not settled within 180 s\nrecommendations: {body}\napplies: {applies}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn summary(r: &Recommendations) -> Vec<String> {
    r.containers
        .iter()
        .map(|c| {
            format!(
                "{} {} ({:+.0} %, P = {:.2} that switching pays, {}, {:?})",
                c.name,
                c.recommendation.mode.as_str(),
                c.recommendation.expected_gain * 100.0,
                c.recommendation.p_switch_pays.unwrap_or(0.0),
                c.recommendation.decision.as_str(),
                c.recommendation.basis
            )
        })
        .collect()
}

#[test]
fn one_then_four_containers_end_in_the_modes_the_measurements_favour() {
    require_docker();
    let gateway = network_gateway("bridge");
    let port = discard_listener();
    // The decision thresholds at their defaults (min_gain 10 %, min_probability 0.95): a
    // container the evidence has not decided stays where it is (its recommendation is keep),
    // one decided is switched by the advisor. Only the clocks are shortened.
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            "[advisor]\nmode = \"apply\"\napply_after = \"0s\"\nactive_window = \"5s\"\n\
             cooldown = \"0s\"\nmax_changes_per_hour = 12\n\
             [apply]\nverify = \"1s\"\nwatch = \"1s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"1s\"\nprotocols = [\"tcp\"]\nsizes = [1024]\n\
                 in_place = false\nmax_concurrency = 4\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]"
            )
        ),
    );

    // One network-active container alone.
    let first = sender("paper1", &gateway, port);
    daemon.wait_for("network-active", Duration::from_secs(30), |_| {
        let (code, body) = daemon.get("/v1/recommendations");
        (code == 200
            && serde_json::from_str::<Recommendations>(&body)
                .unwrap()
                .network_active
                .contains(&first.name))
        .then_some(())
    });
    let out = daemon.advisor(&["probe", &first.name, "--sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one = settled(&daemon, &[&first.name], "one container");
    assert_eq!(one.network_active.len(), 1, "{one:?}");

    // Four together.
    let others: Vec<Container> = (2..=4)
        .map(|i| sender(&format!("paper{i}"), &gateway, port))
        .collect();
    let mut names = vec![first.name.as_str()];
    names.extend(others.iter().map(|c| c.name.as_str()));
    daemon.wait_for("four network-active", Duration::from_secs(30), |_| {
        let (code, body) = daemon.get("/v1/recommendations");
        (code == 200
            && serde_json::from_str::<Recommendations>(&body)
                .unwrap()
                .network_active
                .len()
                == 4)
            .then_some(())
    });
    let out = daemon.advisor(&["probe", "--all", "--sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let four = settled(&daemon, &names, "four containers");
    assert_eq!(four.network_active.len(), 4, "{four:?}");

    let (_, applies) = daemon.get("/v1/applies");
    let list: ApplyList = serde_json::from_str(&applies).unwrap();
    assert!(
        list.applies.iter().all(|a| a.trigger == Trigger::Advisor),
        "{applies}"
    );
    eprintln!(
        "paper scenario: alone {:?}; four {:?} (crossover {:?} {}); changes: {:?}",
        summary(&one),
        summary(&four),
        four.crossover.containers,
        four.crossover.source,
        list.applies
            .iter()
            .rev()
            .map(|a| format!(
                "{} {}->{} {:?}",
                a.container,
                a.from.as_str(),
                a.to.as_str(),
                a.state
            ))
            .collect::<Vec<_>>()
    );
}
