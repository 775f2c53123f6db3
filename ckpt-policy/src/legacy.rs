//! The mapping of Orbax's legacy options onto policies (spec §3.3, §4.3), as the manager uses it
//! when no policy is given.

use crate::decision::{
    AnySavePolicy, FixedIntervalPolicy, InitialSavePolicy, PreemptionCheckpointingPolicy,
    ShouldSaveFnPolicy, SpecificStepsPolicy,
};
use crate::{AnyPreservationPolicy, BestMode, PreservationPolicy, SaveDecisionPolicy};
use ckpt_core::{Error, Result, Step};

/// The default save decision from the legacy options, as Orbax builds it when
/// `save_decision_policy` and `should_save_fn` are unset (spec §3.3): `AnySavePolicy` of, in this
/// order, `FixedIntervalPolicy(save_interval_steps)` (if `Some`; Orbax's default is 1),
/// `SpecificStepsPolicy(save_on_steps)` (if non-empty; an empty one never says "yes", so
/// leaving it out changes nothing), `PreemptionCheckpointingPolicy`, `InitialSavePolicy`.
///
/// Never fails: a `save_interval_steps` of 0 gives a policy whose
/// [`SaveDecisionPolicy::validate`] fails with `InvalidConfig`; the manager calls it when it is
/// built (deviation D4; Orbax raises `ZeroDivisionError` at every save).
pub fn legacy_save_decision(
    save_interval_steps: Option<u64>,
    save_on_steps: &[Step],
) -> Box<dyn SaveDecisionPolicy> {
    let mut policies: Vec<Box<dyn SaveDecisionPolicy>> = Vec::new();
    if let Some(interval) = save_interval_steps {
        policies.push(Box::new(FixedIntervalPolicy::new(interval)));
    }
    if !save_on_steps.is_empty() {
        policies.push(Box::new(SpecificStepsPolicy::new(
            save_on_steps.iter().copied(),
        )));
    }
    policies.push(Box::new(PreemptionCheckpointingPolicy {}));
    policies.push(Box::new(InitialSavePolicy {}));
    Box::new(AnySavePolicy::new(policies))
}

/// The save decision when Orbax's legacy `should_save_fn` option is set (spec §3.3):
/// `AnySavePolicy[f, PreemptionCheckpointingPolicy]`. `save_interval_steps` and `save_on_steps`
/// are then ignored, and there is no `InitialSavePolicy`, so step 0 is not saved automatically.
pub fn legacy_should_save_fn_decision(f: ShouldSaveFnPolicy) -> Box<dyn SaveDecisionPolicy> {
    Box::new(AnySavePolicy::new(vec![
        Box::new(f),
        Box::new(PreemptionCheckpointingPolicy {}),
    ]))
}

/// Orbax's legacy retention options (spec §4.3, §5.1), as [`legacy_preservation`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRetention {
    /// `max_to_keep`: how many checkpoints `LatestN` (or `BestN`, with `best`) keeps; `None`
    /// keeps all. (Orbax rejects a negative value; `u64` cannot hold one.)
    pub max_to_keep: Option<u64>,
    /// `keep_period`, in steps: also keep every multiple of it. 0 is invalid (deviation D4).
    pub keep_period: Option<u64>,
    /// `keep_time_interval`, in whole seconds (Orbax truncates its `timedelta` to whole
    /// seconds, so a sub-second interval is 0, which keeps every checkpoint).
    pub keep_time_interval_secs: Option<u64>,
    /// `best_fn` / `best_mode`: the metric key and which end is better. When set, `BestN`
    /// replaces `LatestN`, so recency is not protected (as Orbax).
    pub best: Option<(String, BestMode)>,
    /// `keep_checkpoints_without_metrics` (Orbax default `true`); only used with `best`.
    pub keep_checkpoints_without_metrics: bool,
}

impl Default for LegacyRetention {
    /// Orbax's defaults: nothing set, `keep_checkpoints_without_metrics: true` (keeps all).
    fn default() -> Self {
        LegacyRetention {
            max_to_keep: None,
            keep_period: None,
            keep_time_interval_secs: None,
            best: None,
            keep_checkpoints_without_metrics: true,
        }
    }
}

#[cfg(not(all(
    feature = "interval",
    feature = "time",
    feature = "best",
    feature = "latest"
)))]
fn feature_off(option: &str, feature: &str) -> Error {
    Error::new(
        ckpt_core::ErrorKind::Unsupported,
        format!("{option} needs the `{feature}` feature of ckpt-policy, which is off"),
    )
}

/// The default preservation from the legacy options, as Orbax builds it when
/// `preservation_policy` is unset (spec §4.3): `AnyPreservationPolicy` of, in this order,
/// `EveryNSteps(keep_period)` (exact; if set), `EveryNSeconds(keep_time_interval_secs)` (if set),
/// and `BestN(metric, mode, n = max_to_keep, keep_checkpoints_without_metrics)` if `best` is set,
/// else `LatestN(max_to_keep)`. So `max_to_keep: None` keeps everything, and `keep_period` /
/// `keep_time_interval_secs` only add survivors.
///
/// # Errors
/// - `InvalidConfig` when `keep_period` is `Some(0)` (deviation D4: Orbax fails after the step
///   is written).
/// - `Unsupported` when an option needs a policy family whose Cargo feature is off:
///   `keep_period` needs `interval`, `keep_time_interval_secs` needs `time`, `best` needs `best`,
///   and a `max_to_keep` without `best` needs `latest` (with `latest` off and `max_to_keep`
///   `None`, `PreserveAll` stands in for `LatestN(None)`, which behaves the same).
pub fn legacy_preservation(opts: &LegacyRetention) -> Result<Box<dyn PreservationPolicy>> {
    let mut policies: Vec<Box<dyn PreservationPolicy>> = Vec::new();
    if let Some(period) = opts.keep_period {
        if period == 0 {
            return Err(Error::invalid_config("keep_period must not be 0"));
        }
        #[cfg(feature = "interval")]
        policies.push(Box::new(crate::EveryNSteps::new(period)));
        #[cfg(not(feature = "interval"))]
        return Err(feature_off("keep_period", "interval"));
    }
    if let Some(_secs) = opts.keep_time_interval_secs {
        #[cfg(feature = "time")]
        policies.push(Box::new(crate::EveryNSeconds::new(_secs)));
        #[cfg(not(feature = "time"))]
        return Err(feature_off("keep_time_interval", "time"));
    }
    if let Some((_metric, _mode)) = &opts.best {
        #[cfg(feature = "best")]
        policies.push(Box::new(
            crate::BestN::new(_metric.clone(), *_mode, opts.max_to_keep)
                .keep_checkpoints_without_metrics(opts.keep_checkpoints_without_metrics),
        ));
        #[cfg(not(feature = "best"))]
        return Err(feature_off("best_fn", "best"));
    } else {
        #[cfg(feature = "latest")]
        policies.push(Box::new(crate::LatestN::new(opts.max_to_keep)));
        #[cfg(not(feature = "latest"))]
        match opts.max_to_keep {
            None => policies.push(Box::new(crate::PreserveAll {})),
            Some(_) => return Err(feature_off("max_to_keep", "latest")),
        }
    }
    Ok(Box::new(AnyPreservationPolicy::new(policies)))
}
