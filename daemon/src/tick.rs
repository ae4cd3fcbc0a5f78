//! The daemon's heartbeat: every `daemon.sample_interval`, one live sample (`live`), then one
//! evaluation of the advisor's policy on what is known (`advice`), then, with
//! `advisor.mode = "apply"`, one change considered (`apply::auto`). None calls another; this
//! loop orders them.

use std::sync::Arc;
use std::time::Instant;

use netmode_advisor::api::AdvisorMode;

use crate::advice::Advice;
use crate::apply::auto::Auto;
use crate::live::Sampler;
use crate::state::Shared;
use crate::sys::netlink::Netlink;

/// The tick task: sample, evaluate, beat `heartbeat` (the systemd watchdog is fed while it
/// is recent), wait; forever.
pub async fn run(shared: Arc<Shared>, netlink: Netlink, heartbeat: Arc<crate::rt::Heartbeat>) {
    let mut sampler = match Sampler::new(netlink) {
        Ok(s) => s,
        Err(e) => {
            log::error!("live traffic disabled: cannot read our own network namespace: {e}");
            return;
        }
    };
    let mut advice = Advice::load(&shared);
    let mut auto = Auto::default();
    let mut next = Instant::now();
    loop {
        // Read at each tick: a reload (SIGHUP) may have changed them.
        let config = shared.config();
        let interval = config.daemon.sample_interval;
        heartbeat.beat();
        sampler.sample(&shared).await;
        advice.evaluate(&shared).await;
        if config.advisor.mode == AdvisorMode::Apply {
            auto.consider(&shared, advice.memory()).await;
        }
        next += interval;
        let now = Instant::now();
        if next < now {
            // Fell behind (suspended, overloaded): skip the missed ticks.
            next = now + interval;
        }
        async_io::Timer::at(next).await;
    }
}
