//! The daemon's heartbeat: every `daemon.sample_interval`, one live sample (`live`), then one
//! evaluation of the advisor's policy on what is known (`advice`), then, with
//! `advisor.mode = "apply"`, one change considered (`apply::auto`); between two samples, one
//! more evaluation whenever a probe run is recorded. None calls another; this loop orders them.

use std::sync::Arc;
use std::time::Instant;

use netmode_advisor::api::AdvisorMode;

use crate::advice::Advice;
use crate::apply::Changes;
use crate::apply::auto::Auto;
use crate::live::Sampler;
use crate::probe::queue::ProbeQueue;
use crate::state::Shared;
use crate::sys::netlink::Netlink;

/// What the tick is handed: the state it publishes to, the probe queue the advice reads (and
/// whose activity holds a switch back), and what a change needs.
pub struct Parts {
    pub state: Arc<Shared>,
    pub probes: Arc<ProbeQueue>,
    pub changes: Changes,
}

/// The tick task: sample, evaluate, beat `heartbeat` (the systemd watchdog is fed while it
/// is recent), wait; forever.
pub async fn run(parts: Parts, netlink: Netlink, heartbeat: Arc<crate::rt::Heartbeat>) {
    let Parts {
        state: shared,
        probes,
        changes,
    } = parts;
    let mut sampler = match Sampler::new(netlink) {
        Ok(s) => s,
        Err(e) => {
            log::error!("live traffic disabled: cannot read our own network namespace: {e}");
            return;
        }
    };
    let mut advice = Advice::load(&shared);
    let mut auto = Auto::default();
    let finished = probes.finished();
    let mut next = Instant::now();
    loop {
        // Read at each tick: a reload (SIGHUP) may have changed them.
        let config = shared.config();
        let interval = config.daemon.sample_interval;
        heartbeat.beat();
        sampler.sample(&shared).await;
        advice.evaluate(&shared, &probes).await;
        if config.advisor.mode == AdvisorMode::Apply {
            let p = probes.status();
            let probing = p.running.is_some() || p.queued > 0;
            auto.consider(&changes, advice.memory(), probing).await;
        }
        next += interval;
        let now = Instant::now();
        if next < now {
            // Fell behind (suspended, overloaded): skip the missed ticks.
            next = now + interval;
        }
        // Until the next sample, a probe run that is recorded is evaluated at once (not
        // sampled: the live rates keep their interval), so that `advisor probe` followed by
        // `advisor explain` shows the run's effect.
        while until_next_or_probed(next, &finished).await {
            advice.evaluate(&shared, &probes).await;
        }
    }
}

/// Waits until `at` (false) or a recorded probe run (true), whichever comes first.
async fn until_next_or_probed(at: Instant, finished: &smol::channel::Receiver<()>) -> bool {
    let timer = async {
        async_io::Timer::at(at).await;
        false
    };
    let probed = async {
        if finished.recv().await.is_err() {
            // The queue is gone (never while the daemon runs): wait for the timer alone.
            std::future::pending::<()>().await;
        }
        true
    };
    futures_lite::future::or(timer, probed).await
}
