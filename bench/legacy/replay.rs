//! The policy as it was before it had a probability (commit a66fc36, the last before
//! d59e45c), replayed on evidence bench/apps saved: the baseline the issue calls "today's
//! policy". It is built against that commit's own tree, not this one (`legacy_policy` in
//! bench/common.py checks the commit out in a scratch worktree, copies this file in as an
//! example of its advisor crate and builds it), so that what it decides is what that
//! policy decided, not a port of it.
//!
//! Standard input: `{"points": [{"dir": "..", "name": ".."}], "active_window_s": 5}`, each
//! `dir` holding the daemon's `/v1/status` (`status.json`) and the policy's memory
//! (`advisor.json`) at one moment. Standard output: per point, that policy's recommendation
//! for the container (JSON, one array; `null` where the saved files are not in a form it
//! reads, with the reason on standard error). What the memory says was recommended before
//! is forgotten, as `advisor/examples/replay.rs` does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use netmode_advisor::api::Status;
use netmode_advisor::policy::{self, Config, Input, Memory};
use serde::Deserialize;

#[derive(Deserialize)]
struct Point {
    dir: PathBuf,
    name: String,
}

#[derive(Deserialize)]
struct Request {
    active_window_s: Option<f64>,
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
    if let Some(w) = req.active_window_s {
        config.active_window_s = w;
    }
    let mut out = Vec::new();
    for p in &req.points {
        let read = read_json::<Status>(&p.dir.join("status.json"))
            .and_then(|s| Ok((s, read_json::<Memory>(&p.dir.join("advisor.json"))?)));
        let (status, mut memory) = match read {
            Ok(got) => got,
            Err(e) => {
                eprintln!("{e}");
                out.push(serde_json::Value::Null);
                continue;
            }
        };
        for m in memory.containers.values_mut() {
            m.recommended = None;
            m.last_flip_ms = 0;
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
        let rec = evaluation.recommendations.get(&p.name);
        if rec.is_none() {
            eprintln!("{}: no recommendation for {}", p.dir.display(), p.name);
        }
        out.push(serde_json::to_value(rec).map_err(|source| Error::Parse {
            path: "<stdout>".into(),
            source,
        })?);
    }
    let json = serde_json::to_string(&out).map_err(|source| Error::Parse {
        path: "<stdout>".into(),
        source,
    })?;
    println!("{json}");
    Ok(())
}
