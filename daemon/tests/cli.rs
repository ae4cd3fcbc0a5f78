//! netmoded's command line: configuration errors name key and line and exit 78; a second
//! daemon on the same state directory, or a port in use, is refused with a clear message.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn netmoded(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netmoded"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap()
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("netmoded-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/netmoded.example.toml");
    let o = netmoded(&["check-config", example]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(": ok"));
    // print-config prints that same file.
    let o = netmoded(&["print-config"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        std::fs::read_to_string(example).unwrap()
    );
}

#[test]
fn config_errors_name_key_and_line_and_exit_78() {
    let d = tmp("cfg");
    let f = d.join("bad.toml");
    std::fs::write(
        &f,
        "[daemon]\nstate_dir = \"/tmp/x\"\n\n[http]\nlisten = \"127.0.0.1:9431\"\nlisen = \"x\"\n",
    )
    .unwrap();
    let o = netmoded(&["check-config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78));
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:6:", f.display())), "{e}");
    assert!(e.contains("http.lisen") && e.contains("unknown key"), "{e}");
    assert_eq!(e.lines().count(), 1, "one line, no backtrace: {e}");

    std::fs::write(&f, "[daemon]\nsample_interval = \"soon\"\n").unwrap();
    let o = netmoded(&["--config", f.to_str().unwrap(), "run"]);
    assert_eq!(o.status.code(), Some(78));
    let e = stderr(&o);
    assert!(
        e.contains(":2:") && e.contains("daemon.sample_interval") && e.contains("\"soon\""),
        "{e}"
    );

    let o = netmoded(&["--config", d.join("absent.toml").to_str().unwrap(), "run"]);
    assert_eq!(o.status.code(), Some(78), "an explicit config must exist");
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_non_unix_docker_host_is_a_config_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_netmoded"))
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/netmoded.example.toml"),
        ])
        .env("DOCKER_HOST", "tcp://10.0.0.1:2375")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("DOCKER_HOST"), "{}", stderr(&o));
}

#[test]
fn bad_command_lines_exit_64() {
    let o = netmoded(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("unknown command"));
    let o = netmoded(&[]);
    assert_eq!(o.status.code(), Some(64));
    let o = netmoded(&["--version"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("netmoded "));
}

#[test]
fn each_command_refuses_the_options_of_another() {
    // Each of these would start something if the stray option were ignored; none may.
    for (args, word) in [
        (
            &["run", "--target", "x"][..],
            "run: invalid option '--target'",
        ),
        (
            &["run", "--listen", "127.0.0.1:1"],
            "run: invalid option '--listen'",
        ),
        (&["run", "extra"], "run: unexpected argument"),
        (
            &["sink", "--listen", "127.0.0.1:0", "--json"],
            "sink: invalid option '--json'",
        ),
        (
            &["send", "--listen", "127.0.0.1:1"],
            "send: invalid option '--listen'",
        ),
        (
            &["send", "--target", "netmode://127.0.0.1:1", "x"],
            "send: unexpected argument",
        ),
        (
            &["print-config", "--json"],
            "print-config: invalid option '--json'",
        ),
        (
            &["check-config", "--size", "64", "a.toml"],
            "check-config: invalid option '--size'",
        ),
    ] {
        let o = netmoded(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(word), "{args:?}: {}", stderr(&o));
    }
    // --config is every command's, before or after the command's name.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/netmoded.example.toml");
    for args in [
        &["check-config", "--config", example][..],
        &["--config", example, "check-config"],
    ] {
        let o = netmoded(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn one_daemon_per_state_directory_and_a_busy_port_is_reported() {
    let d = tmp("lock");
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!("[daemon]\nstate_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[docker]\nsocket = \"{}\"\n",
            d.join("state").display(), d.join("no-docker.sock").display()),
    )
    .unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_netmoded"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = d.join("state/endpoint");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !endpoint.exists() {
        assert!(Instant::now() < deadline, "first daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = netmoded(&["--config", cfg.to_str().unwrap(), "run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("in use by another netmoded") && e.contains(&first.id().to_string()),
        "{e}"
    );

    // The first daemon's port is busy for a second one on another state directory.
    let addr = std::fs::read_to_string(&endpoint)
        .unwrap()
        .trim()
        .trim_start_matches("http://")
        .to_string();
    let cfg2 = d.join("c2.toml");
    std::fs::write(
        &cfg2,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n[http]\nlisten = \"{addr}\"\n",
            d.join("state2").display()
        ),
    )
    .unwrap();
    let o = netmoded(&["--config", cfg2.to_str().unwrap(), "run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains(&format!("cannot listen on {addr}")), "{e}");

    let _ = first.kill();
    let _ = first.wait();
    std::fs::remove_dir_all(d).unwrap();
}
