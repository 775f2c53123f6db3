//! What a policy sees of a checkpoint.

use chrono::{DateTime, Utc};

/// A training step number. Non-negative, up to `u64::MAX` (Orbax steps are Python ints ≥ 0).
pub type Step = u64;

/// A step's metrics: a JSON object such as `{"loss": 0.25, "acc": 0.9}`, keys in insertion order.
///
/// Non-finite numbers (NaN, ±Infinity) cannot be held by `serde_json::Value`; when read from disk
/// they become `null` (see [`crate::pyjson::from_slice`]) and a policy ranking by such a metric
/// treats the step as having no usable value.
pub type Metrics = serde_json::Map<String, serde_json::Value>;

/// One committed checkpoint as policies see it: its step, when it was committed (UTC), and its
/// metrics if it has any. As Orbax `CheckpointInfo` (spec §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// The step.
    pub step: Step,
    /// Commit time: `commit_timestamp_nsecs` of the step metadata (else the directory's
    /// modification time) for steps read from disk; the end of the blocking part of `save` for
    /// steps saved in this process.
    pub time: DateTime<Utc>,
    /// The step's metrics, or `None` when it has none.
    pub metrics: Option<Metrics>,
}

impl CheckpointInfo {
    /// A checkpoint at `step`, committed at `time`, with `metrics`.
    pub fn new(step: Step, time: DateTime<Utc>, metrics: Option<Metrics>) -> Self {
        CheckpointInfo {
            step,
            time,
            metrics,
        }
    }
}
