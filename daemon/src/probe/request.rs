//! A manual probe request (`POST /v1/probes`, `advisor probe`): checked against what is known
//! (the container exists, netmode manages its mode), then queued for the engine.

use netmode_advisor::api::{ProbeRequest, ProbeRun, Trigger};

use super::queue::ProbeQueue;
use super::queue::QueuedProbe;
use crate::error::RequestError;
use crate::state::Shared;

/// A manual probe (`POST /v1/probes`, `advisor probe`): checked against what is known, then
/// queued.
pub fn request(
    shared: &Shared,
    probes: &ProbeQueue,
    req: &ProbeRequest,
) -> Result<ProbeRun, RequestError> {
    if let Some(e) = probes.status().error {
        return Err(RequestError::Unavailable(format!(
            "probing is unavailable: {e}"
        )));
    }
    if req.all && req.container.is_some() {
        return Err(RequestError::Invalid(
            "give \"container\" or \"all\", not both".into(),
        ));
    }
    let container = match &req.container {
        Some(key) => {
            let c = shared.find(key)?;
            crate::mode::manageable(&c).map_err(|why| {
                RequestError::Unprocessable(format!("{} cannot be probed: {why}", c.name))
            })?;
            Some(c.id)
        }
        None if req.sweep || req.all => None,
        None => {
            return Err(RequestError::Invalid(
                "give \"container\" (a name or id), \"all\": true or \"sweep\": true".into(),
            ));
        }
    };
    let run = probes.new_run(Trigger::Manual);
    probes.push(QueuedProbe {
        run: run.clone(),
        container,
        all: req.all,
        sweep: req.sweep,
    })?;
    Ok(run)
}
