//! What the daemon knows right now, shared by the Docker watcher, the sampler and the HTTP
//! endpoint. Locks are held only to copy in or out, never across an await.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use netmode_advisor::api::{self, DockerInfo, DockerState, Host, Live};

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

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(config: Config, docker_socket: PathBuf, state_dir: StateDir, host: Host) -> Shared {
        Shared {
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
        c
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
            probe: api::ProbeStatus::default(),
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
