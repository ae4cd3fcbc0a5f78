//! systemd integration: `Type=notify` readiness, `STATUS=` lines, and watchdog pings sent from
//! the event loop itself, so a loop that stops turning gets the daemon restarted. Without
//! `$NOTIFY_SOCKET` every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use netmode_advisor::api::DockerState;
use sd_notify::NotifyState;

use crate::state::Shared;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify: {e}");
    }
}

fn status_line(shared: &Shared) -> String {
    let d = shared.docker();
    let docker = match d.state {
        DockerState::Connected => {
            format!("docker connected, {} containers", shared.inventory().len())
        }
        DockerState::Connecting => "connecting to docker".to_string(),
        DockerState::Unavailable => format!("docker unavailable: {}", d.error.unwrap_or_default()),
    };
    let p = shared.probes.status();
    let probing = match (&p.running, &p.error) {
        (Some(id), _) => format!("; probing ({id})"),
        (None, Some(e)) => format!("; probing unavailable: {e}"),
        _ => String::new(),
    };
    let active = shared.status().advisor.map(|a| a.network_active.len());
    let active = active
        .map(|n| format!("; {n} network-active"))
        .unwrap_or_default();
    format!("{docker}{active}{probing}")
}

/// Ready once the endpoint listens (the caller has bound it) and Docker is connected or known
/// absent; then status and watchdog pings for the daemon's life.
pub async fn supervise(shared: Arc<Shared>) {
    while shared.docker().state == DockerState::Connecting {
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
    let status = status_line(&shared);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    log::debug!("ready: {status}");
    let watchdog = sd_notify::watchdog_enabled();
    // Ping at a third of the watchdog period; without a watchdog, refresh the status now
    // and then.
    let every = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 3).max(Duration::from_millis(10))
    });
    let mut last = status;
    loop {
        async_io::Timer::after(every).await;
        let status = status_line(&shared);
        let mut states = Vec::with_capacity(2);
        if watchdog.is_some() {
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

pub fn reloaded(shared: &Shared) {
    let status = status_line(shared);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tell systemd the daemon is stopping (before cleanup, which may take a few seconds).
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: removing probe containers"),
    ]);
}
