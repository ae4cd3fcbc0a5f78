//! The decision: every container evaluated from the prior, the measurements, the
//! constraints and the memory (min gain, hysteresis, cooldown).

use std::collections::BTreeMap;

use super::constraints::{blocker, served_ports};
use super::measure::{
    matching_sweeps, mean_sd, path_cost, probe_round, round_at, sweep_at, weighted_ratios,
};
use super::posterior::{PathShare, Posterior, Round, Transfer};
use super::*;
use crate::api::{Action, Basis, Decision, Evidence};

/// How far below `min_probability` a switch already recommended stays decided.
const HOLD_MARGIN: f64 = 0.10;

/// The extra spread (log units) when the largest N swept stands in for a larger one.
const BEYOND_SD: f64 = 0.1;

/// What more probe rounds are expected to do for an undecided container.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MoreRounds {
    /// About this many more (1 to 8) are expected to decide it.
    About(u32),
    /// More than 8 might.
    Beyond,
    /// None would at this estimate: the transfer's own spread alone keeps it undecided.
    Never,
}

/// How many more rounds like the ones so far would likely decide: the measured posterior's
/// spread (the probe's gain, `p`) shrinking with the square root of the rounds, carried to
/// the application by `transfer` (whose own spread no round removes), until the expected
/// gain is `z` spreads from `edge` (the switch threshold in the switch's direction). Normal
/// approximations throughout.
fn rounds_to_decide(
    p: &Posterior,
    transfer: &Transfer,
    path: Option<PathShare>,
    edge: f64,
    rounds: usize,
    min_probability: f64,
) -> MoreRounds {
    // z of a one-sided normal probability (0.95 -> 1.645).
    let z = normal_quantile(min_probability);
    let sd = (p.quantile(0.9) - p.quantile(0.1)) / (2.0 * 1.2816);
    let x = transfer.beta * p.median();
    // Amdahl's law bends the transfer: spreads of the path's gain scale by its slope.
    let (g, slope) = path.map_or((x, 1.0), |s| (s.carry(x), s.slope(x)));
    let fixed = slope.powi(2) * ((x * transfer.beta_sd).powi(2) + transfer.sd.powi(2));
    let distance = (g - edge).abs();
    if distance < z * fixed.sqrt() {
        return MoreRounds::Never;
    }
    let r = rounds.max(1) as f64;
    (1..=8u32)
        .find(|k| {
            let sd_k = ((slope * transfer.beta * sd).powi(2) * r / (r + *k as f64) + fixed).sqrt();
            distance >= z * sd_k
        })
        .map_or(MoreRounds::Beyond, MoreRounds::About)
}

/// The standard normal quantile of `p` (0.5..1), by the Abramowitz-Stegun rational
/// approximation 26.2.23 (error below 5e-4).
fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(0.5, 1.0 - 1e-9);
    let t = (-2.0 * (1.0 - p).ln()).sqrt();
    t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
        / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
}
fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn mbit(bps: f64) -> String {
    format!("{:.2} Mbit/s", bps / 1e6)
}

fn excluded(c: &Container, reason: String) -> Recommendation {
    Recommendation {
        mode: c.mode_kind,
        action: Action::Keep,
        applicable: false,
        expected_gain: 0.0,
        confidence: 1.0,
        p_switch_pays: None,
        decision: Decision::Keep,
        gain_interval: None,
        rounds_to_decide: None,
        apply_waits: None,
        reason,
        blockers: Vec::new(),
        warnings: Vec::new(),
        basis: Basis::Excluded,
        network_active: false,
        held_until_ms: None,
        evidence: Vec::new(),
    }
}

fn other(m: ModeKind) -> ModeKind {
    match m {
        ModeKind::Host => ModeKind::Bridge,
        _ => ModeKind::Host,
    }
}

/// Evaluate every container; returns the evaluation and the memory to keep.
pub fn evaluate(input: &Input, old: &Memory) -> (Evaluation, Memory) {
    let cfg = input.config;
    let mut memory = remember(input, old);
    let mut containers: Vec<&Container> = input.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));

    let managed = |c: &Container| c.mode_kind.is_manageable();
    let active: Vec<String> = containers
        .iter()
        .filter(|c| managed(c))
        .filter(|c| {
            memory
                .containers
                .get(&c.name)
                .is_some_and(|m| m.is_active(cfg))
        })
        .map(|c| c.name.clone())
        .collect();
    let n_active = active.len() as u32;
    // The study's Pi had four cores; a single-core gateway still has one container alone.
    let prior_crossover = if cfg.prior_crossover > 0 {
        cfg.prior_crossover
    } else {
        input.cpus.max(2)
    };
    // The gateway's crossover is the one for the busiest network-active container's traffic.
    let busiest = containers
        .iter()
        .filter(|c| active.contains(&c.name))
        .max_by(|a, b| {
            let act = |c: &Container| {
                memory
                    .containers
                    .get(&c.name)
                    .map_or(0.0, |m| m.activity_bps)
            };
            act(a).total_cmp(&act(b))
        })
        .map(|c| Profile::of(c))
        .unwrap_or(Profile::unknown(ModeKind::Bridge));
    let sweeps = matching_sweeps(&memory);
    let crossover = if sweeps.is_empty() {
        CrossoverInfo {
            containers: Some(prior_crossover),
            source: "prior".into(),
            direction: None,
            pattern: None,
            protocol: None,
            size: None,
        }
    } else {
        // The swept profile that weighs most for that traffic names it.
        let named = sweeps.last().and_then(|r| {
            r.cells.iter().filter(|c| c.n == 1).max_by(|a, b| {
                cell_weight(&a.cell(), &busiest).total_cmp(&cell_weight(&b.cell(), &busiest))
            })
        });
        CrossoverInfo {
            containers: measured_crossover(&memory, &busiest),
            source: "measured".into(),
            direction: named.map(|c| c.direction),
            pattern: named.map(|c| c.pattern),
            protocol: named.map(|c| c.protocol),
            size: named.map(|c| c.size),
        }
    };

    let mut recs: BTreeMap<String, Recommendation> = BTreeMap::new();
    for c in &containers {
        let rec = match (c.mode_kind, c.policy_label.as_deref()) {
            (kind, _) if !kind.is_manageable() => excluded(
                c,
                format!(
                    "{}.",
                    capitalise(&kind.unmanaged_reason(&c.network_mode).unwrap_or_default())
                ),
            ),
            (_, Some("ignore")) => excluded(
                c,
                "Labelled netmode.policy=ignore: netmode leaves it alone.".into(),
            ),
            (_, Some(pin @ ("bridge" | "host"))) => pinned(c, pin, input, &memory),
            _ => decide(
                c,
                input,
                &memory,
                &sweeps,
                n_active,
                prior_crossover,
                &active,
            ),
        };
        recs.insert(c.name.clone(), rec);
    }

    plan_port_conflicts(&containers, input, &mut recs);

    for (name, r) in recs.iter_mut() {
        // A switch kept alive by hysteresis (its gain between min_gain - hysteresis and
        // min_gain) is still recommended, but never applied: only a pin (the operator's own
        // choice) is applicable whatever its expected gain.
        r.applicable = r.action == Action::Switch
            && r.blockers.is_empty()
            && (r.basis == Basis::Pinned || r.expected_gain >= cfg.min_gain);
        if r.action == Action::Switch && !r.blockers.is_empty() && r.basis != Basis::Pinned {
            r.reason = format!(
                "{} mode is expected to deliver {} more, but the switch is blocked: {}.",
                capitalise(r.mode.as_str()),
                pct(r.expected_gain),
                r.blockers[0].message
            );
        }
        if let Some(cm) = memory.containers.get_mut(name) {
            let now = (r.mode, r.action);
            let decided = r.action == Action::Switch
                && r.basis == Basis::Measured
                && r.decision == Decision::Switch;
            if cm.recommended != Some(now) {
                // Only a switch the measurements decided, recommended or taken back, starts
                // the cooldown: the study's rule standing in before the first probe round
                // (and withdrawn by it) is no flap, nor is a pin.
                let was_decided =
                    cm.switch_decided && cm.recommended.is_some_and(|(_, a)| a == Action::Switch);
                if was_decided || decided {
                    cm.last_flip_ms = input.now_ms;
                }
                cm.recommended = Some(now);
                cm.recommended_since_ms = input.now_ms;
            } else if decided && !cm.switch_decided {
                // The study's rule recommended this switch; the measurements decide it now:
                // advisor.apply_after counts from here.
                cm.recommended_since_ms = input.now_ms;
            }
            cm.switch_decided = decided;
        }
    }
    (
        Evaluation {
            network_active: active,
            crossover,
            recommendations: recs,
        },
        memory,
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn pinned(c: &Container, pin: &str, input: &Input, memory: &Memory) -> Recommendation {
    let target = if pin == "host" {
        ModeKind::Host
    } else {
        ModeKind::Bridge
    };
    let action = if c.mode_kind == target {
        Action::Keep
    } else {
        Action::Switch
    };
    let (blockers, warnings) = if action == Action::Switch {
        constraints(c, target, input)
    } else {
        (Vec::new(), Vec::new())
    };
    let isolation = if target == ModeKind::Host {
        "; host mode gives up network isolation"
    } else {
        ""
    };
    let reason = match action {
        Action::Keep => format!("Pinned to {pin} by label netmode.policy={pin}{isolation}."),
        Action::Switch if blockers.is_empty() => {
            format!(
                "Pinned to {pin} by label netmode.policy={pin}, so it should switch{isolation}."
            )
        }
        Action::Switch => format!(
            "Pinned to {pin} by label netmode.policy={pin}, but the switch is blocked: {}.",
            blockers[0].message
        ),
    };
    Recommendation {
        mode: target,
        action,
        applicable: false,
        expected_gain: 0.0,
        confidence: 1.0,
        p_switch_pays: None,
        decision: match action {
            Action::Switch => Decision::Switch,
            Action::Keep => Decision::Keep,
        },
        gain_interval: None,
        rounds_to_decide: None,
        apply_waits: None,
        reason,
        blockers,
        warnings,
        basis: Basis::Pinned,
        network_active: memory
            .containers
            .get(&c.name)
            .is_some_and(|m| m.is_active(input.config)),
        held_until_ms: None,
        evidence: vec![Evidence {
            step: "label".into(),
            detail: format!("netmode.policy={pin} pins the mode; measurements are not consulted"),
        }],
    }
}

fn decide(
    c: &Container,
    input: &Input,
    memory: &Memory,
    sweeps: &[&SweepRound],
    n_active: u32,
    prior_crossover: u32,
    active: &[String],
) -> Recommendation {
    let cfg = input.config;
    let cm = memory.containers.get(&c.name).cloned().unwrap_or_default();
    let is_active = active.contains(&c.name);
    let mut evidence = vec![Evidence {
        step: "activity".into(),
        detail: format!(
            "{}{} averaged over {:.0} s (threshold {}{}): {}; {} network-active container{} in all",
            mbit(cm.activity_bps),
            if cm.exchange_pps > 0.0 {
                format!(", {:.0} request/response exchanges/s", cm.exchange_pps)
            } else {
                String::new()
            },
            cfg.active_window_s,
            mbit(cfg.active_threshold_bps),
            if cm.exchange_pps > 0.0 {
                format!(", or {:.0} exchanges/s", Live::RR_MIN_PPS)
            } else {
                String::new()
            },
            if is_active {
                "network-active"
            } else {
                "not network-active"
            },
            n_active,
            if n_active == 1 { "" } else { "s" }
        ),
    }];
    if !is_active {
        return Recommendation {
            mode: c.mode_kind,
            action: Action::Keep,
            applicable: false,
            expected_gain: 0.0,
            confidence: 0.5,
            p_switch_pays: None,
            decision: Decision::Keep,
            gain_interval: None,
            rounds_to_decide: None,
            apply_waits: None,
            reason: format!(
                "Not network-active ({} < {}): its mode does not change throughput now.",
                mbit(cm.activity_bps),
                mbit(cfg.active_threshold_bps)
            ),
            blockers: Vec::new(),
            warnings: Vec::new(),
            basis: Basis::Prior,
            network_active: false,
            held_until_ms: None,
            evidence,
        };
    }
    let n = n_active.max(1);

    // The prior.
    let prior = prior_log_ratio(n, prior_crossover);
    evidence.push(Evidence {
        step: "prior".into(),
        detail: format!(
            "the study: bridge +{} for one container, host +{} from the crossover; crossover taken as {} -> {} {} at N = {n}",
            pct(PRIOR_SINGLE_GAIN),
            pct(PRIOR_MULTI_GAIN),
            prior_crossover,
            if prior > 0.0 { "host" } else { "bridge" },
            pct(prior.abs().exp() - 1.0)
        ),
    });

    // The measurements.
    let profile = Profile::of(c);
    // Every run of every round: runs that disagree widen the spread, as rounds do (the
    // precision still grows with rounds only: runs of one round share its conditions).
    let per_round: Vec<Vec<f64>> = cm
        .probe_rounds
        .iter()
        .map(|r| weighted_ratios(&r.cells, &profile))
        .filter(|v| !v.is_empty())
        .collect();
    let probe_values: Vec<f64> = per_round.iter().flatten().copied().collect();
    let probe = (!probe_values.is_empty()).then(|| {
        let (mean, sd) = mean_sd(&probe_values);
        Estimate {
            log_ratio: mean,
            spread: sd,
            rounds: per_round.len(),
        }
    });
    if let Some(p) = &probe {
        let traffic = [
            profile
                .rx_share
                .map(|s| format!("{:.0}% received", s * 100.0)),
            profile.tcp_share.map(|s| format!("{:.0}% TCP", s * 100.0)),
            profile.cpu_s_per_gb.map(|c| format!("{c:.1} CPU s/GB")),
            profile.mean_packet.map(|m| format!("{m:.0} B packets")),
            profile
                .local_share
                .filter(|s| *s > 0.0)
                .map(|s| format!("{:.0}% with containers of the gateway", s * 100.0)),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        // What traffic the cells carried, weighted as they weigh.
        let mut kinds = [("egress", 0.0), ("ingress", 0.0), ("request/response", 0.0)];
        for c in cm.probe_rounds.iter().flat_map(|r| &r.cells) {
            let k = match (c.pattern, c.direction) {
                (Pattern::RequestResponse, _) => 2,
                (Pattern::Stream, Direction::Egress) => 0,
                (Pattern::Stream, Direction::Ingress) => 1,
            };
            kinds[k].1 += cell_weight(c, &profile);
        }
        let total: f64 = kinds
            .iter()
            .map(|k| k.1)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        // What carries weight (request/response cells compare transactions per second, not
        // goodput).
        let weighty: Vec<String> = kinds
            .iter()
            .filter(|k| k.1 / total >= 0.005)
            .map(|k| format!("{} {:.0}%", k.0, 100.0 * k.1 / total))
            .collect();
        let flows = match weighty.len() {
            0 | 1 => format!("{} cells", kinds[0].0),
            _ => format!("cells ({})", weighty.join(", ")),
        };
        let flows = if kinds[0].0 == "request/response" {
            format!("{flows} (transactions per second, not goodput)")
        } else {
            flows
        };
        // Where they went, when some went to a sink on the gateway.
        let (mut local, mut all) = (0.0, 0.0);
        for c in cm.probe_rounds.iter().flat_map(|r| &r.cells) {
            let w = cell_weight(c, &profile);
            all += w;
            if c.path == Path::Local {
                local += w;
            }
        }
        let flows = if local > 0.0 {
            format!(
                "{flows}, {:.0}% on the path between containers of the gateway",
                100.0 * local / all.max(f64::MIN_POSITIVE)
            )
        } else {
            flows
        };
        evidence.push(Evidence {
            step: "probes".into(),
            detail: format!(
                "{} probe round{}{} of this container, {flows} weighted toward its traffic ({}): host/bridge {:+.1}% (spread {:.1}%)",
                p.rounds,
                if p.rounds == 1 { "" } else { "s" },
                if probe_values.len() > p.rounds {
                    format!(" ({} runs)", probe_values.len())
                } else {
                    String::new()
                },
                if traffic.is_empty() { "profile unknown: even weights".to_string() } else { traffic },
                (p.log_ratio.exp() - 1.0) * 100.0,
                p.spread * 100.0
            ),
        });
    }
    let sweep_n = sweep_at(sweeps, n, &profile);
    let sweep_1 = sweep_at(sweeps, 1, &profile);
    if let (Some((e, at)), Some((e1, _))) = (&sweep_n, &sweep_1) {
        evidence.push(Evidence {
            step: "sweep".into(),
            detail: format!(
                "{} sweep round{}, profiles weighted toward its traffic: aggregate host/bridge {:+.1}% at N = 1, {:+.1}% at N = {at}{} (spread {:.1}%)",
                e.rounds,
                if e.rounds == 1 { "" } else { "s" },
                (e1.log_ratio.exp() - 1.0) * 100.0,
                (e.log_ratio.exp() - 1.0) * 100.0,
                if at < &n { format!(" (largest measured, standing in for N = {n})") } else { String::new() },
                e.spread * 100.0
            ),
        });
    }
    // The posterior of the log gain host/bridge at N: the container's own rounds (the
    // study's single-container figure as prior), moved to N the way the sweep's paired
    // differences S_N - S_1 say (the study's shift from 1 to N when there is no sweep); or
    // the sweep alone; or the prior alone.
    let own_prior = prior_log_ratio(1, prior_crossover);
    // The prior of the container's own gain at N = 1: the study's, or the gateway's (the
    // study's updated with the sweep's single-sender rounds).
    let single_sender: Vec<f64> = match cfg.prior {
        PriorModel::Gateway { .. } => sweeps
            .iter()
            .filter_map(|r| round_at(r, 1, &profile))
            .map(|(v, _)| v)
            .collect(),
        PriorModel::Study => Vec::new(),
    };
    let own_start = match cfg.prior {
        PriorModel::Gateway { container_sd } if !single_sender.is_empty() => {
            let g = Posterior::of_gateway(own_prior, &single_sender, container_sd);
            evidence.push(Evidence {
                step: "gateway prior".into(),
                detail: format!(
                    "the study's figure for one container updated with the sweep's {} round{} with one sender on this gateway: the prior of this container's own host/bridge at N = 1 is {:+.1}% (80% {:+.0}%..{:+.0}%)",
                    single_sender.len(),
                    if single_sender.len() == 1 { "" } else { "s" },
                    (g.median().exp() - 1.0) * 100.0,
                    (g.quantile(0.1).exp() - 1.0) * 100.0,
                    (g.quantile(0.9).exp() - 1.0) * 100.0,
                ),
            });
            g
        }
        _ => Posterior::prior(own_prior),
    };
    let own: Vec<Round> = cm
        .probe_rounds
        .iter()
        .filter_map(|r| probe_round(&r.cells, &profile))
        .collect();
    let swept: Vec<(f64, f64, u32)> = sweeps
        .iter()
        .filter_map(|r| Some((round_at(r, n, &profile)?, round_at(r, 1, &profile)?)))
        .map(|((vn, at), (v1, _))| (vn, v1, at))
        .collect();
    let beyond = swept.iter().map(|s| s.2).min().is_some_and(|at| at < n);
    let measured: Option<Posterior> = match (own.is_empty(), swept.is_empty()) {
        (false, _) if n == 1 => Some(own_start.then(&own)),
        (false, false) => {
            // The shift from 1 to N: its prior (`cfg.shift`: the study's, or none; heavy-tailed,
            // as the prior of θ) updated with each sweep round's paired difference, the
            // spread between rounds unknown.
            let d: Vec<f64> = swept.iter().map(|(vn, v1, _)| vn - v1).collect();
            let center = match cfg.shift {
                ShiftModel::Study => prior - own_prior,
                ShiftModel::Gateway => 0.0,
            };
            let shift = Posterior::of_shift(center, &d);
            let shift = if beyond {
                shift.shifted(0.0, BEYOND_SD)
            } else {
                shift
            };
            Some(own_start.then(&own).plus(&shift))
        }
        (false, true) => Some(
            own_start
                .then(&own)
                .plus(&Posterior::prior(prior - own_prior)),
        ),
        (true, false) => {
            let rounds: Vec<Round> = swept
                .iter()
                .map(|(vn, _, _)| Round::aggregate(*vn))
                .collect();
            let p = Posterior::of(prior, &rounds);
            Some(if beyond { p.shifted(0.0, BEYOND_SD) } else { p })
        }
        (true, true) => None,
    };
    let rounds_so_far = if own.is_empty() {
        swept.len()
    } else {
        own.len()
    };
    // The path's share of the container's time per exchange, where it is measured and the
    // model uses it (under the shipped `Whole` nothing reads it, so it is not computed).
    let cost = match cfg.path {
        PathModel::Measured => path_cost(cm.probe_rounds.iter().flat_map(|r| &r.cells), &profile),
        PathModel::Whole => None,
    };
    let path = cost.map(|cost| PathShare {
        share: cost.share(),
        in_host: c.mode_kind == ModeKind::Host,
    });
    let posterior = match &measured {
        // A probe is not the application: the application gets a share of the probe's gain,
        // with an error of its own, that no round removes.
        Some(p) => p.transferred_with(&cfg.transfer, path),
        None => Posterior::prior(prior),
    };
    let estimate = posterior.median();
    let basis = if measured.is_some() {
        Basis::Measured
    } else {
        Basis::Prior
    };
    let t = (1.0 + cfg.min_gain).ln();
    // Switching pays: the other mode at least min_gain better.
    let p_switch = if c.mode_kind == ModeKind::Host {
        posterior.p_at_most(-t)
    } else {
        posterior.p_at_least(t)
    };
    let best = if estimate > 0.0 {
        ModeKind::Host
    } else {
        ModeKind::Bridge
    };
    // Hysteresis holds a switch the measurements decided before, never one the study's rule
    // recommended on its own (before any probe round): the first rounds must reach
    // min_probability themselves.
    let previously_switch_to_best =
        cm.recommended == Some((best, Action::Switch)) && cm.switch_decided;
    // Hysteresis on the decision: a switch already decided stays decided down to
    // min_probability - HOLD_MARGIN (a round of noise does not undo it, nor leave a
    // recommended switch that apply mode would never act on).
    let held = previously_switch_to_best
        && best != c.mode_kind
        && p_switch >= cfg.min_probability - HOLD_MARGIN;
    let decision = match measured {
        None => Decision::Undecided,
        Some(_) if p_switch >= cfg.min_probability || held => Decision::Switch,
        Some(_) if p_switch <= 1.0 - cfg.min_probability => Decision::Keep,
        Some(_) => Decision::Undecided,
    };
    let more_rounds = match (&measured, decision) {
        (Some(p), Decision::Undecided) => {
            let edge = if c.mode_kind == ModeKind::Host { -t } else { t };
            Some(rounds_to_decide(
                p,
                &cfg.transfer,
                path,
                edge,
                rounds_so_far,
                cfg.min_probability,
            ))
        }
        _ => None,
    };
    let rounds_to_decide = match more_rounds {
        Some(MoreRounds::About(k)) => Some(k),
        _ => None,
    };
    let (q10, q90) = (posterior.quantile(0.1), posterior.quantile(0.9));
    // Only where it is applied: the light load's CPU per exchange is no measure of a
    // server's work at load (bench/apps' run q), and a figure shown unapplied would read as
    // one.
    if let Some(cost) = cost {
        evidence.push(Evidence {
            step: "path share".into(),
            detail: format!(
                "the probes' path takes {:.0} us an exchange, beside {:.0} us of its own work (its CPU per exchange less the probe's): {} of its time (Amdahl's law); it gets that share of the path's saving",
                cost.path_us,
                cost.work_us,
                pct(cost.share()),
            ),
        });
    }
    evidence.push(Evidence {
        step: "weighing".into(),
        detail: match &measured {
            Some(m) => format!(
                "host/bridge {:+.1}% for the probes, {:+.1}% for an application (80% interval {:+.1}% to {:+.1}%; it gets a share of the probes' gain, {:.2} of its log on median) from {rounds_so_far} round{}{}, against the study's {:+.1}% (Student t, scale {:.0}%)",
                (m.median().exp() - 1.0) * 100.0,
                (estimate.exp() - 1.0) * 100.0,
                (q10.exp() - 1.0) * 100.0,
                (q90.exp() - 1.0) * 100.0,
                cfg.transfer.beta,
                if rounds_so_far == 1 { "" } else { "s" },
                if own.is_empty() {
                    " of the sweep"
                } else if n > 1 {
                    " of its own, moved to N by the sweep (or the study)"
                } else {
                    " of its own"
                },
                (prior.exp() - 1.0) * 100.0,
                PRIOR_SD * 100.0
            ),
            None => "no probe or sweep yet: the prior alone".into(),
        },
    });
    evidence.push(Evidence {
        step: "probability".into(),
        detail: format!(
            "P = {p_switch:.2} that {} gains at least {} over {}: {}",
            other(c.mode_kind).as_str(),
            pct(cfg.min_gain),
            c.mode_kind.as_str(),
            match decision {
                Decision::Switch => format!(
                    "decided, switch (advisor.min_probability {:.2})",
                    cfg.min_probability
                ),
                Decision::Keep => format!(
                    "decided, keep (at most {:.2})",
                    1.0 - cfg.min_probability
                ),
                Decision::Undecided if measured.is_none() => {
                    "undecided: the prior alone decides nothing".into()
                }
                Decision::Undecided => match more_rounds {
                    Some(MoreRounds::About(k)) => format!(
                        "undecided: about {k} more probe round{} expected to decide",
                        if k == 1 { "" } else { "s" }
                    ),
                    Some(MoreRounds::Never) => "undecided: no number of probe rounds decides it at this estimate (what an application gets of a probe's gain is uncertain by itself; only probes that move the estimate further from min_gain can)".into(),
                    _ => "undecided: more than 8 more rounds expected (the modes may be within min_gain of each other)".into(),
                },
            }
        ),
    });
    let gain = estimate.abs().exp() - 1.0;
    evidence.push(Evidence {
        step: "estimate".into(),
        detail: format!(
            "{} mode expected to deliver {} more than {}",
            best.as_str(),
            pct(gain),
            other(best).as_str()
        ),
    });

    // Hysteresis: a switch already recommended holds down to min_gain - hysteresis.
    let threshold = if previously_switch_to_best {
        (cfg.min_gain - cfg.hysteresis).max(0.0)
    } else {
        cfg.min_gain
    };
    // On the prior alone, the study's rule recommends (apply mode never acts on it). On
    // measurements, a switch needs the evidence to have decided it (with the hysteresis
    // above): a recommended switch is always one apply mode may act on.
    let settled = basis == Basis::Prior || decision == Decision::Switch;
    let mut action = if best != c.mode_kind && gain >= threshold && settled {
        Action::Switch
    } else {
        Action::Keep
    };
    let mut mode = if action == Action::Switch {
        best
    } else {
        c.mode_kind
    };
    evidence.push(Evidence {
        step: "threshold".into(),
        detail: format!(
            "a switch needs {} ({}): {}",
            pct(threshold),
            if previously_switch_to_best {
                "min_gain minus hysteresis, the switch being already decided"
            } else {
                "min_gain"
            },
            match (best == c.mode_kind, action) {
                (true, _) => "it already runs in the better mode".to_string(),
                (false, Action::Switch) => "met".to_string(),
                (false, Action::Keep) if gain >= threshold => {
                    "met by the estimate, but the evidence has not decided it yet".to_string()
                }
                (false, Action::Keep) => "not met".to_string(),
            }
        ),
    });

    // Cooldown: it limits how often a switch is recommended, never keeps one alive against
    // the evidence. A new switch waits a cooldown after the last one the measurements decided
    // was recommended or withdrawn (the first switch is free; the study's rule recommending
    // one before any probe round does not count); a switch whose gain falls below min_gain minus
    // hysteresis is withdrawn at once (the threshold above already says so). No switch is
    // recommended within a cooldown of the container's last mode change.
    let mut held_until_ms: Option<u64> = None;
    let now = input.now_ms;
    let flip_hold = cm.last_flip_ms.saturating_add(cfg.cooldown_ms);
    if action == Action::Switch
        && cm.recommended != Some((mode, action))
        && cm.last_flip_ms > 0
        && now < flip_hold
    {
        held_until_ms = Some(flip_hold);
        (mode, action) = (c.mode_kind, Action::Keep);
    }
    let mode_hold = cm.mode_since_ms.saturating_add(cfg.cooldown_ms);
    if action == Action::Switch && cm.mode_since_ms > 0 && now < mode_hold {
        held_until_ms = Some(held_until_ms.map_or(mode_hold, |h| h.max(mode_hold)));
        action = Action::Keep;
        mode = c.mode_kind;
    }
    if let Some(t) = held_until_ms {
        evidence.push(Evidence {
            step: "cooldown".into(),
            detail: format!("held: the recommendation may change again at {t} (Unix ms)"),
        });
    }

    let (blockers, warnings) = if action == Action::Switch {
        constraints(c, mode, input)
    } else {
        (Vec::new(), Vec::new())
    };
    let source = match basis {
        Basis::Measured => format!(
            "measured, P = {p_switch:.2} that {} gains at least {}",
            other(c.mode_kind).as_str(),
            pct(cfg.min_gain)
        ),
        _ => "the study's prior alone: no probe yet".into(),
    };
    let who = format!(
        "With {n} network-active container{}",
        if n == 1 { "" } else { "s" }
    );
    let isolation = if mode == ModeKind::Host {
        "; host mode gives up network isolation"
    } else {
        ""
    };
    let reason = match (action, held_until_ms) {
        (_, Some(_)) => format!(
            "{who}, a switch waits for the cooldown ({} mode expected {} better, {source}){isolation}.",
            best.as_str(),
            pct(gain)
        ),
        (Action::Switch, None) => format!(
            "{who}, {} mode is expected to deliver {} more than {} mode ({source}){isolation}.",
            mode.as_str(),
            pct(gain),
            other(mode).as_str()
        ),
        (Action::Keep, None) if best == c.mode_kind => format!(
            "{who}, {} mode is expected to deliver {} more than {} mode ({source}){isolation}.",
            best.as_str(),
            pct(gain),
            other(best).as_str()
        ),
        (Action::Keep, None) if gain >= threshold => format!(
            "{who}, {} mode is expected to deliver {} more, but the evidence has not decided it ({source}); {} mode stays until it does{isolation}.",
            best.as_str(),
            pct(gain),
            c.mode_kind.as_str()
        ),
        (Action::Keep, None) => format!(
            "{who}, {} mode would gain only {} ({source}), below the {} needed to switch{isolation}.",
            best.as_str(),
            pct(gain),
            pct(threshold)
        ),
    };
    Recommendation {
        mode,
        action,
        applicable: false,
        // Goodput of `mode` relative to the other mode: negative when keeping a mode whose
        // deficit is below the switch threshold.
        expected_gain: (if mode == ModeKind::Host {
            estimate
        } else {
            -estimate
        })
        .exp()
            - 1.0,
        confidence: if action == Action::Switch {
            p_switch
        } else {
            1.0 - p_switch
        },
        p_switch_pays: Some(p_switch),
        decision,
        gain_interval: measured.is_some().then(|| {
            if mode == ModeKind::Host {
                [q10.exp() - 1.0, q90.exp() - 1.0]
            } else {
                [(-q90).exp() - 1.0, (-q10).exp() - 1.0]
            }
        }),
        rounds_to_decide,
        apply_waits: None,
        reason,
        blockers,
        warnings,
        basis,
        network_active: true,
        held_until_ms,
        evidence,
    }
}

/// Two containers cannot both serve the same port in host mode. Containers already in host
/// mode keep theirs; among those recommended to switch, the one expected to gain most goes
/// first.
fn plan_port_conflicts(
    containers: &[&Container],
    input: &Input,
    recs: &mut BTreeMap<String, Recommendation>,
) {
    let mut taken: BTreeMap<(String, u16), String> = BTreeMap::new();
    let staying: Vec<&&Container> = containers
        .iter()
        .filter(|c| {
            c.mode_kind == ModeKind::Host
                && recs.get(&c.name).is_some_and(|r| r.mode == ModeKind::Host)
        })
        .collect();
    for c in staying {
        for p in served_ports(c, input) {
            taken.entry(p).or_insert_with(|| c.name.clone());
        }
    }
    let mut moving: Vec<&&Container> = containers
        .iter()
        .filter(|c| {
            c.mode_kind != ModeKind::Host
                && recs
                    .get(&c.name)
                    .is_some_and(|r| r.mode == ModeKind::Host && r.action == Action::Switch)
        })
        .collect();
    moving.sort_by(|a, b| {
        let g = |c: &Container| recs.get(&c.name).map(|r| r.expected_gain).unwrap_or(0.0);
        g(b).total_cmp(&g(a)).then(a.name.cmp(&b.name))
    });
    for c in moving {
        let mut conflicts = Vec::new();
        for p in served_ports(c, input) {
            match taken.get(&p) {
                Some(other) => conflicts.push(format!(
                    "port {}/{} is also served by {} in host mode",
                    p.1, p.0, other
                )),
                None => {
                    taken.insert(p, c.name.clone());
                }
            }
        }
        if let Some(r) = recs.get_mut(&c.name) {
            for m in conflicts {
                r.blockers.push(blocker("port_conflict", m));
            }
        }
    }
}
