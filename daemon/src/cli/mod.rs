//! Command line: one file per subcommand.

mod check_config;
mod run;
mod send;
mod sink;

use std::path::PathBuf;

use crate::error::{Error, Result};

pub const USAGE: &str = "\
usage: netmoded [--config PATH] <command>

commands:
  run                  run the daemon (config: --config, else /etc/netmode/netmoded.toml if it
                       exists, else the embedded defaults)
  check-config PATH    validate a configuration file and exit (78 if invalid)
  print-config         print the embedded default configuration (every key, commented)
  sink --listen ADDR   receive probe traffic on ADDR (TCP and UDP), for an upstream host;
                       probe.target = \"netmode://ADDR\" sends probes there
  send --target URL    send one probe stream and print what the receiver got:
         [--protocol tcp|udp] [--size BYTES] [--duration 3s] [--rate 20Mbit] [--json]
         URL is netmode://HOST:PORT (a netmoded sink) or iperf3://HOST:PORT (iperf3 -s)

options:
  --config PATH        configuration file (must exist when given)
  -h, --help           this text
  -V, --version        netmoded's version

environment:
  RUST_LOG             log filter (default: info), e.g. RUST_LOG=netmoded=debug
  DOCKER_HOST          unix:///path of the engine socket, when docker.socket is not set

exit codes: 0 ok, 1 runtime error, 64 bad command line, 78 bad configuration";

pub struct Args {
    pub command: String,
    pub operands: Vec<String>,
    pub config: Option<PathBuf>,
    pub send: send::Options,
    pub listen: Option<String>,
}

fn usage(m: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{m}\n\n{USAGE}"))
}

fn parse() -> Result<Option<Args>> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut command = None;
    let mut operands = Vec::new();
    let mut config = None;
    let mut send = send::Options::default();
    let mut listen = None;
    let text = |p: &mut lexopt::Parser| -> Result<String> {
        p.value().map_err(usage)?.string().map_err(usage)
    };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("netmoded {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            Long("config") => config = Some(PathBuf::from(p.value().map_err(usage)?)),
            Long("listen") => listen = Some(text(&mut p)?),
            Long("target") => send.target = Some(text(&mut p)?),
            Long("protocol") => {
                send.protocol = match text(&mut p)?.as_str() {
                    "tcp" => netmode_advisor::api::Protocol::Tcp,
                    "udp" => netmode_advisor::api::Protocol::Udp,
                    other => return Err(usage(format!("--protocol {other:?}: tcp or udp"))),
                }
            }
            Long("size") => {
                let v = text(&mut p)?;
                send.size = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=65_000).contains(s))
                    .ok_or_else(|| usage(format!("--size {v:?}: bytes, 1..65000")))?;
            }
            Long("duration") => {
                let v = text(&mut p)?;
                send.duration = humantime::parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero() && d.as_secs() <= 3600)
                    .ok_or_else(|| usage(format!("--duration {v:?}: like 3s, up to 1h")))?;
            }
            Long("rate") => {
                send.rate_bps = Some(crate::config::parse_rate(&text(&mut p)?).map_err(usage)?)
            }
            Long("session") => {
                let v = text(&mut p)?;
                send.session = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--session {v:?}: a number")))?,
                );
            }
            Long("wait-go") => {
                let v = text(&mut p)?;
                send.wait_go = Some(
                    humantime::parse_duration(&v)
                        .map_err(|e| usage(format!("--wait-go {v:?}: {e}")))?,
                );
            }
            Long("json") => send.json = true,
            Long("perf") => send.perf = true,
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
    Ok(Some(Args {
        command,
        operands,
        config,
        send,
        listen,
    }))
}

pub fn main() -> Result<()> {
    let Some(args) = parse()? else {
        return Ok(());
    };
    let no_operands = |args: &Args| {
        if args.operands.is_empty() {
            Ok(())
        } else {
            Err(usage(format!("{} takes no operands", args.command)))
        }
    };
    match args.command.as_str() {
        "run" => {
            no_operands(&args)?;
            run::run(args.config)
        }
        "check-config" => match args.operands.as_slice() {
            [path] => check_config::run(PathBuf::from(path)),
            [] => match args.config {
                Some(p) => check_config::run(p),
                None => Err(usage("check-config expects PATH")),
            },
            _ => Err(usage("check-config expects one PATH")),
        },
        "send" => {
            no_operands(&args)?;
            send::run(args.send)
        }
        "sink" => {
            no_operands(&args)?;
            let listen = args
                .listen
                .ok_or_else(|| usage("sink needs --listen IP:PORT"))?;
            sink::run(&listen)
        }
        "print-config" => {
            no_operands(&args)?;
            print!("{}", crate::config::EXAMPLE);
            Ok(())
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}
