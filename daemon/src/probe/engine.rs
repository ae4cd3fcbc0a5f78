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
    self, ContainerProbe, Host, Limits, ModeKind, ProbeCell, ProbeMode, ProbeRun, ProbeTarget,
    Protocol, RunState, Sweep, Trigger,
};

use super::localsink::LocalSink;
use super::modes::{self, Launch};
use super::runner::{self, Cell, CellRun, Runner, Tracked};
use super::{Target, image};
use crate::config::Probe as ProbeConfig;
use crate::docker::Engine;
use crate::netlink::Netlink;
use crate::state::{QueuedProbe, Shared, now_ms};

/// Containers moving at least this much (rx + tx) count as network-active when the sweep
/// picks the limits its containers run with.
const ACTIVE_BPS: f64 = 100_000.0;
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
        if let Ok((engine, _)) =
            Engine::connect(&shared.docker_socket, Duration::from_secs(5)).await
        {
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

/// Should a scheduled run wait? The reason, if so.
pub fn postpone_reason(host: &Host, live_bps: f64, cfg: &ProbeConfig) -> Option<String> {
    if let Some(u) = host.cpu_utilisation
        && u > cfg.skip_above_cpu
    {
        return Some(format!(
            "host CPU at {:.0}% is above probe.skip_above_cpu ({:.0}%)",
            u * 100.0,
            cfg.skip_above_cpu * 100.0
        ));
    }
    if live_bps > cfg.skip_above_traffic as f64 {
        return Some(format!(
            "containers' live traffic {:.1} Mbit/s is above probe.skip_above_traffic ({:.1} Mbit/s)",
            live_bps / 1e6,
            cfg.skip_above_traffic as f64 / 1e6
        ));
    }
    None
}

/// When the next scheduled run may start, after one that started at `started` and took
/// `took`: not before the interval, and not so soon that probing exceeds the duty cycle.
pub fn next_start(started: Instant, took: Duration, cfg: &ProbeConfig) -> Instant {
    started + cfg.interval.max(took.div_f64(cfg.max_duty_cycle))
}

/// Containers a scheduled run probes: bridge- or host-mode ones not labelled
/// `netmode.policy=ignore`.
pub fn eligible(containers: &[api::Container]) -> Vec<api::Container> {
    containers
        .iter()
        .filter(|c| matches!(c.mode_kind, ModeKind::Bridge | ModeKind::Host))
        .filter(|c| c.policy_label.as_deref() != Some("ignore"))
        .cloned()
        .collect()
}

/// The limits the sweep's containers run with: those most network-active containers have,
/// or, when none is active (probing waits for a quiet gateway), those most of the containers
/// netmode manages have. Ties go to the first seen (containers are sorted by name).
pub fn typical_limits(containers: &[api::Container]) -> Limits {
    let most_common = |active_only: bool| -> Option<Limits> {
        let mut counts: Vec<(Limits, usize)> = Vec::new();
        for c in eligible(containers) {
            let active = c
                .live
                .as_ref()
                .is_some_and(|l| l.rx_bps + l.tx_bps >= ACTIVE_BPS);
            if active_only && !active {
                continue;
            }
            match counts.iter_mut().find(|(l, _)| *l == c.limits) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.limits, 1)),
            }
        }
        let best = counts.iter().map(|(_, n)| *n).max()?;
        counts.into_iter().find(|(_, n)| *n == best).map(|(l, _)| l)
    };
    most_common(true)
        .or_else(|| most_common(false))
        .unwrap_or_default()
}

/// The smallest N at which host mode's aggregate goodput beats bridge mode's.
pub fn crossover(cells: &[ProbeCell]) -> Option<u32> {
    let at = |n: u32, m: ProbeMode| {
        cells
            .iter()
            .find(|c| c.concurrency == n && c.mode == m)
            .and_then(|c| c.goodput_bps)
    };
    let max = cells.iter().map(|c| c.concurrency).max()?;
    (1..=max).find(|n| matches!((at(*n, ProbeMode::Host), at(*n, ProbeMode::Bridge)), (Some(h), Some(b)) if h > b))
}

/// A cell's result from its senders' reports.
pub fn cell_result(mode: ProbeMode, cell: &Cell, n: u32, r: Result<CellRun, String>) -> ProbeCell {
    let mut out = ProbeCell {
        mode,
        protocol: cell.protocol,
        size: cell.size,
        concurrency: n,
        goodput_bps: None,
        sent_bps: None,
        loss: None,
        duration_s: cell.duration.as_secs_f64(),
        counters: None,
        error: None,
    };
    match r {
        Err(e) => out.error = Some(e),
        Ok(run) => {
            out.counters = Some(run.counters);
            if let Some(e) = run.reports.iter().find_map(|r| r.error.clone()) {
                out.error = Some(e);
                return out;
            }
            let outcomes: Vec<_> = run
                .reports
                .iter()
                .filter_map(|r| r.outcome.as_ref())
                .collect();
            out.goodput_bps = Some(outcomes.iter().map(|o| o.goodput_bps()).sum());
            out.sent_bps = Some(outcomes.iter().map(|o| o.sent_bps()).sum());
            if cell.protocol == Protocol::Udp {
                let sent: u64 = outcomes.iter().map(|o| o.sent_messages).sum();
                let lost: f64 = outcomes
                    .iter()
                    .map(|o| o.loss.unwrap_or(0.0) * o.sent_messages as f64)
                    .sum();
                out.loss = (sent > 0).then(|| lost / sent as f64);
            }
        }
    }
    out
}

pub struct ProbeEngine {
    shared: Arc<Shared>,
    cfg: ProbeConfig,
    netlink: Netlink,
    handle: Handle,
    wake: smol::channel::Receiver<()>,
    /// Where probes send, or why they cannot.
    sink: Result<(Target, String), String>,
}

impl ProbeEngine {
    pub fn new(
        shared: Arc<Shared>,
        netlink: Netlink,
        wake: smol::channel::Receiver<()>,
    ) -> (ProbeEngine, Handle) {
        let handle = Handle::default();
        let cfg = shared.config.probe.clone();
        let engine = ProbeEngine {
            shared,
            cfg,
            netlink,
            handle: handle.clone(),
            wake,
            sink: Err("not set up yet".into()),
        };
        (engine, handle)
    }

    async fn setup_sink(&mut self) {
        self.sink = match &self.cfg.target {
            Some(t) => Target::parse(t).map(|target| (target, t.clone())),
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
        match &self.sink {
            Ok((_, desc)) => self.shared.update_probe_status(|s| {
                s.sink = Some(desc.clone());
                s.error = None;
            }),
            Err(e) => {
                log::error!("probing disabled: {e}");
                self.shared
                    .update_probe_status(|s| s.error = Some(e.clone()));
            }
        }
    }

    /// The engine task.
    pub async fn run(mut self) {
        match crate::probe::history::load(&self.shared.state_dir) {
            Ok(runs) => self.shared.load_probe_history(runs),
            Err(e) => log::warn!("probe history: {e}"),
        }
        self.setup_sink().await;
        if let Ok((engine, _)) = self.connect().await {
            match runner::remove_leftovers(&engine, self.shared.state_dir.instance_id()).await {
                Ok(0) => {}
                Ok(n) => log::info!("removed {n} probe container(s) left by an earlier run"),
                Err(e) => log::warn!("removing leftover probe containers: {e}"),
            }
        }
        let mut next = Instant::now() + self.cfg.interval.min(FIRST_RUN_MAX_DELAY);
        loop {
            if self.cfg.enabled {
                self.shared.update_probe_status(|s| {
                    s.next_run_at_ms = Some(
                        now_ms()
                            + next.saturating_duration_since(Instant::now()).as_millis() as u64,
                    )
                });
            }
            if let Some(q) = self.shared.next_queued_probe() {
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
                    self.shared
                        .update_probe_status(|s| s.last_skip = Some(reason));
                    next = now + self.cfg.retry_after;
                    continue;
                }
                self.shared.update_probe_status(|s| s.last_skip = None);
                let run = self.shared.new_probe_run(Trigger::Schedule);
                let started = Instant::now();
                self.execute(QueuedProbe {
                    run,
                    container: None,
                    all: true,
                    sweep: true,
                })
                .await;
                next = next_start(started, started.elapsed(), &self.cfg);
                continue;
            }
            let wake = self.wake.clone();
            if self.cfg.enabled {
                let _ = async { wake.recv().await.map(|_| ()) }
                    .or(async {
                        async_io::Timer::at(next).await;
                        Ok(())
                    })
                    .await;
            } else if wake.recv().await.is_err() {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<(Engine, crate::docker::EngineVersion), String> {
        Engine::connect(
            &self.shared.docker_socket,
            self.shared.config.docker.request_timeout,
        )
        .await
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))
    }

    async fn execute(&self, q: QueuedProbe) {
        let mut run = q.run.clone();
        run.state = RunState::Running;
        run.started_at_ms = Some(now_ms());
        self.shared.set_running_probe(Some(run.clone()));
        log::info!("probe run {} started ({:?})", run.id, run.trigger);
        let result = self.execute_inner(&q, &mut run).await;
        run.finished_at_ms = Some(now_ms());
        match result {
            Ok(()) if run.state == RunState::Running => run.state = RunState::Done,
            Ok(()) => {}
            Err(e) => {
                log::warn!("probe run {} failed: {e}", run.id);
                run.state = RunState::Failed;
                run.error = Some(e);
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
        let bytes = self.shared.finish_probe_run(run, self.cfg.history);
        if let Err(e) = self
            .shared
            .state_dir
            .write_atomic(crate::probe::history::FILE, &bytes)
        {
            log::warn!("cannot save probe history: {e}");
        }
    }

    async fn execute_inner(&self, q: &QueuedProbe, run: &mut ProbeRun) -> Result<(), String> {
        let (sink, desc) = self.sink.clone()?;
        run.sink = Some(desc);
        let (engine, _) = self.connect().await?;
        let instance = self.shared.state_dir.instance_id().to_string();
        // The engine restarted, or a probe container of ours was left: start clean.
        let left = runner::remove_leftovers(&engine, &instance)
            .await
            .map_err(|e| e.to_string())?;
        if left > 0 {
            log::info!("removed {left} leftover probe container(s)");
        }
        let image = image::ensure(&engine).await.map_err(|e| e.to_string())?;
        let runner = Runner {
            engine: &engine,
            image: &image,
            instance: &instance,
            run_id: &run.id,
            sink,
            tracked: &self.handle.tracked,
        };

        let status = self.shared.status();
        let targets: Vec<api::Container> = match &q.container {
            Some(id) => match status.containers.iter().find(|c| &c.id == id) {
                Some(c) => vec![c.clone()],
                None => {
                    run.state = RunState::Aborted;
                    run.error = Some("the container stopped before its probe could start".into());
                    return Ok(());
                }
            },
            None if q.all => eligible(&status.containers),
            None => Vec::new(),
        };
        let mut measured: HashMap<(ProbeMode, String, String), (String, Vec<ProbeCell>)> =
            HashMap::new();
        for t in &targets {
            let cp = self.probe_container(&runner, t, &mut measured).await;
            if q.container.is_some()
                && cp
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("stopped during"))
            {
                run.state = RunState::Aborted;
                run.error = cp.error.clone();
            }
            run.containers.push(cp);
            self.shared.set_running_probe(Some(run.clone()));
        }
        if q.sweep {
            let limits = typical_limits(&status.containers);
            run.sweep = Some(self.sweep(&runner, limits, status.host.cpus).await);
        }
        Ok(())
    }

    fn still_running(&self, id: &str) -> bool {
        self.shared.inventory().contains_key(id)
    }

    fn cells(&self) -> Vec<Cell> {
        let mut v = Vec::new();
        for &protocol in &self.cfg.protocols {
            for &size in &self.cfg.sizes {
                v.push(Cell {
                    protocol,
                    size,
                    duration: self.cfg.duration,
                    rate_bps: self.cfg.rate,
                });
            }
        }
        v
    }

    async fn probe_container(
        &self,
        runner: &Runner<'_>,
        t: &api::Container,
        measured: &mut HashMap<(ProbeMode, String, String), (String, Vec<ProbeCell>)>,
    ) -> ContainerProbe {
        let mut cp = ContainerProbe {
            target: ProbeTarget {
                id: t.id.clone(),
                name: t.name.clone(),
                network_mode: t.network_mode.clone(),
                bridge_network: match t.mode_kind {
                    ModeKind::Bridge => t.network_mode.clone(),
                    _ => "bridge".into(),
                },
                limits: t.limits.clone(),
            },
            cells: Vec::new(),
            measured_for: None,
            error: None,
        };
        for driver in modes::drivers(self.cfg.in_place) {
            let launch = match driver.launch(t) {
                Ok(l) => l,
                Err(why) if driver.mode() == ProbeMode::InPlace => {
                    log::debug!("{}: no in-place probe: {why}", t.name);
                    continue;
                }
                Err(why) => {
                    cp.error = Some(why);
                    return cp;
                }
            };
            // Probe containers depend on the network and the limits, not on the target.
            let key = match &launch {
                Launch::Container { network_mode } => Some((
                    driver.mode(),
                    network_mode.clone(),
                    format!("{:?}", t.limits),
                )),
                Launch::InNamespace { .. } => None,
            };
            if let Some((name, cells)) = key.as_ref().and_then(|k| measured.get(k)) {
                cp.cells.extend(cells.iter().cloned());
                cp.measured_for = Some(name.clone());
                continue;
            }
            let mut mode_cells = Vec::new();
            for cell in self.cells() {
                if !self.still_running(&t.id) {
                    cp.error = Some(format!(
                        "{} stopped during the probe; probe aborted",
                        t.name
                    ));
                    return cp;
                }
                let r = match &launch {
                    Launch::Container { network_mode } => {
                        runner.containers(network_mode, &t.limits, 1, &cell).await
                    }
                    Launch::InNamespace { pid } => runner.in_namespace(*pid, &cell).await,
                };
                mode_cells.push(cell_result(driver.mode(), &cell, 1, r));
            }
            if !self.still_running(&t.id) {
                cp.error = Some(format!(
                    "{} stopped during the probe; probe aborted",
                    t.name
                ));
                return cp;
            }
            if let Some(k) = key {
                measured.insert(k, (t.name.clone(), mode_cells.clone()));
            }
            cp.cells.extend(mode_cells);
        }
        cp
    }

    async fn sweep(&self, runner: &Runner<'_>, limits: Limits, cpus: u32) -> Sweep {
        let max = self.cfg.sweep_max(cpus);
        let mut profiles = Vec::new();
        for &protocol in &self.cfg.sweep_protocols {
            for &size in &self.cfg.sweep_sizes {
                profiles.push(Cell {
                    protocol,
                    size,
                    duration: self.cfg.duration,
                    rate_bps: self.cfg.rate,
                });
            }
        }
        let mut cells = Vec::new();
        // N outermost, the two modes back to back: drift over the sweep hits both alike.
        for n in 1..=max {
            for cell in &profiles {
                for (mode, network) in [(ProbeMode::Bridge, "bridge"), (ProbeMode::Host, "host")] {
                    let r = runner.containers(network, &limits, n, cell).await;
                    cells.push(cell_result(mode, cell, n, r));
                }
            }
        }
        let crossovers = profiles
            .iter()
            .map(|p| {
                let of: Vec<ProbeCell> = cells
                    .iter()
                    .filter(|c| c.protocol == p.protocol && c.size == p.size)
                    .cloned()
                    .collect();
                api::Crossover {
                    protocol: p.protocol,
                    size: p.size,
                    containers: crossover(&of),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mode: ProbeMode, n: u32, bps: f64) -> ProbeCell {
        ProbeCell {
            mode,
            protocol: Protocol::Tcp,
            size: 64,
            concurrency: n,
            goodput_bps: Some(bps),
            sent_bps: None,
            loss: None,
            duration_s: 3.0,
            counters: None,
            error: None,
        }
    }

    #[test]
    fn crossover_is_the_first_n_where_host_wins() {
        let cells = vec![
            cell(ProbeMode::Bridge, 1, 100.0),
            cell(ProbeMode::Host, 1, 80.0),
            cell(ProbeMode::Bridge, 2, 150.0),
            cell(ProbeMode::Host, 2, 140.0),
            cell(ProbeMode::Bridge, 3, 160.0),
            cell(ProbeMode::Host, 3, 190.0),
        ];
        assert_eq!(crossover(&cells), Some(3));
        assert_eq!(crossover(&cells[..4]), None);
        assert_eq!(crossover(&[]), None);
    }

    #[test]
    fn the_sweep_takes_the_limits_containers_have() {
        let c = |name: &str, cpus: Option<f64>, bps: f64| {
            let mut x: api::Container = serde_json::from_value(serde_json::json!({
                "id": name, "name": name, "image": "i", "network_mode": "bridge", "mode_kind": "bridge",
                "networks": [], "pid": 1, "started_at": "", "limits": {"cpus": cpus, "cpu_shares": null,
                "cpuset": null, "memory_bytes": null}, "ports": [], "exposed_ports": [], "compose": null,
                "policy_label": null, "live": null, "probes": null
            }))
            .unwrap();
            if bps > 0.0 {
                x.live = serde_json::from_value(serde_json::json!({"rx_bps": bps, "tx_bps": 0.0, "rx_pps": 1.0,
                    "tx_pps": 0.0, "mean_packet_bytes": 100.0, "attributed": "full", "source": "veth",
                    "interfaces": [], "rx_bytes": 0, "tx_bytes": 0, "rx_packets": 0, "tx_packets": 0,
                    "interval_s": 1.0, "note": null}))
                .unwrap();
            }
            x
        };
        // Idle gateway: what most containers have.
        let idle = [
            c("a", Some(0.5), 0.0),
            c("b", Some(0.5), 0.0),
            c("c", None, 0.0),
        ];
        assert_eq!(typical_limits(&idle).cpus, Some(0.5));
        // The active ones decide when there are some.
        let busy = [
            c("a", Some(0.5), 0.0),
            c("b", Some(0.5), 0.0),
            c("c", None, 5e6),
        ];
        assert_eq!(typical_limits(&busy).cpus, None);
        assert_eq!(typical_limits(&[]), Limits::default());
    }

    #[test]
    fn the_duty_cycle_caps_how_often_runs_start() {
        let cfg = ProbeConfig {
            interval: Duration::from_secs(60),
            max_duty_cycle: 0.1,
            ..ProbeConfig::default()
        };
        let t0 = Instant::now();
        // A 2 s run: the interval decides.
        assert_eq!(
            next_start(t0, Duration::from_secs(2), &cfg),
            t0 + Duration::from_secs(60)
        );
        // A 30 s run: 10 % duty means 300 s between starts.
        assert_eq!(
            next_start(t0, Duration::from_secs(30), &cfg),
            t0 + Duration::from_secs(300)
        );
    }

    #[test]
    fn busy_gateways_postpone_scheduled_runs() {
        let cfg = ProbeConfig::default();
        let mut host = Host {
            hostname: "h".into(),
            kernel: "k".into(),
            arch: "a".into(),
            cpus: 4,
            sample_interval_s: 5.0,
            cpu_utilisation: Some(0.2),
            softirq_share: None,
            context_switches_per_s: None,
            net_rx_softirqs_per_s: None,
            net_tx_softirqs_per_s: None,
        };
        assert_eq!(postpone_reason(&host, 1e6, &cfg), None);
        let r = postpone_reason(&host, 80e6, &cfg).unwrap();
        assert!(
            r.contains("80.0 Mbit/s") && r.contains("skip_above_traffic"),
            "{r}"
        );
        host.cpu_utilisation = Some(0.9);
        assert!(postpone_reason(&host, 0.0, &cfg).unwrap().contains("90%"));
    }
}
