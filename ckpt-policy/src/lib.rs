//! Save-decision and preservation policies: when to save a step, and which steps to keep.
//!
//! As Orbax's `save_decision_policy` and `preservation_policy` modules (spec §3–§4). Policies are
//! pure and stateless: a decision is a function of the committed listing (ascending by step,
//! deviation D1), a context and the clock, recomputed each time; nothing a restart could lose.
//! Every policy is registered with typetag under its Orbax class name, so a JSON or TOML file
//! such as `{"type": "LatestN", "n": 3}` builds it, and a third-party crate registers its own with
//! one attribute.
#![deny(missing_docs)]

use chrono::{DateTime, Utc};
use ckpt_core::{CheckpointInfo, Result};
use std::fmt::Debug;

/// What a save decision may look at besides the listing (Orbax `DecisionContext`, spec §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionContext {
    /// A save (async) is still being written or committed.
    pub is_saving_in_progress: bool,
    /// A preemption was signalled for this step.
    pub reached_preemption: bool,
    /// The current time (from the manager's clock).
    pub now: DateTime<Utc>,
}

/// Decides whether a step should be saved (Orbax `SaveDecisionPolicy`, spec §3.2).
#[typetag::serde(tag = "type")]
pub trait SaveDecisionPolicy: Debug + Send + Sync {
    /// Whether to save `step` given the committed (and in-flight) checkpoints `previous`,
    /// ascending by step.
    fn should_save(&self, step: &CheckpointInfo, previous: &[CheckpointInfo], cx: &DecisionContext) -> bool;

    /// Checks the policy's parameters, so a manager can reject it before anything is written
    /// (deviation D4).
    ///
    /// # Errors
    /// `InvalidConfig` naming the bad parameter (e.g. `FixedIntervalPolicy` with interval 0).
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// What a preservation policy may look at besides the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreservationContext {
    /// The current time (from the manager's clock).
    pub now: DateTime<Utc>,
}

/// A policy's verdict on one checkpoint: keep it or not, and a short reason the manager logs and
/// the CLI prints (e.g. `"among the newest 3"`, `"not among the best 2 by loss (min)"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Keep the checkpoint.
    pub keep: bool,
    /// Why.
    pub reason: String,
}

impl Verdict {
    /// A verdict to keep, with a reason.
    pub fn keep(reason: impl Into<String>) -> Self {
        Verdict { keep: true, reason: reason.into() }
    }

    /// A verdict not to keep, with a reason.
    pub fn drop(reason: impl Into<String>) -> Self {
        Verdict { keep: false, reason: reason.into() }
    }
}

/// Decides which checkpoints to keep (Orbax `PreservationPolicy`, spec §4.1).
#[typetag::serde(tag = "type")]
pub trait PreservationPolicy: Debug + Send + Sync {
    /// One verdict per checkpoint, in the same order. `checkpoints` is ascending by step.
    fn should_preserve(&self, checkpoints: &[CheckpointInfo], cx: &PreservationContext) -> Vec<Verdict>;

    /// Checks the policy's parameters (deviation D4: rejected before anything is written).
    ///
    /// # Errors
    /// `InvalidConfig` naming the bad parameter (e.g. `EveryNSteps` with `interval_steps` 0).
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
