//! The static musl builds, as a gateway would run them: fully static (no interpreter, no
//! dynamic section), `--version`, `check-config` on the shipped configuration, and a daemon
//! started without Docker that serves /healthz and reports `docker: unavailable` to the
//! `advisor` of the same architecture. ARM binaries run under qemu-user-static.
//!
//! These need `musl-cross/build` first; `tests/run` does it and runs them
//! (`cargo test -- --include-ignored`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netmode_e2e::*;

const IGNORE: &str =
    "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Program header types of an ELF file (PT_INTERP = 3, PT_DYNAMIC = 2).
fn segment_types(b: &[u8]) -> Vec<u32> {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    let (is64, le) = (b[4] == 2, b[5] == 1);
    let rd = |o: usize, n: usize| -> u64 {
        let mut v = 0u64;
        for i in 0..n {
            let byte = b[o + if le { i } else { n - 1 - i }] as u64;
            v |= byte << (8 * i);
        }
        v
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    (0..phnum)
        .map(|i| rd((phoff + i * phentsize) as usize, 4) as u32)
        .collect()
}

/// The machine an ELF file is for (e_machine).
fn machine(b: &[u8]) -> u16 {
    if b[5] == 1 {
        u16::from_le_bytes([b[0x12], b[0x13]])
    } else {
        u16::from_be_bytes([b[0x12], b[0x13]])
    }
}

struct Target {
    triple: &'static str,
    e_machine: u16,
    runner: Option<&'static str>,
}

const TARGETS: [Target; 3] = [
    Target {
        triple: "armv7-unknown-linux-musleabihf",
        e_machine: 40,
        runner: Some("qemu-arm-static"),
    },
    Target {
        triple: "aarch64-unknown-linux-musl",
        e_machine: 183,
        runner: Some("qemu-aarch64-static"),
    },
    Target {
        triple: "x86_64-unknown-linux-musl",
        e_machine: 62,
        runner: None,
    },
];

fn command(t: &Target, bin: &Path) -> Command {
    match t.runner {
        Some(q) => {
            let mut c = Command::new(q);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn smoke(t: &Target) {
    let dir = workspace().join("target").join(t.triple).join("release");
    let (netmoded, advisor) = (dir.join("netmoded"), dir.join("advisor"));
    let study = dir.join("netmode-study");
    for b in [&netmoded, &advisor, &study] {
        let bytes = std::fs::read(b)
            .unwrap_or_else(|e| panic!("{}: {e}; run musl-cross/build", b.display()));
        assert_eq!(
            machine(&bytes),
            t.e_machine,
            "{} is for another machine",
            b.display()
        );
        let types = segment_types(&bytes);
        assert!(
            !types.contains(&3),
            "{} has an ELF interpreter (PT_INTERP)",
            b.display()
        );
        assert!(
            !types.contains(&2),
            "{} has a dynamic section (PT_DYNAMIC)",
            b.display()
        );
    }

    let out = command(t, &netmoded).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("netmoded "),
        "{out:?}"
    );
    let out = command(t, &advisor).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("advisor "),
        "{out:?}"
    );
    let out = command(t, &study).arg("--help").output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--figures"),
        "{out:?}"
    );
    let example = workspace().join("daemon/netmoded.example.toml");
    let out = command(t, &netmoded)
        .arg("check-config")
        .arg(&example)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The daemon without Docker: it serves, and says the engine is unavailable.
    let tmp = TempDir::new(&format!("static-{}", t.triple));
    let cfg = tmp.path().join("netmoded.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{}\"\nsample_interval = \"1s\"\n[http]\nlisten = \"127.0.0.1:0\"\n[docker]\nsocket = \"{}\"\n{}",
            tmp.path().join("state").display(),
            tmp.path().join("no-docker.sock").display(),
            probe_section("enabled = false")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let mut child = command(t, &netmoded)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let endpoint = tmp.path().join("state/endpoint");
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(&endpoint)
            && http_get(&format!("{}/healthz", u.trim())).is_ok_and(|(c, _)| c == 200)
        {
            break u.trim().to_string();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} netmoded did not serve:\n{}",
                t.triple,
                std::fs::read_to_string(tmp.path().join("log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wait_unavailable = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (_, body) = http_get(&format!("{url}/v1/status")).unwrap();
        let s: api::Status = serde_json::from_str(&body).unwrap();
        if s.docker.state == api::DockerState::Unavailable || Instant::now() > wait_unavailable {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.docker.state, api::DockerState::Unavailable);
    let out = command(t, &advisor)
        .args(["--endpoint", &url, "status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("docker: unavailable"),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{} netmoded did not stop on SIGTERM",
            t.triple
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)"]
fn armv7_static_build_runs_under_qemu() {
    let _ = IGNORE;
    smoke(&TARGETS[0]);
}

#[test]
#[ignore = "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)"]
fn aarch64_static_build_runs_under_qemu() {
    smoke(&TARGETS[1]);
}

#[test]
#[ignore = "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)"]
fn x86_64_static_build_runs() {
    smoke(&TARGETS[2]);
    // The daemon's size budget (docs/benchmarks.md): 4 MiB stripped, on the largest target.
    let netmoded = workspace().join("target/x86_64-unknown-linux-musl/release/netmoded");
    let size = std::fs::metadata(&netmoded).unwrap().len();
    assert!(
        size <= 4 << 20,
        "{} is {size} bytes, over netmoded's budget of 4 MiB ({} bytes)",
        netmoded.display(),
        4 << 20
    );
}

#[test]
#[ignore = "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)"]
fn debian_packages_hold_what_a_gateway_needs() {
    let version = env!("CARGO_PKG_VERSION");
    for arch in ["armhf", "arm64", "amd64"] {
        let deb = workspace().join(format!("target/deb/netmode_{version}_{arch}.deb"));
        let info = Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        assert!(
            info.contains(&format!("Architecture: {arch}")),
            "{}: {info}",
            deb.display()
        );
        assert!(info.contains("Package: netmode"), "{info}");
        let contents = Command::new("dpkg-deb")
            .arg("--contents")
            .arg(&deb)
            .output()
            .unwrap();
        let contents = String::from_utf8_lossy(&contents.stdout).into_owned();
        for path in [
            "./usr/bin/netmoded",
            "./usr/bin/advisor",
            "./usr/bin/netmode-study",
            "./lib/systemd/system/netmoded.service",
            "./etc/netmode/netmoded.toml",
            "./var/lib/netmode/",
        ] {
            assert!(
                contents.contains(path),
                "{path} not in {}:\n{contents}",
                deb.display()
            );
        }
        let conffiles = Command::new("dpkg-deb")
            .args(["--ctrl-tarfile"])
            .arg(&deb)
            .output()
            .unwrap();
        assert!(conffiles.status.success());
        // The packaged binaries are the static ones.
        let x = TempDir::new("deb");
        assert!(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(x.path())
                .status()
                .unwrap()
                .success()
        );
        let b = std::fs::read(x.path().join("usr/bin/netmoded")).unwrap();
        let types = segment_types(&b);
        assert!(
            !types.contains(&3) && !types.contains(&2),
            "{arch}: packaged netmoded is not static"
        );
        // The shipped configuration is the embedded default.
        let shipped = std::fs::read_to_string(x.path().join("etc/netmode/netmoded.toml")).unwrap();
        assert_eq!(
            shipped,
            std::fs::read_to_string(workspace().join("daemon/netmoded.example.toml")).unwrap()
        );
    }
}

/// The x86_64 static build is the product itself: against the real engine it discovers a
/// container, probes it in both modes (its probe image built from the static binary), and
/// the static `advisor` shows the result.
#[test]
#[ignore = "needs the static builds: run tests/run (or musl-cross/build, then --include-ignored)"]
fn x86_64_static_build_discovers_and_probes_on_the_real_engine() {
    require_docker();
    let exe = workspace().join("target/x86_64-unknown-linux-musl/release/netmoded");
    assert!(exe.exists(), "{}: run musl-cross/build", exe.display());
    let daemon = Daemon::start_exe(
        &exe,
        FAST_SAMPLING,
        &probe_section(
            "enabled = false\nduration = \"500ms\"\nprotocols = [\"tcp\"]\nsizes = [1024]\nin_place = false",
        ),
    );
    let c = Container::tcp_sink("static", &[], 18000);
    let t = stream_tcp(format!("{}:18000", c.ip()), Duration::from_secs(4));
    let seen = daemon.wait_for("traffic seen", Duration::from_secs(20), |s| {
        find(s, &c.name)
            .and_then(|k| k.live.as_ref())
            .filter(|l| l.rx_bytes > 0)
            .map(|l| l.rx_bytes)
    });
    assert!(seen > 0);
    t.join().unwrap();

    let run = daemon.probe(
        &format!("{{\"container\": \"{}\"}}", c.name),
        Duration::from_secs(120),
    );
    let cells = &run
        .containers
        .iter()
        .find(|t| t.target.name == c.name)
        .unwrap_or_else(|| panic!("{} not in {run:?}", c.name))
        .cells;
    for m in [api::ProbeMode::Bridge, api::ProbeMode::Host] {
        let cell = cells
            .iter()
            .find(|x| x.mode == m)
            .unwrap_or_else(|| panic!("no {m:?} cell in {cells:?}"));
        assert!(
            cell.error.is_none() && cell.goodput_bps.is_some_and(|g| g > 0.0),
            "{cell:?}\n{}",
            daemon.log_text()
        );
    }
    let out = daemon.advisor(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains(&c.name), "{table}");
    assert_eq!(daemon.probe_containers(), Vec::<String>::new());
}
