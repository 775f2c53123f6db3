//! `BestN` (feature `best`).

use crate::rank::{compare_rank, metric_value};
use crate::{BestMode, PreservationContext, PreservationPolicy, Verdict};
use ckpt_core::CheckpointInfo;
use serde::{Deserialize, Serialize};

/// Keeps the `n` checkpoints with the best value of one metric. As Orbax `BestN`, spec §4.2,
/// with the metric named instead of given as a function; JSON
/// `{"type": "BestN", "metric": "loss", "mode": "min", "n": 2, "keep_checkpoints_without_metrics": true}`.
///
/// Reading JSON: `metric` defaults to `"loss"`, `mode` to `"max"`, `n` to `null`,
/// `keep_checkpoints_without_metrics` to `true`; instead of `mode`, Orbax's `"reverse": bool` is
/// accepted (`true` is `"min"`); both together must agree. Written JSON always has `mode`.
///
/// The rule, in order (spec §4.2):
/// 1. `n` `None`, or no more checkpoints than `n` (counting those without metrics): all kept,
///    even without metrics and `keep_checkpoints_without_metrics: false`.
/// 2. `n` 0: none kept.
/// 3. The checkpoints with metrics (`metrics` is `Some`) are ranked by the metric's value,
///    lower first for `Min`, higher first for `Max`; equal values rank the later (higher) step
///    better (Orbax's stable sort over the ascending listing). The best `n` are kept.
/// 4. Checkpoints without metrics are kept iff `keep_checkpoints_without_metrics`.
///
/// Deviation: a checkpoint whose metrics lack the key, or whose value is not a finite number
/// (`null` — also what a NaN read from disk becomes —, a string, a bool) ranks below every
/// finite value: it is never best and never displaces a real value, and it takes a slot only
/// when fewer than `n` checkpoints have a real value (Orbax raises `KeyError`, or sorts NaN
/// unpredictably; the manager rejects a missing key at save time, deviation D5).
///
/// Reasons: `"best 2 by loss (min): rank 1"`, `"not among the best 2 by loss (min): rank 3"`
/// (with `"; no usable loss value"` appended for a checkpoint whose value is unusable),
/// `"no metrics; kept (keep_checkpoints_without_metrics)"`,
/// `"no metrics; dropped (keep_checkpoints_without_metrics is false)"`,
/// `"BestN without n keeps all"`, `"3 checkpoints <= n = 5: all kept"`, `"BestN with n = 0 keeps none"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BestNRepr")]
pub struct BestN {
    /// The metric's key in a checkpoint's metrics object.
    pub metric: String,
    /// Which end of the metric is better.
    pub mode: BestMode,
    /// How many checkpoints with metrics to keep; `None` keeps all.
    pub n: Option<u64>,
    /// Keep checkpoints that have no metrics at all (default `true`).
    pub keep_checkpoints_without_metrics: bool,
}

impl BestN {
    /// Keeps the best `n` checkpoints (`None`: all) by `metric` under `mode`, and those without
    /// metrics (set [`BestN::keep_checkpoints_without_metrics`] to change that).
    pub fn new(metric: impl Into<String>, mode: BestMode, n: Option<u64>) -> Self {
        BestN {
            metric: metric.into(),
            mode,
            n,
            keep_checkpoints_without_metrics: true,
        }
    }

    /// This policy with `keep_checkpoints_without_metrics` set to `keep`.
    pub fn keep_checkpoints_without_metrics(mut self, keep: bool) -> Self {
        self.keep_checkpoints_without_metrics = keep;
        self
    }
}

fn default_metric() -> String {
    "loss".to_string()
}

fn default_true() -> bool {
    true
}

/// What JSON may say: `mode` or Orbax's `reverse`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BestNRepr {
    #[serde(default = "default_metric")]
    metric: String,
    #[serde(default)]
    mode: Option<BestMode>,
    #[serde(default)]
    reverse: Option<bool>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default = "default_true")]
    keep_checkpoints_without_metrics: bool,
}

impl TryFrom<BestNRepr> for BestN {
    type Error = String;

    fn try_from(r: BestNRepr) -> Result<Self, String> {
        let mode = match (r.mode, r.reverse) {
            (Some(m), Some(rev)) if m.reverse() != rev => {
                return Err(format!(
                    "BestN: mode {m:?} and reverse {rev} disagree (reverse: true means \"min\")"
                ))
            }
            (Some(m), _) => m,
            (None, Some(rev)) => BestMode::from_reverse(rev),
            (None, None) => BestMode::default(),
        };
        Ok(BestN {
            metric: r.metric,
            mode,
            n: r.n,
            keep_checkpoints_without_metrics: r.keep_checkpoints_without_metrics,
        })
    }
}

#[typetag::serde(name = "BestN")]
impl PreservationPolicy for BestN {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let len = checkpoints.len();
        let n = match self.n {
            None => {
                return checkpoints
                    .iter()
                    .map(|_| Verdict::keep("BestN without n keeps all"))
                    .collect()
            }
            Some(n) if len as u64 <= n => {
                let why = format!("{len} checkpoints <= n = {n}: all kept");
                return checkpoints
                    .iter()
                    .map(|_| Verdict::keep(why.clone()))
                    .collect();
            }
            Some(0) => {
                return checkpoints
                    .iter()
                    .map(|_| Verdict::drop("BestN with n = 0 keeps none"))
                    .collect()
            }
            Some(n) => n,
        };
        let (metric, mode) = (self.metric.as_str(), self.mode);
        let (values, rank) = self.ranks(checkpoints);
        (0..len)
            .map(|i| match rank[i] {
                Some(r) => {
                    let mut why = if r <= n {
                        format!("best {n} by {metric} ({mode}): rank {r}")
                    } else {
                        format!("not among the best {n} by {metric} ({mode}): rank {r}")
                    };
                    if values[i].is_none() {
                        why.push_str(&format!("; no usable {metric} value"));
                    }
                    Verdict {
                        keep: r <= n,
                        reason: why,
                    }
                }
                None if self.keep_checkpoints_without_metrics => {
                    Verdict::keep("no metrics; kept (keep_checkpoints_without_metrics)")
                }
                None => {
                    Verdict::drop("no metrics; dropped (keep_checkpoints_without_metrics is false)")
                }
            })
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let len = checkpoints.len();
        let n = match self.n {
            None => return vec![true; len],
            Some(n) if len as u64 <= n => return vec![true; len],
            Some(0) => return vec![false; len],
            Some(n) => n,
        };
        let (_, rank) = self.ranks(checkpoints);
        rank.into_iter()
            .map(|r| match r {
                Some(r) => r <= n,
                None => self.keep_checkpoints_without_metrics,
            })
            .collect()
    }
}

impl BestN {
    /// The metric's usable value of each checkpoint, and its rank among the checkpoints with
    /// metrics (1 = best; `None` for those without metrics): one stable sort, O(n log n).
    fn ranks(&self, checkpoints: &[CheckpointInfo]) -> (Vec<Option<f64>>, Vec<Option<u64>>) {
        let len = checkpoints.len();
        let values: Vec<Option<f64>> = checkpoints
            .iter()
            .map(|c| metric_value(c.metrics.as_ref(), &self.metric))
            .collect();
        // Checkpoints with metrics, worst first (a stable sort; ties put the higher step last).
        let mut ranked: Vec<usize> = (0..len)
            .filter(|&i| checkpoints[i].metrics.is_some())
            .collect();
        ranked.sort_by(|&a, &b| {
            compare_rank(
                (values[a], checkpoints[a].step),
                (values[b], checkpoints[b].step),
                self.mode,
            )
        });
        let mut rank: Vec<Option<u64>> = vec![None; len];
        let count = ranked.len();
        for (pos, &i) in ranked.iter().enumerate() {
            rank[i] = Some((count - pos) as u64);
        }
        (values, rank)
    }
}
