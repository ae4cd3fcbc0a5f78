//! `netmode-study`: see `netmode_study` (lib.rs) and `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use netmode_advisor::api::{Direction, Pattern, Protocol};
use netmode_study::error::StudyError;
use netmode_study::plan::Options;
use netmode_study::run::{self, Study};

const USAGE: &str = "\
netmode-study: rerun the paper's experiment on this gateway, with its tables and figures

usage: netmode-study [OPTIONS]            run a study into --out (as root: network namespaces, Docker)
       netmode-study render DIR           draw the files again from DIR/results.json

options:
  --out DIR              where results.json, results.csv, figure{3,4,5}.svg, tables.md and
                         report.html go (default: netmode-study)
  --paper                the paper's method: 60 s cells, 1..4 containers
  --protocols LIST       tcp,udp (default both)
  --sizes LIST           message sizes in bytes, 1..131072 (default 64,1024); a size above
                         65000, UDP's largest datagram here, is measured over TCP alone
  --figures LIST         which figures to measure: 3,4,5 (default all; 3 and 4 share their cells,
                         with Tables 1 and 2; `--figures 5` runs only the concurrent containers)
  --max-n N              Figure 5: 1..N concurrent containers (default: CPUs + 1; 0: no Figure 5)
  --multi PROTO/SIZE[/KIND]
                         Figure 5's traffic (default tcp/64, the paper's); KIND: egress (the
                         default), ingress (the sink sends) or request-response
  --duration D           per cell (default 5s; --paper: 60s)
  --repetitions N        of every cell, interleaved (default 3); medians and spread are reported
  --cpus X               CPU limit of each container (docker --cpus)
  --link-rate R          cap the link to the study's sink (tc tbf), e.g. 20Mbit: the paper's 802.11g
  --sink-subnet CIDR     the study's own sink namespace (default 198.18.79.0/30)
  --target URL           send to netmode://HOST:PORT (a `netmoded sink`) or iperf3://HOST:PORT
                         (iperf3 -s on PORT..PORT+N-1) instead of the study's own sink
  --resume               continue the interrupted study in --out
  -h, --help

Exit codes: 0 done, 64 usage, 130 interrupted (resume with --resume), 1 otherwise.";

fn usage(m: impl std::fmt::Display) -> StudyError {
    StudyError::Usage(format!("{m}\n(netmode-study --help shows the options)"))
}

fn list<T>(v: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, StudyError> {
    let out: Option<Vec<T>> = v.split(',').map(|s| f(s.trim())).collect();
    match out {
        Some(o) if !o.is_empty() => Ok(o),
        _ => Err(usage(format!("--{what}: cannot read {v:?}"))),
    }
}

/// A whole number for `--flag` within `range`, or a usage error naming both.
fn count(v: &str, flag: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, StudyError> {
    v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        usage(format!(
            "--{flag}: expected {}..{}, got {v:?}",
            range.start(),
            range.end()
        ))
    })
}

fn protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

/// A message size, from 1 byte to the largest a probe of any protocol writes (TCP's); which
/// protocols carry it is checked once both lists are known.
fn size(s: &str) -> Option<u32> {
    s.parse()
        .ok()
        .filter(|n| (1..=Protocol::Tcp.max_message()).contains(n))
}

/// A usage error naming `--flag` if a size is larger than every one of `protocols` carries
/// (sizes above UDP's largest datagram are measured over TCP alone).
fn sizes_carried(flag: &str, sizes: &[u32], protocols: &[Protocol]) -> Result<(), StudyError> {
    match Protocol::first_uncarried(sizes, protocols) {
        Some((z, largest)) => Err(usage(format!(
            "--{flag}: {z} bytes is above {largest}, the largest message {} carries",
            protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
        None => Ok(()),
    }
}

fn main_inner() -> Result<(), StudyError> {
    use lexopt::prelude::*;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let mut p = lexopt::Parser::from_env();
    let mut options = Options::quick(cpus);
    let mut paper = false;
    let mut out = PathBuf::from("netmode-study");
    let mut resume = false;
    let mut sink_subnet = "198.18.79.0/30".to_string();
    let mut target = None;
    let mut set: Vec<&'static str> = Vec::new();
    let text = |p: &mut lexopt::Parser| -> Result<String, StudyError> {
        p.value()
            .map_err(usage)?
            .into_string()
            .map_err(|v| usage(format!("not UTF-8: {v:?}")))
    };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            Long("out") => out = PathBuf::from(text(&mut p)?),
            Long("paper") => paper = true,
            Long("resume") => resume = true,
            Long("protocols") => {
                options.protocols = list(&text(&mut p)?, "protocols", protocol)?;
            }
            Long("sizes") => options.sizes = list(&text(&mut p)?, "sizes", size)?,
            Long("figures") => {
                let v = text(&mut p)?;
                let figures = list(&v, "figures", |f| {
                    ["3", "4", "5"].contains(&f).then(|| f.to_string())
                })?;
                options.single = figures.iter().any(|f| f != "5");
                if !figures.iter().any(|f| f == "5") {
                    options.max_n = 0;
                    set.push("max-n");
                }
            }
            Long("max-n") => {
                options.max_n = count(&text(&mut p)?, "max-n", 0..=64)?;
                set.push("max-n");
            }
            Long("multi") => {
                let v = text(&mut p)?;
                let bad = || {
                    usage(format!(
                        "--multi: expected like tcp/64 or udp/64/ingress, got {v:?}"
                    ))
                };
                let mut parts = v.split('/');
                let pr = parts.next().and_then(protocol).ok_or_else(bad)?;
                let sz = parts.next().and_then(size).ok_or_else(bad)?;
                sizes_carried("multi", &[sz], &[pr])?;
                (options.multi_direction, options.multi_pattern) = match parts.next() {
                    None | Some("egress") => (Direction::Egress, Pattern::Stream),
                    Some("ingress") => (Direction::Ingress, Pattern::Stream),
                    Some("request-response") | Some("rr") => {
                        (Direction::Egress, Pattern::RequestResponse)
                    }
                    Some(_) => return Err(bad()),
                };
                if parts.next().is_some() {
                    return Err(bad());
                }
                options.multi_protocol = pr;
                options.multi_size = sz;
            }
            Long("duration") => {
                let v = text(&mut p)?;
                options.duration = humantime::parse_duration(&v)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(3600))
                    .ok_or_else(|| {
                        usage(format!(
                            "--duration: expected 500ms..1h like \"5s\", got {v:?}"
                        ))
                    })?;
                set.push("duration");
            }
            Long("repetitions") => {
                options.repetitions = count(&text(&mut p)?, "repetitions", 1..=100)?;
            }
            Long("cpus") => {
                let v = text(&mut p)?;
                options.cpus = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|c| *c > 0.0 && *c <= 1024.0)
                        .ok_or_else(|| {
                            usage(format!("--cpus: expected a positive number, got {v:?}"))
                        })?,
                );
            }
            Long("link-rate") => {
                let v = text(&mut p)?;
                options.link_rate = Some(
                    netmoded::config::parse_rate(&v)
                        .map_err(|e| usage(format!("--link-rate: {e}")))?,
                );
            }
            Long("sink-subnet") => sink_subnet = text(&mut p)?,
            Long("target") => target = Some(text(&mut p)?),
            Value(v) if v == "render" => {
                let dir = PathBuf::from(text(&mut p).map_err(|_| usage("render expects DIR"))?);
                let path = dir.join(run::RESULTS);
                let body = std::fs::read_to_string(&path).map_err(|source| StudyError::Io {
                    what: "cannot read",
                    path: path.clone(),
                    source,
                })?;
                let r = serde_json::from_str(&body).map_err(|e| StudyError::Results {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                run::render(&dir, &r)?;
                println!("drew {} again from {}", dir.display(), path.display());
                return Ok(());
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    if paper {
        let p = Options::paper();
        if !set.contains(&"duration") {
            options.duration = p.duration;
        }
        if !set.contains(&"max-n") {
            options.max_n = p.max_n;
        }
    }
    sizes_carried("sizes", &options.sizes, &options.protocols)?;
    if !options.single && options.max_n == 0 {
        return Err(usage(
            "--figures 5 with --max-n 0 leaves nothing to measure",
        ));
    }
    if target.is_some() && options.link_rate.is_some() {
        return Err(usage(
            "--link-rate caps the study's own sink's link; with --target, cap that link where it is",
        ));
    }
    let sink_subnet = sink_subnet
        .parse()
        .map_err(|e| usage(format!("--sink-subnet: {e}")))?;
    let results = run::run(Study {
        out: out.clone(),
        options,
        resume,
        sink_subnet,
        sink_port: 5291,
        target,
    })?;
    let s = netmode_study::results::summarise(&results.cells);
    for sentence in netmode_study::render::Findings::of(&results, &s).sentences {
        println!("{sentence}");
    }
    println!(
        "wrote {dir}/report.html (and results.json, results.csv, figure3.svg, figure4.svg, figure5.svg, tables.md)",
        dir = out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    // Inside a probe container this executable is the probe sender (`send ...`), as netmoded
    // is in the daemon's probe image.
    if std::env::args().nth(1).as_deref() == Some("send") {
        return match netmoded::cli::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netmode-study: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nnetmode-study: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
