//! The transaction: the steps of a mode change against the Docker engine, each journaled
//! before it is taken, and the two ways out of any step: rolled back (the original, under its
//! name, with its restart policy, running if it was) or finished (the old container removed,
//! never its volumes).
//!
//! Order (docker compose's, not watchtower's): nothing is removed until the new container has
//! run and passed verification; the old one is only set aside (restart policy cleared so the
//! engine cannot start it behind our back, renamed, stopped with its own stop timeout).

use std::time::{Duration, Instant};

use netmode_advisor::api::{ApplyRecord, ApplyState, ModeKind, Trigger};
use serde_json::{Value, json};

use super::journal::{self, Journal, Step};
use super::spec::{self, Defaults};
use crate::config::Apply as ApplyConfig;
use crate::docker::Engine;
use crate::error::ApplyError;
use crate::rt::now_ms;
use crate::state_dir::StateDir;

/// `NETMODE_TEST_ABORT_APPLY_AFTER=<step>`: the daemon aborts (as `kill -9` would stop it)
/// right after taking that step. For the fault-injection tests; unset in production.
pub const ABORT_ENV: &str = "NETMODE_TEST_ABORT_APPLY_AFTER";

/// `NETMODE_TEST_HOLD_APPLY_AFTER=<step>`: right after taking that step, the change writes
/// `<state_dir>/test-held` and waits until `<state_dir>/test-release` exists (the test
/// restarts the Docker engine meanwhile). For the fault-injection tests; unset in production.
pub const HOLD_ENV: &str = "NETMODE_TEST_HOLD_APPLY_AFTER";

async fn after(dir: &StateDir, step: Step) {
    let at = |var: &str| std::env::var(var).ok().and_then(|s| Step::parse(&s)) == Some(step);
    if at(ABORT_ENV) {
        log::error!("{ABORT_ENV}={}: aborting", step.as_str());
        std::process::abort();
    }
    if at(HOLD_ENV) {
        log::warn!(
            "{HOLD_ENV}={}: holding until test-release exists",
            step.as_str()
        );
        let (held, release) = (
            dir.path().join("test-held"),
            dir.path().join("test-release"),
        );
        let _ = std::fs::write(&held, step.as_str());
        while !release.exists() {
            async_io::Timer::after(std::time::Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(&release);
        let _ = std::fs::remove_file(&held);
    }
}

/// What the engine gives a fresh container of `image`: created (never started) on no
/// network, inspected, removed.
async fn defaults(engine: &Engine, image: &str) -> Result<Defaults, ApplyError> {
    let name = format!("netmode-defaults-{}", crate::traffic::new_session());
    let body = json!({
        "Image": image,
        "Cmd": ["netmode-defaults"],
        "HostConfig": {"NetworkMode": "none"},
        "Labels": {"netmode.defaults": "1"},
    });
    let id = engine
        .create_json(&name, body)
        .await
        .map_err(ApplyError::docker(
            "create a container to read the engine's defaults",
        ))?;
    let inspected = engine.inspect_json(&id).await;
    let _ = engine.remove_container(&id).await;
    let inspected = inspected
        .map_err(ApplyError::docker("inspect the defaults container"))?
        .unwrap_or(Value::Null);
    let image_config = engine
        .image_config(image)
        .await
        .map_err(ApplyError::docker("inspect the image"))?;
    Ok(Defaults {
        host_config: inspected["HostConfig"].clone(),
        image_config,
    })
}

/// A planned change: the record (with the diff) and the journal to carry it out.
pub async fn plan(
    engine: &Engine,
    container_id: &str,
    target: ModeKind,
    trigger: Trigger,
    id: String,
) -> Result<Journal, ApplyError> {
    let inspect = engine
        .inspect_json(container_id)
        .await
        .map_err(ApplyError::docker("inspect the container"))?
        .ok_or_else(|| ApplyError::Refused("the container no longer exists".into()))?;
    let name = inspect["Name"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let from = match inspect["HostConfig"]["NetworkMode"].as_str() {
        Some("host") => ModeKind::Host,
        _ => ModeKind::Bridge,
    };
    if from == target {
        return Err(ApplyError::Refused(format!(
            "{name} already runs in {} mode",
            target.as_str()
        )));
    }
    // The same image: by name while the name still means the image the container runs,
    // else by id (a re-tagged image is not an upgrade netmode makes behind your back).
    let image_id = inspect["Image"].as_str().unwrap_or("").to_string();
    let image_name = inspect["Config"]["Image"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let image = match engine.image_id(&image_name).await {
        Ok(Some(id)) if id == image_id => image_name,
        _ => image_id.clone(),
    };
    let defaults = defaults(engine, &image_id).await?;
    let user = spec::user_request(&inspect, &defaults, &image)
        .map_err(|e| ApplyError::Refused(format!("{name}: {e}")))?;
    let restore = spec::restore_of(&inspect);
    let same_mode = spec::as_is(&user).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let new = spec::for_mode(&user, target, restore.as_ref())
        .map_err(|e| ApplyError::Refused(e.to_string()))?;
    let mut diff = spec::diff(&same_mode.create, &new.create);
    // The restore record is netmode's own bookkeeping, not a change the user asked for.
    diff.retain(|d| !d.starts_with(&format!("Labels.{}", spec::RESTORE_LABEL)));
    let was_running = inspect["State"]["Running"] == Value::Bool(true);
    let record = ApplyRecord {
        id: id.clone(),
        container: name.clone(),
        container_id: container_id.to_string(),
        new_id: None,
        from,
        to: target,
        trigger,
        state: ApplyState::Queued,
        step: Step::Plan.as_str().into(),
        diff,
        dropped: new.dropped.clone(),
        error: None,
        compose_override: None,
        queued_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
    };
    Ok(Journal {
        record,
        step: Step::Plan,
        aside: format!("{name}-netmode-{id}"),
        name,
        restart_policy: inspect["HostConfig"]["RestartPolicy"].clone(),
        was_running,
        create: new.create,
        connect: new.connect,
    })
}

fn step_to(dir: &StateDir, j: &mut Journal, step: Step) -> Result<(), ApplyError> {
    j.step = step;
    j.record.step = step.as_str().into();
    journal::save(dir, j)?;
    log::info!("apply {} ({}): {}", j.record.id, j.name, step.as_str());
    Ok(())
}

fn policy(v: &Value) -> bollard::models::RestartPolicy {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Carry the journaled change out, step by step, from `j.step` on (a fresh change starts at
/// `Plan`). On failure the caller rolls back.
pub async fn execute(
    engine: &Engine,
    dir: &StateDir,
    cfg: &ApplyConfig,
    j: &mut Journal,
) -> Result<(), ApplyError> {
    let old = j.record.container_id.clone();
    step_to(dir, j, Step::Plan)?;
    after(dir, Step::Plan).await;

    step_to(dir, j, Step::ClearRestartPolicy)?;
    engine
        .set_restart_policy(
            &old,
            bollard::models::RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            },
        )
        .await
        .map_err(ApplyError::docker(
            "clear the old container's restart policy",
        ))?;
    after(dir, Step::ClearRestartPolicy).await;

    step_to(dir, j, Step::RenameAside)?;
    engine
        .rename_container(&old, &j.aside)
        .await
        .map_err(ApplyError::docker("rename the old container aside"))?;
    after(dir, Step::RenameAside).await;

    step_to(dir, j, Step::Stop)?;
    engine
        .stop_container(&old, None)
        .await
        .map_err(ApplyError::docker("stop the old container"))?;
    after(dir, Step::Stop).await;

    step_to(dir, j, Step::Create)?;
    let new = engine
        .create_json(&j.name, j.create.clone())
        .await
        .map_err(ApplyError::docker("create the new container"))?;
    j.record.new_id = Some(new.clone());
    journal::save(dir, j)?;
    after(dir, Step::Create).await;

    step_to(dir, j, Step::Connect)?;
    for (network, endpoint) in j.connect.clone() {
        engine
            .connect_network(&network, &new, endpoint)
            .await
            .map_err(ApplyError::docker(format!(
                "connect the new container to {network}"
            )))?;
    }
    after(dir, Step::Connect).await;

    step_to(dir, j, Step::Start)?;
    engine
        .start_container(&new)
        .await
        .map_err(ApplyError::docker("start the new container"))?;
    after(dir, Step::Start).await;

    step_to(dir, j, Step::Verify)?;
    verify(engine, &new, cfg).await?;
    after(dir, Step::Verify).await;

    finish(engine, dir, j).await
}

/// The new container runs, for `cfg.verify`, not restarting, and healthy if it has a
/// healthcheck (within `cfg.health_timeout`).
async fn verify(engine: &Engine, id: &str, cfg: &ApplyConfig) -> Result<(), ApplyError> {
    let start = Instant::now();
    loop {
        let c = engine
            .inspect_json(id)
            .await
            .map_err(ApplyError::docker("inspect the new container"))?
            .ok_or_else(|| ApplyError::Verify("the new container disappeared".into()))?;
        let st = &c["State"];
        if st["Running"] != Value::Bool(true) {
            return Err(ApplyError::Verify(format!(
                "the new container stopped (exit code {}{})",
                st["ExitCode"],
                st["Error"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )));
        }
        if st["Restarting"] == Value::Bool(true) || c["RestartCount"].as_u64().unwrap_or(0) > 0 {
            return Err(ApplyError::Verify(format!(
                "the new container is restarting (it stopped with exit code {})",
                st["ExitCode"]
            )));
        }
        let health = st["Health"]["Status"].as_str();
        if health == Some("unhealthy") {
            return Err(ApplyError::Verify(
                "the new container's healthcheck fails".into(),
            ));
        }
        let ran = start.elapsed() >= cfg.verify;
        match health {
            None | Some("") | Some("none") if ran => return Ok(()),
            Some("healthy") if ran => return Ok(()),
            _ => {}
        }
        if start.elapsed() > cfg.health_timeout.max(cfg.verify) {
            return Err(ApplyError::Verify(format!(
                "the new container was not healthy within {:?} (health: {})",
                cfg.health_timeout,
                health.unwrap_or("unknown")
            )));
        }
        async_io::Timer::after(Duration::from_millis(250)).await;
    }
}

/// Verified: remove the old container (its volumes stay; the new one uses them) and close
/// the journal. Idempotent, for recovery.
pub async fn finish(engine: &Engine, dir: &StateDir, j: &mut Journal) -> Result<(), ApplyError> {
    step_to(dir, j, Step::RemoveOld)?;
    engine
        .remove_container(&j.record.container_id)
        .await
        .map_err(ApplyError::docker("remove the old container"))?;
    after(dir, Step::RemoveOld).await;
    j.record.state = ApplyState::Applied;
    j.record.step = Step::Done.as_str().into();
    j.record.finished_at_ms = Some(now_ms());
    Ok(())
}

/// Undo whatever was done: the new container removed (never a volume), the old one renamed
/// back, its restart policy given back, started if it ran. Idempotent: it can be repeated
/// from any step, after any crash, until it succeeds.
pub async fn rollback(engine: &Engine, j: &mut Journal) -> Result<(), ApplyError> {
    let old = j.record.container_id.clone();
    // The new container: by the id we recorded, or (a crash between create and journaling
    // its id) whatever now holds the name that is not the old container.
    let mut new_ids: Vec<String> = j.record.new_id.iter().cloned().collect();
    if let Some(c) = engine
        .inspect_json(&j.name)
        .await
        .map_err(ApplyError::docker("inspect the name"))?
        && let Some(id) = c["Id"].as_str()
        && id != old
    {
        new_ids.push(id.to_string());
    }
    for id in new_ids {
        engine
            .remove_container(&id)
            .await
            .map_err(ApplyError::docker("remove the new container"))?;
    }
    let Some(c) = engine
        .inspect_json(&old)
        .await
        .map_err(ApplyError::docker("inspect the old container"))?
    else {
        // Never expected: the old container is only removed after verification.
        return Err(ApplyError::Verify(format!(
            "the old container {old} is gone; nothing to give back"
        )));
    };
    if c["Name"].as_str().map(|n| n.trim_start_matches('/')) != Some(j.name.as_str()) {
        engine
            .rename_container(&old, &j.name)
            .await
            .map_err(ApplyError::docker("rename the old container back"))?;
    }
    engine
        .set_restart_policy(&old, policy(&j.restart_policy))
        .await
        .map_err(ApplyError::docker(
            "give the old container its restart policy back",
        ))?;
    if j.was_running && c["State"]["Running"] != Value::Bool(true) {
        engine
            .start_container(&old)
            .await
            .map_err(ApplyError::docker("start the old container again"))?;
    }
    j.record.state = ApplyState::RolledBack;
    j.record.finished_at_ms = Some(now_ms());
    Ok(())
}
