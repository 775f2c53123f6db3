//! Save-decision and preservation policies: when to save a step, and which steps to keep.
//!
//! As Orbax's `save_decision_policy` and `preservation_policy` modules (spec §3–§4). Policies are
//! pure and stateless: a decision is a function of the committed listing (ascending by step,
//! deviation D1), a context and the clock, recomputed each time; nothing a restart could lose.
//! Every policy is registered with typetag under its Orbax class name, so a JSON or TOML file
//! such as `{"type": "LatestN", "n": 3}` builds it, and a third-party crate registers its own with
//! one attribute.
//!
//! # What is here
//! - Save decisions (always built; spec §3.2): [`FixedIntervalPolicy`], [`SpecificStepsPolicy`],
//!   [`ContinuousCheckpointingPolicy`], [`PreemptionCheckpointingPolicy`], [`InitialSavePolicy`],
//!   [`AnySavePolicy`], and [`ShouldSaveFnPolicy`] (a closure; built in code only).
//! - Preservation (spec §4.1–§4.2), by Cargo feature: [`PreserveAll`] and
//!   [`AnyPreservationPolicy`] (always); `latest`: `LatestN`; `interval`: `EveryNSteps`,
//!   `EveryNStepsClosest`; `best`: `BestN`; `time`: `EveryNSeconds`, `LatestDuration`; `custom`:
//!   `CustomSteps`. The default features turn on every family.
//! - [`BestMode`] and [`best_step`] (always): the ranking `BestN` uses, for a manager's
//!   `best_step()`.
//! - [`decide`] (always): sort a listing read in any order and apply a preservation policy.
//! - [`check_metrics_exist`] (always): refuse a policy ranking by a metric no checkpoint has.
//! - [`legacy_save_decision`], [`legacy_should_save_fn_decision`] and [`legacy_preservation`]
//!   (always): the mapping of Orbax's legacy
//!   options onto policies (spec §3.3, §4.3).
//! - [`save_decision_policy_from_json`] and [`preservation_policy_from_json`]: read and validate
//!   a policy from a config text.
//!
//! Every verdict carries a short reason (e.g. `"newest 3"`, `"step % 1000 == 0"`,
//! `"best 2 by loss (min): rank 1"`) that the manager logs and the CLI prints.
//!
//! # Linking
//! typetag finds implementations through link-time registration: a binary or test that reads
//! policies from a config must link this crate (`use ckpt_policy as _;` is enough).
#![deny(missing_docs)]
// docs.rs (`cfg(docsrs)`, see Cargo.toml) marks items behind a Cargo feature with a badge
// (`doc_cfg`, which took in `doc_auto_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod any;
#[cfg(feature = "best")]
mod best;
#[cfg(feature = "custom")]
mod custom;
mod decision;
#[cfg(feature = "interval")]
mod interval;
#[cfg(feature = "latest")]
mod latest;
mod legacy;
mod rank;
#[cfg(feature = "time")]
mod time;

pub use any::{AnyPreservationPolicy, PreserveAll};
#[cfg(feature = "best")]
pub use best::BestN;
#[cfg(feature = "custom")]
pub use custom::CustomSteps;
pub use decision::{
    AnySavePolicy, ContinuousCheckpointingPolicy, FixedIntervalPolicy, InitialSavePolicy,
    PreemptionCheckpointingPolicy, ShouldSaveFn, ShouldSaveFnPolicy, SpecificStepsPolicy,
};
#[cfg(feature = "interval")]
pub use interval::{EveryNSteps, EveryNStepsClosest};
#[cfg(feature = "latest")]
pub use latest::LatestN;
pub use legacy::{
    legacy_preservation, legacy_save_decision, legacy_should_save_fn_decision, LegacyRetention,
};
pub use rank::{best_step, metric_value, BestMode};
#[cfg(feature = "time")]
pub use time::{EveryNSeconds, LatestDuration};

use chrono::{DateTime, Utc};
use ckpt_core::{CheckpointInfo, Error, Result, Step};
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
///
/// Asked only for a non-forced save, after the manager's read-only and `step <= latest_step()`
/// checks (spec §3.4). Another crate adds a policy by implementing this trait under
/// `#[typetag::serde]`.
#[typetag::serde(tag = "type")]
pub trait SaveDecisionPolicy: Debug + Send + Sync {
    /// Whether to save `step` given the committed (and in-flight) checkpoints `previous`,
    /// ascending by step.
    fn should_save(
        &self,
        step: &CheckpointInfo,
        previous: &[CheckpointInfo],
        cx: &DecisionContext,
    ) -> bool;

    /// Checks the policy's parameters, so a manager can reject it before anything is written
    /// (deviation D4).
    ///
    /// # Errors
    /// `InvalidConfig` naming the bad parameter (e.g. `FixedIntervalPolicy` with interval 0).
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// What a preservation policy may look at besides the listing (Orbax `PreservationContext`,
/// spec §4.1, which is empty). Deviation: ckpt adds `now`, so `LatestDuration` reads the
/// manager's injectable clock instead of the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreservationContext {
    /// The current time (from the manager's clock).
    pub now: DateTime<Utc>,
}

/// A policy's verdict on one checkpoint: keep it or not, and a short reason the manager logs and
/// the CLI prints (e.g. `"newest 3"`, `"not among the best 2 by loss (min): rank 3"`).
/// Deviation: Orbax's policies return bare booleans (spec §4.1); the flag here is the same.
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
        Verdict {
            keep: true,
            reason: reason.into(),
        }
    }

    /// A verdict not to keep, with a reason.
    pub fn drop(reason: impl Into<String>) -> Self {
        Verdict {
            keep: false,
            reason: reason.into(),
        }
    }
}

/// Decides which checkpoints to keep (Orbax `PreservationPolicy`, spec §4.1).
///
/// A checkpoint that the top-level policy does not keep is deleted. Another crate adds a policy
/// by implementing this trait under `#[typetag::serde]` (its type name is then its `"type"` in a
/// config); the type must be `Serialize + Deserialize`.
#[typetag::serde(tag = "type")]
pub trait PreservationPolicy: Debug + Send + Sync {
    /// One verdict per checkpoint, in the same order. `checkpoints` is ascending by step
    /// (deviation D1; [`decide`] sorts a listing read in any order). Must not panic on any
    /// listing, including an empty one (which gets an empty result).
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        cx: &PreservationContext,
    ) -> Vec<Verdict>;

    /// Only the keep flags of [`PreservationPolicy::should_preserve`]: one per checkpoint, in the
    /// same order, each equal to the `keep` of the verdict `should_preserve` gives. The manager
    /// decides retention after every save with this, and asks for reasons only when they are
    /// wanted (a log, `last_retention`), so a root of 10,000 steps is decided in well under a
    /// millisecond instead of formatting 10,000 reasons.
    ///
    /// The default maps `should_preserve`; every built-in policy overrides it with the same
    /// rule and no per-checkpoint allocation, in O(n log n) at most. A policy that overrides it
    /// must keep it equal to `should_preserve`'s flags (ckpt-policy's property tests check this
    /// for the built-in ones).
    fn keep_flags(&self, checkpoints: &[CheckpointInfo], cx: &PreservationContext) -> Vec<bool> {
        self.should_preserve(checkpoints, cx)
            .into_iter()
            .map(|v| v.keep)
            .collect()
    }

    /// Checks the policy's parameters (deviation D4: rejected before anything is written).
    ///
    /// # Errors
    /// `InvalidConfig` naming the bad parameter (e.g. `EveryNSteps` with `interval_steps` 0).
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The names of the metrics this policy ranks checkpoints by, for [`check_metrics_exist`]:
    /// `BestN` returns its `metric`, a composite policy the union of its children's (each name
    /// once, in the children's order). The default is none: a policy of another crate that
    /// ranks by a metric should override it, so that a misspelt metric name is caught.
    fn ranking_metrics(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Refuses a preservation policy that ranks by a metric no checkpoint has, while some
/// checkpoints do have metrics: a misspelt name (`val_los` for `val_loss`) would otherwise rank
/// every checkpoint as having no value and silently delete the best ones.
///
/// `checkpoints` is any listing (order does not matter), e.g. the committed steps followed by
/// the step about to be saved. A metric counts as present when some checkpoint's metrics hold its
/// key, whatever the value. Nothing is refused when no checkpoint has any metric (a fresh root,
/// or a run that records none), nor for a policy without [ranking
/// metrics](PreservationPolicy::ranking_metrics). Linear in the listing at most; it stops as
/// soon as every ranking metric is found (at the first checkpoint, in the usual case).
///
/// # Errors
/// `InvalidConfig` naming the missing metric(s) and every metric name the checkpoints have.
pub fn check_metrics_exist<'a, P, I>(policy: &P, checkpoints: I) -> Result<()>
where
    P: PreservationPolicy + ?Sized,
    I: IntoIterator<Item = &'a CheckpointInfo>,
    I::IntoIter: Clone,
{
    let mut missing = policy.ranking_metrics();
    if missing.is_empty() {
        return Ok(());
    }
    let listing = checkpoints.into_iter();
    for c in listing.clone() {
        if let Some(m) = &c.metrics {
            missing.retain(|k| !m.contains_key(k));
            if missing.is_empty() {
                return Ok(());
            }
        }
    }
    let existing: std::collections::BTreeSet<&str> = listing
        .filter_map(|c| c.metrics.as_ref())
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    let quoted = |names: &mut dyn Iterator<Item = &str>| {
        names
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = if missing.len() == 1 {
        "metric"
    } else {
        "metrics"
    };
    Err(Error::invalid_config(format!(
        "the preservation policy ranks by the {what} {}, which no checkpoint has (the metrics the checkpoints have: {}); \
         ranking by it would treat every checkpoint as having no value and could delete the best ones",
        quoted(&mut missing.iter().map(String::as_str)),
        quoted(&mut existing.into_iter()),
    )))
}

/// Applies `policy` to `checkpoints` given in any order: sorts a copy ascending by step (then by
/// time), as the manager always passes them (deviation D1), asks the policy, and returns one
/// `(step, verdict)` per checkpoint, ascending by step.
///
/// The result therefore does not depend on the order in which the listing was read. A policy that
/// returns too few verdicts (a faulty third-party policy) has the missing ones filled with "keep"
/// (reason `"no verdict from the policy; kept"`), and extra verdicts are ignored: a broken policy
/// never causes a deletion by itself.
pub fn decide<P>(
    policy: &P,
    checkpoints: &[CheckpointInfo],
    cx: &PreservationContext,
) -> Vec<(Step, Verdict)>
where
    P: PreservationPolicy + ?Sized,
{
    let mut sorted = checkpoints.to_vec();
    sorted.sort_by(|a, b| a.step.cmp(&b.step).then(a.time.cmp(&b.time)));
    let mut verdicts = policy.should_preserve(&sorted, cx).into_iter();
    sorted
        .iter()
        .map(|c| {
            let v = verdicts
                .next()
                .unwrap_or_else(|| Verdict::keep("no verdict from the policy; kept"));
            (c.step, v)
        })
        .collect()
}

/// Reads a save-decision policy from JSON such as
/// `{"type": "FixedIntervalPolicy", "interval": 1000}` (names and fields as
/// `orbax/cases/README.md` "DECISION") and validates it.
///
/// # Errors
/// `InvalidConfig` when the text is not such JSON (unknown `type`, unknown or missing field, wrong
/// type, `ShouldSaveFnPolicy`), or when [`SaveDecisionPolicy::validate`] rejects it (deviation D4).
pub fn save_decision_policy_from_json(text: &str) -> Result<Box<dyn SaveDecisionPolicy>> {
    let policy: Box<dyn SaveDecisionPolicy> = serde_json::from_str(text)
        .map_err(|e| Error::invalid_config(format!("cannot read the save decision policy: {e}")))?;
    policy.validate()?;
    Ok(policy)
}

/// Reads a preservation policy from JSON such as
/// `{"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}]}` (names and
/// fields as `orbax/cases/README.md` "POLICY") and validates it.
///
/// # Errors
/// `InvalidConfig` when the text is not such JSON (unknown `type`, e.g. a family whose Cargo
/// feature is off; unknown or missing field; wrong type; BestN with disagreeing `mode` and
/// `reverse`), or when [`PreservationPolicy::validate`] rejects it (deviation D4).
pub fn preservation_policy_from_json(text: &str) -> Result<Box<dyn PreservationPolicy>> {
    let policy: Box<dyn PreservationPolicy> = serde_json::from_str(text)
        .map_err(|e| Error::invalid_config(format!("cannot read the preservation policy: {e}")))?;
    policy.validate()?;
    Ok(policy)
}

#[cfg(all(test, feature = "best", feature = "latest"))]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ck(step: Step, metrics: Option<&[(&str, f64)]>) -> CheckpointInfo {
        let metrics = metrics.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
                .collect()
        });
        let time = Utc
            .timestamp_opt(step as i64, 0)
            .single()
            .unwrap_or_default();
        CheckpointInfo::new(step, time, metrics)
    }

    fn any(policies: Vec<Box<dyn PreservationPolicy>>) -> AnyPreservationPolicy {
        AnyPreservationPolicy::new(policies)
    }

    #[test]
    fn ranking_metrics_of_composites_are_the_union() {
        let p = any(vec![
            Box::new(LatestN::new(Some(1))),
            Box::new(BestN::new("loss", BestMode::Min, Some(1))),
            Box::new(any(vec![
                Box::new(BestN::new("acc", BestMode::Max, Some(1))),
                Box::new(BestN::new("loss", BestMode::Min, Some(3))),
            ])),
        ]);
        assert_eq!(p.ranking_metrics(), ["loss", "acc"]);
        assert!(LatestN::new(Some(1)).ranking_metrics().is_empty());
    }

    #[test]
    fn a_metric_no_checkpoint_has_is_refused_naming_what_exists() {
        let p = BestN::new("val_los", BestMode::Min, Some(1));
        let cs = [ck(1, None), ck(2, Some(&[("val_loss", 0.5), ("acc", 0.1)]))];
        let e = check_metrics_exist(&p, &cs).unwrap_err();
        assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidConfig);
        assert!(
            e.message().contains("\"val_los\"") && e.message().contains("\"acc\", \"val_loss\""),
            "{e}"
        );
        // Present in one checkpoint is enough; no metrics anywhere is nothing to compare.
        let ok = BestN::new("acc", BestMode::Max, Some(1));
        assert!(check_metrics_exist(&ok, &cs).is_ok());
        assert!(check_metrics_exist(&p, &[ck(1, None), ck(2, None)]).is_ok());
        assert!(check_metrics_exist(&p, &[]).is_ok());
        assert!(check_metrics_exist(&LatestN::new(Some(1)), &cs).is_ok());
        // A listing plus a step about to be saved.
        let new = ck(3, Some(&[("val_los", 1.0)]));
        assert!(check_metrics_exist(&p, std::iter::once(&new).chain(cs.iter())).is_ok());
    }
}

/// The examples of this crate's README.md, run as doctests so they stay true to the API.
#[cfg(all(doctest, feature = "latest", feature = "interval"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
