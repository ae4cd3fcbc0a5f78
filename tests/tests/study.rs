//! netmode-study against the real engine: a short study (1 s cells, TCP and UDP, 64 and 1024 B,
//! 1..2 containers) interrupted with Ctrl-C after a few cells, leaving nothing behind, then
//! resumed to the end: every file written, every cell in results.json, the figures valid SVG
//! with one series per mode, the report with every figure and the paper's numbers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netmode_e2e::*;

/// The tests of this file run one at a time: `leftovers()` looks at every study's containers
/// and sink links on the machine, so a study of another test running at the same time would
/// count as left behind.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const ARGS: [&str; 8] = [
    "--duration",
    "1s",
    "--repetitions",
    "1",
    "--max-n",
    "2",
    "--sizes",
    "64,1024",
];

fn leftovers() -> (Vec<String>, Vec<String>) {
    let containers = docker(&["ps", "-a", "--filter", "name=netmode-probe-study-", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter(|l| l.contains("nmsk57") || l.contains("nmsp57"))
    .map(str::to_string)
    .collect();
    (containers, links)
}

fn cells_in(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["cells"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_short_study_interrupted_resumed_and_drawn() {
    let _serial = serial();
    require_docker();
    let dir = TempDir::new("study");
    let out = dir.path().join("out");
    let subnet = unique_sink_subnet();
    let mut args: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--out".to_string(),
        out.display().to_string(),
        "--sink-subnet".to_string(),
        subnet,
    ]);

    // Interrupted after three cells: exit 130, nothing left behind.
    let mut child = Command::new(bin("netmode-study"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while cells_in(&out).len() < 3 {
        assert!(Instant::now() < deadline, "no three cells in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(leftovers(), (vec![], vec![]), "left behind after Ctrl-C");
    let before = cells_in(&out);
    assert!(before.len() >= 3);

    // Without --resume the directory is refused; with it, the study ends.
    let refused = Command::new(bin("netmode-study"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    // The resumed run on a sink subnet of its own: the kernel can keep a /32 route to the
    // interrupted run's sink address for a few seconds (seen in CI).
    let fresh = unique_sink_subnet();
    let mut resumed = args.clone();
    let at = resumed.iter().position(|a| a == "--sink-subnet").unwrap() + 1;
    resumed[at] = fresh;
    let done = Command::new(bin("netmode-study"))
        .args(&resumed)
        .arg("--resume")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains("report.html"), "{stdout}");
    assert_eq!(leftovers(), (vec![], vec![]), "left behind after the study");

    // Every cell once: 2 protocols x 2 sizes x 3 modes + 2 counts x 2 modes; the cells
    // measured before the interruption were kept, not measured again.
    let cells = cells_in(&out);
    assert_eq!(cells.len(), 16, "{cells:#?}");
    for c in &before {
        assert!(cells.contains(c), "a resumed study measured {c} again");
    }
    let failed: Vec<_> = cells.iter().filter(|c| !c["error"].is_null()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(
        cells
            .iter()
            .all(|c| c["goodput_bps"].as_f64().is_some_and(|g| g > 0.0)),
        "{cells:#?}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for key in [
        "kernel",
        "cpu_model",
        "cpus",
        "memory_bytes",
        "docker_version",
        "interfaces",
    ] {
        assert!(!results["machine"][key].is_null(), "machine.{key}");
    }

    // The figures are XML with one series per mode (Python's parser, not ours).
    for (fig, modes) in [
        ("figure3.svg", "native,bridge"),
        ("figure4.svg", "bridge,host"),
        ("figure5.svg", "bridge,host"),
    ] {
        let check = format!(
            "import xml.etree.ElementTree as E\n\
             t = E.parse('{}')\n\
             g = [e.get('data-mode') for e in t.iter('{{http://www.w3.org/2000/svg}}g') if e.get('class') == 'series']\n\
             assert g == '{modes}'.split(','), g\n",
            out.join(fig).display()
        );
        let o = Command::new("python3")
            .args(["-c", &check])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{fig}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17);
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    assert!(tables.contains("Table 1") && tables.contains("Table 2"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for needle in [
        "figure3.svg",
        "figure4.svg",
        "figure5.svg",
        "(paper 985",
        "(paper 1050",
        "-6 %",
        "-18 %",
        "What the data shows",
    ] {
        assert!(html.contains(needle), "{needle} missing from report.html");
    }
}

/// A small study into `out`: 1024 B, one repetition of 2 s, no Figure 5, plus `extra`.
fn small_study(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin("netmode-study"))
        .args(["--out", &out.display().to_string()])
        .args([
            "--sizes",
            "1024",
            "--max-n",
            "0",
            "--repetitions",
            "1",
            "--duration",
            "2s",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn study_native_tcp(out: &std::path::Path, target: &str) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let o = small_study(out, &["--target", target, "--protocols", "tcp"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    cells_in(out)
        .iter()
        .find(|c| c["mode"] == "native")
        .and_then(|c| c["goodput_bps"].as_f64())
        .expect("a native cell")
}

fn iperf3_client(ns_addr: &str, port: u16) -> f64 {
    let o = Command::new("iperf3")
        .args([
            "-c",
            ns_addr,
            "-p",
            &port.to_string(),
            "-t",
            "2",
            "-l",
            "1024",
            "-J",
        ])
        .output()
        .expect("iperf3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
}

/// The study's native TCP cell against a stock iperf3 -s agrees with iperf3's own client on
/// the same path, both run three times, interleaved. Tolerance: the best runs within a
/// factor of 7. Single-stream TCP on these VMs is bimodal run to run (0.6-0.9 vs 3.0-3.5
/// Gbit/s): medians can fall in different modes (a ratio of 5.36 was seen with nothing
/// wrong), and all three of iperf3's runs landed in the lower mode while all three of ours
/// were in the upper one (best runs 3.40 vs 0.64 Gbit/s, 5.28). A unit error (bits vs bytes,
/// a missed sender) is a factor of 8 or more where both tools are in one mode.
#[test]
fn the_native_tcp_cell_agrees_with_iperf3_on_the_same_path() {
    let _serial = serial();
    require_docker();
    let upstream = UpstreamHost::with_iperf3(&[5301]);
    let dir = TempDir::new("study-iperf3");
    let target = format!("iperf3://{}:5301", upstream.addr);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..3 {
        ours.push(study_native_tcp(&dir.path().join(format!("s{i}")), &target));
        theirs.push(iperf3_client(&upstream.addr.to_string(), 5301));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let ratio = best(&ours) / best(&theirs);
    eprintln!(
        "native TCP 1024 B: study {:?} Mbit/s, iperf3 {:?} Mbit/s, ratio of the best runs {ratio:.2}",
        ours.iter().map(|b| (b / 1e6).round()).collect::<Vec<_>>(),
        theirs.iter().map(|b| (b / 1e6).round()).collect::<Vec<_>>()
    );
    assert!(
        (1.0 / 7.0..=7.0).contains(&ratio),
        "ratio {ratio:.2}: {ours:?} vs {theirs:?}"
    );
}

/// `small_study` over TCP and UDP on a sink subnet of its own, plus `extra`, into a new
/// temporary directory named `name`: it must succeed. (The directory, the study's out.)
fn tcp_and_udp_study(name: &str, extra: &[&str]) -> (TempDir, std::path::PathBuf) {
    require_docker();
    let dir = TempDir::new(name);
    let out = dir.path().join("out");
    let subnet = unique_sink_subnet();
    let mut args = vec!["--sink-subnet", &subnet, "--protocols", "tcp,udp"];
    args.extend_from_slice(extra);
    let o = small_study(&out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir, out)
}

/// `--link-rate 20Mbit` caps every mode at the paper's 802.11g rate (tc tbf on the sink's
/// veth), and goes with the sink.
#[test]
fn a_link_rate_cap_holds_every_mode_to_it() {
    let _serial = serial();
    let (_dir, out) = tcp_and_udp_study("study-cap", &["--link-rate", "20Mbit"]);
    let cells = cells_in(&out);
    assert_eq!(cells.len(), 6);
    for c in &cells {
        let g = c["goodput_bps"].as_f64().unwrap_or(0.0);
        assert!((15e6..=21e6).contains(&g), "{c}");
    }
    assert!(
        std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("capped at 20.0 Mbit/s")
    );
    assert_eq!(leftovers(), (vec![], vec![]));
}

/// A bulk sender's writes (128 KiB, iperf3's default) are measured over TCP alone: UDP's
/// largest datagram here is 65000 B, so `--sizes 131072` with both protocols gives TCP's three
/// cells (native, bridge, host), each delivering, and tables.md names them; a size no given
/// protocol carries, or `--multi` over UDP above it, is a usage error naming the limit.
#[test]
fn a_size_above_a_udp_datagram_is_measured_over_tcp_alone() {
    let _serial = serial();
    let (dir, out) = tcp_and_udp_study("study-bulk", &["--sizes", "131072"]);
    let cells = cells_in(&out);
    assert_eq!(cells.len(), 3, "{cells:?}");
    for c in &cells {
        assert_eq!(
            (c["protocol"].as_str(), c["size"].as_u64()),
            (Some("tcp"), Some(131_072))
        );
        assert!(c["goodput_bps"].as_f64().unwrap_or(0.0) > 1e6, "{c}");
    }
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    assert!(tables.contains("TCP 131072 B, bridge"), "{tables}");
    assert!(!tables.contains("UDP 131072"), "{tables}");
    assert_eq!(leftovers(), (vec![], vec![]));

    for (extra, needle) in [
        (
            &["--protocols", "udp", "--sizes", "70000"][..],
            "70000 bytes is above 65000",
        ),
        (&["--sizes", "131073"][..], "--sizes: cannot read"),
        (
            &["--multi", "udp/70000"][..],
            "--multi: 70000 bytes is above 65000",
        ),
    ] {
        let o = small_study(&dir.path().join("refused"), extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    assert!(!dir.path().join("refused").exists());
}
