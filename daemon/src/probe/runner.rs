//! Runs probe cells: N senders at once in probe containers, or one sender on a thread inside
//! a container's namespace, and gathers goodput and counters.
//!
//! A probe container runs `netmoded send ... --wait-go`: it starts, the daemon opens perf
//! counters on its process and snapshots the softirq counters, then sends SIGUSR1; every
//! sender of a cell starts together. Probe containers are labelled with the daemon's
//! instance id, tracked while they exist, and always removed (a restart removes what a
//! killed daemon left).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use futures_lite::FutureExt;
use netmode_advisor::api::{CellCounters, Direction, Limits, Pattern, PerfCounts};

use super::image;
use super::plan::{Cell, CellRun};
use crate::docker::Engine;
use crate::error::ProbeError;
use crate::sys::{hoststat, netns};
use crate::traffic::{self, SendSpec, SenderReport, Target, perf};

/// Labels on every probe container.
pub use crate::docker::inventory::PROBE_LABEL as LABEL_PROBE;
pub const LABEL_OWNER: &str = "netmode.probe.owner";
pub const LABEL_RUN: &str = "netmode.probe.run";

/// How long a probe container waits for its start signal.
const GO_WAIT: Duration = Duration::from_secs(60);

/// Probe containers that exist right now, by id: removed on shutdown whatever happens.
#[derive(Clone, Default)]
pub struct Tracked(Arc<Mutex<HashSet<String>>>);

impl Tracked {
    fn add(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
    }
    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
    pub fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

pub struct Runner<'a> {
    pub engine: &'a Engine,
    pub image: &'a super::image::ProbeImage,
    pub instance: &'a str,
    pub run_id: &'a str,
    pub sink: Target,
    pub tracked: &'a Tracked,
}

fn sender_args(target: Target, cell: &Cell, session: u32, wait_go: bool) -> Vec<String> {
    let mut a = vec![
        "send".to_string(),
        "--json".into(),
        "--target".into(),
        target.to_string(),
        "--protocol".into(),
        cell.kind.protocol.as_str().into(),
        "--size".into(),
        cell.kind.size.to_string(),
        "--duration".into(),
        format!("{}ms", cell.duration.as_millis()),
        "--session".into(),
        session.to_string(),
    ];
    if cell.kind.direction == Direction::Ingress {
        a.push("--direction".into());
        a.push(cell.kind.direction.as_str().into());
    }
    if cell.kind.pattern == Pattern::RequestResponse {
        a.push("--pattern".into());
        a.push("request-response".into());
        if cell.in_flight > 1 {
            a.push("--in-flight".into());
            a.push(cell.in_flight.to_string());
        }
    }
    if let Some(r) = cell.rate_bps {
        a.push("--rate".into());
        a.push(r.to_string());
    }
    if wait_go {
        a.push("--wait-go".into());
        a.push(format!("{}s", GO_WAIT.as_secs()));
    }
    a
}

/// The last JSON line a sender printed.
pub fn parse_report(stdout: &str) -> Result<SenderReport, ProbeError> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            ProbeError::Sender(format!(
                "the probe sender printed no report: {:?}",
                stdout.chars().take(200).collect::<String>()
            ))
        })?;
    serde_json::from_str(line)
        .map_err(|e| ProbeError::Sender(format!("unreadable probe report ({e}): {line}")))
}

/// Is the probe sender ready for its start signal? From /proc/PID/status: the process must
/// already be netmoded (right after `docker start` the PID still runs `runc init`, a Go
/// program that catches every signal and would swallow ours) and catch SIGUSR1 (a
/// container's PID 1 ignores signals it has no handler for).
pub fn ready_for_go(status: &str) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    field("Name:") == Some("netmoded")
        && field("SigCgt:")
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGUSR1 - 1)) != 0)
}

async fn wait_until_ready(pid: i64) -> Result<(), ProbeError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(s) if ready_for_go(&s) => return Ok(()),
            Ok(_) => {}
            Err(_) => {
                return Err(ProbeError::Sender(
                    "a probe sender exited before it was told to start".into(),
                ));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(ProbeError::Sender(
                "a probe sender did not get ready within 20 s".into(),
            ));
        }
        async_io::Timer::after(Duration::from_millis(5)).await;
    }
}

/// NET_RX and NET_TX softirqs over all CPUs, and NET_RX per CPU: a reading, or the
/// difference of two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Softirqs {
    pub rx: u64,
    pub tx: u64,
    pub rx_per_cpu: Vec<u64>,
}

impl Softirqs {
    /// From one reading of /proc/softirqs (two readings a moment apart disagree).
    fn now() -> Softirqs {
        let text = std::fs::read_to_string("/proc/softirqs").unwrap_or_default();
        let (rx, tx) = hoststat::net_softirqs(&text);
        Softirqs {
            rx,
            tx,
            rx_per_cpu: hoststat::net_rx_per_cpu(&text),
        }
    }

    /// What was raised since `before` (a CPU that appeared counts from 0).
    fn since(&self, before: &Softirqs) -> Softirqs {
        Softirqs {
            rx: self.rx.saturating_sub(before.rx),
            tx: self.tx.saturating_sub(before.tx),
            rx_per_cpu: self
                .rx_per_cpu
                .iter()
                .zip(before.rx_per_cpu.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }
}

/// Sum the senders' usage and counters into the cell's counters.
pub fn combine(
    scope: &str,
    reports: &[SenderReport],
    perf: &[PerfCounts],
    softirqs: Softirqs,
) -> CellCounters {
    let mut c = CellCounters {
        scope: scope.to_string(),
        net_rx_softirqs: softirqs.rx,
        net_tx_softirqs: softirqs.tx,
        net_rx_softirqs_per_cpu: softirqs.rx_per_cpu,
        ..Default::default()
    };
    for r in reports {
        let u = &r.usage;
        c.user_s += u.user_s;
        c.system_s += u.system_s;
        c.voluntary_context_switches += u.voluntary_cs;
        c.involuntary_context_switches += u.involuntary_cs;
        c.minor_faults += u.minor_faults;
        c.major_faults += u.major_faults;
    }
    c.cpu_s = c.user_s + c.system_s;
    c.sender_cpus = reports.iter().filter_map(|r| r.cpu).collect();
    c.perf = match perf.iter().find_map(|p| p.unavailable.clone()) {
        Some(reason) => PerfCounts::unavailable(reason),
        None if perf.is_empty() => PerfCounts::unavailable("not counted"),
        None => {
            let cycles: u64 = perf.iter().filter_map(|p| p.cycles).sum();
            let instructions: u64 = perf.iter().filter_map(|p| p.instructions).sum();
            PerfCounts {
                cycles: Some(cycles),
                instructions: Some(instructions),
                ipc: (cycles > 0).then(|| instructions as f64 / cycles as f64),
                ..PerfCounts::default()
            }
        }
    };
    // Every sender's count, or none: a partial sum would read as fewer migrations.
    c.perf.cpu_migrations = if perf.is_empty() {
        None
    } else {
        perf.iter().map(|p| p.cpu_migrations).sum()
    };
    c
}

fn host_config(network_mode: &str, limits: &Limits) -> HostConfig {
    let mut h = HostConfig {
        network_mode: Some(network_mode.to_string()),
        // The daemon reads the report from the log: json-file, whatever the engine's default.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".to_string(), "1m".to_string())])),
        }),
        ..Default::default()
    };
    if let Some(cpus) = limits.cpus {
        h.nano_cpus = Some((cpus * 1e9) as i64);
    }
    h.cpu_shares = limits.cpu_shares.map(|s| s as i64);
    h.cpuset_cpus = limits.cpuset.clone();
    h.memory = limits.memory_bytes.map(|m| m as i64);
    h
}

impl Runner<'_> {
    /// Create (not start) a probe container running `netmoded CMD...` on `network_mode`,
    /// labelled as this run's and tracked until removed; `role` goes into its name.
    async fn create(
        &self,
        role: &str,
        cmd: Vec<String>,
        network_mode: &str,
        limits: &Limits,
    ) -> Result<String, ProbeError> {
        let labels = HashMap::from([
            (LABEL_PROBE.to_string(), "1".to_string()),
            (LABEL_OWNER.to_string(), self.instance.to_string()),
            (LABEL_RUN.to_string(), self.run_id.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.image.name.clone()),
            entrypoint: Some(self.image.launch.entrypoint.clone()),
            env: Some(self.image.launch.env.clone()),
            cmd: Some(cmd),
            labels: Some(labels),
            host_config: Some(host_config(network_mode, limits)),
            ..Default::default()
        };
        let name = format!(
            "netmode-probe-{}-{role}-{}",
            self.run_id,
            traffic::new_session() % 100_000
        );
        let id = match self.engine.create_container(&name, body.clone()).await {
            // The image went away since the run began (an image prune, or another netmoded on
            // this engine replacing its own): made again, and the container asked for once more.
            Err(e) if e.is_not_found() && self.image_gone().await => {
                self.engine.create_container(&name, body).await
            }
            other => other,
        }
        .map_err(ProbeError::docker(format!(
            "create a probe {role} container on network {network_mode}"
        )))?;
        self.tracked.add(&id);
        Ok(id)
    }

    /// Whether the probe image was missing and has been made again.
    async fn image_gone(&self) -> bool {
        match self.engine.image_exists(&self.image.name).await {
            Ok(false) => match image::ensure(self.engine).await {
                Ok(_) => true,
                Err(e) => {
                    log::warn!(
                        "the probe image {} is gone and could not be made again: {e}",
                        self.image.name
                    );
                    false
                }
            },
            _ => false,
        }
    }

    /// `n` probe containers on `network_mode` with `limits`, sending together.
    pub async fn containers(
        &self,
        network_mode: &str,
        limits: &Limits,
        n: u32,
        cell: &Cell,
    ) -> Result<CellRun, ProbeError> {
        let mut ids = Vec::new();
        let result = self
            .containers_inner(network_mode, limits, n, cell, &mut ids)
            .await;
        for id in &ids {
            self.remove(id).await;
        }
        result
    }

    async fn containers_inner(
        &self,
        network_mode: &str,
        limits: &Limits,
        n: u32,
        cell: &Cell,
        ids: &mut Vec<String>,
    ) -> Result<CellRun, ProbeError> {
        for k in 0..n {
            let target = self.sink.with_port_offset(k as u16);
            let cmd = sender_args(target, cell, traffic::new_session() ^ k, true);
            let id = self
                .create(&format!("sender{k}"), cmd, network_mode, limits)
                .await?;
            ids.push(id);
        }
        let mut counters = Vec::new();
        let mut pids = Vec::new();
        for id in ids.iter() {
            self.engine
                .start_container(id)
                .await
                .map_err(ProbeError::docker("start a probe container"))?;
            let pid = self
                .engine
                .inspect(id)
                .await
                .map_err(ProbeError::docker("inspect a probe container"))?
                .and_then(|c| c.state?.pid)
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    ProbeError::Sender(
                        "a probe container exited before it was told to start".into(),
                    )
                })?;
            wait_until_ready(pid).await?;
            log::debug!("probe container {} (pid {pid}) ready", &id[..12]);
            counters.push(perf::Counters::start(pid as i32));
            pids.push(pid as i32);
        }
        let before = Softirqs::now();
        // Straight to the process (we are in the host's PID namespace): a signal relayed
        // through the engine was seen to be lost under load.
        for pid in &pids {
            // SAFETY: kill(2) on a process we just saw alive and ready.
            if unsafe { libc::kill(*pid, libc::SIGUSR1) } != 0 {
                return Err(ProbeError::Io {
                    what: "start a probe sender (kill SIGUSR1)",
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        let limit = cell.duration + Duration::from_secs(45);
        let mut reports = Vec::new();
        for id in ids.iter() {
            let waited = async {
                self.engine
                    .wait_container(id)
                    .await
                    .map_err(ProbeError::docker("wait for a probe container"))
            }
            .or(async {
                async_io::Timer::after(limit).await;
                Err(ProbeError::Sender(format!(
                    "a probe sender did not finish within {limit:?} ({})",
                    self.describe(id).await
                )))
            })
            .await?;
            log::debug!("probe container {} exited with {waited}", &id[..12]);
            let out = self
                .engine
                .stdout(id)
                .await
                .map_err(ProbeError::docker("read a probe container's report"))?;
            let report = parse_report(&out)
                .map_err(|e| ProbeError::Sender(format!("{e} (exit code {waited})")))?;
            reports.push(report);
        }
        let softirqs = Softirqs::now().since(&before);
        let perf: Vec<PerfCounts> = counters.iter().map(perf::Counters::read).collect();
        let counters = combine("probe container processes", &reports, &perf, softirqs);
        Ok(CellRun { reports, counters })
    }

    /// Where a stuck probe sender is: what an operator needs to see in the error.
    async fn describe(&self, id: &str) -> String {
        let pid = self
            .engine
            .inspect(id)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.state?.pid)
            .unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let output = self.engine.stdout(id).await.unwrap_or_default();
        let signals: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("Sig") || l.starts_with("ShdPnd"))
            .collect();
        format!(
            "pid {pid} waiting in {wchan:?}; {}; output {:?}",
            signals.join(" "),
            output.chars().take(300).collect::<String>()
        )
    }

    /// A netmode sink in a probe container on `network`, as another container of the
    /// gateway would listen: its id (remove it with `remove`) and where to send.
    pub async fn sink_container(&self, network: &str) -> Result<(String, Target), ProbeError> {
        const PORT: u16 = 5291;
        let cmd = vec!["sink".into(), "--listen".into(), format!("0.0.0.0:{PORT}")];
        let id = self
            .create("sink", cmd, network, &Limits::default())
            .await?;
        let ready = async {
            self.engine
                .start_container(&id)
                .await
                .map_err(ProbeError::docker("start a sink container"))?;
            let ip = self
                .engine
                .inspect(&id)
                .await
                .map_err(ProbeError::docker("inspect a sink container"))?
                .and_then(|c| c.network_settings?.networks?.remove(network)?.ip_address)
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                .ok_or_else(|| {
                    ProbeError::Sender(format!("the sink container got no address on {network}"))
                })?;
            let addr = std::net::SocketAddr::new(ip, PORT);
            // Listening once a connection is accepted (the host reaches bridge addresses).
            for _ in 0..100 {
                if smol::net::TcpStream::connect(addr).await.is_ok() {
                    return Ok(Target::Netmode(addr));
                }
                async_io::Timer::after(Duration::from_millis(50)).await;
            }
            Err(ProbeError::Sender(format!(
                "the sink container did not listen on {addr} within 5 s"
            )))
        }
        .await;
        match ready {
            Ok(t) => Ok((id, t)),
            Err(e) => {
                self.remove(&id).await;
                Err(e)
            }
        }
    }

    /// Remove a probe container of ours.
    pub async fn remove(&self, id: &str) {
        match self.engine.remove_container(id).await {
            Ok(()) => self.tracked.remove(id),
            Err(e) => log::warn!("cannot remove probe container {id}: {e}"),
        }
    }

    /// One sender on a thread inside the network namespace of `pid`.
    pub async fn in_namespace(&self, pid: u32, cell: &Cell) -> Result<CellRun, ProbeError> {
        let spec = SendSpec {
            target: self.sink,
            protocol: cell.kind.protocol,
            size: cell.kind.size as usize,
            duration: cell.duration,
            rate_bps: cell.rate_bps,
            session: traffic::new_session(),
            direction: cell.kind.direction,
            pattern: cell.kind.pattern,
            in_flight: cell.in_flight as usize,
        };
        let (report, perf, softirqs) = netns::spawn_in("probe-in-place", pid, move || {
            let counters = perf::Counters::start(0);
            let before = Softirqs::now();
            let report = traffic::send(&spec, true);
            let softirqs = Softirqs::now().since(&before);
            (report, counters.read(), softirqs)
        })
        .await
        .map_err(|source| ProbeError::Io {
            what: "enter the container's network namespace",
            source,
        })?;
        let counters = combine(
            "probe thread in the container's namespace",
            std::slice::from_ref(&report),
            &[perf],
            softirqs,
        );
        Ok(CellRun {
            reports: vec![report],
            counters,
        })
    }
}

/// Remove every probe container of this daemon instance (a daemon killed mid-probe leaves
/// them; a stop removes those in flight). Returns how many were removed.
pub async fn remove_leftovers(
    engine: &Engine,
    instance: &str,
) -> Result<usize, crate::error::DockerError> {
    let ids = engine.containers_labelled(LABEL_OWNER, instance).await?;
    for id in &ids {
        engine.remove_container(id).await?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Outcome, Usage};

    #[test]
    fn the_last_json_line_is_the_report() {
        let r = SenderReport {
            outcome: Some(Outcome {
                sent_bytes: 10,
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = format!("noise\n{}\n", serde_json::to_string(&r).unwrap());
        assert_eq!(parse_report(&out).unwrap(), r);
        assert!(
            parse_report("exec format error\n")
                .unwrap_err()
                .to_string()
                .contains("no report")
        );
    }

    #[test]
    fn counters_add_up_over_senders_and_perf_reasons_survive() {
        let r = SenderReport {
            usage: Usage {
                user_s: 0.5,
                system_s: 1.0,
                voluntary_cs: 10,
                involuntary_cs: 5,
                minor_faults: 3,
                major_faults: 0,
            },
            ..Default::default()
        };
        let p = PerfCounts {
            cycles: Some(100),
            instructions: Some(50),
            ipc: Some(0.5),
            unavailable: None,
            cpu_migrations: Some(7),
        };
        let c = combine(
            "x",
            &[r.clone(), r.clone()],
            &[p.clone(), p],
            Softirqs {
                rx: 30,
                tx: 4,
                rx_per_cpu: vec![],
            },
        );
        assert_eq!((c.cpu_s, c.voluntary_context_switches), (3.0, 20));
        assert_eq!((c.net_rx_softirqs, c.net_tx_softirqs), (30, 4));
        assert_eq!((c.perf.cycles, c.perf.ipc), (Some(200), Some(0.5)));
        assert_eq!(c.perf.cpu_migrations, Some(14));
        // No PMU (a VM): no cycles, but migrations still counted; one sender without a
        // migration count makes the sum unknown rather than low.
        let vm = PerfCounts {
            cpu_migrations: Some(3),
            ..PerfCounts::unavailable("no PMU")
        };
        let c = combine(
            "x",
            std::slice::from_ref(&r),
            std::slice::from_ref(&vm),
            Softirqs::default(),
        );
        assert_eq!(c.perf.unavailable.as_deref(), Some("no PMU"));
        assert_eq!((c.perf.cycles, c.perf.cpu_migrations), (None, Some(3)));
        let c = combine(
            "x",
            &[r.clone(), r],
            &[vm, PerfCounts::unavailable("no PMU")],
            Softirqs::default(),
        );
        assert_eq!(c.perf.cpu_migrations, None);
    }

    #[test]
    fn softirqs_per_cpu_are_deltas_even_when_a_cpu_appears() {
        let at = |rx, rx_per_cpu: Vec<u64>| Softirqs {
            rx,
            tx: 0,
            rx_per_cpu,
        };
        let d = at(42, vec![15, 20, 7]).since(&at(30, vec![10, 20]));
        assert_eq!((d.rx, d.rx_per_cpu), (12, vec![5, 0, 7]));
        assert_eq!(
            Softirqs::default().since(&Softirqs::default()),
            Softirqs::default()
        );
    }

    #[test]
    fn ready_means_our_executable_catching_sigusr1() {
        assert!(ready_for_go("Name:\tnetmoded\nSigCgt:\t0000000000000640\n"));
        // runc's init, before it execs the probe sender: catches everything.
        assert!(!ready_for_go(
            "Name:\trunc:[2:INIT]\nSigCgt:\tfffffffe7fc1feff\n"
        ));
        // netmoded before installing its handler (only Rust's SIGSEGV/SIGBUS ones).
        assert!(!ready_for_go(
            "Name:\tnetmoded\nSigCgt:\t0000000000000440\n"
        ));
        assert!(!ready_for_go("Name:\tnetmoded\n"));
    }

    #[test]
    fn limits_are_copied_onto_probe_containers() {
        let h = host_config(
            "backend",
            &Limits {
                cpus: Some(0.5),
                cpu_shares: Some(512),
                cpuset: Some("1".into()),
                memory_bytes: Some(64 << 20),
            },
        );
        assert_eq!(h.network_mode.as_deref(), Some("backend"));
        assert_eq!(
            (h.nano_cpus, h.cpu_shares, h.memory),
            (Some(500_000_000), Some(512), Some(64 << 20))
        );
        assert_eq!(h.cpuset_cpus.as_deref(), Some("1"));
        assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("json-file"));
    }
}
