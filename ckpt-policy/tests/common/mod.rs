//! Helpers shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ckpt_core::{CheckpointInfo, Metrics, Step};
use ckpt_policy::{PreservationContext, PreservationPolicy};
use serde_json::Value;

/// The base time of policy-level cases (spec §7: checkpoint i at base + i seconds).
pub fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A context whose `now` is an hour after `base()`.
pub fn cx() -> PreservationContext {
    PreservationContext {
        now: base() + TimeDelta::hours(1),
    }
}

/// `{"loss": v}`.
pub fn loss(v: Value) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), v);
    m
}

/// Checkpoints at `steps`, the i-th at base + i seconds, without metrics.
pub fn listing(steps: &[Step]) -> Vec<CheckpointInfo> {
    steps
        .iter()
        .enumerate()
        .map(|(i, &s)| CheckpointInfo::new(s, base() + TimeDelta::seconds(i as i64), None))
        .collect()
}

/// Checkpoints at `steps` with `{"loss": v}` or no metrics (`None`), at base + index seconds.
pub fn with_loss(steps: &[Step], losses: &[Option<f64>]) -> Vec<CheckpointInfo> {
    assert_eq!(steps.len(), losses.len());
    let mut cs = listing(steps);
    for (c, l) in cs.iter_mut().zip(losses) {
        c.metrics = l.map(|v| loss(serde_json::json!(v)));
    }
    cs
}

/// The steps `policy` keeps.
pub fn kept(
    policy: &dyn PreservationPolicy,
    cs: &[CheckpointInfo],
    cx: &PreservationContext,
) -> Vec<Step> {
    let verdicts = policy.should_preserve(cs, cx);
    assert_eq!(verdicts.len(), cs.len(), "one verdict per checkpoint");
    cs.iter()
        .zip(verdicts)
        .filter(|(_, v)| v.keep)
        .map(|(c, _)| c.step)
        .collect()
}
