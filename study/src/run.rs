//! Carrying a study out: the probe image, a local sink of the study's own, the probe runner
//! for each cell, `results.json` rewritten atomically after every cell (so `--resume` picks up
//! where an interrupted study stopped), progress on stderr, and cleanup on Ctrl-C.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use netmode_advisor::api::{Limits, ProbeMode};
use netmoded::config::SinkSubnet;
use netmoded::docker::Engine;
use netmoded::probe::localsink::LocalSink;
use netmoded::probe::plan::{Cell, cell_result};
use netmoded::probe::runner::{Runner, Tracked};
use netmoded::sys::netlink::Netlink;
use netmoded::traffic::Target;

use crate::error::StudyError;
use crate::plan::{self, CellKey, Mode, Options};
use crate::results::{CellResult, FORMAT, Results};

pub struct Study {
    pub out: PathBuf,
    pub options: Options,
    pub resume: bool,
    pub sink_subnet: SinkSubnet,
    pub sink_port: u16,
    /// Send to this sink (`netmode://HOST:PORT` of a `netmoded sink`, or `iperf3://HOST:PORT`
    /// with servers on PORT..PORT+N-1) instead of a local sink of the study's own.
    pub target: Option<String>,
}

pub const RESULTS: &str = "results.json";

fn now_ms() -> u64 {
    netmoded::rt::now_ms()
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StudyError + 'a {
    move |source| StudyError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The results of an interrupted study in `out`, if `--resume` asks for them.
fn previous(study: &Study) -> Result<Option<Results>, StudyError> {
    let path = study.out.join(RESULTS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &path)(e)),
    };
    if !study.resume {
        return Err(StudyError::Usage(format!(
            "{} already holds a study: add --resume to continue it, or choose another --out",
            study.out.display()
        )));
    }
    let r: Results = serde_json::from_str(&text).map_err(|e| StudyError::Results {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if r.options != study.options {
        return Err(StudyError::Usage(format!(
            "the study in {} ran with other options ({}); resume it with the same ones",
            study.out.display(),
            serde_json::to_string(&r.options).unwrap_or_default()
        )));
    }
    Ok(Some(r))
}

pub fn save(out: &Path, r: &Results) -> Result<(), StudyError> {
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| StudyError::Results {
        path: out.join(RESULTS),
        reason: e.to_string(),
    })?;
    netmoded::state_dir::write_atomic_mode(&out.join(RESULTS), &bytes, 0o644)?;
    Ok(())
}

/// Write every rendered file beside results.json.
pub fn render(out: &Path, r: &Results) -> Result<(), StudyError> {
    for (name, text) in crate::render::files(r) {
        netmoded::state_dir::write_atomic_mode(&out.join(name), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// `tc qdisc replace dev <the sink's host-side veth> root tbf rate R`: every sender (native,
/// host mode, bridge through the host's forwarding) reaches the sink through it. Removed with
/// the veth.
fn cap_link(instance: &str, rate: u64) -> Result<(), StudyError> {
    let (host_link, _) = netmoded::probe::localsink::link_names(instance);
    // A burst of 10 ms at the rate (at least 2 full frames), up to 50 ms of queue.
    let burst = (rate / 8 / 100).max(3028);
    let out = std::process::Command::new("tc")
        .args(["qdisc", "replace", "dev", &host_link, "root", "tbf", "rate"])
        .arg(format!("{rate}bit"))
        .args(["burst", &burst.to_string(), "latency", "50ms"])
        .output()
        .map_err(|source| StudyError::Io {
            what: "cannot run tc (iproute2) for --link-rate",
            path: PathBuf::from("tc"),
            source,
        })?;
    if !out.status.success() {
        return Err(StudyError::Usage(format!(
            "--link-rate: tc qdisc replace dev {host_link} ... tbf failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn probe_mode(m: Mode) -> ProbeMode {
    match m {
        Mode::Native => ProbeMode::InPlace,
        Mode::Bridge => ProbeMode::Bridge,
        Mode::Host => ProbeMode::Host,
    }
}

struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    started: Instant,
    ran: usize,
}

impl Progress {
    fn show(&mut self, options: &Options, key: &CellKey, result: Option<&CellResult>) {
        let left = self.total - self.done;
        let eta = if self.ran > 0 {
            self.started.elapsed() / self.ran as u32 * left as u32
        } else {
            plan::estimate(options, left)
        };
        let eta = humantime::format_duration(Duration::from_secs(eta.as_secs()));
        let what = match result {
            None => format!("{} ...", key.describe()),
            Some(r) => match (&r.error, r.goodput_bps) {
                (Some(e), _) => format!("{}: failed: {e}", key.describe()),
                (None, Some(g)) => format!("{}: {:.1} Mbit/s", key.describe(), g / 1e6),
                (None, None) => format!("{}: no goodput", key.describe()),
            },
        };
        let bar_len = 24;
        let filled = bar_len * self.done / self.total.max(1);
        let line = format!(
            "[{}{}] {}/{} cells, ~{eta} left  {what}",
            "#".repeat(filled),
            "-".repeat(bar_len - filled),
            self.done,
            self.total
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            if result.is_some() && self.done == self.total {
                eprintln!();
            }
        } else if result.is_some() {
            eprintln!("{line}");
        }
    }
}

/// Run (or resume) the study; the results, also in `out`.
pub fn run(study: Study) -> Result<Results, StudyError> {
    std::fs::create_dir_all(&study.out).map_err(io("cannot create", &study.out))?;
    let previous = previous(&study)?;
    netmoded::rt::block_on(async move {
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
                .map_err(io(
                    "cannot install signal handlers for",
                    Path::new("SIGINT"),
                ))?;
        let sockets = netmoded::config::Docker::default()
            .engine_sockets()
            .map_err(|e| StudyError::Usage(e.to_string()))?;
        let (engine, _) = Engine::connect_first(&sockets, Duration::from_secs(60))
            .await
            .map_err(netmoded::error::Error::from)?;
        eprintln!("building the probe image from this executable ...");
        let image = netmoded::probe::image::ensure(&engine).await?;
        // "57" + 6 hex digits: the sink's links are nmsk57xxxxxx, told apart from a daemon's.
        let instance = format!(
            "57{:06x}",
            (std::process::id() as u64 ^ now_ms()) as u32 & 0xff_ffff
        );
        let netlink = Netlink::new()?;
        let (mut local, target) = match &study.target {
            Some(t) => (
                None,
                Target::parse(t).map_err(|e| StudyError::Usage(format!("--target: {e}")))?,
            ),
            None => {
                let mut sink =
                    LocalSink::build(&netlink, &study.sink_subnet, study.sink_port, &instance)
                        .await?;
                if let Some(rate) = study.options.link_rate
                    && let Err(e) = cap_link(&instance, rate)
                {
                    sink.teardown().await;
                    return Err(e);
                }
                let target = Target::Netmode(sink.addr);
                (Some(sink), target)
            }
        };
        let sink_desc = local
            .as_ref()
            .map_or_else(|| target.to_string(), |s| s.to_string());
        let tracked = Tracked::default();
        let perf =
            match netmoded::traffic::perf::Counters::start(std::process::id() as i32).hardware() {
                Ok(()) => "available".to_string(),
                Err(e) => e.0,
            };
        let mut results = previous.unwrap_or_else(|| Results {
            format: FORMAT,
            netmode_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: now_ms(),
            finished_at_ms: None,
            machine: crate::machine::describe(engine.version(), &sink_desc, perf),
            options: study.options.clone(),
            cells: Vec::new(),
        });
        // A resumed study keeps the failed cells' records but measures them again.
        results.cells.retain(|c| c.error.is_none());
        let all = plan::cells(&study.options);
        let total = all.len();
        let todo: Vec<CellKey> = all.into_iter().filter(|k| !results.done(k)).collect();
        let mut progress = Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            done: total - todo.len(),
            started: Instant::now(),
            ran: 0,
        };
        let limits = Limits {
            cpus: study.options.cpus,
            ..Limits::default()
        };
        let run_id = format!("study-{instance}");
        let runner = Runner {
            engine: &engine,
            image: &image,
            instance: &instance,
            run_id: &run_id,
            sink: target,
            tracked: &tracked,
        };
        let work = async {
            for key in &todo {
                progress.show(&study.options, key, None);
                let (direction, pattern) = match key.experiment {
                    plan::Experiment::Multi => {
                        (study.options.multi_direction, study.options.multi_pattern)
                    }
                    plan::Experiment::Single => (
                        netmode_advisor::api::Direction::Egress,
                        netmode_advisor::api::Pattern::Stream,
                    ),
                };
                let cell = Cell {
                    kind: netmode_advisor::api::CellKind {
                        path: netmode_advisor::api::Path::Upstream,
                        pattern,
                        direction,
                        protocol: key.protocol,
                        size: key.size,
                    },
                    duration: study.options.duration,
                    rate_bps: None,
                    // The study's request/response is netperf's: one exchange at a time.
                    in_flight: 1,
                };
                let r = match key.mode {
                    Mode::Native => runner.in_namespace(std::process::id(), &cell).await,
                    Mode::Bridge => runner.containers("bridge", &limits, key.n, &cell).await,
                    Mode::Host => runner.containers("host", &limits, key.n, &cell).await,
                };
                let pc = cell_result(probe_mode(key.mode), &cell, key.n, r);
                let result = CellResult {
                    key: key.clone(),
                    goodput_bps: pc.goodput_bps,
                    sent_bps: pc.sent_bps,
                    loss: pc.loss,
                    duration_s: pc.duration_s,
                    transactions: pc.transactions,
                    counters: pc.counters,
                    error: pc.error,
                    at_ms: now_ms(),
                };
                progress.done += 1;
                progress.ran += 1;
                progress.show(&study.options, key, Some(&result));
                results.cells.push(result);
                save(&study.out, &results)?;
            }
            Ok::<bool, StudyError>(true)
        }
        .or(async {
            let _ = futures_lite::StreamExt::next(&mut signals).await;
            Ok(false)
        })
        .await;
        // Whatever happened: no probe container, no sink left behind.
        for id in tracked.ids() {
            if let Err(e) = engine.remove_container(&id).await {
                log::warn!("cannot remove probe container {id}: {e}");
            }
        }
        if let Some(sink) = local.as_mut() {
            sink.teardown().await;
        }
        match work {
            Ok(true) => {
                results.finished_at_ms = Some(now_ms());
                save(&study.out, &results)?;
                render(&study.out, &results)?;
                Ok(results)
            }
            Ok(false) => {
                save(&study.out, &results)?;
                Err(StudyError::Interrupted {
                    done: results.cells.len(),
                    total,
                    out: study.out.clone(),
                })
            }
            Err(e) => Err(e),
        }
    })
}
