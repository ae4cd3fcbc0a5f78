//! netmode as a fleet's Prometheus sees it: `promtool check metrics` on a real scrape with
//! containers of every mode, probes, a sweep and recommendations; a real Prometheus server
//! (Debian's package) scraping a running netmoded, with the fleet rules loaded, and reading
//! back the bytes a container received; the rules' own unit tests (`promtool test rules`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netmode_e2e::*;
use serde_json::Value;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(contrib())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus)");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_fleet_rules_load_and_their_unit_tests_pass() {
    let (ok, out) = promtool(&["check", "rules", "netmode.rules.yml"], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "netmode.rules.test.yml"], None);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A Prometheus server of the test's own, scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = TempDir::new("prom");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: netmode\n    static_configs:\n      - targets: [\"{target}\"]\n",
                contrib().join("netmode.rules.yml").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus must be installed (apt-get install prometheus)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(&format!("{}/-/ready", p.url)), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query (at `time`, Unix seconds, or now): the result vector.
    fn query(&self, q: &str, time: Option<f64>) -> Vec<Value> {
        let mut url = format!(
            "{}/api/v1/query?query={}",
            self.url,
            netmoded::docker::raw::encode(q)
        );
        if let Some(t) = time {
            url.push_str(&format!("&time={t:.3}"));
        }
        let (code, body) = http_get(&url).unwrap();
        assert_eq!(code, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn value(&self, q: &str, time: Option<f64>) -> Option<f64> {
        self.query(q, time)
            .first()
            .and_then(|r| r["value"][1].as_str().and_then(|s| s.parse().ok()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_real_scrape_passes_promtool_and_prometheus_reads_the_bytes_sent() {
    require_docker();
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!(
            // Keys before the first section header go into the harness's [http].
            "host_metrics = true\n[advisor]\nactive_window = \"1s\"\n{}",
            probe_section(
                "enabled = false\nduration = \"300ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false\n\
                 max_concurrency = 2\nsweep_protocols = [\"tcp\"]\nsweep_sizes = [1024]"
            )
        ),
    );
    // Containers of every mode.
    let bridge = Container::tcp_sink("prom-bridge", &[], 18000);
    let host_port = free_port();
    let host = Container::tcp_sink("prom-host", &["--network", "host"], host_port);
    let _none = Container::run(
        "prom-none",
        &["--network", "none"],
        busybox_image(),
        &["sleep", "100000"],
    );
    daemon.wait_for("the containers", Duration::from_secs(10), |st| {
        (find(st, &bridge.name).is_some() && find(st, &host.name).is_some()).then_some(())
    });
    let out = daemon.advisor(&["probe", &bridge.name, "--sweep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // promtool on the real scrape: every family there, no lint problem.
    let (_, metrics) = daemon.get("/metrics");
    for family in [
        "netmode_container_info",
        "netmode_container_network_receive_bytes_total",
        "netmode_probe_goodput_bytes_per_second",
        "netmode_sweep_goodput_bytes_per_second",
        "netmode_recommendation_info",
        "netmode_host_cpu_utilisation_ratio",
        "netmode_probe_runs_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{metrics}"
        );
    }
    let (ok, lint) = promtool(&["check", "metrics"], Some(&metrics));
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );

    // A real Prometheus scrapes it; the bytes a container received read back right.
    let target = daemon.endpoint.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&target);
    let series = format!(
        "netmode_container_network_receive_bytes_total{{job=\"netmode\",name=\"{}\"}}",
        bridge.name
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.value(&series, None).is_none() {
        assert!(Instant::now() < deadline, "never scraped:\n{}", prom.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(prom.value("up{job=\"netmode\"}", None), Some(1.0));
    std::thread::sleep(Duration::from_secs(2));
    let t0 = now_s();
    let sent = stream_tcp(format!("{}:18000", bridge.ip()), Duration::from_secs(6))
        .join()
        .unwrap();
    // Two sample intervals and two scrapes after the traffic ended.
    std::thread::sleep(Duration::from_secs(3));
    let t1 = now_s();
    let before = prom.value(&series, Some(t0)).expect("a value before");
    let after = prom.value(&series, Some(t1)).expect("a value after");
    let received = after - before;
    let ratio = received / sent as f64;
    eprintln!(
        "sent {sent} B, Prometheus read {received} B received (ratio {ratio:.3}, frames' headers included)"
    );
    assert!(
        (0.97..1.15).contains(&ratio),
        "sent {sent} B, Prometheus read {received} B"
    );
    let rate = prom
        .value(
            &format!(
                "max_over_time(rate({series}[3s])[{:.0}s:1s])",
                t1 - t0 + 1.0
            ),
            Some(t1),
        )
        .unwrap_or(0.0);
    assert!(rate > 0.0, "rate of {series}: {rate}");
    // The fleet rules are loaded and evaluated on the real series.
    let pending = prom.query("netmode:recommendation_switch:count", None);
    let rules: Value =
        serde_json::from_str(&http_get(&format!("{}/api/v1/rules", prom.url)).unwrap().1).unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{rules}");
    for g in groups {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
    eprintln!("pending switches recorded: {pending:?}");
}

/// `http.textfile_dir`: the same text, written atomically for node_exporter's textfile
/// collector, and accepted by promtool.
#[test]
fn the_textfile_for_node_exporter_is_written_and_valid() {
    require_docker();
    let dir = TempDir::new("textfile");
    // Keys before the first section header go into the harness's [http].
    let daemon = Daemon::start(
        FAST_SAMPLING,
        &format!("textfile_dir = \"{}\"\n", dir.path().display()),
    );
    let file = dir.path().join("netmode.prom");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() {
        assert!(Instant::now() < deadline, "{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("netmode_docker_up 1"), "{text}");
    assert!(
        text.contains("# TYPE netmode_container_info gauge"),
        "{text}"
    );
    let (ok, lint) = promtool(&["check", "metrics"], Some(&text));
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );
    // Nothing else is left in the directory (no temporary file).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["netmode.prom".to_string()]);
}
