//! Running the advisor's policy in the daemon: gather its inputs (status, probes, the
//! listener scan, the containers' writable layers), evaluate after every sample, serve the result, and keep the policy's
//! memory in `<state_dir>/advisor.json` (written atomically), so hysteresis and cooldowns
//! survive a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netmode_advisor::api::{
    AdvisorMode, ContainerRecommendation, CrossoverInfo, ModeKind, Recommendations,
};
use netmode_advisor::policy::{self, Memory, WritableLayer};

use crate::probe::queue::ProbeQueue;
use crate::state::{Shared, now_ms};
use crate::sys::listeners::{self, Scan};
use crate::sys::procs::CgroupMounts;

pub const MEMORY_FILE: &str = "advisor.json";
/// The listener scan walks /proc: not at every sample.
const SCAN_EVERY: Duration = Duration::from_secs(30);
/// The memory changes at every sample (activity averages); it is saved this often, and at
/// once when a recommendation changes.
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// `docker diff` walks a container's writable layer: each container is read when first seen,
/// then this often.
const LAYERS_EVERY: Duration = Duration::from_secs(300);

pub struct Advice {
    config: policy::Config,
    memory: Memory,
    cgroups: std::sync::Arc<CgroupMounts>,
    scan: Scan,
    scanned: Option<Instant>,
    saved: Option<Instant>,
    /// By container name: what each keeps in its writable layer (absent: nothing, or not
    /// read); by container id (a recreated container is read anew): when each was read.
    layers: BTreeMap<String, WritableLayer>,
    layers_read: BTreeMap<String, Instant>,
}

impl Advice {
    pub fn load(shared: &Shared) -> Advice {
        let memory = match shared.state_dir.read(MEMORY_FILE) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                shared.state_dir.quarantine(
                    MEMORY_FILE,
                    &format!("unreadable ({e}); the advisor starts afresh"),
                );
                Memory::default()
            }),
            Ok(None) => Memory::default(),
            Err(e) => {
                log::warn!("{e}; starting the advisor afresh");
                Memory::default()
            }
        };
        Advice {
            config: shared.config().advisor.policy(),
            memory,
            cgroups: std::sync::Arc::new(CgroupMounts::discover()),
            scan: Scan::default(),
            scanned: None,
            saved: None,
            layers: BTreeMap::new(),
            layers_read: BTreeMap::new(),
        }
    }

    /// What the policy remembers (for `apply::auto`).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// One evaluation of every container (with `advisor.mode = "off"`, none: an empty list
    /// that says so).
    pub async fn evaluate(&mut self, shared: &Shared, probes: &ProbeQueue) {
        let advisor = shared.config().advisor.clone();
        self.config = advisor.policy();
        let mode = advisor.mode;
        if mode == AdvisorMode::Off {
            shared.set_recommendations(Recommendations {
                mode,
                generated_at_ms: now_ms(),
                network_active: Vec::new(),
                crossover: CrossoverInfo {
                    containers: None,
                    source: "off".into(),
                    direction: None,
                    pattern: None,
                    protocol: None,
                    size: None,
                },
                containers: Vec::new(),
            });
            return;
        }
        let status = crate::view::status(shared, probes);
        if self.scanned.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            let pick = |kind: ModeKind| -> Vec<(String, u32)> {
                status
                    .containers
                    .iter()
                    .filter(|c| c.mode_kind == kind)
                    .map(|c| (c.name.clone(), c.pid))
                    .collect()
            };
            let (host, bridge) = (pick(ModeKind::Host), pick(ModeKind::Bridge));
            let cgroups = self.cgroups.clone();
            self.scan = smol::unblock(move || listeners::scan(&cgroups, &host, &bridge)).await;
            self.scanned = Some(Instant::now());
        }
        self.read_layers(shared, &status.containers).await;
        let now = now_ms();
        let input = policy::Input {
            now_ms: now,
            cpus: status.host.cpus,
            containers: &status.containers,
            sweep: status.probe.sweep.as_ref(),
            host_listeners: &self.scan.host,
            container_ports: &self.scan.containers,
            writable_layers: &self.layers,
            config: &self.config,
        };
        let (evaluation, memory) = policy::evaluate(&input, &self.memory);
        // Saved at once when a recommendation changed or new evidence came in (a probe or
        // sweep round is minutes of the gateway's time: a restart must not lose it).
        let changed = memory.sweeps != self.memory.sweeps
            || memory.containers.iter().any(|(name, m)| {
                self.memory.containers.get(name).is_none_or(|o| {
                    o.recommended != m.recommended || o.probe_rounds != m.probe_rounds
                })
            });
        self.memory = memory;
        let containers = status
            .containers
            .iter()
            .filter_map(|c| {
                Some(ContainerRecommendation {
                    name: c.name.clone(),
                    id: c.id.clone(),
                    network_mode: c.network_mode.clone(),
                    recommendation: evaluation.recommendations.get(&c.name)?.clone(),
                })
            })
            .collect();
        shared.set_recommendations(Recommendations {
            mode,
            generated_at_ms: now,
            network_active: evaluation.network_active,
            crossover: evaluation.crossover,
            containers,
        });
        if changed || self.saved.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            match serde_json::to_vec(&self.memory) {
                Ok(bytes) => {
                    if let Err(e) = shared.state_dir.write_atomic(MEMORY_FILE, &bytes) {
                        log::warn!("cannot save the advisor's memory: {e}");
                    }
                }
                Err(e) => log::warn!("cannot encode the advisor's memory: {e}"),
            }
            self.saved = Some(Instant::now());
        }
    }
}

impl Advice {
    /// Read the writable layer of each container netmode manages that is new or was read
    /// `LAYERS_EVERY` ago (a change would delete what it holds: the policy blocks it). An
    /// engine that does not answer leaves the last readings.
    async fn read_layers(
        &mut self,
        shared: &Shared,
        containers: &[netmode_advisor::api::Container],
    ) {
        use crate::apply::safety;
        self.layers_read
            .retain(|id, _| containers.iter().any(|c| &c.id == id));
        self.layers
            .retain(|name, _| containers.iter().any(|c| &c.name == name));
        let due: Vec<&netmode_advisor::api::Container> = containers
            .iter()
            .filter(|c| crate::mode::manageable(c).is_ok())
            .filter(|c| {
                self.layers_read
                    .get(&c.id)
                    .is_none_or(|t| t.elapsed() >= LAYERS_EVERY)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let engine = match crate::docker::Engine::connect(
            &shared.docker_socket(),
            shared.config().docker.request_timeout,
        )
        .await
        {
            Ok(e) => e,
            Err(_) => return,
        };
        for c in due {
            let inspect = match engine.inspect_json(&c.id).await {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                // An engine that stops answering is not waited on again for each container
                // (this runs in the sampling loop).
                Err(_) => break,
            };
            let Ok(changes) = engine.changes(&c.id).await else {
                break;
            };
            self.layers_read.insert(c.id.clone(), Instant::now());
            match safety::writable_layer(None, &changes, &safety::mount_points(&inspect)) {
                Some(l) => {
                    self.layers.insert(
                        c.name.clone(),
                        WritableLayer {
                            count: l.paths.len(),
                            paths: l.paths.into_iter().take(4).collect(),
                        },
                    );
                }
                None => {
                    self.layers.remove(&c.name);
                }
            }
        }
    }
}
