//! `advisor`: the operator's view of netmoded. A thin CLI over the daemon's JSON endpoint;
//! one file per subcommand.

mod apply;
mod explain;
mod probe;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use netmode_advisor::Error;
use netmode_advisor::client::{Client, DEFAULT_ENDPOINT, DEFAULT_TOKEN_FILE};

const USAGE: &str = "\
usage: advisor [--endpoint URL] <command> [options]

commands:
  status [--json]     one row per running container: mode, live traffic, what netmode sees
  explain CONTAINER   the recommendation for CONTAINER and the whole chain of evidence
       [--json]       behind it: activity, the prior, probes, sweep, weighing, constraints
  probe CONTAINER     measure now what CONTAINER gets in bridge and in host mode (TCP/UDP,
       [--all]        the configured message sizes), with the counters behind it; --all
       [--sweep]      probes every container netmode manages; --sweep adds the
       [--json]       multi-container sweep (alone if nothing else is asked)
       [--no-wait]    queue it, print the run id, and return
  apply CONTAINER     recreate CONTAINER in the other network mode as a journaled
       [--mode M]     transaction (rolled back if the new container fails); M is bridge or
       [--dry-run]    host, default: the current recommendation (only if applicable);
       [--json]       --dry-run prints the difference of the create requests and changes nothing
       [--carry-writable-layer]  files the container wrote outside its volumes are
                      committed to an image the new container is made from (without it,
                      a container holding such files is refused: they would be lost)
  history [--json]    every mode change made, newest first, with its outcome

options:
  --endpoint URL      netmoded's endpoint (default: $NETMODE_ENDPOINT, else http://127.0.0.1:9431)
  --token-file PATH   netmoded's token, sent with requests that change something (probe);
                      default: $NETMODE_TOKEN_FILE, else /var/lib/netmode/token (root only)
  --timeout SECS      how long to wait for netmoded (default 10)
  --json              print JSON instead of a table
  -h, --help          this text
  -V, --version       advisor's version

exit codes: 0 ok, 1 error, 2 usage, 3 netmoded not answering, 4 no such container,
            5 not authorised (token missing or wrong), 6 change rolled back,
            7 not applied: a Compose override file was written instead";

/// What the command line asked for.
pub struct Args {
    pub command: String,
    pub operands: Vec<String>,
    pub json: bool,
    pub sweep: bool,
    pub all: bool,
    pub no_wait: bool,
    pub dry_run: bool,
    /// `apply --carry-writable-layer`.
    pub carry_writable_layer: bool,
    /// `apply --mode`.
    pub mode: Option<String>,
    pub endpoint: String,
    pub timeout: Duration,
    /// `--token-file`, else `$NETMODE_TOKEN_FILE`; `None`: the default path.
    pub token_file: Option<std::path::PathBuf>,
}

pub(crate) fn usage(message: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{message}\n\n{USAGE}"))
}

fn parse_args() -> Result<Option<Args>, Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut command = None;
    let mut operands = Vec::new();
    let mut json = false;
    let mut sweep = false;
    let mut all = false;
    let mut no_wait = false;
    let mut dry_run = false;
    let mut carry_writable_layer = false;
    let mut mode = None;
    let mut endpoint = None;
    let mut timeout = Duration::from_secs(10);
    let mut token_file = None;
    // The command's own options, checked against what the command takes once it is known.
    let mut given: Vec<&'static str> = Vec::new();
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("advisor {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            Long("json") => {
                json = true;
                given.push("--json");
            }
            Long("sweep") => {
                sweep = true;
                given.push("--sweep");
            }
            Long("all") => {
                all = true;
                given.push("--all");
            }
            Long("no-wait") => {
                no_wait = true;
                given.push("--no-wait");
            }
            Long("dry-run") => {
                dry_run = true;
                given.push("--dry-run");
            }
            Long("carry-writable-layer") => {
                carry_writable_layer = true;
                given.push("--carry-writable-layer");
            }
            Long("mode") => {
                mode = Some(parser.value().map_err(usage)?.string().map_err(usage)?);
                given.push("--mode");
            }
            Long("endpoint") => {
                endpoint = Some(parser.value().map_err(usage)?.string().map_err(usage)?);
            }
            Long("token-file") => {
                token_file = Some(std::path::PathBuf::from(parser.value().map_err(usage)?));
            }
            Long("timeout") => {
                let v: f64 = parser
                    .value()
                    .and_then(|v| v.parse())
                    .map_err(|e| usage(format!("--timeout: {e}")))?;
                if !(v > 0.0 && v <= 3600.0) {
                    return Err(usage("--timeout: expected seconds between 0 and 3600"));
                }
                timeout = Duration::from_secs_f64(v);
            }
            Value(v) => {
                let v = v.string().map_err(usage)?;
                if command.is_none() {
                    command = Some(v);
                } else {
                    operands.push(v);
                }
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let command = command.ok_or_else(|| usage("missing command"))?;
    let takes: &[&str] = match command.as_str() {
        "status" | "explain" => &["--json"],
        "probe" => &["--json", "--sweep", "--all", "--no-wait"],
        "apply" => &["--json", "--mode", "--dry-run", "--carry-writable-layer"],
        "history" => &["--json"],
        _ => &[],
    };
    if let Some(other) = given.iter().find(|o| !takes.contains(o)) {
        return Err(usage(format!("{command} does not take {other}")));
    }
    let endpoint = endpoint
        .or_else(|| {
            std::env::var("NETMODE_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    Ok(Some(Args {
        command,
        operands,
        json,
        sweep,
        all,
        no_wait,
        dry_run,
        carry_writable_layer,
        mode,
        endpoint,
        timeout,
        token_file: token_file.or_else(|| {
            std::env::var_os("NETMODE_TOKEN_FILE")
                .filter(|s| !s.is_empty())
                .map(std::path::PathBuf::from)
        }),
    }))
}

fn run() -> Result<(), Error> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    if args.command == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let mut client = Client::new(&args.endpoint, args.timeout)?;
    // Every request carries the token when advisor can read it (a daemon with
    // http.token_for_reads wants it on reads too); only the commands that change something
    // fail at once when the token file given cannot be read.
    let mutating = args.command == "probe" || args.command == "apply";
    client = match &args.token_file {
        Some(p) => client.with_token_file(p, mutating)?,
        None => client.with_token_file(std::path::Path::new(DEFAULT_TOKEN_FILE), false)?,
    };
    match args.command.as_str() {
        "status" => status::run(&client, &args),
        "probe" => probe::run(&client, &args),
        "explain" => explain::run(&client, &args),
        "apply" => apply::run(&client, &args),
        "history" => apply::history(&client, &args),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("advisor: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Fail with a usage error unless exactly `n` operands were given.
pub fn expect_operands(args: &Args, n: usize, what: &str) -> Result<(), Error> {
    if args.operands.len() != n {
        return Err(usage(format!("{} expects {what}", args.command)));
    }
    Ok(())
}
