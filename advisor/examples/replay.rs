//! The policy replayed on evidence a benchmark saved, under another transfer model
//! (`bench/replay` drives it): the same runs, decided again, without running them again.
//!
//! Standard input: `{"transfer": {"beta": .., "beta_sd": .., "sd": ..}, "prior": {"model":
//! "study"} or {"model": "gateway", "container_sd": ..}, "shift": "study" or "gateway",
//! "path": "whole" or "measured", "points": [{"dir": "..", "name": ".."}],
//! "active_window_s": 5}`, where each `dir` holds the daemon's `/v1/status` (`status.json`)
//! and the policy's memory (`advisor.json`) at one moment. Standard output: per point, the
//! recommendation the policy gives that container now (JSON, one array). What the memory
//! says was recommended before is forgotten, so that the decision follows the probability
//! alone (no hysteresis from the run's own model). `"drop_sizes": [65000]` takes the probe
//! cells of those message sizes out of the evidence first (the container's latest probe and
//! the rounds its memory keeps): the same run decided as if the probe had not sent them.
//! `"drop_sweep_sizes": [131072]` does the same to the sweep (the status's latest sweep and
//! the sweep rounds the memory keeps).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use netmode_advisor::api::Status;
use netmode_advisor::policy::posterior::Transfer;
use netmode_advisor::policy::{self, Config, Input, Memory, PathModel, PriorModel, ShiftModel};
use serde::Deserialize;

#[derive(Deserialize)]
struct TransferIn {
    beta: f64,
    beta_sd: f64,
    sd: f64,
}

#[derive(Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
enum PriorIn {
    Study,
    Gateway { container_sd: f64 },
}

#[derive(Deserialize)]
struct Point {
    dir: PathBuf,
    name: String,
}

#[derive(Deserialize)]
struct Request {
    transfer: Option<TransferIn>,
    /// The prior at N = 1 (default: the shipped one).
    prior: Option<PriorIn>,
    /// The prior of the shift from one container to N (default: the shipped one).
    shift: Option<ShiftModel>,
    /// Whether the path's measured share of an application's work carries the probes' gain
    /// (default: the shipped model).
    path: Option<PathModel>,
    /// The run's `advisor.active_window`, seconds (default: the shipped one).
    active_window_s: Option<f64>,
    /// Probe cells of these message sizes are taken out of the evidence.
    #[serde(default)]
    drop_sizes: Vec<u32>,
    /// Sweep cells of these message sizes are taken out of the evidence.
    #[serde(default)]
    drop_sweep_sizes: Vec<u32>,
    points: Vec<Point>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}: no recommendation for {1}")]
    Missing(PathBuf, String),
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: path.into(),
        source,
    })
}

fn main() -> Result<(), Error> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| Error::Read {
            path: "<stdin>".into(),
            source,
        })?;
    let req: Request = serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: "<stdin>".into(),
        source,
    })?;
    let mut config = Config::default();
    if let Some(t) = req.transfer {
        config.transfer = Transfer {
            beta: t.beta,
            beta_sd: t.beta_sd,
            sd: t.sd,
        };
    }
    match req.prior {
        None => {}
        Some(PriorIn::Study) => config.prior = PriorModel::Study,
        Some(PriorIn::Gateway { container_sd }) => {
            config.prior = PriorModel::Gateway { container_sd }
        }
    }
    if let Some(shift) = req.shift {
        config.shift = shift;
    }
    if let Some(path) = req.path {
        config.path = path;
    }
    if let Some(w) = req.active_window_s {
        config.active_window_s = w;
    }
    let mut out = Vec::new();
    for p in &req.points {
        let mut status: Status = read_json(&p.dir.join("status.json"))?;
        let mut memory: Memory = read_json(&p.dir.join("advisor.json"))?;
        let kept = |size: u32| !req.drop_sizes.contains(&size);
        for m in memory.containers.values_mut() {
            m.recommended = None;
            m.last_flip_ms = 0;
            for r in &mut m.probe_rounds {
                r.cells.retain(|c| kept(c.size));
            }
            m.probe_rounds.retain(|r| !r.cells.is_empty());
        }
        let swept = |size: u32| !req.drop_sweep_sizes.contains(&size);
        for s in &mut memory.sweeps {
            s.cells.retain(|c| swept(c.size));
        }
        if let Some(s) = &mut status.probe.sweep {
            s.cells.retain(|c| swept(c.size));
            s.crossovers.retain(|c| swept(c.size));
        }
        for c in &mut status.containers {
            if let Some(p) = &mut c.probes {
                p.bridge.retain(|c| kept(c.size));
                p.host.retain(|c| kept(c.size));
                p.in_place.retain(|c| kept(c.size));
            }
        }
        let none = BTreeMap::new();
        let layers = BTreeMap::new();
        let input = Input {
            now_ms: status.generated_at_ms,
            cpus: status.host.cpus,
            containers: &status.containers,
            sweep: status.probe.sweep.as_ref(),
            host_listeners: &[],
            container_ports: &none,
            writable_layers: &layers,
            config: &config,
        };
        let (evaluation, _) = policy::evaluate(&input, &memory);
        let rec = evaluation
            .recommendations
            .get(&p.name)
            .ok_or_else(|| Error::Missing(p.dir.clone(), p.name.clone()))?;
        out.push(rec.clone());
    }
    let json = serde_json::to_string(&out).map_err(|source| Error::Parse {
        path: "<stdout>".into(),
        source,
    })?;
    println!("{json}");
    Ok(())
}
