//! The legacy option mapping (spec §3.3, §4.3), checked by replaying manager-level rows of spec
//! §7.2–§7.3 at policy level: each save appends the step, then retention runs over the survivors.

mod common;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ckpt_core::{CheckpointInfo, ErrorKind, Step};
use ckpt_policy::*;

fn t(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::hours(hours)
}

fn dcx(now: DateTime<Utc>) -> DecisionContext {
    DecisionContext {
        is_saving_in_progress: false,
        reached_preemption: false,
        now,
    }
}

/// Calls `save(step)` for each `(step, hour, loss)` as a synchronous manager would: asks the
/// save decision, appends the step, applies retention; returns the survivors.
#[allow(dead_code)]
fn replay(
    decision: &dyn SaveDecisionPolicy,
    retention: &dyn PreservationPolicy,
    saves: &[(Step, i64, Option<f64>)],
) -> Vec<Step> {
    let mut live: Vec<CheckpointInfo> = Vec::new();
    for &(step, hour, l) in saves {
        let info =
            CheckpointInfo::new(step, t(hour), l.map(|v| common::loss(serde_json::json!(v))));
        if live.last().is_some_and(|c| c.step >= step)
            || !decision.should_save(&info, &live, &dcx(t(hour)))
        {
            continue;
        }
        live.push(info);
        let cx = PreservationContext { now: t(hour) };
        let verdicts = decide(retention, &live, &cx);
        let keep: Vec<Step> = verdicts
            .iter()
            .filter(|(_, v)| v.keep)
            .map(|(s, _)| *s)
            .collect();
        live.retain(|c| keep.contains(&c.step));
    }
    live.iter().map(|c| c.step).collect()
}

#[allow(dead_code)]
fn hourly(steps: impl IntoIterator<Item = Step>) -> Vec<(Step, i64, Option<f64>)> {
    steps.into_iter().map(|s| (s, s as i64, None)).collect()
}

#[allow(dead_code)]
fn retention(opts: LegacyRetention) -> Box<dyn PreservationPolicy> {
    let p = legacy_preservation(&opts).unwrap();
    p.validate().unwrap();
    p
}

#[allow(dead_code)]
fn every_step() -> Box<dyn SaveDecisionPolicy> {
    legacy_save_decision(Some(1), &[])
}

#[test]
fn save_decision_mapping_s1_s2_s13() {
    let s1 = legacy_save_decision(Some(2), &[]);
    let saved: Vec<Step> = {
        let mut live: Vec<CheckpointInfo> = Vec::new();
        for s in 0..6 {
            let i = CheckpointInfo::new(s, t(0), None);
            if s > 0 && s % 2 == 1 {
                assert!(!s1.should_save(&i, &live, &dcx(t(0))), "S1 step {s}");
            }
            if s1.should_save(&i, &live, &dcx(t(0))) {
                live.push(i);
            }
        }
        live.iter().map(|c| c.step).collect()
    };
    assert_eq!(saved, vec![0, 2, 4], "S1");
    let s2 = legacy_save_decision(Some(10000), &[1, 3, 5]);
    let mut live: Vec<CheckpointInfo> = Vec::new();
    for s in 0..6 {
        let i = CheckpointInfo::new(s, t(0), None);
        if s2.should_save(&i, &live, &dcx(t(0))) {
            live.push(i);
        }
    }
    assert_eq!(
        live.iter().map(|c| c.step).collect::<Vec<_>>(),
        vec![0, 1, 3, 5],
        "S2"
    );
    // S13: on an empty root every step may be saved (InitialSavePolicy).
    let s13 = legacy_save_decision(Some(2), &[1]);
    for s in 0..=6 {
        assert!(
            s13.should_save(&CheckpointInfo::new(s, t(0), None), &[], &dcx(t(0))),
            "S13 {s}"
        );
    }
    // The written form lists the children in Orbax's order.
    assert_eq!(
        serde_json::to_string(&s13).unwrap(),
        r#"{"type":"AnySavePolicy","policies":[{"type":"FixedIntervalPolicy","interval":2},{"type":"SpecificStepsPolicy","steps":[1]},{"type":"PreemptionCheckpointingPolicy"},{"type":"InitialSavePolicy"}]}"#
    );
    assert_eq!(
        serde_json::to_string(&legacy_save_decision(None, &[])).unwrap(),
        r#"{"type":"AnySavePolicy","policies":[{"type":"PreemptionCheckpointingPolicy"},{"type":"InitialSavePolicy"}]}"#
    );
}

#[test]
fn s21_zero_interval_is_invalid_config() {
    let p = legacy_save_decision(Some(0), &[]);
    assert_eq!(
        p.validate().unwrap_err().kind(),
        ErrorKind::InvalidConfig,
        "S21 (D4)"
    );
    assert!(legacy_save_decision(Some(1), &[]).validate().is_ok());
}

#[test]
fn s11_should_save_fn_mapping() {
    let p = legacy_should_save_fn_decision(ShouldSaveFnPolicy::new(|s, _| {
        s != 0 && (s % 3 == 0 || s == 2)
    }));
    let got: Vec<bool> = (0..=6)
        .map(|s| p.should_save(&CheckpointInfo::new(s, t(0), None), &[], &dcx(t(0))))
        .collect();
    assert_eq!(
        got,
        vec![false, false, true, true, false, false, true],
        "S11"
    );
}

#[test]
fn keep_period_zero_is_invalid_config() {
    let opts = LegacyRetention {
        keep_period: Some(0),
        ..LegacyRetention::default()
    };
    assert_eq!(
        legacy_preservation(&opts).unwrap_err().kind(),
        ErrorKind::InvalidConfig
    );
}

#[cfg(feature = "latest")]
#[test]
fn default_retention_keeps_everything() {
    let p = retention(LegacyRetention::default());
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"type":"AnyPreservationPolicy","policies":[{"type":"LatestN","n":null}]}"#
    );
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &hourly(0..8)),
        (0..8).collect::<Vec<_>>()
    );
}

#[cfg(feature = "latest")]
#[test]
fn m1_m2_max_to_keep() {
    let m1 = retention(LegacyRetention {
        max_to_keep: Some(2),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), m1.as_ref(), &hourly(0..5)),
        vec![3, 4],
        "M1"
    );
    let m2 = retention(LegacyRetention {
        max_to_keep: Some(0),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), m2.as_ref(), &hourly(0..5)),
        Vec::<Step>::new(),
        "M2"
    );
}

#[cfg(all(feature = "latest", feature = "interval", feature = "time"))]
#[test]
fn m3_m4_m5_m19_m20_m21_m22_periods_and_intervals() {
    let p = retention(LegacyRetention {
        max_to_keep: Some(0),
        keep_period: Some(3),
        keep_time_interval_secs: Some(5 * 3600),
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"type":"AnyPreservationPolicy","policies":[{"type":"EveryNSteps","interval_steps":3,"exact_interval":true,"max_to_keep":null},{"type":"EveryNSeconds","interval_secs":18000},{"type":"LatestN","n":0}]}"#
    );
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &hourly(0..9)),
        vec![0, 3, 5, 6],
        "M3"
    );

    let p = retention(LegacyRetention {
        max_to_keep: Some(2),
        keep_period: Some(4),
        ..Default::default()
    });
    let every2 = legacy_save_decision(Some(2), &[]);
    assert_eq!(
        replay(every2.as_ref(), p.as_ref(), &hourly(0..12)),
        vec![0, 4, 8, 10],
        "M4"
    );

    let p = retention(LegacyRetention {
        max_to_keep: Some(2),
        keep_time_interval_secs: Some(3 * 3600),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &hourly(0..10)),
        vec![0, 3, 6, 8, 9],
        "M5"
    );

    let p = retention(LegacyRetention {
        keep_period: Some(3),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &hourly(0..8)),
        (0..8).collect::<Vec<_>>(),
        "M19"
    );

    let p = retention(LegacyRetention {
        max_to_keep: Some(1),
        keep_period: Some(3),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &hourly(0..8)),
        vec![0, 3, 6, 7],
        "M20"
    );

    let p = retention(LegacyRetention {
        max_to_keep: Some(2),
        ..Default::default()
    });
    let every3 = legacy_save_decision(Some(3), &[]);
    assert_eq!(
        replay(every3.as_ref(), p.as_ref(), &hourly(0..13)),
        vec![9, 12],
        "M21"
    );

    let p = retention(LegacyRetention {
        max_to_keep: Some(1),
        keep_time_interval_secs: Some(3600),
        ..Default::default()
    });
    let same_second: Vec<(Step, i64, Option<f64>)> = (0..3).map(|s| (s, 0, None)).collect();
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &same_second),
        vec![0, 2],
        "M22"
    );
}

#[cfg(all(feature = "best", feature = "time"))]
#[test]
fn m6_m7_m8_m10_m12_m13_best() {
    let best = |n: u64, mode: BestMode| LegacyRetention {
        max_to_keep: Some(n),
        best: Some(("loss".to_string(), mode)),
        ..Default::default()
    };
    let with = |losses: &[f64]| -> Vec<(Step, i64, Option<f64>)> {
        losses
            .iter()
            .enumerate()
            .map(|(s, &l)| (s as Step, s as i64, Some(l)))
            .collect()
    };

    let p = retention(LegacyRetention {
        keep_time_interval_secs: Some(3 * 3600),
        ..best(3, BestMode::Min)
    });
    let losses: Vec<f64> = (0..10).map(|s| s as f64).collect();
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &with(&losses)),
        vec![0, 1, 2, 3, 6, 9],
        "M6"
    );

    let p = retention(best(2, BestMode::Min));
    let losses = [5.0, 2.0, 4.0, 3.0, 7.0, 1.0, 10.0, 9.0, 7.0, 4.0];
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &with(&losses)),
        vec![1, 5],
        "M7"
    );

    let p = retention(best(2, BestMode::Max));
    let acc = [30.0, 85.0, 70.0, 80.0, 60.0, 100.0, 40.0, 45.0, 75.0, 75.0];
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &with(&acc)),
        vec![1, 5],
        "M8"
    );

    let p = retention(best(3, BestMode::Min));
    let some: Vec<(Step, i64, Option<f64>)> = [Some(3.0), None, Some(4.0), None, Some(7.0), None]
        .iter()
        .enumerate()
        .map(|(s, &l)| (s as Step, s as i64, l))
        .collect();
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &some),
        (0..6).collect::<Vec<_>>(),
        "M10"
    );

    for mode in [BestMode::Min, BestMode::Max] {
        let p = retention(best(2, mode));
        assert_eq!(
            replay(every_step().as_ref(), p.as_ref(), &with(&[1.0; 5])),
            vec![3, 4],
            "M12 {mode}"
        );
    }

    let p = retention(LegacyRetention {
        keep_checkpoints_without_metrics: false,
        ..best(2, BestMode::Min)
    });
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &some),
        vec![0, 2],
        "M13"
    );

    let p = retention(LegacyRetention {
        best: Some(("loss".into(), BestMode::Min)),
        ..Default::default()
    });
    assert_eq!(
        replay(every_step().as_ref(), p.as_ref(), &with(&[1.0; 5])),
        (0..5).collect::<Vec<_>>(),
        "M14"
    );
}

#[cfg(not(feature = "interval"))]
#[test]
fn keep_period_without_the_interval_feature_is_unsupported() {
    let opts = LegacyRetention {
        keep_period: Some(3),
        ..LegacyRetention::default()
    };
    assert_eq!(
        legacy_preservation(&opts).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[cfg(not(feature = "latest"))]
#[test]
fn without_latest_max_to_keep_none_is_preserve_all() {
    let p = legacy_preservation(&LegacyRetention::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"type":"AnyPreservationPolicy","policies":[{"type":"PreserveAll"}]}"#
    );
    let opts = LegacyRetention {
        max_to_keep: Some(2),
        ..LegacyRetention::default()
    };
    assert_eq!(
        legacy_preservation(&opts).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}
