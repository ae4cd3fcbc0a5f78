//! The API's views of what the daemon knows: `/v1/status` and one container, each the state's
//! observations (`state::Shared::containers`, `state::Shared::find`, which also does the one
//! container lookup) joined with the probe queue's latest runs.

use netmode_advisor::api;

use crate::error::RequestError;
use crate::probe::queue::ProbeQueue;
use crate::state::{Shared, now_ms};

/// `GET /v1/status`: everything, containers sorted by name.
pub fn status(shared: &Shared, probes: &ProbeQueue) -> api::Status {
    let recommendations = shared.recommendations();
    let containers = shared
        .containers()
        .into_iter()
        .map(|c| with_probes(c, probes))
        .collect();
    api::Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        api: api::API_VERSION.to_string(),
        generated_at_ms: now_ms(),
        host: shared.host(),
        docker: shared.docker(),
        containers,
        probe: probes.status(),
        advisor: recommendations.map(|r| api::AdvisorSummary {
            mode: r.mode,
            network_active: r.network_active,
            crossover: r.crossover,
        }),
    }
}

/// `GET /v1/containers/{key}`: one running container by name, full id or unique id prefix.
pub fn container(
    shared: &Shared,
    probes: &ProbeQueue,
    key: &str,
) -> Result<api::Container, RequestError> {
    shared.find(key).map(|c| with_probes(c, probes))
}

fn with_probes(mut c: api::Container, probes: &ProbeQueue) -> api::Container {
    c.probes = probes.latest(&c.name);
    c
}
