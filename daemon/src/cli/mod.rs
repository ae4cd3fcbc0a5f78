//! Command line: one file per subcommand.

mod check_config;
mod run;

use std::path::PathBuf;

use crate::error::{Error, Result};

pub const USAGE: &str = "\
usage: netmoded [--config PATH] <command>

commands:
  run                  run the daemon (config: --config, else /etc/netmode/netmoded.toml if it
                       exists, else the embedded defaults)
  check-config PATH    validate a configuration file and exit (78 if invalid)
  print-config         print the embedded default configuration (every key, commented)

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
        "print-config" => {
            no_operands(&args)?;
            print!("{}", crate::config::EXAMPLE);
            Ok(())
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}
