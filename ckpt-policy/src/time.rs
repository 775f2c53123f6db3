//! `EveryNSeconds` and `LatestDuration` (feature `time`).

use crate::{PreservationContext, PreservationPolicy, Verdict};
use chrono::TimeDelta;
use ckpt_core::CheckpointInfo;
use serde::{Deserialize, Serialize};

/// `secs` as a time span; `None` when too large for one (treated as "never elapses").
fn span(secs: u64) -> Option<TimeDelta> {
    i64::try_from(secs).ok().and_then(TimeDelta::try_seconds)
}

/// A time span written in seconds: `"3"`, `"-1.5"`, `"0.250"`.
fn fmt_secs(d: TimeDelta) -> String {
    if d.subsec_nanos() == 0 {
        d.num_seconds().to_string()
    } else {
        let ms = d.num_milliseconds();
        format!(
            "{}{}.{:03}",
            if ms < 0 { "-" } else { "" },
            (ms / 1000).abs(),
            (ms % 1000).abs()
        )
    }
}

/// Keeps a checkpoint at least every `interval_secs` seconds of commit time. As Orbax
/// `EveryNSeconds`, spec §4.1; JSON `{"type": "EveryNSeconds", "interval_secs": 3600}`.
///
/// The first checkpoint is always kept and becomes the anchor; walking forward, a checkpoint is
/// kept iff its time is at least `interval_secs` after the anchor's (inclusive), and it then
/// becomes the anchor. The legacy `keep_time_interval` maps here, truncated to whole seconds
/// (spec §4.3), so 0 keeps every checkpoint. An interval too large for a time span keeps only the
/// first checkpoint.
///
/// Reasons: `"first checkpoint (time anchor)"`, `"3 >= 3 s after kept step 0"`,
/// `"only 2 < 3 s after kept step 0"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EveryNSeconds {
    /// The interval, in seconds.
    pub interval_secs: u64,
}

impl EveryNSeconds {
    /// Keeps a checkpoint at least every `interval_secs` seconds.
    pub fn new(interval_secs: u64) -> Self {
        EveryNSeconds { interval_secs }
    }
}

#[typetag::serde(name = "EveryNSeconds")]
impl PreservationPolicy for EveryNSeconds {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let interval = span(self.interval_secs);
        let secs = self.interval_secs;
        let mut anchor: Option<&CheckpointInfo> = None;
        checkpoints
            .iter()
            .map(|c| match anchor {
                None => {
                    anchor = Some(c);
                    Verdict::keep("first checkpoint (time anchor)")
                }
                Some(a) => {
                    let elapsed = c.time - a.time;
                    if interval.is_some_and(|i| elapsed >= i) {
                        let v = Verdict::keep(format!(
                            "{} >= {secs} s after kept step {}",
                            fmt_secs(elapsed),
                            a.step
                        ));
                        anchor = Some(c);
                        v
                    } else {
                        Verdict::drop(format!(
                            "only {} < {secs} s after kept step {}",
                            fmt_secs(elapsed),
                            a.step
                        ))
                    }
                }
            })
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let interval = span(self.interval_secs);
        let mut anchor: Option<&CheckpointInfo> = None;
        checkpoints
            .iter()
            .map(|c| match anchor {
                Some(a) if interval.is_none_or(|i| c.time - a.time < i) => false,
                _ => {
                    anchor = Some(c);
                    true
                }
            })
            .collect()
    }
}

/// Keeps the checkpoints of the last `duration_secs` seconds: the first checkpoint (in listing
/// order) committed at most `duration_secs` before `cx.now` (inclusive), and every checkpoint
/// after it, even an older one; none when no checkpoint is that recent. As Orbax
/// `LatestDuration`, spec §4.1; JSON `{"type": "LatestDuration", "duration_secs": 86400}`.
///
/// Deviation: Orbax takes a `timedelta` named `duration` and reads the wall clock; here the
/// duration is whole seconds in `duration_secs`, and "now" is the context's (the manager's
/// injectable clock). A duration too large for a time span covers everything.
///
/// Reasons: `"within 86400 s of now (age 82800 s)"`,
/// `"after step 2, the first within 86400 s of now"`, `"older than 86400 s (age 90000 s)"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestDuration {
    /// How far back from now to keep, in seconds.
    pub duration_secs: u64,
}

impl LatestDuration {
    /// Keeps the checkpoints of the last `duration_secs` seconds.
    pub fn new(duration_secs: u64) -> Self {
        LatestDuration { duration_secs }
    }
}

#[typetag::serde(name = "LatestDuration")]
impl PreservationPolicy for LatestDuration {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let d = self.duration_secs;
        let within = |c: &CheckpointInfo| span(d).is_none_or(|span| cx.now - c.time <= span);
        let first = checkpoints.iter().position(within);
        checkpoints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let age = fmt_secs(cx.now - c.time);
                match first {
                    Some(f) if i == f => {
                        Verdict::keep(format!("within {d} s of now (age {age} s)"))
                    }
                    Some(f) if i > f => Verdict::keep(format!(
                        "after step {}, the first within {d} s of now",
                        checkpoints[f].step
                    )),
                    _ => Verdict::drop(format!("older than {d} s (age {age} s)")),
                }
            })
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], cx: &PreservationContext) -> Vec<bool> {
        let d = self.duration_secs;
        let within = |c: &CheckpointInfo| span(d).is_none_or(|span| cx.now - c.time <= span);
        let first = checkpoints.iter().position(within);
        (0..checkpoints.len())
            .map(|i| first.is_some_and(|f| i >= f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_written_plainly() {
        assert_eq!(fmt_secs(TimeDelta::seconds(3)), "3");
        assert_eq!(fmt_secs(TimeDelta::milliseconds(1500)), "1.500");
        assert_eq!(fmt_secs(TimeDelta::milliseconds(-1500)), "-1.500");
        assert_eq!(fmt_secs(TimeDelta::milliseconds(-250)), "-0.250");
    }
}
