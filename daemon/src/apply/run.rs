//! A mode change as the API asks for it (`POST /v1/apply`, `advisor apply`): checked,
//! planned (a dry run stops there), then carried out by a task of its own, one at a time
//! (the slot is reserved before planning: a second request gets 409 at once); at start,
//! whatever change a stopped daemon left half done, finished or undone; at SIGTERM, the
//! change in progress settled before netmoded exits.

use std::time::Duration;

use netmode_advisor::api::{
    Action, ApplyRecord, ApplyRequest, ApplyState, Container, ModeKind, Trigger,
};

use super::Changes;
use super::book::HISTORY_FILE;
use super::journal::{self, Journal, Step};
use super::txn::{self, Options};
use crate::docker::Engine;
use crate::error::{ApplyError, RequestError};
use crate::rt::now_ms;

/// While this file exists in the state directory, no change is made (an operator or another
/// tool holds it, as balena's update lock: `touch /var/lib/netmode/apply.lock`).
pub const LOCK_FILE: &str = "apply.lock";

pub fn locked(cx: &Changes) -> Option<RequestError> {
    let p = cx.state.state_dir.path().join(LOCK_FILE);
    p.exists().then(|| {
        RequestError::Conflict(format!(
            "changes are locked: {} exists (remove it to allow changes)",
            p.display()
        ))
    })
}

pub async fn engine(cx: &Changes) -> Result<Engine, RequestError> {
    Engine::connect(
        &cx.state.docker_socket(),
        cx.state.config().docker.request_timeout,
    )
    .await
    .map_err(|e| RequestError::Unavailable(format!("cannot reach the Docker engine: {e}")))
}

/// Check and plan a change; a dry run ends here (200), a change is started (202). A
/// Compose-managed container (unless `apply.compose`) gets an override file instead (200).
pub async fn request(
    cx: &Changes,
    req: &ApplyRequest,
) -> Result<(bool, ApplyRecord), RequestError> {
    let c = cx.state.find(&req.container)?;
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
    let engine = engine(cx).await?;
    if c.compose.is_some() && !cx.state.config().apply.compose {
        return compose_override(cx, &engine, &c, target, &why)
            .await
            .map(|r| (true, r));
    }
    let opts = Options {
        carry_writable_layer: req.carry_writable_layer,
    };
    if req.dry_run {
        let mut j = plan(cx, &engine, &c, target, Trigger::Manual, opts).await?;
        j.record.state = ApplyState::DryRun;
        j.record.finished_at_ms = Some(now_ms());
        return Ok((true, j.record));
    }
    start(cx, engine, &c, target, Trigger::Manual, opts)
        .await
        .map(|r| (false, r))
}

async fn plan(
    cx: &Changes,
    engine: &Engine,
    c: &Container,
    target: ModeKind,
    trigger: Trigger,
    opts: Options,
) -> Result<Journal, RequestError> {
    txn::plan(engine, &c.id, target, trigger, cx.book.new_id(), opts)
        .await
        .map_err(|e| match e {
            ApplyError::Refused(m) => RequestError::Unprocessable(m),
            other => RequestError::Unavailable(other.to_string()),
        })
}

/// The one change slot, held from before a change is planned until it is settled; released
/// when dropped (whatever way the holder ends).
pub struct Reservation(Changes);

impl Reservation {
    /// Take the slot for `what`, or say at once who holds it (409).
    pub fn take(cx: &Changes, what: &str) -> Result<Reservation, RequestError> {
        cx.book.reserve(what).map_err(|holder| {
            let running = cx
                .book
                .running()
                .map(|r| format!("{} of {}", r.id, r.container))
                .unwrap_or(holder.0);
            RequestError::Conflict(format!(
                "a change is in progress ({running}); one at a time"
            ))
        })?;
        Ok(Reservation(cx.clone()))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.book.release();
    }
}

/// Write the Compose override for `c` (nothing is changed) and record that in the history.
async fn compose_override(
    cx: &Changes,
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
    let o = super::compose::write_override(cx.state.state_dir.path(), &inspect, target, why)?;
    log::info!(
        "apply: {} belongs to a Compose project; wrote {} instead of recreating it",
        c.name,
        o.file
    );
    let now = now_ms();
    let record = ApplyRecord {
        id: cx.book.new_id(),
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
        carried_image: None,
        queued_at_ms: now,
        started_at_ms: None,
        finished_at_ms: Some(now),
    };
    remember(cx, record.clone());
    Ok(record)
}

/// Plan a change of `c` to `target` and start carrying it out in a task of its own (one at a
/// time); the record as planned.
pub async fn start(
    cx: &Changes,
    engine: Engine,
    c: &Container,
    target: ModeKind,
    trigger: Trigger,
    opts: Options,
) -> Result<ApplyRecord, RequestError> {
    if let Some(e) = locked(cx) {
        return Err(e);
    }
    if cx.book.stopping().load(std::sync::atomic::Ordering::SeqCst) {
        return Err(RequestError::Unavailable("netmoded is stopping".into()));
    }
    let reservation = Reservation::take(cx, &c.name)?;
    // A journal no change of this netmoded holds: one it could not read at start (from a
    // newer version); changing anything now would overwrite it.
    if cx.state.state_dir.path().join(journal::FILE).exists() {
        return Err(RequestError::Conflict(format!(
            "an interrupted change is not settled: {} is still there (see netmoded's log)",
            cx.state.state_dir.path().join(journal::FILE).display()
        )));
    }
    let mut j = match plan(cx, &engine, c, target, trigger, opts).await {
        Ok(j) => j,
        Err(e) => {
            if trigger == Trigger::Advisor {
                // Recorded, so the advisor waits its cooldown instead of asking again at
                // every evaluation.
                remember(cx, refused(c, target, trigger, &e, cx.book.new_id()));
            }
            return Err(e);
        }
    };
    j.record.state = ApplyState::Running;
    j.record.started_at_ms = Some(now_ms());
    cx.book.set_running(Some(j.record.clone()));
    let record = j.record.clone();
    let cx = cx.clone();
    crate::rt::spawn(async move {
        let _reserved = reservation;
        let _one = cx.book.lock.lock().await;
        // Taken while this change waited its turn: nothing was done; say so.
        if let Some(e) = locked(&cx) {
            j.record.state = ApplyState::Refused;
            j.record.error = Some(e.to_string());
            j.record.finished_at_ms = Some(now_ms());
            close(&cx, j);
            return;
        }
        carry_out(&cx, engine, j).await;
    })
    .detach();
    Ok(record)
}

/// A change refused at its plan, as a record of the history.
fn refused(
    c: &Container,
    target: ModeKind,
    trigger: Trigger,
    e: &RequestError,
    id: String,
) -> ApplyRecord {
    let now = now_ms();
    ApplyRecord {
        id,
        container: c.name.clone(),
        container_id: c.id.clone(),
        new_id: None,
        from: c.mode_kind,
        to: target,
        trigger,
        state: ApplyState::Refused,
        step: Step::Plan.as_str().into(),
        diff: Vec::new(),
        dropped: Vec::new(),
        error: Some(e.to_string()),
        compose_override: None,
        carried_image: None,
        queued_at_ms: now,
        started_at_ms: None,
        finished_at_ms: Some(now),
    }
}

/// Execute; on failure, settle the change (roll back, or finish once verified) and record
/// the outcome.
async fn carry_out(cx: &Changes, engine: Engine, mut j: Journal) {
    let cfg = cx.state.config().apply.clone();
    let stopping = cx.book.stopping();
    match txn::execute(&engine, &cx.state.state_dir, &cfg, &mut j, stopping).await {
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
            cx.book.set_running(Some(j.record.clone()));
            settle(cx, &mut j).await;
        }
    }
    close(cx, j);
}

/// Bring an interrupted change to an end: finished if the new container had passed
/// verification (only the old one's removal was left), else rolled back. Retried until the
/// engine lets it; the journal stays on disk meanwhile, so a restart resumes it.
async fn settle(cx: &Changes, j: &mut Journal) {
    let finishing = j.step >= Step::RemoveOld;
    let mut wait = Duration::from_secs(1);
    loop {
        let done = match Engine::connect(
            &cx.state.docker_socket(),
            cx.state.config().docker.request_timeout,
        )
        .await
        {
            Ok(engine) if finishing => txn::finish(&engine, &cx.state.state_dir, j).await,
            Ok(engine) => txn::rollback(&engine, j).await,
            Err(e) => Err(ApplyError::docker("connect to the engine")(e)),
        };
        match done {
            Err(ApplyError::Unsettled(why)) => {
                log::error!("apply {}: cannot be settled: {why}", j.record.id);
                j.record.state = ApplyState::Failed;
                j.record.error = Some(match j.record.error.take() {
                    Some(e) => format!("{e}; then: {why}"),
                    None => why,
                });
                j.record.finished_at_ms = Some(now_ms());
                return;
            }
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
fn remember(cx: &Changes, record: ApplyRecord) {
    let bytes = cx.book.finish(record, cx.state.config().apply.history);
    if let Err(e) = cx.state.state_dir.write_atomic(HISTORY_FILE, &bytes) {
        log::warn!("cannot save the apply history: {e}");
    }
}

/// A change has ended: its record into the history, then the journal closed.
fn close(cx: &Changes, j: Journal) {
    remember(cx, j.record);
    if let Err(e) = journal::close(&cx.state.state_dir) {
        log::error!("cannot close the apply journal: {e}");
    }
}

/// At start: the history, and the change a stopped daemon left, finished (it had passed
/// verification and the watch) or rolled back. The slot is reserved before this returns (so
/// no request slips in before recovery), and held until recovery is done.
pub fn recover(cx: Changes) -> impl std::future::Future<Output = ()> {
    let reservation = Reservation::take(&cx, "recovery at start");
    async move {
        let _reserved = reservation;
        recover_now(cx).await
    }
}

/// At SIGTERM: let the change in progress (if any) stop at its next step and be settled,
/// waiting at most `limit` (within systemd's TimeoutStopSec); a change still unsettled then
/// keeps its journal for the next start.
pub async fn shutdown(cx: &Changes, limit: Duration) {
    cx.book.stop();
    if !cx.book.busy() {
        return;
    }
    log::info!("a mode change is in progress: settling it before stopping");
    let start = std::time::Instant::now();
    while cx.book.busy() {
        if start.elapsed() > limit {
            log::error!(
                "the mode change in progress was not settled within {limit:?}; its journal \
                 stays and the next start settles it"
            );
            return;
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
    }
}

async fn recover_now(cx: Changes) {
    let _one = cx.book.lock.lock().await;
    match cx.state.state_dir.read_lines(HISTORY_FILE) {
        Ok(h) => cx.book.load_history(h),
        Err(e) => log::warn!("apply history: {e}"),
    }
    let mut j = match journal::load(&cx.state.state_dir) {
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
    cx.book.set_running(Some(j.record.clone()));
    settle(&cx, &mut j).await;
    log::info!("apply {}: recovered ({:?})", j.record.id, j.record.state);
    close(&cx, j);
}
