//! What the daemon knows right now, shared by the Docker watcher, the sampler and the HTTP
//! endpoint. Locks are held only to copy in or out, never across an await.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::RwLock;

use netmode_advisor::api::{
    self, ContainerProbes, DockerInfo, DockerState, Host, Live, ModeKind, ProbeList, ProbeMode,
    ProbeRequest, ProbeRun, ProbeStatus, RunState, Sweep, Trigger,
};

use crate::config::Config;
use crate::docker::EngineVersion;
use crate::docker::inventory::{Inventory, Record};
use crate::state_dir::StateDir;

pub struct Shared {
    pub config: Config,
    pub docker_socket: PathBuf,
    pub state_dir: StateDir,
    docker: RwLock<DockerInfo>,
    inventory: RwLock<Inventory>,
    live: RwLock<HashMap<String, Live>>,
    host: RwLock<Host>,
    probes: RwLock<ProbeBook>,
    recommendations: RwLock<Option<api::Recommendations>>,
    /// Wakes the probe engine when a probe is queued.
    probe_wake: smol::channel::Sender<()>,
}

/// A probe waiting its turn, with what it was asked for.
#[derive(Debug, Clone)]
pub struct QueuedProbe {
    pub run: ProbeRun,
    /// The container to probe (its id), if any.
    pub container: Option<String>,
    /// Probe every container netmode manages.
    pub all: bool,
    pub sweep: bool,
}

/// Everything known about probes: the engine's state, the queue, the history (oldest first)
/// and, derived from it, the latest probe of each container and the latest sweep.
#[derive(Default)]
struct ProbeBook {
    status: ProbeStatus,
    running: Option<ProbeRun>,
    queued: VecDeque<QueuedProbe>,
    history: Vec<ProbeRun>,
    latest: HashMap<String, ContainerProbes>,
    sweep: Option<Sweep>,
    next_id: u64,
}

/// Queued probes beyond this are refused (429).
const MAX_QUEUED: usize = 8;

/// Why a probe request is refused: an HTTP status and a message.
#[derive(Debug, PartialEq)]
pub struct Refused(pub u16, pub String);

impl ProbeBook {
    /// Fold a finished run into the latest-per-container view and the latest sweep.
    fn absorb(&mut self, run: &ProbeRun) {
        if run.state != RunState::Done && run.state != RunState::Aborted {
            return;
        }
        for cp in &run.containers {
            if cp.error.is_some() || cp.cells.is_empty() {
                continue;
            }
            let of = |m: ProbeMode| {
                cp.cells
                    .iter()
                    .filter(|c| c.mode == m)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            self.latest.insert(
                cp.target.name.clone(),
                ContainerProbes {
                    run_id: run.id.clone(),
                    finished_at_ms: run.finished_at_ms.unwrap_or(0),
                    bridge: of(ProbeMode::Bridge),
                    host: of(ProbeMode::Host),
                    in_place: of(ProbeMode::InPlace),
                    measured_for: cp.measured_for.clone(),
                },
            );
        }
        if let Some(sw) = &run.sweep {
            self.sweep = Some(sw.clone());
        }
    }
}

/// Why a container lookup failed.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    NotFound,
    Ambiguous(Vec<String>),
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        config: Config,
        docker_socket: PathBuf,
        state_dir: StateDir,
        host: Host,
        probe_wake: smol::channel::Sender<()>,
    ) -> Shared {
        let probes = ProbeBook {
            status: ProbeStatus {
                enabled: config.probe.enabled,
                ..Default::default()
            },
            ..Default::default()
        };
        Shared {
            probes: RwLock::new(probes),
            recommendations: RwLock::new(None),
            probe_wake,
            docker: RwLock::new(DockerInfo {
                state: DockerState::Connecting,
                endpoint: format!("unix://{}", docker_socket.display()),
                server_version: None,
                api_version: None,
                error: None,
                since_ms: now_ms(),
            }),
            config,
            docker_socket,
            state_dir,
            inventory: RwLock::new(Inventory::new()),
            live: RwLock::new(HashMap::new()),
            host: RwLock::new(host),
        }
    }

    // ---- Docker ----

    pub fn docker(&self) -> DockerInfo {
        read(&self.docker)
    }

    pub fn set_docker_connected(&self, v: &EngineVersion) {
        let mut d = write(&self.docker);
        if d.state != DockerState::Connected {
            d.since_ms = now_ms();
        }
        d.state = DockerState::Connected;
        d.server_version = Some(v.server.clone());
        d.api_version = Some(v.api.clone());
        d.error = None;
    }

    pub fn set_docker_unavailable(&self, error: String) {
        let mut d = write(&self.docker);
        if d.state != DockerState::Unavailable {
            d.since_ms = now_ms();
        }
        d.state = DockerState::Unavailable;
        d.error = Some(error);
    }

    // ---- inventory ----

    pub fn inventory(&self) -> Inventory {
        read(&self.inventory)
    }

    pub fn replace_inventory(&self, fresh: Inventory) {
        *write(&self.inventory) = fresh;
    }

    pub fn upsert(&self, r: Record) {
        write(&self.inventory).insert(r.info.id.clone(), r);
    }

    pub fn remove(&self, id: &str) -> Option<Record> {
        write(&self.live).remove(id);
        write(&self.inventory).remove(id)
    }

    /// A `die` event at `event_ns`: remove the container unless the event is older than the
    /// run we know of (a replayed event from before a restart).
    pub fn remove_if_started_before(&self, id: &str, event_ns: i64) -> bool {
        let mut inv = write(&self.inventory);
        match inv.get(id) {
            Some(r) if event_ns >= r.started_ns => {
                inv.remove(id);
                drop(inv);
                write(&self.live).remove(id);
                true
            }
            _ => false,
        }
    }

    // ---- live traffic and host figures ----

    pub fn set_live(&self, live: HashMap<String, Live>) {
        *write(&self.live) = live;
    }

    pub fn host(&self) -> Host {
        read(&self.host)
    }

    pub fn update_host(&self, f: impl FnOnce(&mut Host)) {
        f(&mut write(&self.host));
    }

    // ---- API views ----

    fn with_live(&self, mut c: api::Container, live: &HashMap<String, Live>) -> api::Container {
        c.live = live.get(&c.id).cloned();
        c.probes = read_lock(&self.probes).latest.get(&c.name).cloned();
        c.recommendation = read_lock(&self.recommendations)
            .as_ref()
            .and_then(|r| r.containers.iter().find(|x| x.id == c.id))
            .map(|x| x.recommendation.clone());
        c
    }

    // ---- recommendations ----

    pub fn set_recommendations(&self, r: api::Recommendations) {
        *write(&self.recommendations) = Some(r);
    }

    pub fn recommendations(&self) -> Option<api::Recommendations> {
        read(&self.recommendations)
    }

    // ---- probes ----

    /// The probe engine's status, with the queue and the latest sweep.
    pub fn probe_status(&self) -> ProbeStatus {
        let b = read_lock(&self.probes);
        let mut s = b.status.clone();
        s.running = b.running.as_ref().map(|r| r.id.clone());
        s.queued = b.queued.len() as u32;
        s.sweep = b.sweep.clone();
        s
    }

    pub fn update_probe_status(&self, f: impl FnOnce(&mut ProbeStatus)) {
        f(&mut write(&self.probes).status);
    }

    /// Start from the history kept in the state directory.
    pub fn load_probe_history(&self, runs: Vec<ProbeRun>) {
        let mut b = write(&self.probes);
        for r in &runs {
            b.absorb(r);
        }
        b.history = runs;
    }

    pub fn probe_list(&self) -> ProbeList {
        let b = read_lock(&self.probes);
        ProbeList {
            running: b.running.clone(),
            queued: b.queued.iter().map(|q| q.run.clone()).collect(),
            runs: b.history.iter().rev().cloned().collect(),
        }
    }

    pub fn probe_run(&self, id: &str) -> Option<ProbeRun> {
        let b = read_lock(&self.probes);
        b.running
            .iter()
            .chain(b.queued.iter().map(|q| &q.run))
            .chain(b.history.iter())
            .find(|r| r.id == id)
            .cloned()
    }

    /// A new run, queued (or, for the scheduler, to run at once).
    pub fn new_probe_run(&self, trigger: Trigger) -> ProbeRun {
        let mut b = write(&self.probes);
        b.next_id += 1;
        ProbeRun {
            id: format!("p{}-{}", now_ms() / 1000, b.next_id),
            trigger,
            state: RunState::Queued,
            queued_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            sink: None,
            cell_duration_s: self.config.probe.duration.as_secs_f64(),
            containers: Vec::new(),
            sweep: None,
            error: None,
            notes: Vec::new(),
        }
    }

    /// Queue a manual probe (`POST /v1/probes`).
    pub fn enqueue_probe(&self, req: &ProbeRequest) -> Result<ProbeRun, Refused> {
        if let Some(e) = self.probe_status().error {
            return Err(Refused(503, format!("probing is unavailable: {e}")));
        }
        if req.all && req.container.is_some() {
            return Err(Refused(
                400,
                "give \"container\" or \"all\", not both".into(),
            ));
        }
        let container = match &req.container {
            Some(key) => {
                let c = self.container(key).map_err(|l| match l {
                    Lookup::NotFound => Refused(
                        404,
                        format!("no running container named or with id {key:?}"),
                    ),
                    Lookup::Ambiguous(names) => Refused(
                        400,
                        format!(
                            "id prefix {key:?} matches several containers ({})",
                            names.join(", ")
                        ),
                    ),
                })?;
                if !matches!(c.mode_kind, ModeKind::Bridge | ModeKind::Host) {
                    return Err(Refused(
                        422,
                        format!(
                            "{} cannot be probed: network mode {} has no bridge/host alternative to measure",
                            c.name, c.network_mode
                        ),
                    ));
                }
                Some(c.id)
            }
            None if req.sweep || req.all => None,
            None => {
                return Err(Refused(
                    400,
                    "give \"container\" (a name or id), \"all\": true or \"sweep\": true".into(),
                ));
            }
        };
        if read_lock(&self.probes).queued.len() >= MAX_QUEUED {
            return Err(Refused(
                429,
                format!("{MAX_QUEUED} probes are already queued; try again later"),
            ));
        }
        let run = self.new_probe_run(Trigger::Manual);
        write(&self.probes).queued.push_back(QueuedProbe {
            run: run.clone(),
            container,
            all: req.all,
            sweep: req.sweep,
        });
        let _ = self.probe_wake.try_send(());
        Ok(run)
    }

    pub fn next_queued_probe(&self) -> Option<QueuedProbe> {
        write(&self.probes).queued.pop_front()
    }

    /// Show a run in progress (or none).
    pub fn set_running_probe(&self, run: Option<ProbeRun>) {
        write(&self.probes).running = run;
    }

    /// Record a finished run; returns the history file's new contents (trimmed to `limit`).
    pub fn finish_probe_run(&self, run: ProbeRun, limit: usize) -> Vec<u8> {
        let mut b = write(&self.probes);
        b.running = None;
        b.absorb(&run);
        b.history.push(run);
        crate::probe::history::trim(&mut b.history, limit)
    }

    /// Total live traffic of all containers, bit/s.
    pub fn live_traffic_bps(&self) -> f64 {
        read_lock(&self.live)
            .values()
            .map(|l| l.rx_bps + l.tx_bps)
            .sum()
    }

    pub fn status(&self) -> api::Status {
        let inv = self.inventory();
        let live = read(&self.live);
        let mut containers: Vec<api::Container> = inv
            .into_values()
            .map(|r| self.with_live(r.info, &live))
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        api::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api: api::API_VERSION.to_string(),
            generated_at_ms: now_ms(),
            host: self.host(),
            docker: self.docker(),
            containers,
            probe: self.probe_status(),
            advisor: read_lock(&self.recommendations)
                .as_ref()
                .map(|r| api::AdvisorSummary {
                    network_active: r.network_active.clone(),
                    crossover: r.crossover.clone(),
                }),
        }
    }

    /// Find a container by exact name, full id, or unique id prefix (as `docker` does).
    pub fn container(&self, key: &str) -> Result<api::Container, Lookup> {
        let key = key.trim_start_matches('/');
        let inv = self.inventory();
        let live = read(&self.live);
        if let Some(r) = inv.values().find(|r| r.info.name == key) {
            return Ok(self.with_live(r.info.clone(), &live));
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Lookup::NotFound);
        }
        let hits: Vec<&Record> = inv
            .values()
            .filter(|r| r.info.id.starts_with(key))
            .collect();
        match hits.as_slice() {
            [one] => Ok(self.with_live(one.info.clone(), &live)),
            [] => Err(Lookup::NotFound),
            many => Err(Lookup::Ambiguous(
                many.iter().map(|r| r.info.name.clone()).collect(),
            )),
        }
    }
}
