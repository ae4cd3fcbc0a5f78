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

/// How often `http.textfile_dir` is rewritten (each write is fsync'd: not at every sample).
const TEXTFILE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The tick task: sample, evaluate, wait; forever.
pub async fn run(shared: Arc<Shared>, netlink: Netlink) {
    let mut sampler = match Sampler::new(netlink) {
        Ok(s) => s,
        Err(e) => {
            log::error!("live traffic disabled: cannot read our own network namespace: {e}");
            return;
        }
    };
    let mut advice = Advice::load(&shared);
    let mut auto = Auto::default();
    let mut textfile_at: Option<Instant> = None;
    let mut next = Instant::now();
    loop {
        // Read at each tick: a reload (SIGHUP) may have changed them.
        let config = shared.config();
        let interval = config.daemon.sample_interval;
        sampler.sample(&shared).await;
        advice.evaluate(&shared).await;
        if config.advisor.mode == AdvisorMode::Apply {
            auto.consider(&shared, advice.memory()).await;
        }
        if config.http.textfile_dir.is_some()
            && textfile_at.is_none_or(|t| t.elapsed() >= TEXTFILE_EVERY)
        {
            let s = shared.clone();
            smol::unblock(move || crate::http::metrics::write_textfile(&s)).await;
            textfile_at = Some(Instant::now());
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
