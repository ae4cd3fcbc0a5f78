//! A mode change as the API asks for it (`POST /v1/apply`, `advisor apply`): checked,
//! planned (a dry run stops there), then carried out by a task of its own, one at a time;
//! and at start, whatever change a stopped daemon left half done, finished or undone.

use std::sync::Arc;
use std::time::Duration;

use netmode_advisor::api::{
    Action, ApplyRecord, ApplyRequest, ApplyState, Container, ModeKind, Trigger,
};

use super::book::HISTORY_FILE;
use super::journal::{self, Journal, Step};
use super::txn;
use crate::docker::Engine;
use crate::error::{ApplyError, RequestError};
use crate::rt::now_ms;
use crate::state::Shared;

/// While this file exists in the state directory, no change is made (an operator or another
/// tool holds it, as balena's update lock: `touch /var/lib/netmode/apply.lock`).
pub const LOCK_FILE: &str = "apply.lock";

pub fn locked(shared: &Shared) -> Option<RequestError> {
    let p = shared.state_dir.path().join(LOCK_FILE);
    p.exists().then(|| {
        RequestError::Conflict(format!(
            "changes are locked: {} exists (remove it to allow changes)",
            p.display()
        ))
    })
}

pub async fn engine(shared: &Shared) -> Result<Engine, RequestError> {
    Engine::connect(
        &shared.docker_socket,
        shared.config().docker.request_timeout,
    )
    .await
    .map(|(e, _)| e)
    .map_err(|e| RequestError::Unavailable(format!("cannot reach the Docker engine: {e}")))
}

/// Check and plan a change; a dry run ends here (200), a change is started (202). A
/// Compose-managed container (unless `apply.compose`) gets an override file instead (200).
pub async fn request(
    shared: &Arc<Shared>,
    req: &ApplyRequest,
) -> Result<(bool, ApplyRecord), RequestError> {
    let c = shared.container(&req.container)?;
    crate::mode::manageable(&c).map_err(|why| {
        RequestError::Unprocessable(format!("{} cannot be switched: {why}", c.name))
    })?;
    let (target, why) = match req.mode {
        Some(m @ (ModeKind::Bridge | ModeKind::Host)) => (m, "asked by advisor apply".to_string()),
        Some(other) => {
            return Err(RequestError::Invalid(format!(
                "mode {:?}: bridge or host",
                other.as_str()
            )));
        }
        None => {
            let rec = c.recommendation.as_ref().ok_or_else(|| {
                RequestError::Conflict(format!(
                    "{} has no recommendation yet; give \"mode\"",
                    c.name
                ))
            })?;
            if rec.action != Action::Switch || !rec.applicable {
                return Err(RequestError::Conflict(format!(
                    "the recommendation for {} is not an applicable switch: {}",
                    c.name, rec.reason
                )));
            }
            (rec.mode, rec.reason.clone())
        }
    };
    if target == c.mode_kind {
        return Err(RequestError::Conflict(format!(
            "{} already runs in {} mode",
            c.name,
            target.as_str()
        )));
    }
    let engine = engine(shared).await?;
    if c.compose.is_some() && !shared.config().apply.compose {
        return compose_override(shared, &engine, &c, target, &why)
            .await
            .map(|r| (true, r));
    }
    if req.dry_run {
        let mut j = plan(shared, &engine, &c, target, Trigger::Manual).await?;
        j.record.state = ApplyState::DryRun;
        j.record.finished_at_ms = Some(now_ms());
        return Ok((true, j.record));
    }
    start(shared, engine, &c, target, Trigger::Manual)
        .await
        .map(|r| (false, r))
}

async fn plan(
    shared: &Shared,
    engine: &Engine,
    c: &Container,
    target: ModeKind,
    trigger: Trigger,
) -> Result<Journal, RequestError> {
    txn::plan(engine, &c.id, target, trigger, shared.applies.new_id())
        .await
        .map_err(|e| match e {
            ApplyError::Refused(m) => RequestError::Unprocessable(m),
            other => RequestError::Unavailable(other.to_string()),
        })
}

/// Write the Compose override for `c` (nothing is changed) and record that in the history.
async fn compose_override(
    shared: &Shared,
    engine: &Engine,
    c: &Container,
    target: ModeKind,
    why: &str,
) -> Result<ApplyRecord, RequestError> {
    let inspect = engine
        .inspect_json(&c.id)
        .await
        .map_err(|e| RequestError::Unavailable(format!("cannot inspect {}: {e}", c.name)))?
        .ok_or_else(|| RequestError::NotFound(format!("{} is gone", c.name)))?;
    let o = super::compose::write_override(shared.state_dir.path(), &inspect, target, why)?;
    log::info!(
        "apply: {} belongs to a Compose project; wrote {} instead of recreating it",
        c.name,
        o.file
    );
    let now = now_ms();
    let record = ApplyRecord {
        id: shared.applies.new_id(),
        container: c.name.clone(),
        container_id: c.id.clone(),
        new_id: None,
        from: c.mode_kind,
        to: target,
        trigger: Trigger::Manual,
        state: ApplyState::ComposeOverride,
        step: "compose_override".into(),
        diff: Vec::new(),
        dropped: Vec::new(),
        error: None,
        compose_override: Some(o),
        queued_at_ms: now,
        started_at_ms: None,
        finished_at_ms: Some(now),
    };
    remember(shared, record.clone());
    Ok(record)
}

/// Plan a change of `c` to `target` and start carrying it out in a task of its own (one at a
/// time); the record as planned.
pub async fn start(
    shared: &Arc<Shared>,
    engine: Engine,
    c: &Container,
    target: ModeKind,
    trigger: Trigger,
) -> Result<ApplyRecord, RequestError> {
    if let Some(e) = locked(shared) {
        return Err(e);
    }
    if let Some(r) = shared.applies.running() {
        return Err(RequestError::Conflict(format!(
            "a change is in progress ({} of {}); one at a time",
            r.id, r.container
        )));
    }
    let mut j = plan(shared, &engine, c, target, trigger).await?;
    j.record.state = ApplyState::Running;
    j.record.started_at_ms = Some(now_ms());
    shared.applies.set_running(Some(j.record.clone()));
    let record = j.record.clone();
    let shared = shared.clone();
    crate::rt::spawn(async move {
        let _one = shared.applies.lock.lock().await;
        // Taken while this change waited its turn: nothing was done; say so.
        if let Some(e) = locked(&shared) {
            j.record.state = ApplyState::Refused;
            j.record.error = Some(e.to_string());
            j.record.finished_at_ms = Some(now_ms());
            close(&shared, j);
            return;
        }
        carry_out(&shared, engine, j).await;
    })
    .detach();
    Ok(record)
}

/// Execute; on failure, settle the change (roll back, or finish once verified) and record
/// the outcome.
async fn carry_out(shared: &Shared, engine: Engine, mut j: Journal) {
    let cfg = shared.config().apply.clone();
    match txn::execute(&engine, &shared.state_dir, &cfg, &mut j).await {
        Ok(()) => log::info!(
            "apply {}: {} now runs in {} mode",
            j.record.id,
            j.name,
            j.record.to.as_str()
        ),
        Err(e) => {
            log::warn!(
                "apply {} ({}) failed at {}: {e}",
                j.record.id,
                j.name,
                j.step.as_str()
            );
            j.record.error = Some(format!("{}: {e}", j.step.as_str()));
            shared.applies.set_running(Some(j.record.clone()));
            settle(shared, &mut j).await;
        }
    }
    close(shared, j);
}

/// Bring an interrupted change to an end: finished if the new container had passed
/// verification (only the old one's removal was left), else rolled back. Retried until the
/// engine lets it; the journal stays on disk meanwhile, so a restart resumes it.
async fn settle(shared: &Shared, j: &mut Journal) {
    let finishing = j.step >= Step::RemoveOld;
    let mut wait = Duration::from_secs(1);
    loop {
        let done = match Engine::connect(
            &shared.docker_socket,
            shared.config().docker.request_timeout,
        )
        .await
        {
            Ok((engine, _)) if finishing => txn::finish(&engine, &shared.state_dir, j).await,
            Ok((engine, _)) => txn::rollback(&engine, j).await,
            Err(e) => Err(ApplyError::from(e)),
        };
        match done {
            Ok(()) => {
                log::info!(
                    "apply {}: {}",
                    j.record.id,
                    if finishing {
                        "finished".to_string()
                    } else {
                        format!("rolled back; {} runs as before", j.name)
                    }
                );
                return;
            }
            Err(e) => {
                log::error!(
                    "apply {}: not settled yet ({e}); retrying in {wait:?}",
                    j.record.id
                );
                async_io::Timer::after(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Into the history, in memory and in `<state_dir>/applies.jsonl`.
fn remember(shared: &Shared, record: ApplyRecord) {
    let bytes = shared.applies.finish(record, shared.config().apply.history);
    if let Err(e) = shared.state_dir.write_atomic(HISTORY_FILE, &bytes) {
        log::warn!("cannot save the apply history: {e}");
    }
}

/// A change has ended: its record into the history, then the journal closed.
fn close(shared: &Shared, j: Journal) {
    remember(shared, j.record);
    if let Err(e) = journal::close(&shared.state_dir) {
        log::error!("cannot close the apply journal: {e}");
    }
}

/// At start: the history, and the change a stopped daemon left, finished (it had passed
/// verification) or rolled back. Holds the lock, so no new change starts before.
pub async fn recover(shared: Arc<Shared>) {
    let _one = shared.applies.lock.lock().await;
    match shared.state_dir.read_lines(HISTORY_FILE) {
        Ok(h) => shared.applies.load_history(h),
        Err(e) => log::warn!("apply history: {e}"),
    }
    let mut j = match journal::load(&shared.state_dir) {
        Ok(Some(j)) => j,
        Ok(None) => return,
        Err(e) => {
            log::error!("{e}");
            return;
        }
    };
    log::warn!(
        "apply {} ({} to {} mode) was interrupted at {}: {}",
        j.record.id,
        j.name,
        j.record.to.as_str(),
        j.step.as_str(),
        if j.step >= Step::RemoveOld {
            "finishing it"
        } else {
            "rolling back"
        }
    );
    j.record
        .error
        .get_or_insert_with(|| format!("netmoded stopped during {}", j.step.as_str()));
    shared.applies.set_running(Some(j.record.clone()));
    settle(&shared, &mut j).await;
    log::info!("apply {}: recovered ({:?})", j.record.id, j.record.state);
    close(&shared, j);
}
