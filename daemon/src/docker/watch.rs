//! Keeps the inventory of running containers current: list once per connection, then follow
//! the engine's event stream (no polling). When the engine is missing or restarts, report it
//! unavailable, keep serving, and reconnect with exponential backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use futures_lite::StreamExt;

use super::Engine;
use super::inventory::{self, Inventory};
use crate::error::{DockerError, Error, Result};
use crate::state::Shared;

const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The watcher task; runs for the daemon's lifetime.
pub async fn run(shared: Arc<Shared>) {
    let max = shared.config().docker.reconnect_max_backoff;
    let mut backoff = FIRST_RETRY.min(max);
    // Until an engine answers, every candidate socket is tried; then the one that answered is
    // kept for the daemon's life: an engine that restarts is waited for, never replaced by
    // another one found meanwhile (whose containers are not the ones an interrupted change or
    // the probes' history refer to).
    let mut candidates = shared.docker_sockets.clone();
    loop {
        let err = session(&shared, &mut candidates, &mut backoff).await;
        let was = shared.docker().state;
        shared.set_docker_unavailable(err.to_string().trim_start_matches("docker: ").to_string());
        if was != netmode_advisor::api::DockerState::Unavailable {
            log::warn!(
                "{err}; retrying with backoff up to {}",
                humantime::format_duration(max)
            );
        } else {
            log::debug!("{err}; next try in {backoff:?}");
        }
        async_io::Timer::after(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// One connection to the engine: returns only when it is lost.
async fn session(shared: &Shared, candidates: &mut Vec<PathBuf>, backoff: &mut Duration) -> Error {
    match session_inner(shared, candidates, backoff).await {
        Ok(()) => Error::Docker(DockerError::Ended(
            "event stream ended (engine stopped or restarting)".into(),
        )),
        Err(e) => e,
    }
}

async fn session_inner(
    shared: &Shared,
    candidates: &mut Vec<PathBuf>,
    backoff: &mut Duration,
) -> Result<()> {
    let (engine, socket) =
        Engine::connect_first(candidates, shared.config().docker.request_timeout).await?;
    let version = engine.version().clone();
    if candidates.len() > 1 {
        log::info!(
            "using the {} engine at {} from now on",
            version.engine,
            socket.display()
        );
        *candidates = vec![socket.clone()];
    }
    // Events are replayed from a little before the listing, so nothing that happens
    // in between is missed; handling an event twice is harmless.
    let since = (crate::state::now_ms() / 1000) as i64 - 1;
    let mut drivers: HashMap<String, String> = HashMap::new();
    let mut fresh = Inventory::new();
    for id in engine.running_container_ids().await? {
        if let Some(r) = record(&engine, &id, &mut drivers).await? {
            fresh.insert(id, r);
        }
    }
    log::info!(
        "{} {} (API {}) at {}: {} running containers",
        version.engine,
        version.server,
        version.api,
        socket.display(),
        fresh.len()
    );
    shared.replace_inventory(fresh);
    shared.set_docker_connected(&socket, version.engine, &version.server, &version.api);
    *backoff = FIRST_RETRY.min(shared.config().docker.reconnect_max_backoff);

    let mut events = std::pin::pin!(engine.events(since));
    while let Some(ev) = events.next().await {
        handle(shared, &engine, &mut drivers, ev?).await?;
    }
    Ok(())
}

/// Inspect a container into a record, learning the drivers of networks it is on.
async fn record(
    engine: &Engine,
    id: &str,
    drivers: &mut HashMap<String, String>,
) -> Result<Option<inventory::Record>> {
    let Some(c) = engine.inspect(id).await? else {
        return Ok(None);
    };
    for net in inventory::unknown_networks(&c, drivers) {
        if let Some(d) = engine.network_driver(&net).await? {
            drivers.insert(net, d);
        }
    }
    Ok(inventory::record_from_inspect(&c, drivers))
}

/// Re-inspect `id` and put it in (or take it out of) the inventory.
async fn refresh(
    shared: &Shared,
    engine: &Engine,
    drivers: &mut HashMap<String, String>,
    id: &str,
) -> Result<()> {
    match record(engine, id, drivers).await {
        Ok(Some(r)) => {
            log::debug!(
                "container {} ({}) is running in {}",
                r.info.name,
                short(id),
                r.info.network_mode
            );
            shared.upsert(r);
        }
        Ok(None) => {
            shared.remove(id);
        }
        // The engine refused this one container (e.g. removal in progress): skip it, the
        // next event about it will tell.
        Err(Error::Docker(m)) if m.answered() => {
            log::warn!("cannot inspect {}: {m}", short(id));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn handle(
    shared: &Shared,
    engine: &Engine,
    drivers: &mut HashMap<String, String>,
    ev: EventMessage,
) -> Result<()> {
    let action = ev.action.as_deref().unwrap_or("");
    let actor = ev.actor.as_ref();
    let actor_id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    let attr = |k: &str| {
        actor
            .and_then(|a| a.attributes.as_ref())
            .and_then(|m| m.get(k))
            .cloned()
    };
    match ev.typ {
        Some(EventMessageTypeEnum::CONTAINER) => match action {
            "start" | "rename" => refresh(shared, engine, drivers, &actor_id).await?,
            // "died": Podman's own name, should one reach us under it.
            "die" | "died" => {
                let at = ev
                    .time_nano
                    .or(ev.time.map(|s| s.saturating_mul(1_000_000_000)))
                    .unwrap_or(i64::MAX);
                if shared.remove_if_started_before(&actor_id, at) {
                    log::debug!("container {} stopped", short(&actor_id));
                }
            }
            // "remove": Podman's name for Docker's "destroy".
            "destroy" | "remove" => {
                shared.remove(&actor_id);
            }
            _ => {}
        },
        Some(EventMessageTypeEnum::NETWORK) => {
            // Actor is the network; the container is an attribute. The event also names the
            // network's driver.
            if let (Some(name), Some(driver)) = (attr("name"), attr("type")) {
                drivers.insert(name, driver);
            }
            if let Some(container) = attr("container")
                && shared.inventory().contains_key(&container)
            {
                refresh(shared, engine, drivers, &container).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
