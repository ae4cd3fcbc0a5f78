//! systemd integration: `Type=notify` readiness, `STATUS=` lines, and watchdog pings, sent
//! only while the sampling loop's heartbeat is recent: a sampling loop that stops turning (or
//! an event loop that stops) gets the daemon restarted. Without `$NOTIFY_SOCKET` every call is
//! a no-op.

use std::sync::Arc;
use std::time::Duration;

use netmode_advisor::api::DockerState;
use sd_notify::NotifyState;

use crate::probe::queue::ProbeQueue;
use crate::state::Shared;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify: {e}");
    }
}

fn status_line(shared: &Shared, probes: &ProbeQueue) -> String {
    let d = shared.docker();
    let docker = match d.state {
        DockerState::Connected => {
            format!("docker connected, {} containers", shared.inventory().len())
        }
        DockerState::Connecting => "connecting to docker".to_string(),
        DockerState::Unavailable => format!("docker unavailable: {}", d.error.unwrap_or_default()),
    };
    let p = probes.status();
    let probing = match (&p.running, &p.error) {
        (Some(id), _) => format!("; probing ({id})"),
        (None, Some(e)) => format!("; probing unavailable: {e}"),
        _ => String::new(),
    };
    let active = shared.recommendations().map(|r| r.network_active.len());
    let active = active
        .map(|n| format!("; {n} network-active"))
        .unwrap_or_default();
    format!("{docker}{active}{probing}")
}

/// How old the sampling loop's heartbeat may be before the watchdog is no longer fed: two
/// sample intervals and the longest a Docker call may take (a tick waits on the engine).
fn stale_after(shared: &Shared) -> Duration {
    let c = shared.config();
    c.daemon.sample_interval * 2 + c.docker.request_timeout
}

/// Ready once the endpoint listens (the caller has bound it) and Docker is connected or known
/// absent; then status lines for the daemon's life, and watchdog pings while `heartbeat` (the
/// sampling loop's) is recent.
pub async fn supervise(
    shared: Arc<Shared>,
    probes: Arc<ProbeQueue>,
    heartbeat: Arc<crate::rt::Heartbeat>,
) {
    while shared.docker().state == DockerState::Connecting {
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
    let status = status_line(&shared, &probes);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    log::debug!("ready: {status}");
    let watchdog = sd_notify::watchdog_enabled();
    // Ping at a third of the watchdog period; without a watchdog, refresh the status now
    // and then.
    let every = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 3).max(Duration::from_millis(10))
    });
    let mut last = status;
    let mut stalled = false;
    loop {
        async_io::Timer::after(every).await;
        let age = heartbeat.age();
        let alive = age.is_none_or(|a| a < stale_after(&shared));
        if !alive && !stalled {
            log::error!(
                "the sampling loop has not turned for {:?}: no more watchdog pings",
                age.unwrap_or_default()
            );
        }
        stalled = !alive;
        let status = if alive {
            status_line(&shared, &probes)
        } else {
            format!(
                "sampling stalled for {:.0?}; {}",
                age.unwrap_or_default(),
                status_line(&shared, &probes)
            )
        };
        let mut states = Vec::with_capacity(2);
        if watchdog.is_some() && alive {
            states.push(NotifyState::Watchdog);
        }
        if status != last {
            states.push(NotifyState::Status(&status));
        }
        if !states.is_empty() {
            notify(&states);
        }
        last = status;
    }
}

/// `systemctl reload`: tell systemd a reload is in progress (with the monotonic time it
/// asks for), then that it is done.
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

pub fn reloaded(shared: &Shared, probes: &ProbeQueue) {
    let status = status_line(shared, probes);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tell systemd the daemon is stopping (before cleanup, which may take a few seconds).
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: removing probe containers"),
    ]);
}
