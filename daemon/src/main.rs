//! `netmoded`: watches the Docker engine, measures every container's live traffic, and serves
//! it as versioned JSON and Prometheus metrics on a local HTTP endpoint. The daemon is the
//! `netmoded` library; this is its command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    netmoded::heap::trap_from_env();
    match netmoded::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmoded: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
