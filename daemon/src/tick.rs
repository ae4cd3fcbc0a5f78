//! The daemon's heartbeat: every `daemon.sample_interval`, one live sample (`live`), then one
//! evaluation of the advisor's policy on what is known (`advice`). Neither calls the other;
//! this loop orders them.

use std::sync::Arc;
use std::time::Instant;

use crate::advice::Advice;
use crate::live::Sampler;
use crate::state::Shared;
use crate::sys::netlink::Netlink;

/// The tick task: sample, evaluate, wait; forever.
pub async fn run(shared: Arc<Shared>, netlink: Netlink) {
    let interval = shared.config.daemon.sample_interval;
    let mut sampler = match Sampler::new(netlink) {
        Ok(s) => s,
        Err(e) => {
            log::error!("live traffic disabled: cannot read our own network namespace: {e}");
            return;
        }
    };
    let mut advice = Advice::load(&shared);
    let mut next = Instant::now();
    loop {
        sampler.sample(&shared).await;
        advice.evaluate(&shared).await;
        next += interval;
        let now = Instant::now();
        if next < now {
            // Fell behind (suspended, overloaded): skip the missed ticks.
            next = now + interval;
        }
        async_io::Timer::at(next).await;
    }
}
