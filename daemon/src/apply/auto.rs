//! `advisor.mode = "apply"`: after each evaluation, the advisor's pick (if any) is carried out
//! as any other change (`run::start`, trigger `advisor`). Which one, and why the others wait,
//! is decided by the pure `netmode_advisor::policy::auto::choose`; this gathers its inputs.

use std::collections::BTreeMap;

use netmode_advisor::api::Trigger;
use netmode_advisor::policy::Memory;
use netmode_advisor::policy::auto::{self, AutoInput, Candidate};

use super::Changes;
use super::run;
use crate::rt::now_ms;

/// What was last logged about each waiting switch, so each reason is logged once.
#[derive(Default)]
pub struct Auto {
    logged: BTreeMap<String, String>,
}

impl Auto {
    /// Consider one change now.
    /// `probing`: a probe or sweep is queued or running (it changes the evidence: wait for it).
    pub async fn consider(&mut self, cx: &Changes, memory: &Memory, probing: bool) {
        if cx.book.busy() || run::locked(cx).is_some() {
            let under_way: BTreeMap<String, String> = cx
                .state
                .containers()
                .into_iter()
                .filter(|c| {
                    c.recommendation
                        .as_ref()
                        .is_some_and(|r| r.action == netmode_advisor::api::Action::Switch)
                })
                .map(|c| {
                    (
                        c.name,
                        "a mode change is under way; one at a time".to_string(),
                    )
                })
                .collect();
            cx.state.set_apply_waits(&under_way);
            return;
        }
        // Each container with its latest recommendation and Compose labels.
        let containers = cx.state.containers();
        let compose_allowed = cx.state.config().apply.compose;
        let candidates: Vec<Candidate> = containers
            .iter()
            .filter_map(|c| {
                Some(Candidate {
                    name: &c.name,
                    recommendation: c.recommendation.as_ref()?,
                    compose_managed: !compose_allowed && c.compose.is_some(),
                    probing,
                })
            })
            .collect();
        let history = cx.book.list().applies;
        let cfg = cx.state.config().advisor.auto();
        let choice = auto::choose(&AutoInput {
            now_ms: now_ms(),
            candidates: &candidates,
            memory,
            history: &history,
            config: &cfg,
        });
        let waiting: BTreeMap<String, String> = choice.waiting.into_iter().collect();
        for (name, why) in &waiting {
            if self.logged.get(name) != Some(why) {
                log::info!("advisor: the switch recommended for {name} waits: {why}");
            }
        }
        cx.state.set_apply_waits(&waiting);
        self.logged = waiting;
        let Some(pick) = choice.pick else {
            return;
        };
        let result = async {
            let c = cx.state.find(&pick.container)?;
            let engine = run::engine(cx).await?;
            run::start(
                cx,
                engine,
                &c,
                pick.mode,
                Trigger::Advisor,
                super::txn::Options::default(),
            )
            .await
        }
        .await;
        match result {
            Ok(r) => log::info!(
                "advisor: applying {} ({}): {} to {} mode, expected {:+.0} %, P = {:.2} that it pays",
                r.id,
                pick.container,
                r.from.as_str(),
                pick.mode.as_str(),
                pick.expected_gain * 100.0,
                pick.confidence
            ),
            Err(e) => log::warn!(
                "advisor: cannot apply {} mode to {}: {e}",
                pick.mode.as_str(),
                pick.container
            ),
        }
    }
}
