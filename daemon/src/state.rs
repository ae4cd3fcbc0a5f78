//! What the daemon knows right now: the Docker engine's state, the inventory of running
//! containers, their live traffic, the host's figures and the latest recommendations. The
//! Docker watcher, the sampler and the advisor write here; the API reads it through `view`.
//! The probe queue (`probe::queue`) hangs off the same hub. Locks are held only to copy in or
//! out, never across an await.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use netmode_advisor::api::{self, DockerInfo, DockerState, Host, Live};

use crate::apply::book::ApplyBook;
use crate::config::Config;
use crate::docker::EngineVersion;
use crate::docker::inventory::{Inventory, Record};
use crate::probe::queue::ProbeQueue;
use crate::state_dir::StateDir;

pub struct Shared {
    /// The configuration in force: replaced whole by a reload (`SIGHUP`, `config::reload`).
    config: RwLock<Arc<Config>>,
    /// The last reload: (successful, when in ms since the epoch; the start counts as one).
    reloaded: RwLock<(bool, u64)>,
    pub docker_socket: PathBuf,
    pub state_dir: StateDir,
    docker: RwLock<DockerInfo>,
    inventory: RwLock<Inventory>,
    live: RwLock<HashMap<String, Live>>,
    host: RwLock<Host>,
    recommendations: RwLock<Option<api::Recommendations>>,
    /// Probe requests, the run in progress and the history.
    pub probes: ProbeQueue,
    /// The bearer token every mutating request must carry (`<state_dir>/token`).
    pub token: String,
    /// Mode changes: the one running and the history.
    pub applies: ApplyBook,
    /// The HTTP endpoint's open connections.
    pub conns: crate::http::conns::Conns,
    /// Containers an in-place probe sends from (their own namespace's counters carry the
    /// probe's traffic): `None` while it runs, else when it ended.
    in_place: RwLock<HashMap<String, Option<std::time::Instant>>>,
}

pub use crate::rt::now_ms;
use crate::rt::{read, read_lock, write};

impl Shared {
    pub fn new(
        config: Config,
        docker_socket: PathBuf,
        state_dir: StateDir,
        host: Host,
        probe_wake: smol::channel::Sender<()>,
        token: String,
    ) -> Shared {
        Shared {
            probes: ProbeQueue::new(
                config.probe.enabled,
                config.probe.duration.as_secs_f64(),
                probe_wake,
            ),
            recommendations: RwLock::new(None),
            token,
            applies: ApplyBook::default(),
            conns: Default::default(),
            in_place: RwLock::new(HashMap::new()),
            docker: RwLock::new(DockerInfo {
                state: DockerState::Connecting,
                endpoint: format!("unix://{}", docker_socket.display()),
                server_version: None,
                api_version: None,
                error: None,
                since_ms: now_ms(),
            }),
            config: RwLock::new(Arc::new(config)),
            reloaded: RwLock::new((true, now_ms())),
            docker_socket,
            state_dir,
            inventory: RwLock::new(Inventory::new()),
            live: RwLock::new(HashMap::new()),
            host: RwLock::new(host),
        }
    }

    // ---- configuration ----

    /// The configuration in force now (a reload may replace it between two calls).
    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }

    /// Put a reloaded configuration in force.
    pub fn set_config(&self, config: Config) {
        self.probes
            .configure(config.probe.enabled, config.probe.duration.as_secs_f64());
        *write(&self.config) = Arc::new(config);
        *write(&self.reloaded) = (true, now_ms());
    }

    /// A reload failed: the old configuration stays in force.
    pub fn reload_failed(&self) {
        write(&self.reloaded).0 = false;
    }

    /// (the last reload succeeded, when the configuration in force was loaded, ms).
    pub fn reloaded(&self) -> (bool, u64) {
        read(&self.reloaded)
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

    // ---- recommendations ----

    pub fn set_recommendations(&self, r: api::Recommendations) {
        *write(&self.recommendations) = Some(r);
    }

    pub fn recommendations(&self) -> Option<api::Recommendations> {
        read(&self.recommendations)
    }

    /// Total live traffic of all containers, bit/s.
    pub fn live_traffic_bps(&self) -> f64 {
        read_lock(&self.live)
            .values()
            .map(|l| l.rx_bps + l.tx_bps)
            .sum()
    }

    /// Live traffic of each container, by id.
    pub fn live(&self) -> HashMap<String, Live> {
        read(&self.live)
    }

    /// The last live figures of container `id`.
    pub fn live_of(&self, id: &str) -> Option<Live> {
        read_lock(&self.live).get(id).cloned()
    }

    // ---- in-place probes ----

    /// An in-place probe starts (`true`) or stops sending from container `id`'s namespace.
    pub fn in_place_probe(&self, id: &str, running: bool) {
        let mut m = write(&self.in_place);
        let now = std::time::Instant::now();
        m.retain(|_, end| end.is_none_or(|t| now.duration_since(t).as_secs() < 600));
        m.insert(id.to_string(), (!running).then_some(now));
    }

    /// Whether an in-place probe sent from container `id` at any time since `since`: its
    /// counters over that time are the probe's as much as its own.
    pub fn in_place_probe_since(&self, id: &str, since: std::time::Instant) -> bool {
        read_lock(&self.in_place)
            .get(id)
            .is_some_and(|end| end.is_none_or(|t| t >= since))
    }
}
