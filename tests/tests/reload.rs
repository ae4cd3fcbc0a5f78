//! SIGHUP rereads the configuration: a bad file keeps the running configuration and says
//! why (key and line); a good one takes effect without a restart, except for the settings
//! fixed at start, which say so.

use std::time::Duration;

use netmode_e2e::api::{AdvisorMode, Recommendations};
use netmode_e2e::*;

fn metric(daemon: &Daemon, name: &str) -> Option<String> {
    let (_, text) = daemon.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(str::to_string)
}

fn advisor_mode(daemon: &Daemon) -> AdvisorMode {
    let (code, body) = daemon.get("/v1/recommendations");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Recommendations>(&body).unwrap().mode
}

#[test]
fn sighup_rereads_the_config_and_a_bad_file_keeps_the_old_one() {
    require_docker();
    let daemon = Daemon::start(FAST_SAMPLING, "[advisor]\nmode = \"recommend\"\n");
    daemon.wait_for("the first evaluation", Duration::from_secs(10), |_| {
        (daemon.get("/v1/recommendations").0 == 200).then_some(())
    });
    let original = std::fs::read_to_string(daemon.config_path()).unwrap();
    assert_eq!(advisor_mode(&daemon), AdvisorMode::Recommend);
    assert_eq!(
        metric(&daemon, "netmode_config_last_reload_successful").as_deref(),
        Some("1")
    );
    assert!(metric(&daemon, "netmode_host_cpu_utilisation_ratio").is_none());

    // A bad value: the error names key and line, the old configuration stays.
    let bad = original.replace("mode = \"recommend\"", "mode = \"sometimes\"");
    let line = bad.lines().position(|l| l.contains("sometimes")).unwrap() + 1;
    std::fs::write(daemon.config_path(), &bad).unwrap();
    daemon.signal("HUP");
    daemon.wait_for("the failed reload", Duration::from_secs(10), |_| {
        (metric(&daemon, "netmode_config_last_reload_successful").as_deref() == Some("0"))
            .then_some(())
    });
    let log = daemon.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("configuration reload failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failure.contains("advisor.mode") && failure.contains(&format!("netmoded.toml:{line}:")),
        "{failure}"
    );
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(advisor_mode(&daemon), AdvisorMode::Recommend);

    // A good file: the advisor is switched off, host series appear; the listening address
    // is fixed until a restart and says so.
    let good = original
        .replace("mode = \"recommend\"", "mode = \"off\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:1\"\nhost_metrics = true",
        );
    std::fs::write(daemon.config_path(), &good).unwrap();
    daemon.signal("HUP");
    daemon.wait_for("the advisor switched off", Duration::from_secs(10), |_| {
        (advisor_mode(&daemon) == AdvisorMode::Off).then_some(())
    });
    assert_eq!(
        metric(&daemon, "netmode_config_last_reload_successful").as_deref(),
        Some("1")
    );
    daemon.wait_for("host series", Duration::from_secs(10), |_| {
        metric(&daemon, "netmode_host_cpu_utilisation_ratio")
    });
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("http.listen changed") && l.contains("next restart")),
        "{log}"
    );
    assert!(log.contains("configuration reloaded from"), "{log}");
    let (_, status) = daemon.get("/v1/status");
    let s: netmode_e2e::api::Status = serde_json::from_str(&status).unwrap();
    assert_eq!(s.advisor.map(|a| a.mode), Some(AdvisorMode::Off));
}
