//! `netmoded run`: the daemon.

use std::path::PathBuf;
use std::sync::Arc;

use futures_lite::StreamExt;
use netmode_advisor::api::Host;

use crate::apply::Changes;
use crate::apply::book::ApplyBook;
use crate::config;
use crate::error::{Error, Result};
use crate::probe::engine::ProbeEngine;
use crate::probe::queue::ProbeQueue;
use crate::reload::Source;
use crate::state::Shared;
use crate::state_dir::StateDir;
use crate::sys::hoststat;
use crate::sys::netlink::Netlink;
use crate::{docker, http, rt, tick};

/// Where the configuration comes from: an explicit path must exist; the default path may be
/// absent (the embedded defaults).
fn source(path: Option<PathBuf>) -> Source {
    match path {
        Some(path) => Source {
            path,
            default_path: false,
        },
        None => Source {
            path: PathBuf::from(config::DEFAULT_PATH),
            default_path: true,
        },
    }
}

fn init_logging() {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // Under systemd the journal adds its own timestamps.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format_timestamp(None);
    }
    b.init();
}

pub fn run(config_path: Option<PathBuf>) -> Result<()> {
    let source = source(config_path);
    let config = source.load()?;
    let path = source.path.clone();
    init_logging();
    if path.exists() {
        log::info!("configuration {}", path.display());
    } else {
        log::info!(
            "no {}: using the embedded default configuration",
            path.display()
        );
    }
    if let Some(v) = config.advisor.min_confidence {
        log::warn!(
            "advisor.min_confidence = {v} is no longer used: a switch is applied once decided, \
             with the probability advisor.min_probability ({})",
            config.advisor.min_probability
        );
    }
    let sockets = config
        .docker
        .engine_sockets()
        .map_err(|e| Error::Usage(e.to_string()))?;
    let state_dir = StateDir::open(&config.daemon.state_dir)?;

    let listener = std::net::TcpListener::bind(config.http.listen).map_err(|e| Error::Listen {
        addr: config.http.listen.to_string(),
        source: e,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the bound address of", "the HTTP listener", e))?;
    state_dir.write_atomic("endpoint", format!("http://{addr}\n").as_bytes())?;

    let host = Host {
        hostname: hoststat::hostname(),
        kernel: hoststat::kernel(),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        sample_interval_s: config.daemon.sample_interval.as_secs_f64(),
        cpu_utilisation: None,
        softirq_share: None,
        context_switches_per_s: None,
        net_rx_softirqs_per_s: None,
        net_tx_softirqs_per_s: None,
        counting: None,
    };
    log::info!(
        "state directory {} (instance {})",
        state_dir.path().display(),
        state_dir.instance_id()
    );
    let (probe_wake, probe_woken) = smol::channel::bounded(1);
    let token = state_dir.token()?;
    log::info!(
        "mutating requests need the bearer token in {}",
        state_dir
            .path()
            .join(crate::state_dir::TOKEN_FILE)
            .display()
    );
    let probes = Arc::new(ProbeQueue::new(
        config.probe.enabled,
        config.probe.duration.as_secs_f64(),
        probe_wake,
    ));
    let shared = Arc::new(Shared::new(config, sockets, state_dir, host));
    let changes = Changes {
        state: shared.clone(),
        book: Arc::new(ApplyBook::default()),
    };
    let app = Arc::new(http::App {
        state: shared.clone(),
        probes: probes.clone(),
        changes: changes.clone(),
        token,
        conns: Default::default(),
    });

    rt::block_on(async move {
        let listener = smol::net::TcpListener::try_from(listener)
            .map_err(|e| Error::io("cannot register the HTTP listener", "epoll", e))?;
        let netlink = Netlink::new()?;
        let mut signals = async_signal::Signals::new([
            async_signal::Signal::Term,
            async_signal::Signal::Int,
            async_signal::Signal::Hup,
        ])
        .map_err(|e| Error::io("cannot install signal handlers", "SIGTERM/SIGINT/SIGHUP", e))?;

        // Recovery ends by itself; every other task must run as long as the daemon: one that
        // ends or panics is reported on `ended`, and the daemon stops with an error.
        rt::spawn(crate::apply::run::recover(changes.clone())).detach();
        let (ended_tx, ended) = smol::channel::bounded(8);
        let heartbeat = Arc::new(rt::Heartbeat::default());
        let s = shared.clone();
        let mut tasks = vec![
            rt::supervised("docker", ended_tx.clone(), docker::watch::run(s.clone())),
            rt::supervised(
                "tick",
                ended_tx.clone(),
                tick::run(
                    tick::Parts {
                        state: s.clone(),
                        probes: probes.clone(),
                        changes: changes.clone(),
                    },
                    netlink.clone(),
                    heartbeat.clone(),
                ),
            ),
            rt::supervised("http", ended_tx.clone(), http::serve(listener, app.clone())),
            rt::supervised(
                "textfile",
                ended_tx.clone(),
                http::metrics::textfile_task(app.clone()),
            ),
            rt::supervised(
                "systemd",
                ended_tx.clone(),
                crate::systemd::supervise(s.clone(), probes.clone(), heartbeat),
            ),
        ];
        let (engine, probe_handle) =
            ProbeEngine::new(shared.clone(), probes.clone(), netlink.clone(), probe_woken);
        let engine_task = rt::supervised("probe", ended_tx, engine.run());
        log::info!(
            "netmoded {} serving http://{addr}",
            env!("CARGO_PKG_VERSION")
        );

        enum Wake {
            Signal(async_signal::Signal),
            Ended(&'static str),
            Nothing,
        }
        let outcome = loop {
            let wake = futures_lite::future::or(
                async {
                    match signals.next().await {
                        Some(Ok(sig)) => Wake::Signal(sig),
                        _ => Wake::Nothing,
                    }
                },
                async {
                    match ended.recv().await {
                        Ok(name) => Wake::Ended(name),
                        Err(_) => std::future::pending().await,
                    }
                },
            )
            .await;
            match wake {
                Wake::Signal(async_signal::Signal::Hup) => {
                    crate::systemd::reloading();
                    let (s, p) = (shared.clone(), probes.clone());
                    let src = source.clone();
                    smol::unblock(move || crate::reload::reload(&s, &p, &src)).await;
                    crate::systemd::reloaded(&shared, &probes);
                }
                Wake::Signal(sig) => {
                    log::info!("{sig:?}: stopping");
                    break Ok(());
                }
                Wake::Ended(name) => {
                    log::error!("stopping: task {name} ended");
                    break Err(Error::TaskEnded(name));
                }
                Wake::Nothing => break Ok(()),
            }
        };
        crate::systemd::stopping();
        // A mode change in progress is settled first (finished or rolled back), within
        // systemd's TimeoutStopSec (90 s in the unit).
        crate::apply::run::shutdown(&changes, std::time::Duration::from_secs(75)).await;
        // Stop probing first (a cell in progress is abandoned), then remove what it made.
        let _ = engine_task.cancel().await;
        probe_handle.shutdown(&shared).await;
        for t in tasks.drain(..) {
            let _ = t.cancel().await;
        }
        log::info!("stopped");
        outcome
    })
}
