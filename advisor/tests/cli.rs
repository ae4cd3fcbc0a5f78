//! The advisor CLI's failure modes: one clear line and a documented exit code, never a
//! backtrace.

use std::process::{Command, Output};

fn advisor(args: &[&str], endpoint_env: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_advisor"));
    c.args(args).env("RUST_BACKTRACE", "1");
    match endpoint_env {
        Some(e) => c.env("NETMODE_ENDPOINT", e),
        None => c.env_remove("NETMODE_ENDPOINT"),
    };
    c.output().unwrap()
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_daemon_that_does_not_answer_is_one_line_and_exit_3() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for o in [
        advisor(&["--endpoint", &url, "status"], None),
        advisor(&["status", "--json"], Some(&url)),
    ] {
        assert_eq!(o.status.code(), Some(3));
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains("does not answer") && e.contains(&url), "{e}");
        assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn usage_errors_exit_2() {
    let o = advisor(&["--endpoint", "https://127.0.0.1:9431", "status"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("http://"));
    assert_eq!(advisor(&["frobnicate"], None).status.code(), Some(2));
    assert_eq!(advisor(&[], None).status.code(), Some(2));
    let o = advisor(&["--version"], None);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("advisor "));
}

#[test]
fn each_command_refuses_the_options_of_another() {
    // Nothing answers there: a refusal must come before any request (exit 2, not 3).
    let url = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        &["status", "--sweep"][..],
        &["status", "--sweep", "--no-wait"],
        &["status", "--all"],
        &["explain", "web", "--no-wait"],
        &["--sweep", "explain", "web"],
        &["status", "--frobnicate"],
    ] {
        let o = advisor(args, Some(&url));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("does not take") || e.contains("invalid option"),
            "{args:?}: {e}"
        );
    }
    // What each command does take still reaches the daemon (here: none answers, exit 3).
    for args in [
        &["status", "--json"][..],
        &["explain", "web", "--json"],
        &["probe", "web", "--no-wait", "--json"],
        &["probe", "--sweep", "--all", "--no-wait"],
    ] {
        let o = advisor(args, Some(&url));
        assert_eq!(o.status.code(), Some(3), "{args:?}");
    }
}
