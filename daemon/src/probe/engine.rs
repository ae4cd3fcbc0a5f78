//! The probe engine: one probe run at a time, manual ones first, scheduled ones within a
//! budget (interval, duty-cycle cap, postponed while the gateway is busy).
//!
//! A run probes containers (each cell: a mode, a protocol, a message size) and/or sweeps
//! 1..N concurrent probe containers per mode. Containers with the same network and limits
//! share one measurement per run: the probe containers do not depend on the target itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use netmode_advisor::api::{
    self, ContainerProbe, Limits, Path, ProbeCell, ProbeMode, ProbeRun, ProbeTarget, RunState,
    Sweep, Trigger,
};

use super::localsink::LocalSink;
use super::plan::{self, cell_result, eligible, next_start, postpone_reason, typical_limits};
use super::queue::{ProbeQueue, QueuedProbe};
use super::runner::{self, Runner, Tracked};
use super::{history, image};
use crate::config::Probe as ProbeConfig;
use crate::docker::Engine;
use crate::error::ProbeError;
use crate::mode::{self, Launch};
use crate::state::{Shared, now_ms};
use crate::sys::netlink::Netlink;
use crate::traffic::Target;

/// The first scheduled run waits at most this long after start.
const FIRST_RUN_MAX_DELAY: Duration = Duration::from_secs(120);

/// What shutdown needs: the probe containers that exist and the local sink.
#[derive(Clone, Default)]
pub struct Handle {
    pub tracked: Tracked,
    local: Arc<smol::lock::Mutex<Option<LocalSink>>>,
}

impl Handle {
    /// Remove probe containers still around and the local sink's veth pair.
    pub async fn shutdown(&self, shared: &Shared) {
        let busy = !self.tracked.ids().is_empty();
        if let Ok(engine) = Engine::connect(&shared.docker_socket(), Duration::from_secs(5)).await {
            // By label, not only the ids we track: a create the cancelled engine had in
            // flight completes in the engine without us ever seeing its id.
            let instance = shared.state_dir.instance_id();
            let mut removed = runner::remove_leftovers(&engine, instance)
                .await
                .unwrap_or(0);
            if busy || removed > 0 {
                async_io::Timer::after(Duration::from_millis(500)).await;
                removed += runner::remove_leftovers(&engine, instance)
                    .await
                    .unwrap_or(0);
            }
            if removed > 0 {
                log::info!("removed {removed} probe container(s) on the way out");
            }
        }
        if let Some(mut sink) = self.local.lock().await.take() {
            sink.teardown().await;
        }
    }
}

pub struct ProbeEngine {
    shared: Arc<Shared>,
    /// The runs asked for, the one running and the history.
    queue: Arc<ProbeQueue>,
    cfg: ProbeConfig,
    netlink: Netlink,
    handle: Handle,
    wake: smol::channel::Receiver<()>,
    /// Where probes send (and its description), once set up.
    sink: Option<(Target, String)>,
    /// Why probes cannot send, when `sink` is `None`.
    sink_error: String,
}

impl ProbeEngine {
    pub fn new(
        shared: Arc<Shared>,
        queue: Arc<ProbeQueue>,
        netlink: Netlink,
        wake: smol::channel::Receiver<()>,
    ) -> (ProbeEngine, Handle) {
        let handle = Handle::default();
        let cfg = shared.config().probe.clone();
        let engine = ProbeEngine {
            shared,
            queue,
            cfg,
            netlink,
            handle: handle.clone(),
            wake,
            sink: None,
            sink_error: "not set up yet".into(),
        };
        (engine, handle)
    }

    async fn setup_sink(&mut self) {
        let sink = match &self.cfg.target {
            Some(t) => Target::parse(t)
                .map(|target| (target, t.clone()))
                .map_err(|e| e.to_string()),
            None => {
                let instance = self.shared.state_dir.instance_id().to_string();
                match LocalSink::build(
                    &self.netlink,
                    &self.cfg.sink_subnet,
                    self.cfg.sink_port,
                    &instance,
                )
                .await
                {
                    Ok(sink) => {
                        let desc = sink.to_string();
                        let target = Target::Netmode(sink.addr);
                        *self.handle.local.lock().await = Some(sink);
                        Ok((target, desc))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match sink {
            Ok((target, desc)) => {
                self.queue.update_status(|s| {
                    s.sink = Some(desc.clone());
                    s.error = None;
                });
                self.sink = Some((target, desc));
            }
            Err(e) => {
                log::error!("probing disabled: {e}");
                self.queue.update_status(|s| s.error = Some(e.clone()));
                self.sink_error = e;
            }
        }
    }

    /// The engine task.
    pub async fn run(mut self) {
        match history::load(&self.shared.state_dir) {
            Ok(runs) => self.queue.load_history(runs),
            Err(e) => log::warn!("probe history: {e}"),
        }
        self.setup_sink().await;
        if let Ok(engine) = self.connect().await {
            match runner::remove_leftovers(&engine, self.shared.state_dir.instance_id()).await {
                Ok(0) => {}
                Ok(n) => log::info!("removed {n} probe container(s) left by an earlier run"),
                Err(e) => log::warn!("removing leftover probe containers: {e}"),
            }
        }
        let mut next = Instant::now() + self.cfg.interval.min(FIRST_RUN_MAX_DELAY);
        // Follow-up runs of undecided containers (probe.undecided_interval).
        let mut follow_up_at = Instant::now() + self.cfg.undecided_interval;
        loop {
            // A reload (SIGHUP) wakes the engine: settings fixed at start (the sink) are kept
            // by `reload::keep_fixed`.
            let enabled_before = self.cfg.enabled;
            self.cfg = self.shared.config().probe.clone();
            if self.cfg.enabled && !enabled_before {
                next = next.min(Instant::now() + self.cfg.interval.min(FIRST_RUN_MAX_DELAY));
            }
            let follow_ups = self.cfg.enabled && !self.cfg.undecided_interval.is_zero();
            let wake_at = if follow_ups {
                next.min(follow_up_at)
            } else {
                next
            };
            if self.cfg.enabled {
                // The next run: a follow-up only while a container waits for one.
                let due = if follow_ups && plan::follow_up(&self.shared.containers()).is_some() {
                    wake_at
                } else {
                    next
                };
                self.queue.update_status(|s| {
                    s.next_run_at_ms = Some(
                        now_ms() + due.saturating_duration_since(Instant::now()).as_millis() as u64,
                    )
                });
            }
            if let Some(q) = self.queue.next_queued() {
                self.execute(q).await;
                continue;
            }
            let now = Instant::now();
            if self.cfg.enabled && now >= next {
                let host = self.shared.host();
                if let Some(reason) =
                    postpone_reason(&host, self.shared.live_traffic_bps(), &self.cfg)
                {
                    log::info!("scheduled probe postponed: {reason}");
                    self.queue.update_status(|s| s.last_skip = Some(reason));
                    next = now + self.cfg.retry_after;
                    continue;
                }
                self.queue.update_status(|s| s.last_skip = None);
                let run = self.queue.new_run(Trigger::Schedule);
                let started = Instant::now();
                self.execute(QueuedProbe {
                    run,
                    container: None,
                    all: true,
                    sweep: true,
                })
                .await;
                next = next_start(started, started.elapsed(), &self.cfg);
                follow_up_at =
                    follow_up_at.max(plan::next_follow_up(started, started.elapsed(), &self.cfg));
                continue;
            }
            if follow_ups && now >= follow_up_at {
                let containers = self.shared.containers();
                let Some(c) = plan::follow_up(&containers) else {
                    follow_up_at = now + self.cfg.undecided_interval;
                    continue;
                };
                let host = self.shared.host();
                if let Some(reason) =
                    postpone_reason(&host, self.shared.live_traffic_bps(), &self.cfg)
                {
                    log::info!("follow-up probe of {} postponed: {reason}", c.name);
                    follow_up_at = now + self.cfg.retry_after;
                    continue;
                }
                log::info!(
                    "follow-up probe of {}: undecided (P = {:.2} that switching pays)",
                    c.name,
                    c.recommendation
                        .as_ref()
                        .and_then(|r| r.p_switch_pays)
                        .unwrap_or(0.5)
                );
                let run = self.queue.new_run(Trigger::Schedule);
                let started = Instant::now();
                self.execute(QueuedProbe {
                    run,
                    container: Some(c.id.clone()),
                    all: false,
                    sweep: false,
                })
                .await;
                follow_up_at = plan::next_follow_up(started, started.elapsed(), &self.cfg);
                continue;
            }
            let wake = self.wake.clone();
            if self.cfg.enabled {
                let _ = async { wake.recv().await.map(|_| ()) }
                    .or(async {
                        async_io::Timer::at(wake_at).await;
                        Ok(())
                    })
                    .await;
            } else if wake.recv().await.is_err() {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<Engine, ProbeError> {
        Engine::connect(
            &self.shared.docker_socket(),
            self.shared.config().docker.request_timeout,
        )
        .await
        .map_err(ProbeError::from)
    }

    async fn execute(&self, q: QueuedProbe) {
        let mut run = q.run.clone();
        run.state = RunState::Running;
        run.started_at_ms = Some(now_ms());
        self.queue.set_running(Some(run.clone()));
        log::info!("probe run {} started ({:?})", run.id, run.trigger);
        let result = self.execute_inner(&q, &mut run).await;
        run.finished_at_ms = Some(now_ms());
        match result {
            Ok(()) if run.state == RunState::Running => run.state = RunState::Done,
            Ok(()) => {}
            Err(e) => {
                log::warn!("probe run {} failed: {e}", run.id);
                run.state = RunState::Failed;
                run.error = Some(e.to_string());
            }
        }
        log::info!(
            "probe run {} {:?} after {:.1}s",
            run.id,
            run.state,
            (run.finished_at_ms
                .unwrap_or(0)
                .saturating_sub(run.started_at_ms.unwrap_or(0))) as f64
                / 1000.0
        );
        let bytes = self.queue.finish(run, self.cfg.history);
        if let Err(e) = self.shared.state_dir.write_atomic(history::FILE, &bytes) {
            log::warn!("cannot save probe history: {e}");
        }
    }

    async fn execute_inner(&self, q: &QueuedProbe, run: &mut ProbeRun) -> Result<(), ProbeError> {
        let (sink, desc) = self
            .sink
            .clone()
            .ok_or_else(|| ProbeError::Unavailable(self.sink_error.clone()))?;
        run.sink = Some(desc);
        let engine = self.connect().await?;
        let instance = self.shared.state_dir.instance_id().to_string();
        // The engine restarted, or a probe container of ours was left: start clean.
        let left = runner::remove_leftovers(&engine, &instance).await?;
        if left > 0 {
            log::info!("removed {left} leftover probe container(s)");
        }
        let image = image::ensure(&engine).await?;
        let runner = Runner {
            engine: &engine,
            image: &image,
            instance: &instance,
            run_id: &run.id,
            sink,
            tracked: &self.handle.tracked,
        };

        let containers = self.shared.containers();
        let targets: Vec<api::Container> = match &q.container {
            Some(id) => match containers.iter().find(|c| &c.id == id) {
                Some(c) => vec![c.clone()],
                None => {
                    run.state = RunState::Aborted;
                    run.error = Some(ProbeError::TargetGone.to_string());
                    return Ok(());
                }
            },
            // A scheduled run leaves out containers already decided on the cells they
            // have now; an operator's `advisor probe` probes every one.
            None if q.all && run.trigger == Trigger::Schedule => {
                let (settled, open): (Vec<_>, Vec<_>) =
                    eligible(&containers).into_iter().partition(|c| {
                        plan::settled(&self.cfg, c, self.queue.latest(&c.name).as_ref())
                    });
                if !settled.is_empty() {
                    let names: Vec<&str> = settled.iter().map(|c| c.name.as_str()).collect();
                    let note = format!(
                        "left out, decided on the cells they have now: {}",
                        names.join(", ")
                    );
                    log::info!("probe run {}: {note}", run.id);
                    run.notes.push(note);
                }
                open
            }
            None if q.all => eligible(&containers),
            None => Vec::new(),
        };
        let mut measured: HashMap<ShareKey, (String, Vec<ProbeCell>)> = HashMap::new();
        let mut total: u32 = targets
            .iter()
            .map(|t| {
                let modes = mode::drivers(self.cfg.in_place)
                    .iter()
                    .filter(|d| d.launch(t).is_ok())
                    .count() as u32;
                modes * plan::planned(&self.cfg, t).len() as u32 * self.cfg.repetitions
            })
            .sum();
        let sweep_cells = plan::sweep_cells(&self.cfg, &containers);
        if q.sweep {
            total += self.cfg.sweep_max(self.shared.host().cpus) * 2 * sweep_cells.len() as u32;
        }
        let mut progress = Progress {
            queue: &self.queue,
            run_id: run.id.clone(),
            total,
            done: 0,
            started: std::time::Instant::now(),
            cell_s: self.cfg.duration.as_secs_f64() + 1.5,
        };
        progress.show(None);
        for t in &targets {
            let (cp, stopped) = self
                .probe_container(&runner, t, &mut measured, &mut progress)
                .await;
            if q.container.is_some()
                && let Some(e) = stopped
            {
                run.state = RunState::Aborted;
                run.error = Some(e.to_string());
            }
            run.containers.push(cp);
            self.queue.set_running(Some(run.clone()));
        }
        if q.sweep {
            let limits = typical_limits(&containers);
            run.sweep = Some(
                self.sweep(
                    &runner,
                    limits,
                    self.shared.host().cpus,
                    &sweep_cells,
                    &mut progress,
                )
                .await,
            );
        }
        Ok(())
    }

    fn still_running(&self, id: &str) -> bool {
        self.shared.inventory().contains_key(id)
    }

    async fn probe_container(
        &self,
        runner: &Runner<'_>,
        t: &api::Container,
        measured: &mut HashMap<ShareKey, (String, Vec<ProbeCell>)>,
        progress: &mut Progress<'_>,
    ) -> (ContainerProbe, Option<ProbeError>) {
        let mut cp = ContainerProbe {
            target: ProbeTarget {
                id: t.id.clone(),
                name: t.name.clone(),
                network_mode: t.network_mode.clone(),
                bridge_network: mode::bridge_network(t),
                limits: t.limits.clone(),
            },
            cells: Vec::new(),
            measured_for: None,
            error: None,
        };
        let stopped = || ProbeError::TargetStopped {
            container: t.name.clone(),
        };
        let paths = plan::paths(t);
        let cells = plan::planned(&self.cfg, t);
        let kinds: Vec<api::CellKind> = cells.iter().map(|c| c.kind).collect();
        // Each mode: its cells measured for another container already, or how to measure.
        enum Plan {
            Known(Vec<ProbeCell>),
            Measure {
                mode: ProbeMode,
                launch: Launch,
                key: Option<ShareKey>,
            },
        }
        let mut plans = Vec::new();
        for driver in mode::drivers(self.cfg.in_place) {
            let launch = match driver.launch(t) {
                Ok(l) => l,
                Err(why) if driver.mode() == ProbeMode::InPlace => {
                    log::debug!("{}: no in-place probe: {why}", t.name);
                    continue;
                }
                Err(why) => {
                    cp.error = Some(why.to_string());
                    return (cp, None);
                }
            };
            // Probe containers depend on the network, the limits and the cells (the kinds of
            // traffic, paths and sizes), not on the target.
            let key = match &launch {
                Launch::Container { network_mode } => {
                    Some(ShareKey::of(driver.mode(), network_mode, &t.limits, &kinds))
                }
                Launch::InNamespace { .. } => None,
            };
            match key.as_ref().and_then(|k| measured.get(k)) {
                Some((name, known)) => {
                    progress.done += known.len() as u32 * self.cfg.repetitions;
                    cp.measured_for = Some(name.clone());
                    plans.push(Plan::Known(known.clone()));
                }
                None => plans.push(Plan::Measure {
                    mode: driver.mode(),
                    launch,
                    key,
                }),
            }
        }
        // The local path's sinks: a sink container on the target's bridge network (bridge
        // and in-place cells), one on the host's loopback (host cells).
        let measures = plans.iter().any(|p| matches!(p, Plan::Measure { .. }));
        let local = if measures && paths.contains(&Path::Local) {
            Some(LocalPeers::start(runner, &mode::bridge_network(t)).await)
        } else {
            None
        };
        // Repetitions outermost, the modes of a cell back to back: drift and the bimodal
        // luck of a connection hit every mode alike.
        let mut runs: Vec<Vec<Vec<ProbeCell>>> = vec![vec![Vec::new(); cells.len()]; plans.len()];
        for rep in 0..self.cfg.repetitions {
            for (ci, cell) in cells.iter().enumerate() {
                for (pi, plan) in plans.iter().enumerate() {
                    let Plan::Measure { mode, launch, .. } = plan else {
                        continue;
                    };
                    if !self.still_running(&t.id) {
                        if let Some(l) = local {
                            l.stop(runner).await;
                        }
                        cp.error = Some(stopped().to_string());
                        return (cp, Some(stopped()));
                    }
                    progress.show(Some(format!(
                        "{}: {}{}",
                        t.name,
                        describe(*mode, cell, 1),
                        if self.cfg.repetitions > 1 {
                            format!(", run {} of {}", rep + 1, self.cfg.repetitions)
                        } else {
                            String::new()
                        }
                    )));
                    let sink = match (cell.kind.path, &local) {
                        (Path::Local, Some(l)) => l.target(*mode),
                        _ => Ok(runner.sink),
                    };
                    let r = match (sink, launch) {
                        (Err(e), _) => Err(e),
                        (Ok(sink), Launch::Container { network_mode }) => {
                            let runner = Runner { sink, ..*runner };
                            runner.containers(network_mode, &t.limits, 1, cell).await
                        }
                        (Ok(sink), Launch::InNamespace { pid }) => {
                            // The container's own counters carry this traffic: the sampler
                            // holds its rates meanwhile.
                            let runner = Runner { sink, ..*runner };
                            self.shared.in_place_probe(&t.id, true);
                            let r = runner.in_namespace(*pid, cell).await;
                            self.shared.in_place_probe(&t.id, false);
                            r
                        }
                    };
                    runs[pi][ci].push(cell_result(*mode, cell, 1, r));
                    progress.done += 1;
                }
            }
        }
        if let Some(l) = local {
            l.stop(runner).await;
        }
        if !self.still_running(&t.id) {
            cp.error = Some(stopped().to_string());
            return (cp, Some(stopped()));
        }
        for (plan, runs) in plans.into_iter().zip(runs) {
            match plan {
                Plan::Known(known) => cp.cells.extend(known),
                Plan::Measure { key, .. } => {
                    let mode_cells: Vec<ProbeCell> =
                        runs.into_iter().filter_map(plan::merge_runs).collect();
                    if let Some(k) = key {
                        measured.insert(k, (t.name.clone(), mode_cells.clone()));
                    }
                    cp.cells.extend(mode_cells);
                }
            }
        }
        (cp, None)
    }

    async fn sweep(
        &self,
        runner: &Runner<'_>,
        limits: Limits,
        cpus: u32,
        profiles: &[plan::Cell],
        progress: &mut Progress<'_>,
    ) -> Sweep {
        let max = self.cfg.sweep_max(cpus);
        let mut cells = Vec::new();
        // N outermost, the two modes back to back: drift over the sweep hits both alike.
        for n in 1..=max {
            for cell in profiles {
                for (mode, network) in [(ProbeMode::Bridge, "bridge"), (ProbeMode::Host, "host")] {
                    progress.show(Some(format!("sweep: {}", describe(mode, cell, n))));
                    let r = runner.containers(network, &limits, n, cell).await;
                    cells.push(cell_result(mode, cell, n, r));
                    progress.done += 1;
                }
            }
        }
        let crossovers = profiles
            .iter()
            .map(|p| {
                let kind = p.kind;
                let of: Vec<ProbeCell> = cells.iter().filter(|c| kind.is(c)).cloned().collect();
                api::Crossover {
                    direction: kind.direction,
                    pattern: kind.pattern,
                    protocol: kind.protocol,
                    size: kind.size,
                    containers: plan::crossover(&of),
                }
            })
            .collect();
        Sweep {
            limits,
            cells,
            crossovers,
            max_concurrency: max,
        }
    }
}

/// What a probe container's cells depend on besides its target: the mode, the network, the
/// target's limits (the probe container gets them) and the cells it runs. Two targets with
/// one key share one measurement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShareKey {
    mode: ProbeMode,
    network_mode: String,
    /// `Limits::cpus` by its bits: two containers share only an identical quota.
    cpus: Option<u64>,
    cpu_shares: Option<u64>,
    cpuset: Option<String>,
    memory_bytes: Option<u64>,
    kinds: Vec<api::CellKind>,
}

impl ShareKey {
    fn of(
        mode: ProbeMode,
        network_mode: &str,
        limits: &Limits,
        kinds: &[api::CellKind],
    ) -> ShareKey {
        // Every field named: a limit added to `Limits` must be added here too.
        let Limits {
            cpus,
            cpu_shares,
            cpuset,
            memory_bytes,
        } = limits;
        ShareKey {
            mode,
            network_mode: network_mode.to_owned(),
            cpus: cpus.map(f64::to_bits),
            cpu_shares: *cpu_shares,
            cpuset: cpuset.clone(),
            memory_bytes: *memory_bytes,
            kinds: kinds.to_vec(),
        }
    }
}

/// The sinks of the local path (traffic between containers of the gateway), for one target.
struct LocalPeers {
    /// A sink container on the target's bridge network: its id and address.
    container: Result<(String, Target), ProbeError>,
    /// A sink on the host's loopback, in the daemon's own namespace.
    loopback: Result<(crate::traffic::sink::Sink, Target), ProbeError>,
}

impl LocalPeers {
    async fn start(runner: &Runner<'_>, network: &str) -> LocalPeers {
        let container = runner.sink_container(network).await;
        let loopback = crate::traffic::sink::Sink::bind(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            0,
        )))
        .map(|s| {
            let t = Target::Netmode(s.tcp_addr);
            (s, t)
        })
        .map_err(|source| ProbeError::Io {
            what: "bind a sink on the host's loopback",
            source,
        });
        LocalPeers {
            container,
            loopback,
        }
    }

    /// Where a cell of `mode` sends on the local path.
    fn target(&self, mode: ProbeMode) -> Result<Target, ProbeError> {
        let t = match mode {
            ProbeMode::Host => self.loopback.as_ref().map(|l| l.1),
            _ => self.container.as_ref().map(|c| c.1),
        };
        t.map_err(|e| ProbeError::Sender(format!("local path: {e}")))
    }

    async fn stop(self, runner: &Runner<'_>) {
        if let Ok((id, _)) = &self.container {
            runner.remove(id).await;
        }
    }
}

/// "host ingress tcp 1024 B" (and " x3" for N concurrent containers).
fn describe(mode: ProbeMode, cell: &plan::Cell, n: u32) -> String {
    let traffic = match cell.kind.pattern {
        api::Pattern::RequestResponse => "request/response",
        api::Pattern::Stream => cell.kind.direction.as_str(),
    };
    let traffic = match cell.kind.path {
        api::Path::Local => format!("{traffic} local"),
        api::Path::Upstream => traffic.to_string(),
    };
    format!(
        "{} {traffic} {} {} B{}",
        mode.as_str(),
        cell.kind.protocol.as_str(),
        cell.kind.size,
        if n > 1 {
            format!(" x{n}")
        } else {
            String::new()
        }
    )
}

/// How far a run is, shown in its status (`ProbeRun::progress`) for `advisor probe`.
struct Progress<'a> {
    queue: &'a super::queue::ProbeQueue,
    run_id: String,
    total: u32,
    done: u32,
    started: std::time::Instant,
    /// A cell's expected time before one is measured: its duration and the setup.
    cell_s: f64,
}

impl Progress<'_> {
    fn show(&self, current: Option<String>) {
        let left = self.total.saturating_sub(self.done) as f64;
        let per_cell = if self.done > 0 {
            self.started.elapsed().as_secs_f64() / self.done as f64
        } else {
            self.cell_s
        };
        self.queue.set_progress(
            &self.run_id,
            api::ProbeProgress {
                cells_done: self.done.min(self.total),
                cells_total: self.total,
                current,
                remaining_s: Some(left * per_cell),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmode_advisor::api::{CellKind, Direction, Pattern, Protocol};

    fn kind(size: u32) -> CellKind {
        CellKind {
            path: Path::Upstream,
            pattern: Pattern::Stream,
            direction: Direction::Egress,
            protocol: Protocol::Tcp,
            size,
        }
    }

    /// Two targets share a measurement only when nothing the probe container copies from
    /// them differs: every limit, the network, the mode and the cells take part in the key.
    #[test]
    fn targets_share_a_measurement_only_with_every_limit_alike() {
        let limits = Limits {
            cpus: Some(0.5),
            cpu_shares: Some(512),
            cpuset: Some("0".into()),
            memory_bytes: Some(64 << 20),
        };
        let kinds = [kind(64), kind(1024)];
        let key = ShareKey::of;
        let base = key(ProbeMode::Bridge, "bridge", &limits, &kinds);
        // Built again from an equal copy of the limits: the same key.
        assert_eq!(
            base,
            key(ProbeMode::Bridge, "bridge", &limits.clone(), &kinds)
        );
        let differs = [
            Limits {
                cpus: Some(0.5000001),
                ..limits.clone()
            },
            Limits {
                cpus: None,
                ..limits.clone()
            },
            Limits {
                cpu_shares: Some(1024),
                ..limits.clone()
            },
            Limits {
                cpuset: Some("1".into()),
                ..limits.clone()
            },
            Limits {
                memory_bytes: Some(128 << 20),
                ..limits.clone()
            },
        ];
        for l in &differs {
            assert_ne!(base, key(ProbeMode::Bridge, "bridge", l, &kinds), "{l:?}");
        }
        assert_ne!(base, key(ProbeMode::Host, "bridge", &limits, &kinds));
        assert_ne!(base, key(ProbeMode::Bridge, "iot-net", &limits, &kinds));
        assert_ne!(base, key(ProbeMode::Bridge, "bridge", &limits, &kinds[..1]));
        // A map keyed by it finds the same target's measurement again.
        let mut m = HashMap::new();
        m.insert(base.clone(), 1);
        assert_eq!(
            m.get(&key(ProbeMode::Bridge, "bridge", &limits, &kinds)),
            Some(&1)
        );
    }
}
