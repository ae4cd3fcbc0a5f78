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
         [--direction ingress]: the sink sends and this end receives (iperf3 -R)
         [--pattern request-response]: requests answered by the sink, one at a time
           (netperf's TCP_RR / UDP_RR): transactions per second and latency
           [--in-flight N]: N exchanges at once, each on its own connection (1..64)
         URL is netmode://HOST:PORT (a netmoded sink) or iperf3://HOST:PORT (iperf3 -s)

options:
  --config PATH        configuration file (must exist when given)
  -h, --help           this text
  -V, --version        netmoded's version

environment:
  RUST_LOG             log filter (default: info), e.g. RUST_LOG=netmoded=debug
  DOCKER_HOST          unix:///path of the engine socket, when docker.socket is not set

exit codes: 0 ok, 1 runtime error, 64 bad command line, 78 bad configuration";

fn usage(m: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{m}\n\n{USAGE}"))
}

/// The next option's value, as text.
pub(crate) fn text(p: &mut lexopt::Parser) -> Result<String> {
    use lexopt::ValueExt;
    p.value().map_err(usage)?.string().map_err(usage)
}

/// A command-line argument, owned (lexopt's borrows the parser).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Short(char),
    Long(String),
    Value(String),
}

impl Arg {
    fn own(arg: lexopt::Arg<'_>) -> Result<Arg> {
        use lexopt::ValueExt;
        Ok(match arg {
            lexopt::Arg::Short(c) => Arg::Short(c),
            lexopt::Arg::Long(l) => Arg::Long(l.to_string()),
            lexopt::Arg::Value(v) => Arg::Value(v.string().map_err(usage)?),
        })
    }

    /// How the argument is named in an error.
    fn shown(&self) -> String {
        match self {
            Arg::Short(c) => format!("invalid option '-{c}'"),
            Arg::Long(l) => format!("invalid option '--{l}'"),
            Arg::Value(v) => format!("unexpected argument {v:?}"),
        }
    }
}

/// Options every command takes (before or after the command's name): `--config`.
#[derive(Default)]
pub struct Global {
    pub config: Option<PathBuf>,
}

impl Global {
    /// Take `arg` if it is a global option.
    fn take(&mut self, arg: &Arg, p: &mut lexopt::Parser) -> Result<bool> {
        match arg {
            Arg::Long(l) if l == "config" => {
                self.config = Some(PathBuf::from(p.value().map_err(usage)?));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Parse the rest of the command line: `each` takes the subcommand's own arguments (and
/// says `false` for those it does not know); anything else is an error naming the
/// subcommand, exit 64.
pub(crate) fn parse_rest(
    command: &str,
    p: &mut lexopt::Parser,
    global: &mut Global,
    mut each: impl FnMut(&Arg, &mut lexopt::Parser) -> Result<bool>,
) -> Result<()> {
    loop {
        let arg = match p.next().map_err(usage)? {
            Some(a) => Arg::own(a)?,
            None => return Ok(()),
        };
        if global.take(&arg, p)? {
            continue;
        }
        if !each(&arg, p)? {
            return Err(usage(format!("{command}: {}", arg.shown())));
        }
    }
}

pub fn main() -> Result<()> {
    let mut p = lexopt::Parser::from_env();
    let mut global = Global::default();
    let command = loop {
        let arg = match p.next().map_err(usage)? {
            Some(a) => Arg::own(a)?,
            None => return Err(usage("missing command")),
        };
        if global.take(&arg, &mut p)? {
            continue;
        }
        match arg {
            Arg::Short('h') => {}
            Arg::Long(l) if l == "help" => {}
            Arg::Short('V') => return version(),
            Arg::Long(l) if l == "version" => return version(),
            Arg::Value(v) => break v,
            other => return Err(usage(other.shown())),
        }
        println!("{USAGE}");
        return Ok(());
    };
    let no_operands = |_: &Arg, _: &mut lexopt::Parser| -> Result<bool> { Ok(false) };
    match command.as_str() {
        "run" => {
            parse_rest("run", &mut p, &mut global, no_operands)?;
            run::run(global.config)
        }
        "check-config" => {
            let mut paths = Vec::new();
            parse_rest("check-config", &mut p, &mut global, |arg, _| match arg {
                Arg::Value(v) => {
                    paths.push(PathBuf::from(v));
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            match (paths.as_slice(), global.config) {
                ([path], _) => check_config::run(path.clone()),
                ([], Some(p)) => check_config::run(p),
                ([], None) => Err(usage("check-config expects PATH")),
                _ => Err(usage("check-config expects one PATH")),
            }
        }
        "send" => {
            let o = send::parse(&mut p, &mut global)?;
            send::run(o)
        }
        "sink" => {
            let listen = sink::parse(&mut p, &mut global)?;
            sink::run(&listen)
        }
        "print-config" => {
            parse_rest("print-config", &mut p, &mut global, no_operands)?;
            print!("{}", crate::config::EXAMPLE);
            Ok(())
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn version() -> Result<()> {
    println!("netmoded {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
