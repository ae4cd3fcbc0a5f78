//! What the policy keeps between evaluations: activity averages, probe and sweep rounds,
//! what it recommended and since when.

use std::collections::BTreeMap;

use super::*;
/// Fold the inputs into the memory: activity averages, new probe and sweep rounds, modes.
pub fn remember(input: &Input, old: &Memory) -> Memory {
    let mut m = Memory {
        containers: BTreeMap::new(),
        sweeps: old.sweeps.clone(),
    };
    if let Some(s) = input.sweep
        && let Some(run_id) = s.cells.first().map(|_| sweep_id(s))
        && !m.sweeps.iter().any(|r| r.run_id == run_id)
    {
        let cells = sweep_ratios(s);
        if !cells.is_empty() {
            m.sweeps.push(SweepRound {
                run_id,
                limits: s.limits.clone(),
                cells,
            });
        }
    }
    if m.sweeps.len() > ROUNDS_KEPT {
        m.sweeps.drain(..m.sweeps.len() - ROUNDS_KEPT);
    }
    for c in input.containers {
        let mut cm = old.containers.get(&c.name).cloned().unwrap_or_default();
        if cm.mode != Some(c.mode_kind) {
            if cm.mode.is_some() {
                cm.mode_since_ms = input.now_ms;
            }
            cm.mode = Some(c.mode_kind);
        }
        if let Some(l) = &c.live {
            let rate = l.rx_bps + l.tx_bps;
            let exchanges = if l.request_response_like() {
                l.rx_pps.min(l.tx_pps)
            } else {
                0.0
            };
            let dt = input.now_ms.saturating_sub(cm.activity_at_ms) as f64 / 1000.0;
            if cm.activity_at_ms == 0 {
                (cm.activity_bps, cm.exchange_pps) = (rate, exchanges);
            } else {
                let a = (dt / input.config.active_window_s.max(0.001)).min(1.0);
                cm.activity_bps += a * (rate - cm.activity_bps);
                cm.exchange_pps += a * (exchanges - cm.exchange_pps);
            }
            cm.activity_at_ms = input.now_ms;
        }
        if let Some(p) = &c.probes
            && !cm.probe_rounds.iter().any(|r| r.run_id == p.run_id)
        {
            let cells = cell_ratios(&p.bridge, &p.host);
            if !cells.is_empty() {
                cm.probe_rounds.push(ProbeRound {
                    run_id: p.run_id.clone(),
                    cells,
                });
                if cm.probe_rounds.len() > ROUNDS_KEPT {
                    cm.probe_rounds.remove(0);
                }
            }
        }
        m.containers.insert(c.name.clone(), cm);
    }
    m
}

/// A sweep has no id of its own; its cells identify it.
pub(super) fn sweep_id(s: &Sweep) -> String {
    let total: f64 = s.cells.iter().filter_map(|c| c.goodput_bps).sum();
    format!("{}-{}-{total:.0}", s.max_concurrency, s.cells.len())
}
