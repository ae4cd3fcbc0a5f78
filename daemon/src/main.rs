//! `netmoded`: watches the Docker engine, measures every container's live traffic, and serves
//! it as versioned JSON and Prometheus metrics on a local HTTP endpoint.
//!
//! Layout: `cli/` holds one file per subcommand; `docker/` the engine layer and the
//! inventory watcher; `live/` the traffic sampler; `netlink` the thin rtnetlink layer;
//! `http` and `metrics` the endpoint; `state` what is known now; `state_dir` what is kept.

mod advice;
mod cli;
mod config;
mod docker;
mod error;
mod http;
mod live;
mod metrics;
mod netlink;
mod probe;
mod rt;
mod state;
mod state_dir;
mod systemd;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmoded: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
