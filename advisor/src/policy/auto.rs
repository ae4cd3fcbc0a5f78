//! `advisor.mode = "apply"`: which recommendation, if any, the daemon applies by itself now.
//! A pure function of the recommendations, the policy's memory and the history of changes;
//! the daemon gathers those and carries the pick out as any other change.

use crate::api::{
    Action, ApplyRecord, ApplyState, Basis, Decision, ModeKind, Recommendation, Trigger,
};

use super::Memory;

/// What "confident" and "not too often" mean (netmoded's `[advisor]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoConfig {
    /// At most this many changes by the advisor within any hour (failed ones count too).
    pub max_changes_per_hour: u32,
    /// The policy's `min_probability` (a switch is applied only once decided: the
    /// probability that it pays at least this), for the reason a switch waits.
    pub min_probability: f64,
    /// A switch must have been recommended, unchanged, for this long (ms).
    pub apply_after_ms: u64,
    /// The policy's cooldown: no change within it of the container's last mode change, and
    /// no second try within it of a change by the advisor that was rolled back.
    pub cooldown_ms: u64,
}

/// One container as the daemon sees it when choosing.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub recommendation: &'a Recommendation,
    /// Managed by Docker Compose, and `apply.compose` is off.
    pub compose_managed: bool,
    /// A probe of it is queued or running: its evidence is about to change.
    pub probing: bool,
}

pub struct AutoInput<'a> {
    pub now_ms: u64,
    pub candidates: &'a [Candidate<'a>],
    pub memory: &'a Memory,
    /// The changes made so far (newest first or in any order).
    pub history: &'a [ApplyRecord],
    pub config: &'a AutoConfig,
}

/// The change to make now.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub container: String,
    pub mode: ModeKind,
    pub expected_gain: f64,
    pub confidence: f64,
}

/// The pick, and why each switch recommended but not picked waits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub pick: Option<Pick>,
    pub waiting: Vec<(String, String)>,
}

const HOUR_MS: u64 = 3_600_000;

/// Changes the advisor started within the last hour.
pub fn changes_last_hour(history: &[ApplyRecord], now_ms: u64) -> usize {
    history
        .iter()
        .filter(|r| r.trigger == Trigger::Advisor)
        .filter(|r| !matches!(r.state, ApplyState::DryRun | ApplyState::Refused))
        .filter(|r| {
            let t = r.started_at_ms.unwrap_or(r.queued_at_ms);
            now_ms.saturating_sub(t) < HOUR_MS
        })
        .count()
}

/// Why `c` is not to be applied now, or `None` when it may be.
fn why_not(c: &Candidate, input: &AutoInput) -> Option<String> {
    let r = c.recommendation;
    let cfg = input.config;
    if r.action != Action::Switch {
        return Some("no switch is recommended".into());
    }
    if r.basis != Basis::Measured {
        return Some(match r.basis {
            Basis::Pinned => "pinned by its netmode.policy label: pins are applied by hand".into(),
            Basis::Excluded => "netmode leaves it alone".into(),
            _ => "the recommendation rests on the study's prior alone, not on measurements".into(),
        });
    }
    if let Some(b) = r.blockers.first() {
        return Some(format!("blocked: {}", b.message));
    }
    if !r.applicable {
        return Some(format!("not applicable: {}", r.reason));
    }
    if r.held_until_ms.is_some() {
        return Some("held by the cooldown".into());
    }
    if r.decision != Decision::Switch {
        return Some(format!(
            "not decided yet: P = {:.2} that it pays, below advisor.min_probability {:.2}{}",
            r.p_switch_pays.unwrap_or(0.0),
            cfg.min_probability,
            match r.rounds_to_decide {
                Some(k) => format!(
                    " (about {k} more probe round{} expected to decide)",
                    if k == 1 { "" } else { "s" }
                ),
                None => String::new(),
            }
        ));
    }
    if c.compose_managed {
        return Some(
            "managed by Docker Compose (apply.compose = false): `advisor apply` writes an \
             override file for it instead"
                .into(),
        );
    }
    if c.probing {
        return Some("a probe of it is pending; its evidence is about to change".into());
    }
    let m = input.memory.containers.get(c.name);
    let since = m
        .filter(|m| m.recommended == Some((r.mode, r.action)))
        .map(|m| m.recommended_since_ms);
    match since {
        Some(t) if input.now_ms.saturating_sub(t) >= cfg.apply_after_ms => {}
        _ => return Some("recommended too recently (advisor.apply_after)".into()),
    }
    if let Some(m) = m
        && m.mode_since_ms > 0
        && input.now_ms.saturating_sub(m.mode_since_ms) < cfg.cooldown_ms
    {
        return Some("its mode changed within the cooldown".into());
    }
    let failed_recently = input.history.iter().any(|h| {
        h.container == c.name
            && h.trigger == Trigger::Advisor
            && matches!(
                h.state,
                ApplyState::RolledBack | ApplyState::Refused | ApplyState::Failed
            )
            && input
                .now_ms
                .saturating_sub(h.finished_at_ms.unwrap_or(h.queued_at_ms))
                < cfg.cooldown_ms
    });
    if failed_recently {
        return Some(
            "a change of it by the advisor was rolled back or refused within the cooldown".into(),
        );
    }
    None
}

/// At most one change: the applicable, decided, settled switch with the largest expected
/// gain times the probability that it pays; none while the hourly budget is spent.
pub fn choose(input: &AutoInput) -> Choice {
    let mut choice = Choice::default();
    let spent = changes_last_hour(input.history, input.now_ms);
    let budget_left = spent < input.config.max_changes_per_hour as usize;
    let mut best: Option<(f64, &Candidate)> = None;
    for c in input.candidates {
        if c.recommendation.action != Action::Switch {
            continue;
        }
        if let Some(why) = why_not(c, input) {
            choice.waiting.push((c.name.to_string(), why));
            continue;
        }
        if !budget_left {
            choice.waiting.push((
                c.name.to_string(),
                format!(
                    "{spent} change(s) by the advisor within the last hour \
                     (advisor.max_changes_per_hour = {})",
                    input.config.max_changes_per_hour
                ),
            ));
            continue;
        }
        let score = c.recommendation.expected_gain * c.recommendation.confidence;
        if best.is_none_or(|(s, b)| score > s || (score == s && c.name < b.name)) {
            best = Some((score, c));
        }
    }
    choice.pick = best.map(|(_, c)| Pick {
        container: c.name.to_string(),
        mode: c.recommendation.mode,
        expected_gain: c.recommendation.expected_gain,
        confidence: c.recommendation.confidence,
    });
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Blocker;
    use crate::policy::ContainerMemory;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;
    const NOW: u64 = 1_000 * MIN;

    fn config() -> AutoConfig {
        AutoConfig {
            max_changes_per_hour: 2,
            min_probability: 0.95,
            apply_after_ms: 5 * MIN,
            cooldown_ms: 30 * MIN,
        }
    }

    /// A measured switch that pays with probability `p` (decided from 0.95 on).
    fn switch(mode: ModeKind, gain: f64, p: f64) -> Recommendation {
        Recommendation {
            mode,
            action: Action::Switch,
            applicable: true,
            expected_gain: gain,
            confidence: p,
            p_switch_pays: Some(p),
            decision: if p >= 0.95 {
                Decision::Switch
            } else {
                Decision::Undecided
            },
            gain_interval: None,
            rounds_to_decide: (p < 0.95).then_some(2),
            apply_waits: None,
            reason: "measured".into(),
            blockers: vec![],
            warnings: vec![],
            basis: Basis::Measured,
            network_active: true,
            held_until_ms: None,
            evidence: vec![],
        }
    }

    /// Memory in which each recommendation has stood since `since` and the mode since long.
    fn memory(recs: &[(&str, &Recommendation)], since: u64) -> Memory {
        let mut m = Memory::default();
        for (name, r) in recs {
            m.containers.insert(
                name.to_string(),
                ContainerMemory {
                    mode: Some(if r.mode == ModeKind::Host {
                        ModeKind::Bridge
                    } else {
                        ModeKind::Host
                    }),
                    recommended: Some((r.mode, r.action)),
                    recommended_since_ms: since,
                    ..Default::default()
                },
            );
        }
        m
    }

    fn record(container: &str, state: ApplyState, at: u64) -> ApplyRecord {
        ApplyRecord {
            id: format!("a-{at}"),
            container: container.into(),
            container_id: "x".into(),
            new_id: None,
            from: ModeKind::Bridge,
            to: ModeKind::Host,
            trigger: Trigger::Advisor,
            state,
            step: "done".into(),
            diff: vec![],
            dropped: vec![],
            error: None,
            compose_override: None,
            carried_image: None,
            queued_at_ms: at,
            started_at_ms: Some(at),
            finished_at_ms: Some(at + 6_000),
        }
    }

    fn cand<'a>(name: &'a str, r: &'a Recommendation) -> Candidate<'a> {
        Candidate {
            name,
            recommendation: r,
            compose_managed: false,
            probing: false,
        }
    }

    fn choose_with(cands: &[Candidate], memory: &Memory, history: &[ApplyRecord]) -> Choice {
        choose(&AutoInput {
            now_ms: NOW,
            candidates: cands,
            memory,
            history,
            config: &config(),
        })
    }

    #[test]
    fn the_largest_decided_gain_is_applied_one_at_a_time() {
        let a = switch(ModeKind::Host, 0.30, 0.99);
        let b = switch(ModeKind::Host, 0.50, 0.96);
        let c = switch(ModeKind::Bridge, 0.60, 0.9);
        let m = memory(&[("a", &a), ("b", &b), ("c", &c)], NOW - 10 * MIN);
        let ch = choose_with(&[cand("a", &a), cand("b", &b), cand("c", &c)], &m, &[]);
        let p = ch.pick.expect("a pick");
        assert_eq!((p.container.as_str(), p.mode), ("b", ModeKind::Host));
        let why = &ch.waiting.iter().find(|(n, _)| n == "c").unwrap().1;
        assert!(
            why.contains("min_probability") && why.contains("P = 0.90") && why.contains("2 more"),
            "{why}"
        );
    }

    #[test]
    fn nothing_settled_nothing_applied() {
        let a = switch(ModeKind::Host, 0.30, 0.99);
        // Recommended two minutes ago: advisor.apply_after (5 min) has not passed.
        let m = memory(&[("a", &a)], NOW - 2 * MIN);
        let ch = choose_with(&[cand("a", &a)], &m, &[]);
        assert_eq!(ch.pick, None);
        assert!(ch.waiting[0].1.contains("apply_after"), "{:?}", ch.waiting);
        // A memory that remembers another recommendation does not count as settled.
        let mut m = memory(&[("a", &a)], NOW - 10 * MIN);
        m.containers.get_mut("a").unwrap().recommended = Some((ModeKind::Bridge, Action::Keep));
        assert_eq!(choose_with(&[cand("a", &a)], &m, &[]).pick, None);
    }

    #[test]
    fn pins_prior_blocked_held_compose_and_probing_are_never_applied() {
        let mut pinned = switch(ModeKind::Host, 0.30, 1.0);
        pinned.basis = Basis::Pinned;
        let mut prior = switch(ModeKind::Host, 0.30, 0.99);
        prior.basis = Basis::Prior;
        let mut blocked = switch(ModeKind::Host, 0.30, 0.99);
        blocked.applicable = false;
        blocked.blockers.push(Blocker {
            kind: "port_conflict".into(),
            message: "port 80 is taken".into(),
        });
        let mut held = switch(ModeKind::Host, 0.30, 0.99);
        held.held_until_ms = Some(NOW + MIN);
        let compose = switch(ModeKind::Host, 0.30, 0.99);
        let probing = switch(ModeKind::Host, 0.30, 0.99);
        let all = [
            ("pinned", &pinned),
            ("prior", &prior),
            ("blocked", &blocked),
            ("held", &held),
            ("compose", &compose),
            ("probing", &probing),
        ];
        let m = memory(&all, NOW - 10 * MIN);
        let mut cands: Vec<Candidate> = all.iter().map(|(n, r)| cand(n, r)).collect();
        cands[4].compose_managed = true;
        cands[5].probing = true;
        let ch = choose_with(&cands, &m, &[]);
        assert_eq!(ch.pick, None);
        assert_eq!(ch.waiting.len(), 6, "{:?}", ch.waiting);
        for (name, needle) in [
            ("pinned", "pinned"),
            ("prior", "prior"),
            ("blocked", "port 80"),
            ("held", "cooldown"),
            ("compose", "Compose"),
            ("probing", "probe"),
        ] {
            let why = &ch.waiting.iter().find(|(n, _)| n == name).unwrap().1;
            assert!(why.contains(needle), "{name}: {why}");
        }
    }

    #[test]
    fn the_hourly_budget_counts_failed_changes_and_a_rollback_is_not_retried_soon() {
        let a = switch(ModeKind::Host, 0.30, 0.99);
        let b = switch(ModeKind::Host, 0.30, 0.99);
        let m = memory(&[("a", &a), ("b", &b)], NOW - 10 * MIN);
        let cands = [cand("a", &a), cand("b", &b)];
        // Two changes (one rolled back) in the last hour: the budget of 2 is spent.
        let h = [
            record("x", ApplyState::Applied, NOW - 50 * MIN),
            record("y", ApplyState::RolledBack, NOW - 20 * MIN),
        ];
        let ch = choose_with(&cands, &m, &h);
        assert_eq!(ch.pick, None);
        assert!(ch.waiting[0].1.contains("max_changes_per_hour"));
        // Manual changes and dry runs do not spend it; older ones neither.
        let mut manual = record("x", ApplyState::Applied, NOW - 10 * MIN);
        manual.trigger = Trigger::Manual;
        let h = [
            manual,
            record("y", ApplyState::DryRun, NOW - 5 * MIN),
            record("z", ApplyState::Applied, NOW - 61 * MIN),
        ];
        assert!(choose_with(&cands, &m, &h).pick.is_some());
        // The advisor's own rolled-back change of `a` keeps `a` out for the cooldown.
        let h = [record("a", ApplyState::RolledBack, NOW - 10 * MIN)];
        let ch = choose_with(&cands, &m, &h);
        assert_eq!(ch.pick.unwrap().container, "b");
    }

    #[test]
    fn no_change_within_the_cooldown_of_the_last_mode_change() {
        let a = switch(ModeKind::Bridge, 0.30, 0.99);
        let mut m = memory(&[("a", &a)], NOW - 10 * MIN);
        m.containers.get_mut("a").unwrap().mode_since_ms = NOW - 20 * MIN;
        let ch = choose_with(&[cand("a", &a)], &m, &[]);
        assert_eq!(ch.pick, None);
        assert!(ch.waiting[0].1.contains("cooldown"));
        m.containers.get_mut("a").unwrap().mode_since_ms = NOW - 31 * MIN;
        assert!(choose_with(&[cand("a", &a)], &m, &[]).pick.is_some());
    }

    fn arb_rec() -> impl Strategy<Value = Recommendation> {
        (
            prop_oneof![Just(ModeKind::Bridge), Just(ModeKind::Host)],
            prop_oneof![Just(Action::Switch), Just(Action::Keep)],
            any::<bool>(),
            -0.5f64..1.0,
            0.0f64..1.0,
            prop_oneof![
                Just(Basis::Measured),
                Just(Basis::Prior),
                Just(Basis::Pinned),
                Just(Basis::Excluded)
            ],
            proptest::option::of(0u64..2 * NOW),
        )
            .prop_map(|(mode, action, applicable, gain, conf, basis, held)| {
                let mut r = switch(mode, gain, conf);
                r.action = action;
                r.applicable = applicable;
                r.basis = basis;
                r.held_until_ms = held;
                r
            })
    }

    proptest! {
        #[test]
        fn a_pick_is_always_a_decided_applicable_measured_settled_switch(
            recs in proptest::collection::vec(
                (arb_rec(), any::<bool>(), any::<bool>(), 0u64..20 * MIN, 0u64..60 * MIN),
                1..6,
            ),
            spent in 0usize..4,
        ) {
            let names: Vec<String> = (0..recs.len()).map(|i| format!("c{i}")).collect();
            let mut m = Memory::default();
            for (i, (r, _, _, since, mode_age)) in recs.iter().enumerate() {
                m.containers.insert(names[i].clone(), ContainerMemory {
                    recommended: Some((r.mode, r.action)),
                    recommended_since_ms: NOW - since,
                    mode_since_ms: NOW - mode_age,
                    ..Default::default()
                });
            }
            let cands: Vec<Candidate> = recs.iter().enumerate().map(|(i, (r, compose, probing, _, _))| Candidate {
                name: &names[i],
                recommendation: r,
                compose_managed: *compose,
                probing: *probing,
            }).collect();
            let history: Vec<ApplyRecord> = (0..spent)
                .map(|k| record("other", ApplyState::Applied, NOW - (k as u64 + 1) * MIN))
                .collect();
            let cfg = config();
            let ch = choose(&AutoInput { now_ms: NOW, candidates: &cands, memory: &m, history: &history, config: &cfg });
            if let Some(p) = ch.pick {
                prop_assert!(spent < cfg.max_changes_per_hour as usize);
                let i = names.iter().position(|n| *n == p.container).unwrap();
                let (r, compose, probing, since, mode_age) = &recs[i];
                prop_assert_eq!(r.action, Action::Switch);
                prop_assert!(r.applicable);
                prop_assert_eq!(r.basis, Basis::Measured);
                prop_assert!(r.held_until_ms.is_none());
                prop_assert_eq!(r.decision, Decision::Switch);
                prop_assert!(r.p_switch_pays.unwrap_or(0.0) >= cfg.min_probability);
                prop_assert!(!compose && !probing);
                prop_assert!(*since >= cfg.apply_after_ms);
                prop_assert!(*mode_age >= cfg.cooldown_ms);
                prop_assert_eq!(p.mode, r.mode);
                // Nothing eligible scored higher.
                for (j, (o, oc, op, os, oa)) in recs.iter().enumerate() {
                    let eligible = o.action == Action::Switch && o.applicable
                        && o.basis == Basis::Measured && o.held_until_ms.is_none()
                        && o.decision == Decision::Switch && !oc && !op
                        && *os >= cfg.apply_after_ms && *oa >= cfg.cooldown_ms;
                    if eligible && j != i {
                        prop_assert!(o.expected_gain * o.confidence <= r.expected_gain * r.confidence);
                    }
                }
            } else if spent < cfg.max_changes_per_hour as usize {
                // Nothing picked: then nothing was eligible.
                for (o, oc, op, os, oa) in &recs {
                    let eligible = o.action == Action::Switch && o.applicable
                        && o.basis == Basis::Measured && o.held_until_ms.is_none()
                        && o.decision == Decision::Switch && !oc && !op
                        && *os >= cfg.apply_after_ms && *oa >= cfg.cooldown_ms;
                    prop_assert!(!eligible, "{:?} was eligible", o);
                }
            }
        }
    }
}
