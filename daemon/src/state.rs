//! What the daemon knows right now: the Docker engine's state, the inventory of running
//! containers, their live traffic, the host's figures and the latest recommendations, and the
//! configuration in force. The Docker watcher, the sampler and the advisor write here; the
//! API reads it through `view`. Observations only: the probe queue, the apply book, the HTTP
//! connection table and the token belong to their own modules and are handed to those who
//! need them. Locks are held only to copy in or out, never across an await.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use netmode_advisor::api::{self, DockerInfo, DockerState, Host, Live};

use crate::config::Config;
use crate::error::RequestError;
use crate::state_dir::StateDir;

/// One running container as netmoded knows it (made from `docker inspect` by
/// `docker::inventory`).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The API view (without live traffic, which the sampler keeps).
    pub info: api::Container,
    /// `State.StartedAt` in Unix nanoseconds: a `die` event older than this belongs to an
    /// earlier run of the container and is ignored.
    pub started_ns: i64,
}

/// Running containers by id.
pub type Inventory = std::collections::BTreeMap<String, Record>;

/// The last reload of the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reloaded {
    /// Whether it succeeded (the start counts as one).
    pub ok: bool,
    /// When, in ms since the epoch.
    pub at_ms: u64,
}

pub struct Shared {
    /// The configuration in force: replaced whole by a reload (`SIGHUP`, `config::reload`).
    config: RwLock<Arc<Config>>,
    reloaded: RwLock<Reloaded>,
    /// The engine's sockets to try, in order (one when configured; Docker's then Podman's
    /// when netmoded looks for the engine itself).
    pub docker_sockets: Vec<PathBuf>,
    /// The socket of the engine last connected to (the first candidate until then).
    docker_socket: RwLock<PathBuf>,
    pub state_dir: StateDir,
    docker: RwLock<DockerInfo>,
    inventory: RwLock<Inventory>,
    live: RwLock<HashMap<String, Live>>,
    host: RwLock<Host>,
    recommendations: RwLock<Option<api::Recommendations>>,
    /// Containers an in-place probe sends from (their own namespace's counters carry the
    /// probe's traffic): `None` while it runs, else when it ended.
    in_place: RwLock<HashMap<String, Option<std::time::Instant>>>,
}

pub use crate::rt::now_ms;
use crate::rt::{read, read_lock, write};

impl Shared {
    pub fn new(
        config: Config,
        docker_sockets: Vec<PathBuf>,
        state_dir: StateDir,
        host: Host,
    ) -> Shared {
        let first = docker_sockets
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        Shared {
            recommendations: RwLock::new(None),
            in_place: RwLock::new(HashMap::new()),
            docker: RwLock::new(DockerInfo {
                state: DockerState::Connecting,
                endpoint: docker_sockets
                    .iter()
                    .map(|s| format!("unix://{}", s.display()))
                    .collect::<Vec<_>>()
                    .join(" or "),
                engine: None,
                server_version: None,
                api_version: None,
                error: None,
                since_ms: now_ms(),
            }),
            config: RwLock::new(Arc::new(config)),
            reloaded: RwLock::new(Reloaded {
                ok: true,
                at_ms: now_ms(),
            }),
            docker_socket: RwLock::new(first),
            docker_sockets,
            state_dir,
            inventory: RwLock::new(Inventory::new()),
            live: RwLock::new(HashMap::new()),
            host: RwLock::new(host),
        }
    }

    /// The engine's socket: the one last connected to.
    pub fn docker_socket(&self) -> PathBuf {
        read(&self.docker_socket).clone()
    }

    // ---- configuration ----

    /// The configuration in force now (a reload may replace it between two calls).
    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }

    /// Put a reloaded configuration in force.
    pub fn set_config(&self, config: Config) {
        *write(&self.config) = Arc::new(config);
        *write(&self.reloaded) = Reloaded {
            ok: true,
            at_ms: now_ms(),
        };
    }

    /// A reload failed: the old configuration stays in force.
    pub fn reload_failed(&self) {
        write(&self.reloaded).ok = false;
    }

    /// The last reload: whether it succeeded, and when the configuration in force was loaded.
    pub fn reloaded(&self) -> Reloaded {
        read(&self.reloaded)
    }

    // ---- Docker ----

    pub fn docker(&self) -> DockerInfo {
        read(&self.docker)
    }

    /// Connected to an engine of this server and API version.
    /// Connected to `engine` (`docker`, `podman`) at `socket`: the socket every part of
    /// netmoded uses from now on.
    pub fn set_docker_connected(
        &self,
        socket: &Path,
        engine: &str,
        server_version: &str,
        api_version: &str,
    ) {
        *write(&self.docker_socket) = socket.to_path_buf();
        let mut d = write(&self.docker);
        if d.state != DockerState::Connected {
            d.since_ms = now_ms();
        }
        d.state = DockerState::Connected;
        d.endpoint = format!("unix://{}", socket.display());
        d.engine = Some(engine.to_string());
        d.server_version = Some(server_version.to_string());
        d.api_version = Some(api_version.to_string());
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

    /// The running containers as the API shows them without their probes (`view` adds
    /// those): inventory, live traffic and latest recommendation; sorted by name.
    pub fn containers(&self) -> Vec<api::Container> {
        let live = self.live();
        let recommendations = self.recommendations();
        let mut all: Vec<api::Container> = self
            .inventory()
            .into_values()
            .map(|r| observed(r.info, &live, recommendations.as_ref()))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        all
    }

    /// Find a running container by exact name, full id, or unique id prefix (as `docker`
    /// does), with its live traffic and recommendation. The errors are the API's: 404 when
    /// nothing matches, 400 when a prefix matches several.
    pub fn find(&self, key: &str) -> Result<api::Container, RequestError> {
        let inv = self.inventory();
        let found = lookup(inv.values(), key)?;
        Ok(observed(
            found.info.clone(),
            &self.live(),
            self.recommendations().as_ref(),
        ))
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

    /// Apply mode's reasons for not applying recommended switches now, by container name:
    /// set on the latest recommendations (cleared on the others).
    pub fn set_apply_waits(&self, waits: &std::collections::BTreeMap<String, String>) {
        if let Some(r) = write(&self.recommendations).as_mut() {
            for c in &mut r.containers {
                c.recommendation.apply_waits = waits.get(&c.name).cloned();
            }
        }
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

/// A container with what the daemon observed of it: live traffic and recommendation.
fn observed(
    mut c: api::Container,
    live: &HashMap<String, Live>,
    recommendations: Option<&api::Recommendations>,
) -> api::Container {
    c.live = live.get(&c.id).cloned();
    c.recommendation = recommendations.and_then(|r| {
        r.containers
            .iter()
            .find(|x| x.id == c.id)
            .map(|x| x.recommendation.clone())
    });
    c
}

/// The lookup itself, over any set of records.
pub fn lookup<'a>(
    records: impl Iterator<Item = &'a Record> + Clone,
    key: &str,
) -> Result<&'a Record, RequestError> {
    let key = key.trim_start_matches('/');
    let not_found =
        || RequestError::NotFound(format!("no running container named or with id {key:?}"));
    if let Some(r) = records.clone().find(|r| r.info.name == key) {
        return Ok(r);
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let hits: Vec<&Record> = records.filter(|r| r.info.id.starts_with(key)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found()),
        many => Err(RequestError::Invalid(format!(
            "id prefix {key:?} matches several containers ({}); give more of the id",
            many.iter()
                .map(|r| r.info.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmode_advisor::api::ModeKind;

    fn rec(id: &str, name: &str) -> Record {
        Record {
            info: crate::testing::container(id, name, "bridge", ModeKind::Bridge),
            started_ns: 0,
        }
    }

    #[test]
    fn names_ids_and_prefixes_as_docker_takes_them() {
        let all = [
            rec("abc123", "web"),
            rec("abd456", "db"),
            rec("ff00", "cafe"),
        ];
        let find = |k: &str| lookup(all.iter(), k).map(|r| r.info.name.clone());
        assert_eq!(find("web").unwrap(), "web");
        assert_eq!(find("/db").unwrap(), "db");
        assert_eq!(find("abc").unwrap(), "web");
        assert_eq!(find("abd456").unwrap(), "db");
        // A name wins over an id prefix that happens to look like it.
        assert_eq!(find("cafe").unwrap(), "cafe");
        let e = find("ab").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().contains("web, db") || e.to_string().contains("db, web"),
            "{e}"
        );
        for missing in ["nope", "0", ""] {
            let e = find(missing).unwrap_err();
            assert_eq!(e.status(), 404, "{missing}");
            assert!(e.to_string().contains("no running container"), "{e}");
        }
    }
}
