//! The transaction: the steps of a mode change against the Docker engine, each journaled
//! before it is taken, and the two ways out of any step: rolled back (the original, under its
//! name, with its restart policy, running if it was) or finished (the old container removed,
//! never its volumes).
//!
//! Order (docker compose's, not watchtower's): nothing is removed until the new container has
//! run, passed verification and been watched a while; the old one is only set aside (restart
//! policy cleared so the engine cannot start it behind our back, renamed, stopped with its
//! own stop timeout).
//!
//! Safety against whatever else happens on the engine meanwhile: a container is only ever
//! removed by its full id, the new one only if this change made it (its id in the journal,
//! or the change's id in its `netmode.apply.id` label), the old one only once the new one
//! was verified and watched; a name is never resolved to a container to remove (a name can
//! be someone else's by then, and the engine also resolves id prefixes). Every wait has its
//! own deadline from the container (its stop timeout, its healthcheck), and every step
//! stops when netmoded is asked to stop, so that the change is settled before it exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netmode_advisor::api::{ApplyRecord, ApplyState, ModeKind, Trigger};
use serde_json::{Value, json};

use super::journal::{self, Journal, Step};
use super::safety;
use super::spec::{self, APPLY_ID_LABEL, Defaults};
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
/// network, inspected, removed with the anonymous volumes the engine made for it.
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
    if let Err(e) = engine.remove_own_container_and_volumes(&id).await {
        log::warn!("cannot remove the defaults container {id}: {e}");
    }
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
        host_hostname: crate::sys::hoststat::hostname(),
        ..Default::default()
    }
    .for_engine(engine.version()))
}

/// What a change is asked to do beyond the mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Commit the old container's writable layer and make the new one from it.
    pub carry_writable_layer: bool,
}

/// Refuse what would destroy something of the user's: files in the container's writable
/// layer (unless they are carried over), and containers that depend on it.
async fn check_safe(
    engine: &Engine,
    id: &str,
    name: &str,
    opts: Options,
) -> Result<(), ApplyError> {
    let sized = engine
        .inspect_sized(id)
        .await
        .map_err(ApplyError::docker("measure the container's writable layer"))?
        .ok_or_else(|| ApplyError::Refused("the container no longer exists".into()))?;
    let changes = engine.changes(id).await.map_err(ApplyError::docker(
        "list the container's changed files (docker diff)",
    ))?;
    let mounts = safety::mount_points(&sized);
    if let Some(layer) = safety::writable_layer(sized["SizeRw"].as_u64(), &changes, &mounts)
        && !opts.carry_writable_layer
    {
        return Err(ApplyError::Refused(format!(
            "{name} keeps files in its own filesystem, outside its volumes: {}. Recreating it \
             would delete them with the old container. Move them to a volume, or carry them \
             over (advisor apply --carry-writable-layer: the old container is committed to an \
             image the new one is made from)",
            layer.describe(4)
        )));
    }
    let mut others = Vec::new();
    for c in engine
        .list_all_json()
        .await
        .map_err(ApplyError::docker("list the containers"))?
    {
        let Some(other) = c["Id"].as_str().filter(|o| *o != id) else {
            continue;
        };
        if let Some(i) = engine
            .inspect_json(other)
            .await
            .map_err(ApplyError::docker("inspect another container"))?
        {
            others.push(i);
        }
    }
    let deps = safety::dependents(id, name, &others);
    if !deps.is_empty() {
        let list: Vec<String> = deps.iter().map(|d| d.to_string()).collect();
        return Err(ApplyError::Refused(format!(
            "{name} has dependents: {}. Recreating it would stop them or leave them bound to \
             a container that no longer exists; change or remove them first",
            list.join("; ")
        )));
    }
    Ok(())
}

/// A planned change: the record (with the diff) and the journal to carry it out.
pub async fn plan(
    engine: &Engine,
    container_id: &str,
    target: ModeKind,
    trigger: Trigger,
    id: String,
    opts: Options,
) -> Result<Journal, ApplyError> {
    let inspect = engine
        .inspect_json(container_id)
        .await
        .map_err(ApplyError::docker("inspect the container"))?
        .ok_or_else(|| ApplyError::Refused("the container no longer exists".into()))?;
    // From here on, the container is named by its full id only.
    let full_id = inspect["Id"].as_str().unwrap_or(container_id).to_string();
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
    check_safe(engine, &full_id, &name, opts).await?;
    check_restart_policy_can_change(engine, &full_id, &name, &inspect).await?;
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
    let mut new = spec::for_mode(&user, target, restore.as_ref())
        .map_err(|e| ApplyError::Refused(e.to_string()))?;
    // netmode's own labels (the restore record) are bookkeeping, not a change the user asked
    // for.
    let diff = spec::diff(
        &spec::without_netmode_labels(&same_mode.create),
        &spec::without_netmode_labels(&new.create),
    );
    // The new container carries the change's id: rollback and recovery find it by that.
    if let Some(body) = new.create.as_object_mut() {
        let labels = body
            .entry("Labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(APPLY_ID_LABEL.into(), json!(id));
        }
    }
    let was_running = inspect["State"]["Running"] == Value::Bool(true);
    let record = ApplyRecord {
        id: id.clone(),
        container: name.clone(),
        container_id: full_id,
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
        carried_image: None,
        queued_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
    };
    Ok(Journal {
        version: journal::VERSION,
        record,
        step: Step::Plan,
        aside: format!("{name}-netmode-{id}"),
        name,
        restart_policy: inspect["HostConfig"]["RestartPolicy"].clone(),
        was_running,
        create: new.create,
        connect: new.connect,
        carry_writable_layer: opts.carry_writable_layer,
        stop_wait_s: journal::stop_wait_of(&inspect),
    })
}

/// A container the engine restarts has its policy cleared while it is set aside, and given
/// back if the change rolls back. Podman 4's compatible API has no `/containers/{id}/update`
/// to do that with: setting the policy it already has (a no-op) tells, before anything is
/// touched.
async fn check_restart_policy_can_change(
    engine: &Engine,
    id: &str,
    name: &str,
    inspect: &Value,
) -> Result<(), ApplyError> {
    let current = &inspect["HostConfig"]["RestartPolicy"];
    if !restarts(current) {
        return Ok(());
    }
    match engine.set_restart_policy(id, policy(current)).await {
        Ok(()) => Ok(()),
        // Docker's 404 names the container ("No such container"): it went away meanwhile.
        Err(e) if e.is_not_found() && e.to_string().to_ascii_lowercase().contains("no such") => {
            Err(ApplyError::Refused(format!("{name} no longer exists")))
        }
        // Podman's is the route's: there is no such call.
        Err(e) if e.is_not_found() => Err(ApplyError::Refused(format!(
            "{name} has restart policy {:?}, which netmode clears while it replaces the \
             container (so that the engine does not start the old one again), and this engine \
             cannot change a container's restart policy (POST /containers/{{id}}/update: {}; \
             Podman before 5 has no such call): recreate {name} with --restart=no to let \
             netmode change it, or change its mode yourself",
            current["Name"].as_str().unwrap_or_default(),
            e.to_string().trim()
        ))),
        Err(e) => Err(ApplyError::docker(
            "check that the restart policy can be changed",
        )(e)),
    }
}

fn step_to(
    dir: &StateDir,
    j: &mut Journal,
    step: Step,
    stopping: &AtomicBool,
) -> Result<(), ApplyError> {
    if stopping.load(Ordering::SeqCst) {
        return Err(ApplyError::Interrupted);
    }
    j.step = step;
    j.record.step = step.as_str().into();
    journal::save(dir, j)?;
    log::info!("apply {} ({}): {}", j.record.id, j.name, step.as_str());
    Ok(())
}

/// `work`, unless netmoded is asked to stop first (then `Interrupted`; what `work` had
/// started in the engine goes on there, and settling takes it into account).
async fn unless_stopping<T>(
    stopping: &AtomicBool,
    work: impl std::future::Future<Output = Result<T, ApplyError>>,
) -> Result<T, ApplyError> {
    let watch = async {
        loop {
            if stopping.load(Ordering::SeqCst) {
                return Err(ApplyError::Interrupted);
            }
            async_io::Timer::after(Duration::from_millis(100)).await;
        }
    };
    futures_lite::future::or(work, watch).await
}

fn policy(v: &Value) -> bollard::models::RestartPolicy {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Whether a restart policy (`HostConfig.RestartPolicy`) has the engine restart the container:
/// anything but none (`""`, `"no"`). A container that the engine never restarts needs its
/// policy neither cleared nor given back.
fn restarts(policy: &Value) -> bool {
    !matches!(policy["Name"].as_str(), None | Some("" | "no"))
}

/// Stop `id` and wait until it has stopped, within `wait` (its own stop timeout and a
/// margin: the engine kills it after its stop timeout).
async fn stop_and_confirm(engine: &Engine, id: &str, wait: Duration) -> Result<(), ApplyError> {
    engine
        .stop_waiting(id, wait)
        .await
        .map_err(ApplyError::docker("stop the old container"))?;
    let c = engine
        .inspect_json(id)
        .await
        .map_err(ApplyError::docker("inspect the old container"))?;
    if c.is_some_and(|c| c["State"]["Running"] == Value::Bool(true)) {
        return Err(ApplyError::Verify(
            "the old container still runs after its stop".into(),
        ));
    }
    Ok(())
}

/// Carry the journaled change out, step by step, from `j.step` on (a fresh change starts at
/// `Plan`). On failure (or `Interrupted`, when `stopping` is set) the caller settles it.
pub async fn execute(
    engine: &Engine,
    dir: &StateDir,
    cfg: &ApplyConfig,
    j: &mut Journal,
    stopping: &AtomicBool,
) -> Result<(), ApplyError> {
    let old = j.record.container_id.clone();
    step_to(dir, j, Step::Plan, stopping)?;
    after(dir, Step::Plan).await;

    step_to(dir, j, Step::ClearRestartPolicy, stopping)?;
    if restarts(&j.restart_policy) {
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
    }
    after(dir, Step::ClearRestartPolicy).await;

    step_to(dir, j, Step::RenameAside, stopping)?;
    engine
        .rename_container(&old, &j.aside)
        .await
        .map_err(ApplyError::docker("rename the old container aside"))?;
    after(dir, Step::RenameAside).await;

    step_to(dir, j, Step::Stop, stopping)?;
    let wait = Duration::from_secs(j.stop_wait_s);
    unless_stopping(stopping, stop_and_confirm(engine, &old, wait)).await?;
    after(dir, Step::Stop).await;

    // Only a change that carries the writable layer over has this step.
    if j.carry_writable_layer {
        step_to(dir, j, Step::Commit, stopping)?;
        let tag = format!("{}-{}", j.name, j.record.id);
        let image = unless_stopping(stopping, async {
            engine
                .commit(&old, CARRY_REPO, &tag, json!({}), Duration::from_secs(600))
                .await
                .map_err(ApplyError::docker(
                    "commit the old container's writable layer",
                ))
        })
        .await?;
        log::info!(
            "apply {} ({}): writable layer committed to {CARRY_REPO}:{tag} ({image})",
            j.record.id,
            j.name
        );
        j.record.carried_image = Some(image.clone());
        j.create["Image"] = json!(image);
        // The image carries the old container's labels; netmode's restore record must not
        // be inherited by a bridge-mode container (an empty value is no record).
        if j.record.to == ModeKind::Bridge
            && let Some(l) = j.create["Labels"].as_object_mut()
        {
            l.entry(spec::RESTORE_LABEL).or_insert(json!(""));
        }
        journal::save(dir, j)?;
        after(dir, Step::Commit).await;
    }

    step_to(dir, j, Step::Create, stopping)?;
    let new = engine
        .create_json(&j.name, j.create.clone())
        .await
        .map_err(ApplyError::docker("create the new container"))?;
    j.record.new_id = Some(new.clone());
    journal::save(dir, j)?;
    after(dir, Step::Create).await;

    step_to(dir, j, Step::Connect, stopping)?;
    for (network, endpoint) in j.connect.clone() {
        engine
            .connect_network(&network, &new, endpoint)
            .await
            .map_err(ApplyError::docker(format!(
                "connect the new container to {network}"
            )))?;
    }
    after(dir, Step::Connect).await;

    step_to(dir, j, Step::Start, stopping)?;
    engine
        .start_container(&new)
        .await
        .map_err(ApplyError::docker("start the new container"))?;
    after(dir, Step::Start).await;

    step_to(dir, j, Step::Verify, stopping)?;
    unless_stopping(stopping, verify(engine, &new, cfg)).await?;
    after(dir, Step::Verify).await;

    step_to(dir, j, Step::Watch, stopping)?;
    unless_stopping(stopping, watch(engine, &new, cfg.watch)).await?;
    after(dir, Step::Watch).await;

    finish(engine, dir, j).await
}

/// The repository of the images a carried-over writable layer is committed to.
pub const CARRY_REPO: &str = "netmode-carry";

/// How long a container's healthcheck may take to say healthy: its start period and as
/// many intervals as its retries allow, or `configured`, whichever is longer.
fn health_deadline(c: &Value, configured: Duration) -> Duration {
    let h = &c["Config"]["Healthcheck"];
    let ns = |k: &str, default_s: u64| {
        h[k].as_u64()
            .filter(|n| *n > 0)
            .map_or(Duration::from_secs(default_s), Duration::from_nanos)
    };
    let retries = h["Retries"].as_u64().filter(|r| *r > 0).unwrap_or(3) as u32;
    let own = ns("StartPeriod", 0) + (ns("Interval", 30) + ns("Timeout", 30)) * (retries + 1);
    configured.max(own)
}

/// Why the container is not well, if it is not: stopped, restarting, or unhealthy. A
/// container that restarted runs again and inspect shows exit code 0: `died` is the code
/// its last `die` event carried, if the engine told it.
fn unwell(c: &Value, died: Option<i64>) -> Option<String> {
    let st = &c["State"];
    if st["Running"] != Value::Bool(true) {
        return Some(format!(
            "the new container stopped (exit code {}{})",
            st["ExitCode"],
            st["Error"]
                .as_str()
                .filter(|e| !e.is_empty())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    if restarted(c) {
        let code = died.map_or_else(|| st["ExitCode"].clone(), Value::from);
        return Some(format!(
            "the new container is restarting (it stopped with exit code {code})"
        ));
    }
    if st["Health"]["Status"].as_str() == Some("unhealthy") {
        return Some("the new container's healthcheck fails".into());
    }
    None
}

/// Restarting now, or restarted since it was started.
fn restarted(c: &Value) -> bool {
    c["State"]["Restarting"] == Value::Bool(true) || c["RestartCount"].as_u64().unwrap_or(0) > 0
}

/// [`unwell`], with the exit code of a restarted container asked of the engine's events
/// since `since` (best effort: within two seconds, or inspect's figure).
async fn why_unwell(
    engine: &Engine,
    id: &str,
    c: &Value,
    since: std::time::SystemTime,
) -> Option<String> {
    let died = if c["State"]["Running"] == Value::Bool(true) && restarted(c) {
        let ask = async { engine.exit_codes(id, since).await.ok() };
        let give_up = async {
            async_io::Timer::after(Duration::from_secs(2)).await;
            None
        };
        futures_lite::future::or(ask, give_up)
            .await
            .and_then(|codes| codes.last().copied())
    } else {
        None
    };
    unwell(c, died)
}

/// The new container runs, for `cfg.verify`, not restarting, and healthy if it has a
/// healthcheck (within its own healthcheck's time, at least `cfg.health_timeout`).
async fn verify(engine: &Engine, id: &str, cfg: &ApplyConfig) -> Result<(), ApplyError> {
    let start = Instant::now();
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let mut deadline = cfg.health_timeout.max(cfg.verify);
    loop {
        let c = engine
            .inspect_json(id)
            .await
            .map_err(ApplyError::docker("inspect the new container"))?
            .ok_or_else(|| ApplyError::Verify("the new container disappeared".into()))?;
        deadline = deadline.max(health_deadline(&c, cfg.health_timeout));
        if let Some(why) = why_unwell(engine, id, &c, since).await {
            return Err(ApplyError::Verify(why));
        }
        let health = c["State"]["Health"]["Status"].as_str();
        let ran = start.elapsed() >= cfg.verify;
        match health {
            None | Some("") | Some("none") if ran => return Ok(()),
            Some("healthy") if ran => return Ok(()),
            _ => {}
        }
        if start.elapsed() > deadline {
            return Err(ApplyError::Verify(format!(
                "the new container was not healthy within {deadline:?} (health: {})",
                health.unwrap_or("unknown")
            )));
        }
        async_io::Timer::after(Duration::from_millis(250)).await;
    }
}

/// Verified: watched for `period` more (a host port found taken late, a crash after a few
/// seconds), while the old container still exists to go back to.
async fn watch(engine: &Engine, id: &str, period: Duration) -> Result<(), ApplyError> {
    let start = Instant::now();
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    while start.elapsed() < period {
        let c = engine
            .inspect_json(id)
            .await
            .map_err(ApplyError::docker("inspect the new container"))?
            .ok_or_else(|| ApplyError::Verify("the new container disappeared".into()))?;
        if let Some(why) = why_unwell(engine, id, &c, since).await {
            return Err(ApplyError::Verify(format!(
                "{why}, {:.0?} into the watch after verification",
                start.elapsed()
            )));
        }
        async_io::Timer::after(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Verified and watched: remove the old container, by its full id (its volumes stay; the
/// new one uses them), and close the record. Idempotent, for recovery.
pub async fn finish(engine: &Engine, dir: &StateDir, j: &mut Journal) -> Result<(), ApplyError> {
    j.step = Step::RemoveOld;
    j.record.step = Step::RemoveOld.as_str().into();
    journal::save(dir, j)?;
    log::info!("apply {} ({}): remove_old", j.record.id, j.name);
    let old = j.record.container_id.clone();
    if let Some(c) = engine
        .inspect_json(&old)
        .await
        .map_err(ApplyError::docker("inspect the old container"))?
        && c["Id"].as_str() == Some(old.as_str())
    {
        engine
            .remove_container(&old)
            .await
            .map_err(ApplyError::docker("remove the old container"))?;
    }
    after(dir, Step::RemoveOld).await;
    j.record.state = ApplyState::Applied;
    j.record.step = Step::Done.as_str().into();
    j.record.finished_at_ms = Some(now_ms());
    Ok(())
}

/// The id of the container that holds `name` exactly (not an id prefix), if any.
async fn holder_of(engine: &Engine, name: &str) -> Result<Option<String>, ApplyError> {
    let want = format!("/{name}");
    Ok(engine
        .list_all_json()
        .await
        .map_err(ApplyError::docker("list the containers"))?
        .into_iter()
        .find(|c| {
            c["Names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|x| x.as_str() == Some(want.as_str())))
        })
        .and_then(|c| c["Id"].as_str().map(String::from)))
}

/// The containers this change created: the id it journaled, and any carrying its id in the
/// `netmode.apply.id` label (a crash between create and journaling the id). Full ids.
async fn made_by(engine: &Engine, j: &Journal) -> Result<Vec<String>, ApplyError> {
    let mut ids: Vec<String> = j.record.new_id.iter().cloned().collect();
    for id in engine
        .containers_labelled(APPLY_ID_LABEL, &j.record.id)
        .await
        .map_err(ApplyError::docker("list the containers this change made"))?
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(c) = engine
            .inspect_json(&id)
            .await
            .map_err(ApplyError::docker("inspect the new container"))?
            && c["Id"].as_str() == Some(id.as_str())
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Undo whatever was done: the new container removed (by its full id, never a volume), the
/// old one renamed back, its restart policy given back, running if it ran. Idempotent: it can
/// be repeated from any step, after any crash, until it succeeds. Sets the record's outcome:
/// rolled back, or (the old container removed by someone else meanwhile) the new one kept.
pub async fn rollback(engine: &Engine, j: &mut Journal) -> Result<(), ApplyError> {
    let old = j.record.container_id.clone();
    let ours = made_by(engine, j).await?;
    // The old container first: nothing of the new one goes before the old one is known to
    // be there to give back.
    let old_c = engine
        .inspect_json(&old)
        .await
        .map_err(ApplyError::docker("inspect the old container"))?
        .filter(|c| c["Id"].as_str() == Some(old.as_str()));
    let Some(c) = old_c else {
        return keep_new(engine, j, &ours).await;
    };
    for id in &ours {
        engine
            .remove_container(id)
            .await
            .map_err(ApplyError::docker("remove the new container"))?;
    }
    if let Some(image) = j.record.carried_image.clone()
        && let Err(e) = engine.remove_image_id(&image).await
    {
        log::warn!(
            "apply {}: cannot remove the carried image {image}: {e}",
            j.record.id
        );
    }
    if restarts(&j.restart_policy) {
        engine
            .set_restart_policy(&old, policy(&j.restart_policy))
            .await
            .map_err(ApplyError::docker(
                "give the old container its restart policy back",
            ))?;
    }
    let running = c["State"]["Running"] == Value::Bool(true);
    if j.was_running {
        if running && j.step >= Step::Stop {
            // A stop was begun (perhaps by a netmoded killed since): the engine may still be
            // stopping it, and would kill it after its stop timeout. Let that stop end, then
            // start it again, so that it runs for certain.
            log::warn!(
                "apply {}: the old container may still be stopping; waiting for that stop, \
                 then starting it again",
                j.record.id
            );
            stop_and_confirm(engine, &old, Duration::from_secs(j.stop_wait_s)).await?;
        }
        if !running || j.step >= Step::Stop {
            engine
                .start_container(&old)
                .await
                .map_err(ApplyError::docker("start the old container again"))?;
        }
    }
    let own_name = c["Name"].as_str().map(|n| n.trim_start_matches('/')) == Some(j.name.as_str());
    if !own_name {
        match holder_of(engine, &j.name).await? {
            None => engine
                .rename_container(&old, &j.name)
                .await
                .map_err(ApplyError::docker("rename the old container back"))?,
            Some(other) if other == old => {}
            Some(other) => {
                return Err(ApplyError::Unsettled(format!(
                    "the name {} was taken meanwhile by another container ({}), which netmode \
                     leaves alone; the original runs as {}, with its restart policy: rename \
                     it back once the other one is gone",
                    j.name,
                    &other[..other.len().min(12)],
                    j.aside
                )));
            }
        }
    }
    j.record.state = ApplyState::RolledBack;
    j.record.finished_at_ms = Some(now_ms());
    Ok(())
}

/// Rollback found the old container gone (someone removed it; netmode only removes it after
/// the watch): keep the new one, which has the old one's definition and volumes, running
/// under the name. Nothing is left to give back if that one is gone too.
async fn keep_new(engine: &Engine, j: &mut Journal, ours: &[String]) -> Result<(), ApplyError> {
    let Some(new) = ours.first() else {
        return Err(ApplyError::Unsettled(format!(
            "the old container {} was removed by someone else before the new one was made: \
             nothing of netmode's is left to roll back to; its volumes are untouched",
            &j.record.container_id[..j.record.container_id.len().min(12)]
        )));
    };
    if restarts(&j.restart_policy) {
        engine
            .set_restart_policy(new, policy(&j.restart_policy))
            .await
            .map_err(ApplyError::docker(
                "give the new container its restart policy",
            ))?;
    }
    if j.was_running {
        engine
            .start_container(new)
            .await
            .map_err(ApplyError::docker("start the new container"))?;
    }
    j.record.state = ApplyState::Applied;
    j.record.error = Some(format!(
        "{}; the old container was removed by someone else meanwhile, so the new one ({}) \
         was kept instead of rolled back",
        j.record.error.as_deref().unwrap_or("interrupted"),
        &new[..new.len().min(12)]
    ));
    j.record.finished_at_ms = Some(now_ms());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_policy_that_restarts_is_cleared_and_given_back() {
        for none in [
            json!(null),
            json!({}),
            json!({"Name": ""}),
            json!({"Name": "no"}),
        ] {
            assert!(!restarts(&none), "{none}");
        }
        for name in ["always", "unless-stopped", "on-failure"] {
            assert!(
                restarts(&json!({"Name": name, "MaximumRetryCount": 0})),
                "{name}"
            );
        }
    }

    #[test]
    fn a_restarted_container_is_reported_with_the_code_it_died_with() {
        // Restarted and running again: inspect says exit code 0.
        let c = json!({"State": {"Running": true, "Restarting": false, "ExitCode": 0},
                       "RestartCount": 1});
        let why = unwell(&c, Some(3)).unwrap();
        assert!(
            why.contains("restarting") && why.contains("exit code 3"),
            "{why}"
        );
        // Without the engine's word, inspect's figure.
        assert!(unwell(&c, None).unwrap().contains("exit code 0"));
        // Restarting right now.
        let c = json!({"State": {"Running": true, "Restarting": true, "ExitCode": 3},
                       "RestartCount": 0});
        assert!(unwell(&c, None).unwrap().contains("exit code 3"));
        // Stopped, unhealthy, well.
        let c = json!({"State": {"Running": false, "ExitCode": 137, "Error": ""}});
        assert_eq!(
            unwell(&c, None).unwrap(),
            "the new container stopped (exit code 137)"
        );
        let c = json!({"State": {"Running": true, "Health": {"Status": "unhealthy"}}});
        assert!(unwell(&c, None).unwrap().contains("healthcheck"));
        let c = json!({"State": {"Running": true, "Health": {"Status": "healthy"}},
                       "RestartCount": 0});
        assert_eq!(unwell(&c, None), None);
    }
}
