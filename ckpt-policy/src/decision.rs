//! Save decisions: whether a step should be saved (Orbax `save_decision_policy`, spec §3.2).

use crate::{DecisionContext, SaveDecisionPolicy};
use chrono::TimeDelta;
use ckpt_core::{CheckpointInfo, Error, Result, Step};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Saves every step that is a multiple of `interval` (steps): `step % interval == 0`. Ignores
/// the history and the context. As Orbax `FixedIntervalPolicy`, spec §3.2; JSON
/// `{"type": "FixedIntervalPolicy", "interval": 1000}`.
///
/// Deviation D4: `interval` 0 is rejected by [`SaveDecisionPolicy::validate`] (`InvalidConfig`)
/// instead of raising `ZeroDivisionError` at every save; if asked anyway, it says "no".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIntervalPolicy {
    /// The interval, in steps; must not be 0.
    pub interval: u64,
}

impl FixedIntervalPolicy {
    /// Saves every multiple of `interval` steps.
    pub fn new(interval: u64) -> Self {
        FixedIntervalPolicy { interval }
    }
}

#[typetag::serde(name = "FixedIntervalPolicy")]
impl SaveDecisionPolicy for FixedIntervalPolicy {
    fn should_save(
        &self,
        step: &CheckpointInfo,
        _previous: &[CheckpointInfo],
        _cx: &DecisionContext,
    ) -> bool {
        step.step.checked_rem(self.interval) == Some(0)
    }

    /// # Errors
    /// `InvalidConfig` when `interval` is 0 (deviation D4).
    fn validate(&self) -> Result<()> {
        if self.interval == 0 {
            return Err(Error::invalid_config(
                "FixedIntervalPolicy: interval must not be 0",
            ));
        }
        Ok(())
    }
}

/// Saves exactly the listed steps. As Orbax `SpecificStepsPolicy`, spec §3.2; JSON
/// `{"type": "SpecificStepsPolicy", "steps": [1, 3, 5]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificStepsPolicy {
    /// The steps to save (any order; duplicates are harmless).
    pub steps: Vec<Step>,
}

impl SpecificStepsPolicy {
    /// Saves exactly `steps`.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        SpecificStepsPolicy {
            steps: steps.into_iter().collect(),
        }
    }
}

#[typetag::serde(name = "SpecificStepsPolicy")]
impl SaveDecisionPolicy for SpecificStepsPolicy {
    fn should_save(
        &self,
        step: &CheckpointInfo,
        _previous: &[CheckpointInfo],
        _cx: &DecisionContext,
    ) -> bool {
        self.steps.contains(&step.step)
    }
}

/// Saves whenever no save is in progress, and at least `minimum_interval_secs` seconds after the
/// most recent previous checkpoint. As Orbax `ContinuousCheckpointingPolicy`, spec §3.2; JSON
/// `{"type": "ContinuousCheckpointingPolicy", "minimum_interval_secs": 60}` (the field may be
/// omitted or `null`).
///
/// Never while `cx.is_saving_in_progress`. Otherwise "yes" when there is no previous checkpoint or
/// no minimum; else "yes" iff `cx.now - t >= minimum_interval_secs` (inclusive), where `t` is the
/// latest commit time among `previous`. (Orbax takes the time of the last element of its
/// in-memory list, i.e. the step saved last; with the ascending listing of deviation D1 the
/// latest time is that same checkpoint.) A minimum too large for a time span never elapses.
/// Single-process: there is no broadcast between hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuousCheckpointingPolicy {
    /// The minimum time between two saves, in seconds; `None` for none.
    #[serde(default)]
    pub minimum_interval_secs: Option<u64>,
}

impl ContinuousCheckpointingPolicy {
    /// Saves whenever no save is in progress and `minimum_interval_secs` (seconds, if any) have
    /// passed since the latest checkpoint.
    pub fn new(minimum_interval_secs: Option<u64>) -> Self {
        ContinuousCheckpointingPolicy {
            minimum_interval_secs,
        }
    }
}

#[typetag::serde(name = "ContinuousCheckpointingPolicy")]
impl SaveDecisionPolicy for ContinuousCheckpointingPolicy {
    fn should_save(
        &self,
        _step: &CheckpointInfo,
        previous: &[CheckpointInfo],
        cx: &DecisionContext,
    ) -> bool {
        if cx.is_saving_in_progress {
            return false;
        }
        let Some(min) = self.minimum_interval_secs else {
            return true;
        };
        let Some(last) = previous.iter().map(|c| c.time).max() else {
            return true;
        };
        match i64::try_from(min).ok().and_then(TimeDelta::try_seconds) {
            Some(min) => cx.now - last >= min,
            None => false,
        }
    }
}

/// Saves when a preemption was signalled for this step (`cx.reached_preemption`). As Orbax
/// `PreemptionCheckpointingPolicy`, spec §3.2; JSON `{"type": "PreemptionCheckpointingPolicy"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreemptionCheckpointingPolicy {}

#[typetag::serde(name = "PreemptionCheckpointingPolicy")]
impl SaveDecisionPolicy for PreemptionCheckpointingPolicy {
    fn should_save(
        &self,
        _step: &CheckpointInfo,
        _previous: &[CheckpointInfo],
        cx: &DecisionContext,
    ) -> bool {
        cx.reached_preemption
    }
}

/// Saves when there is no previous checkpoint (the first save). As Orbax `InitialSavePolicy`,
/// spec §3.2; JSON `{"type": "InitialSavePolicy"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialSavePolicy {}

#[typetag::serde(name = "InitialSavePolicy")]
impl SaveDecisionPolicy for InitialSavePolicy {
    fn should_save(
        &self,
        _step: &CheckpointInfo,
        previous: &[CheckpointInfo],
        _cx: &DecisionContext,
    ) -> bool {
        previous.is_empty()
    }
}

/// Saves when any child says so; children are asked in order and the first "yes" stops the
/// search (short-circuit). No children: never saves (Python `any([])`). As Orbax
/// `AnySavePolicy`, spec §3.2; JSON `{"type": "AnySavePolicy", "policies": [DECISION, ...]}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnySavePolicy {
    /// The children, asked in this order.
    pub policies: Vec<Box<dyn SaveDecisionPolicy>>,
}

impl AnySavePolicy {
    /// Saves when any of `policies` says so.
    pub fn new(policies: Vec<Box<dyn SaveDecisionPolicy>>) -> Self {
        AnySavePolicy { policies }
    }
}

#[typetag::serde(name = "AnySavePolicy")]
impl SaveDecisionPolicy for AnySavePolicy {
    fn should_save(
        &self,
        step: &CheckpointInfo,
        previous: &[CheckpointInfo],
        cx: &DecisionContext,
    ) -> bool {
        self.policies
            .iter()
            .any(|p| p.should_save(step, previous, cx))
    }

    /// # Errors
    /// The first child's error, its message prefixed with the child's index.
    fn validate(&self) -> Result<()> {
        for (i, p) in self.policies.iter().enumerate() {
            p.validate().map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("AnySavePolicy.policies[{i}]: {}", e.message()),
                )
            })?;
        }
        Ok(())
    }
}

/// The closure type of [`ShouldSaveFnPolicy`]: `(step, last_step) -> save?`.
pub type ShouldSaveFn = dyn Fn(Step, Option<Step>) -> bool + Send + Sync;

/// Saves when a user function says so: `f(step, last_step)`, where `last_step` is the highest
/// previous step (`None` when there is none). As Orbax's private `_ShouldSaveFnPolicy` behind the
/// `should_save_fn` option, spec §3.2–§3.3 (Orbax passes the last element of its in-memory
/// list; with the ascending listing of deviation D1 that is the highest step).
///
/// Built in code only: it wraps a Rust closure, so serializing it fails with an error saying so,
/// and so does reading `{"type": "ShouldSaveFnPolicy"}` from a config.
#[derive(Clone)]
pub struct ShouldSaveFnPolicy {
    f: Arc<ShouldSaveFn>,
}

impl ShouldSaveFnPolicy {
    /// Wraps `f(step, last_step) -> bool`.
    pub fn new(f: impl Fn(Step, Option<Step>) -> bool + Send + Sync + 'static) -> Self {
        ShouldSaveFnPolicy { f: Arc::new(f) }
    }
}

impl fmt::Debug for ShouldSaveFnPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShouldSaveFnPolicy(<closure>)")
    }
}

const FN_POLICY_NOT_SERIALIZABLE: &str = "ShouldSaveFnPolicy wraps a Rust closure and cannot be \
     written to or read from a config; build it in code with ShouldSaveFnPolicy::new";

impl Serialize for ShouldSaveFnPolicy {
    /// Always fails: a closure cannot be serialized.
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(FN_POLICY_NOT_SERIALIZABLE))
    }
}

impl<'de> Deserialize<'de> for ShouldSaveFnPolicy {
    /// Always fails: a closure cannot be read from a config.
    fn deserialize<D: Deserializer<'de>>(_deserializer: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(FN_POLICY_NOT_SERIALIZABLE))
    }
}

#[typetag::serde(name = "ShouldSaveFnPolicy")]
impl SaveDecisionPolicy for ShouldSaveFnPolicy {
    fn should_save(
        &self,
        step: &CheckpointInfo,
        previous: &[CheckpointInfo],
        _cx: &DecisionContext,
    ) -> bool {
        let last = previous.iter().map(|c| c.step).max();
        (self.f)(step.step, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use ckpt_core::ErrorKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn info(step: Step, secs: i64) -> CheckpointInfo {
        CheckpointInfo::new(step, t(secs), None)
    }

    fn cx(now: i64) -> DecisionContext {
        DecisionContext {
            is_saving_in_progress: false,
            reached_preemption: false,
            now: t(now),
        }
    }

    /// Replays `save(step)` for each step as a synchronous manager would (the policy is asked;
    /// a "yes" appends the step) and returns the steps saved.
    fn replay(policy: &dyn SaveDecisionPolicy, steps: impl IntoIterator<Item = Step>) -> Vec<Step> {
        let mut saved: Vec<CheckpointInfo> = Vec::new();
        for s in steps {
            let i = info(s, s as i64);
            if policy.should_save(&i, &saved, &cx(s as i64)) {
                saved.push(i);
            }
        }
        saved.iter().map(|c| c.step).collect()
    }

    #[test]
    fn s15_any_of_intervals_and_steps() {
        let p = AnySavePolicy::new(vec![
            Box::new(FixedIntervalPolicy::new(3)),
            Box::new(SpecificStepsPolicy::new([4])),
            Box::new(FixedIntervalPolicy::new(5)),
        ]);
        assert_eq!(replay(&p, 1..=10), vec![3, 4, 5, 6, 9, 10]);
    }

    #[test]
    fn s16_with_initial_save() {
        let p = AnySavePolicy::new(vec![
            Box::new(FixedIntervalPolicy::new(3)),
            Box::new(SpecificStepsPolicy::new([4])),
            Box::new(FixedIntervalPolicy::new(5)),
            Box::new(InitialSavePolicy {}),
        ]);
        assert_eq!(replay(&p, 1..=10), vec![1, 3, 4, 5, 6, 9, 10]);
    }

    fn s11_fn() -> ShouldSaveFnPolicy {
        ShouldSaveFnPolicy::new(|step, _last| step != 0 && (step % 3 == 0 || step == 2))
    }

    #[test]
    fn s11_should_save_fn_on_an_empty_root() {
        // Legacy mapping with should_save_fn: Any[fn, Preemption]; no InitialSavePolicy.
        let p = AnySavePolicy::new(vec![
            Box::new(s11_fn()),
            Box::new(PreemptionCheckpointingPolicy {}),
        ]);
        let got: Vec<bool> = (0..=6)
            .map(|s| p.should_save(&info(s, 0), &[], &cx(0)))
            .collect();
        assert_eq!(got, vec![false, false, true, true, false, false, true]);
    }

    #[test]
    fn s12_should_save_fn_saves() {
        let p = AnySavePolicy::new(vec![
            Box::new(s11_fn()),
            Box::new(PreemptionCheckpointingPolicy {}),
        ]);
        assert_eq!(replay(&p, 0..10), vec![2, 3, 6, 9]);
    }

    #[test]
    fn should_save_fn_sees_the_highest_previous_step() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let p = ShouldSaveFnPolicy::new(move |s, last| {
            seen2.lock().unwrap().push((s, last));
            true
        });
        p.should_save(&info(9, 0), &[], &cx(0));
        p.should_save(&info(9, 0), &[info(3, 0), info(7, 0)], &cx(0));
        assert_eq!(*seen.lock().unwrap(), vec![(9, None), (9, Some(7))]);
    }

    #[test]
    fn should_save_fn_is_not_serializable() {
        let p: Box<dyn SaveDecisionPolicy> = Box::new(s11_fn());
        let err = serde_json::to_string(&p).unwrap_err().to_string();
        assert!(
            err.contains("ShouldSaveFnPolicy wraps a Rust closure"),
            "{err}"
        );
        let err = serde_json::from_str::<Box<dyn SaveDecisionPolicy>>(
            r#"{"type": "ShouldSaveFnPolicy"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ShouldSaveFnPolicy wraps a Rust closure"),
            "{err}"
        );
        assert_eq!(format!("{p:?}"), "ShouldSaveFnPolicy(<closure>)");
    }

    #[test]
    fn any_save_short_circuits_in_order() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&calls);
        let p = AnySavePolicy::new(vec![
            Box::new(FixedIntervalPolicy::new(2)),
            Box::new(ShouldSaveFnPolicy::new(move |_, _| {
                c2.fetch_add(1, Ordering::SeqCst);
                false
            })),
        ]);
        assert!(p.should_save(&info(4, 0), &[], &cx(0)));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(!p.should_save(&info(5, 0), &[], &cx(0)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!AnySavePolicy::default().should_save(&info(0, 0), &[], &cx(0)));
    }

    #[test]
    fn s17_initial_save() {
        let p = InitialSavePolicy {};
        assert!(p.should_save(&info(0, 0), &[], &cx(0)));
        assert!(p.should_save(&info(10, 0), &[], &cx(0)));
        assert!(!p.should_save(&info(11, 0), &[info(10, 0)], &cx(0)));
    }

    #[test]
    fn preemption() {
        let p = PreemptionCheckpointingPolicy {};
        assert!(!p.should_save(&info(3, 0), &[], &cx(0)));
        let mut c = cx(0);
        c.reached_preemption = true;
        assert!(p.should_save(&info(3, 0), &[], &c));
    }

    #[test]
    fn s10_interval_with_preemption() {
        // interval 4, preemption at step 2, save 0..9 -> 0, 2, 4, 8.
        let p = AnySavePolicy::new(vec![
            Box::new(FixedIntervalPolicy::new(4)),
            Box::new(PreemptionCheckpointingPolicy {}),
        ]);
        let mut saved = Vec::new();
        for s in 0..10u64 {
            let mut c = cx(0);
            c.reached_preemption = s == 2;
            if p.should_save(&info(s, 0), &saved, &c) {
                saved.push(info(s, 0));
            }
        }
        assert_eq!(
            saved.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![0, 2, 4, 8]
        );
    }

    #[test]
    fn s18_continuous_without_minimum_saves_every_step() {
        let p = ContinuousCheckpointingPolicy::default();
        assert_eq!(replay(&p, 0..10), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn s19_continuous_never_while_saving() {
        let p = ContinuousCheckpointingPolicy::new(None);
        let mut c = cx(0);
        c.is_saving_in_progress = true;
        assert!(!p.should_save(&info(1, 0), &[info(0, 0)], &c));
        assert!(!p.should_save(&info(0, 0), &[], &c));
        let q = ContinuousCheckpointingPolicy::new(Some(2));
        assert!(!q.should_save(&info(0, 0), &[], &c));
    }

    #[test]
    fn s20_continuous_minimum_interval_is_inclusive() {
        let p = ContinuousCheckpointingPolicy::new(Some(2));
        assert!(p.should_save(&info(0, 0), &[], &cx(0)));
        let prev = [info(0, 10)];
        assert!(!p.should_save(&info(1, 0), &prev, &cx(10)));
        assert!(!p.should_save(&info(1, 0), &prev, &cx(11)));
        assert!(p.should_save(&info(2, 0), &prev, &cx(12)));
        assert!(p.should_save(&info(2, 0), &prev, &cx(100)));
        // 1.999 s is not enough.
        let mut c = cx(11);
        c.now += TimeDelta::milliseconds(999);
        assert!(!p.should_save(&info(2, 0), &prev, &c));
        // The latest time counts, whatever the order.
        assert!(!p.should_save(&info(9, 0), &[info(5, 10), info(3, 0)], &cx(11)));
        // A clock behind the last save, and a minimum too large for a time span: no.
        assert!(!p.should_save(&info(2, 0), &prev, &cx(0)));
        let huge = ContinuousCheckpointingPolicy::new(Some(u64::MAX));
        assert!(!huge.should_save(&info(2, 0), &prev, &cx(100)));
    }

    #[test]
    fn fixed_interval_zero_is_invalid_and_never_panics() {
        let p = FixedIntervalPolicy::new(0);
        assert_eq!(p.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        assert!(!p.should_save(&info(0, 0), &[], &cx(0)));
        let any = AnySavePolicy::new(vec![Box::new(InitialSavePolicy {}), Box::new(p)]);
        let err = any.validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("policies[1]"), "{err}");
        assert!(FixedIntervalPolicy::new(1).validate().is_ok());
    }

    #[test]
    fn decisions_json_round_trip() {
        let text = r#"{"type": "AnySavePolicy", "policies": [
            {"type": "FixedIntervalPolicy", "interval": 3},
            {"type": "SpecificStepsPolicy", "steps": [4]},
            {"type": "ContinuousCheckpointingPolicy", "minimum_interval_secs": 5},
            {"type": "ContinuousCheckpointingPolicy"},
            {"type": "PreemptionCheckpointingPolicy"},
            {"type": "InitialSavePolicy"}]}"#;
        let p: Box<dyn SaveDecisionPolicy> = serde_json::from_str(text).unwrap();
        let out = serde_json::to_string(&p).unwrap();
        assert_eq!(
            out,
            r#"{"type":"AnySavePolicy","policies":[{"type":"FixedIntervalPolicy","interval":3},{"type":"SpecificStepsPolicy","steps":[4]},{"type":"ContinuousCheckpointingPolicy","minimum_interval_secs":5},{"type":"ContinuousCheckpointingPolicy","minimum_interval_secs":null},{"type":"PreemptionCheckpointingPolicy"},{"type":"InitialSavePolicy"}]}"#
        );
        let back: Box<dyn SaveDecisionPolicy> = serde_json::from_str(&out).unwrap();
        assert_eq!(replay(back.as_ref(), 1..=10), replay(p.as_ref(), 1..=10));
        assert!(serde_json::from_str::<Box<dyn SaveDecisionPolicy>>(
            r#"{"type": "FixedIntervalPolicy", "intervall": 3}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Box<dyn SaveDecisionPolicy>>(r#"{"type": "Nope"}"#).is_err()
        );
        let err = crate::save_decision_policy_from_json(
            r#"{"type": "FixedIntervalPolicy", "interval": 0}"#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let err = crate::save_decision_policy_from_json(r#"{"type": "FixedIntervalPolicy"}"#)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    }
}
