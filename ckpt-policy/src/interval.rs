//! `EveryNSteps` and `EveryNStepsClosest` (feature `interval`).

use crate::{PreservationContext, PreservationPolicy, Verdict};
use ckpt_core::{CheckpointInfo, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn default_true() -> bool {
    true
}

/// Orbax's `max_to_keep` trimming (spec §4.1): of the kept verdicts, only the last `m` stay kept.
/// `None` or `Some(0)` trims nothing (Orbax tests `if self.max_to_keep:`, and 0 is falsy; cases
/// README "POLICY").
fn trim_to_last(verdicts: &mut [Verdict], max_to_keep: Option<u64>) {
    let Some(m) = max_to_keep.filter(|&m| m > 0) else {
        return;
    };
    let kept = verdicts.iter().filter(|v| v.keep).count();
    let m = usize::try_from(m).unwrap_or(usize::MAX);
    let mut excess = kept.saturating_sub(m);
    for v in verdicts.iter_mut() {
        if excess == 0 {
            break;
        }
        if v.keep {
            *v = Verdict::drop(format!(
                "{}, but not among the last {m} kept (max_to_keep)",
                v.reason
            ));
            excess -= 1;
        }
    }
}

/// [`trim_to_last`] on keep flags: of the kept, only the last `m` stay kept.
fn trim_flags(flags: &mut [bool], max_to_keep: Option<u64>) {
    let Some(m) = max_to_keep.filter(|&m| m > 0) else {
        return;
    };
    let kept = flags.iter().filter(|k| **k).count();
    let m = usize::try_from(m).unwrap_or(usize::MAX);
    let mut excess = kept.saturating_sub(m);
    for k in flags.iter_mut() {
        if excess == 0 {
            break;
        }
        if *k {
            *k = false;
            excess -= 1;
        }
    }
}

/// Keeps a checkpoint every `interval_steps` steps. As Orbax `EveryNSteps` (with the
/// `exact_interval` and `max_to_keep` of the newer Orbax versions), spec §4.1; JSON
/// `{"type": "EveryNSteps", "interval_steps": 1000, "exact_interval": true, "max_to_keep": null}`
/// (`exact_interval` defaults to `true`, `max_to_keep` to `null`).
///
/// * Exact (`exact_interval: true`): keeps the steps with `step % interval_steps == 0`.
/// * Not exact: keeps the first (lowest) checkpoint, then each checkpoint at least
///   `interval_steps` steps above the last one kept (a greedy chain over the listing).
/// * Then, when `max_to_keep` is `Some(m)` with `m > 0` and more than `m` were kept, only the last
///   `m` of them stay kept; `Some(0)` trims nothing (as Orbax, where 0 is falsy).
///
/// Reasons: `"step % 3 == 0"`, `"step % 3 != 0"`, `"first checkpoint"`,
/// `"5 >= 3 steps after kept step 0"`, `"only 1 < 3 steps after kept step 4"`,
/// `"…, but not among the last 2 kept (max_to_keep)"`.
///
/// Deviation D4: `interval_steps` 0 is rejected by [`PreservationPolicy::validate`]
/// (`InvalidConfig`) before anything is written (Orbax raises `ValueError` after the step is
/// written); if asked anyway, it keeps everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EveryNSteps {
    /// The interval, in steps; must not be 0.
    pub interval_steps: u64,
    /// Exact multiples (`true`, the default) or a greedy chain (`false`).
    #[serde(default = "default_true")]
    pub exact_interval: bool,
    /// Keep at most this many of the checkpoints this policy keeps (the highest steps); `None` or
    /// 0: no limit.
    #[serde(default)]
    pub max_to_keep: Option<u64>,
}

impl EveryNSteps {
    /// Keeps the multiples of `interval_steps` (exact mode, no `max_to_keep`): Orbax's
    /// `EveryNSteps(interval_steps)` and the legacy `keep_period` (spec §4.3).
    pub fn new(interval_steps: u64) -> Self {
        EveryNSteps {
            interval_steps,
            exact_interval: true,
            max_to_keep: None,
        }
    }
}

#[typetag::serde(name = "EveryNSteps")]
impl PreservationPolicy for EveryNSteps {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let n = self.interval_steps;
        if n == 0 {
            return checkpoints
                .iter()
                .map(|_| Verdict::keep("interval_steps 0 is invalid; kept"))
                .collect();
        }
        let mut verdicts: Vec<Verdict> = if self.exact_interval {
            checkpoints
                .iter()
                .map(|c| {
                    if c.step % n == 0 {
                        Verdict::keep(format!("step % {n} == 0"))
                    } else {
                        Verdict::drop(format!("step % {n} != 0"))
                    }
                })
                .collect()
        } else {
            let mut last_kept: Option<u64> = None;
            checkpoints
                .iter()
                .map(|c| match last_kept {
                    None => {
                        last_kept = Some(c.step);
                        Verdict::keep("first checkpoint")
                    }
                    Some(last) => {
                        let d = c.step.saturating_sub(last);
                        if d >= n {
                            last_kept = Some(c.step);
                            Verdict::keep(format!("{d} >= {n} steps after kept step {last}"))
                        } else {
                            Verdict::drop(format!("only {d} < {n} steps after kept step {last}"))
                        }
                    }
                })
                .collect()
        };
        trim_to_last(&mut verdicts, self.max_to_keep);
        verdicts
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let n = self.interval_steps;
        if n == 0 {
            return vec![true; checkpoints.len()];
        }
        let mut flags: Vec<bool> = if self.exact_interval {
            checkpoints.iter().map(|c| c.step % n == 0).collect()
        } else {
            let mut last_kept: Option<u64> = None;
            checkpoints
                .iter()
                .map(|c| match last_kept {
                    Some(last) if c.step.saturating_sub(last) < n => false,
                    _ => {
                        last_kept = Some(c.step);
                        true
                    }
                })
                .collect()
        };
        trim_flags(&mut flags, self.max_to_keep);
        flags
    }

    /// # Errors
    /// `InvalidConfig` when `interval_steps` is 0 (deviation D4).
    fn validate(&self) -> Result<()> {
        if self.interval_steps == 0 {
            return Err(Error::invalid_config(
                "EveryNSteps: interval_steps must not be 0",
            ));
        }
        Ok(())
    }
}

/// `EveryNStepsClosest`'s (target multiple, distance) per checkpoint, and the winner (index of
/// the closest checkpoint, the later at equal distance) per target; targets in i128 so nothing
/// overflows. `n` must not be 0.
#[allow(clippy::type_complexity)]
fn closest_winners(
    checkpoints: &[CheckpointInfo],
    n: u64,
) -> (Vec<(i128, u128)>, BTreeMap<i128, usize>) {
    let targets: Vec<(i128, u128)> = checkpoints
        .iter()
        .map(|c| {
            let k = (c.step as f64 / n as f64).round_ties_even() as i128;
            let target = k.saturating_mul(i128::from(n));
            (target, (i128::from(c.step) - target).unsigned_abs())
        })
        .collect();
    let mut winner: BTreeMap<i128, usize> = BTreeMap::new();
    for (i, &(target, diff)) in targets.iter().enumerate() {
        let w = winner.entry(target).or_insert(i);
        if diff <= targets[*w].1 {
            *w = i;
        }
    }
    (targets, winner)
}

/// For each multiple of `interval_steps`, keeps the checkpoint closest to it, and always the last
/// checkpoint. As Orbax `EveryNStepsClosest`, spec §4.1; JSON
/// `{"type": "EveryNStepsClosest", "interval_steps": 1000, "max_to_keep": null}`.
///
/// For each checkpoint, `k = round(step / interval_steps)`: the quotient in double precision,
/// rounded half to even as Python's `round` (25/10 → 2, 35/10 → 4; spec §8.1), and
/// `diff = |step - k * interval_steps|`. For each `k` the checkpoint with the smallest `diff` is
/// kept; at equal `diff` the later (higher) step. The last checkpoint is always kept. Then
/// `max_to_keep` trims as in [`EveryNSteps`] (`None` or 0: no limit).
///
/// Reasons: `"closest to 9"`, `"last checkpoint"`, `"step 4 is closer to 3"`,
/// `"step 4 is as close to 3 and later"`, `"…, but not among the last 3 kept (max_to_keep)"`.
///
/// Deviation D4: `interval_steps` 0 is rejected by [`PreservationPolicy::validate`]
/// (`InvalidConfig`); if asked anyway, it keeps everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EveryNStepsClosest {
    /// The interval, in steps; must not be 0.
    pub interval_steps: u64,
    /// Keep at most this many of the checkpoints this policy keeps (the highest steps); `None` or
    /// 0: no limit.
    #[serde(default)]
    pub max_to_keep: Option<u64>,
}

impl EveryNStepsClosest {
    /// Keeps the checkpoint closest to each multiple of `interval_steps`, and the last one.
    pub fn new(interval_steps: u64, max_to_keep: Option<u64>) -> Self {
        EveryNStepsClosest {
            interval_steps,
            max_to_keep,
        }
    }
}

#[typetag::serde(name = "EveryNStepsClosest")]
impl PreservationPolicy for EveryNStepsClosest {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let n = self.interval_steps;
        if n == 0 {
            return checkpoints
                .iter()
                .map(|_| Verdict::keep("interval_steps 0 is invalid; kept"))
                .collect();
        }
        let (targets, winner) = closest_winners(checkpoints, n);
        let last = checkpoints.len().checked_sub(1);
        let mut verdicts: Vec<Verdict> = targets
            .iter()
            .enumerate()
            .map(|(i, &(target, diff))| {
                let w = winner.get(&target).copied().unwrap_or(i);
                if w == i {
                    Verdict::keep(format!("closest to {target}"))
                } else if Some(i) == last {
                    Verdict::keep("last checkpoint")
                } else {
                    let ws = checkpoints[w].step;
                    if targets[w].1 < diff {
                        Verdict::drop(format!("step {ws} is closer to {target}"))
                    } else {
                        Verdict::drop(format!("step {ws} is as close to {target} and later"))
                    }
                }
            })
            .collect();
        trim_to_last(&mut verdicts, self.max_to_keep);
        verdicts
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let n = self.interval_steps;
        if n == 0 {
            return vec![true; checkpoints.len()];
        }
        let (targets, winner) = closest_winners(checkpoints, n);
        let last = checkpoints.len().checked_sub(1);
        let mut flags: Vec<bool> = targets
            .iter()
            .enumerate()
            .map(|(i, (target, _))| {
                winner.get(target).copied().unwrap_or(i) == i || Some(i) == last
            })
            .collect();
        trim_flags(&mut flags, self.max_to_keep);
        flags
    }

    /// # Errors
    /// `InvalidConfig` when `interval_steps` is 0 (deviation D4).
    fn validate(&self) -> Result<()> {
        if self.interval_steps == 0 {
            return Err(Error::invalid_config(
                "EveryNStepsClosest: interval_steps must not be 0",
            ));
        }
        Ok(())
    }
}
