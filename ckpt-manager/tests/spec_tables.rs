//! The spec's tables for the legacy options (docs/orbax-behaviour.md §7.2 M1–M10, M12–M14, M19–M23; §7.3
//! S1–S3, S5–S8, S14, S17, S21–S23, S27–S29) as tests, one per row, on real directories.
//! Adjusted only for the deviations of docs/deviations.md, noted where they apply.
//!
//! Longer than the ~600 lines a file should hold, on purpose: it is one table, a test per row in
//! the spec's order, so that a row of §7 and its test are found by the same name in one place.

use chrono::{DateTime, TimeDelta, Utc};
use ckpt_manager::core::{ErrorKind, ManualClock};
use ckpt_manager::{BestMode, CheckpointManager, CheckpointManagerOptions, Composite, SaveOptions};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

fn open(root: &Path, options: CheckpointManagerOptions) -> CheckpointManager {
    CheckpointManager::open(root.to_str().unwrap(), options).unwrap()
}

fn item(step: u64) -> Value {
    json!({ "step": step })
}

fn metrics(pairs: &[(&str, f64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn save(m: &mut CheckpointManager, step: u64) -> bool {
    m.save(
        step,
        Composite::new().json_value("default", item(step)),
        SaveOptions::default(),
    )
    .unwrap()
}

fn save_with(m: &mut CheckpointManager, step: u64, metrics: Option<Map<String, Value>>) -> bool {
    let o = SaveOptions {
        metrics,
        ..Default::default()
    };
    m.save(step, Composite::new().json_value("default", item(step)), o)
        .unwrap()
}

/// Steps present on disk (committed step directories), ascending.
fn disk_steps(root: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(root)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        })
        .filter_map(|e| {
            let e = e.unwrap();
            if !e.file_type().unwrap().is_dir() {
                return None;
            }
            let n = e.file_name().to_string_lossy().into_owned();
            if n != "0" && n.starts_with('0') {
                return None;
            }
            n.parse().ok()
        })
        .collect();
    v.sort();
    v
}

fn hourly_clock() -> (ManualClock, Arc<ManualClock>) {
    let base: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-05-29T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let c = ManualClock::new(base);
    (c.clone(), Arc::new(c))
}

/// The tables describe synchronous saves (spec §7 conventions); async saves have their own tests.
fn opts() -> CheckpointManagerOptions {
    CheckpointManagerOptions {
        enable_async_checkpointing: false,
        ..Default::default()
    }
}

#[test]
fn m1_removes_old_saves() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(2),
            ..opts()
        },
    );
    for s in 0..5 {
        assert!(save(&mut m, s));
    }
    assert_eq!(m.all_steps(), vec![3, 4]);
    assert_eq!(disk_steps(d.path()), vec![3, 4]);
}

#[test]
fn m1_removes_old_saves_into_todelete_subdir() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(2),
            todelete_subdir: Some("ttl=1h".into()),
            ..opts()
        },
    );
    for s in 0..5 {
        assert!(save(&mut m, s));
    }
    assert_eq!(m.all_steps(), vec![3, 4]);
    assert_eq!(disk_steps(d.path()), vec![3, 4]);
    assert_eq!(disk_steps(&d.path().join("ttl=1h")), vec![0, 1, 2]);
}

#[test]
fn m2_max_to_keep_zero() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(0),
            ..opts()
        },
    );
    for s in 0..5 {
        assert!(save(&mut m, s));
        assert!(m.all_steps().is_empty());
        assert!(disk_steps(d.path()).is_empty());
    }
    assert_eq!(
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock"))
            .count(),
        0,
        "disk empty"
    );
}

#[test]
fn m3_max_to_keep_zero_other_conditions() {
    let d = tempfile::tempdir().unwrap();
    let (clock, c) = hourly_clock();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(0),
            keep_period: Some(3),
            keep_time_interval_secs: Some(5 * 3600),
            clock: c,
            ..opts()
        },
    );
    for s in 0..9 {
        assert!(save(&mut m, s));
        clock.advance(TimeDelta::hours(1));
    }
    assert_eq!(m.all_steps(), vec![0, 3, 5, 6]);
    assert_eq!(disk_steps(d.path()), vec![0, 3, 5, 6]);
}

#[test]
fn m4_removes_old_saves_keep_period() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(2),
            keep_period: Some(4),
            save_interval_steps: Some(2),
            ..opts()
        },
    );
    for s in 0..12 {
        assert_eq!(save(&mut m, s), s % 2 == 0, "step {s}");
    }
    assert_eq!(m.all_steps(), vec![0, 4, 8, 10]);
    assert_eq!(disk_steps(d.path()), vec![0, 4, 8, 10]);
}

#[test]
fn m5_removes_old_saves_time_interval_and_m5b_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let (clock, c) = hourly_clock();
    let o = CheckpointManagerOptions {
        max_to_keep: Some(2),
        keep_time_interval_secs: Some(3 * 3600),
        clock: c,
        ..opts()
    };
    let mut m = open(d.path(), o.clone());
    for s in 0..10 {
        assert!(save(&mut m, s));
        clock.advance(TimeDelta::hours(1));
    }
    assert_eq!(m.all_steps(), vec![0, 3, 6, 8, 9]);
    m.close().unwrap();
    // M5b: a new manager reads the steps' times back from their commit timestamps.
    let mut m = open(d.path(), o);
    assert_eq!(m.all_steps(), vec![0, 3, 6, 8, 9]);
    for s in 10..20 {
        assert!(save(&mut m, s));
        clock.advance(TimeDelta::hours(1));
    }
    assert_eq!(m.all_steps(), vec![0, 3, 6, 9, 12, 15, 18, 19]);
    assert_eq!(disk_steps(d.path()), vec![0, 3, 6, 9, 12, 15, 18, 19]);
}

#[test]
fn m6_removes_old_saves_time_interval_metrics() {
    let d = tempfile::tempdir().unwrap();
    let (clock, c) = hourly_clock();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(3),
            best_metric: Some("loss".into()),
            best_mode: BestMode::Min,
            keep_time_interval_secs: Some(3 * 3600),
            clock: c,
            ..opts()
        },
    );
    for s in 0..10 {
        assert!(save_with(&mut m, s, Some(metrics(&[("loss", s as f64)]))));
        clock.advance(TimeDelta::hours(1));
    }
    assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 6, 9]);
}

fn save_best(metric: &str, mode: BestMode, values: [f64; 10]) -> (Vec<u64>, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let o = CheckpointManagerOptions {
        best_metric: Some(metric.into()),
        best_mode: mode,
        max_to_keep: Some(2),
        ..opts()
    };
    let mut m = open(d.path(), o.clone());
    for s in 0..5 {
        assert!(save_with(
            &mut m,
            s,
            Some(metrics(&[(metric, values[s as usize])]))
        ));
    }
    m.close().unwrap();
    let mut m = open(d.path(), o);
    for s in 5..10 {
        assert!(save_with(
            &mut m,
            s,
            Some(metrics(&[(metric, values[s as usize])]))
        ));
    }
    (m.all_steps(), d)
}

#[test]
fn m7_save_best_min() {
    let (steps, d) = save_best(
        "loss",
        BestMode::Min,
        [5.0, 2.0, 4.0, 3.0, 7.0, 1.0, 10.0, 9.0, 7.0, 4.0],
    );
    assert_eq!(steps, vec![1, 5], "the latest step 9 is deleted");
    assert_eq!(disk_steps(d.path()), vec![1, 5]);
}

#[test]
fn m8_save_best_max() {
    let (steps, _d) = save_best(
        "accuracy",
        BestMode::Max,
        [30.0, 85.0, 70.0, 80.0, 60.0, 100.0, 40.0, 45.0, 75.0, 75.0],
    );
    assert_eq!(steps, vec![1, 5]);
}

#[test]
fn m9_save_best_delete_no_metrics() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            best_metric: Some("loss".into()),
            best_mode: BestMode::Min,
            max_to_keep: Some(2),
            ..opts()
        },
    );
    for s in 0..5 {
        assert!(save_with(&mut m, s, None));
    }
    assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 4]);
    assert_eq!(m.best_step(), None);
    assert_eq!(m.latest_step(), Some(4));
}

#[test]
fn m10_save_best_some_metrics() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            best_metric: Some("loss".into()),
            best_mode: BestMode::Min,
            max_to_keep: Some(3),
            ..opts()
        },
    );
    let losses = [Some(3.0), None, Some(4.0), None, Some(7.0), None];
    for s in 0..6u64 {
        assert!(save_with(
            &mut m,
            s,
            losses[s as usize].map(|l| metrics(&[("loss", l)]))
        ));
        assert_eq!(
            m.all_steps(),
            (0..=s).collect::<Vec<_>>(),
            "after saving {s}"
        );
    }
    assert_eq!(disk_steps(d.path()), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn m12_equal_metrics_keep_the_later_steps() {
    for mode in [BestMode::Min, BestMode::Max] {
        let d = tempfile::tempdir().unwrap();
        let mut m = open(
            d.path(),
            CheckpointManagerOptions {
                best_metric: Some("loss".into()),
                best_mode: mode,
                max_to_keep: Some(2),
                ..opts()
            },
        );
        for s in 0..5 {
            assert!(save_with(&mut m, s, Some(metrics(&[("loss", 1.0)]))));
        }
        assert_eq!(m.all_steps(), vec![3, 4], "{mode:?}");
        assert_eq!(m.best_step(), Some(4), "{mode:?}");
    }
}

#[test]
fn m13_without_metrics_not_kept() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            best_metric: Some("loss".into()),
            best_mode: BestMode::Min,
            max_to_keep: Some(2),
            keep_checkpoints_without_metrics: false,
            ..opts()
        },
    );
    let losses = [Some(3.0), None, Some(4.0), None, Some(7.0), None];
    for s in 0..6u64 {
        assert!(save_with(
            &mut m,
            s,
            losses[s as usize].map(|l| metrics(&[("loss", l)]))
        ));
        if s >= 3 {
            assert!(
                !m.all_steps().contains(&s),
                "step {s} is deleted right after being saved"
            );
        }
    }
    assert_eq!(m.all_steps(), vec![0, 2]);
    assert_eq!(m.latest_step(), Some(2));
    assert_eq!(disk_steps(d.path()), vec![0, 2]);
}

#[test]
fn m14_best_without_max_to_keep_keeps_all() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            best_metric: Some("loss".into()),
            best_mode: BestMode::Min,
            ..opts()
        },
    );
    for s in 0..5 {
        assert!(save_with(
            &mut m,
            s,
            Some(metrics(&[("loss", 10.0 - s as f64)]))
        ));
    }
    assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn m19_keep_period_alone_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            keep_period: Some(3),
            ..opts()
        },
    );
    for s in 0..8 {
        assert!(save(&mut m, s));
    }
    assert_eq!(m.all_steps(), (0..8).collect::<Vec<_>>());
}

#[test]
fn m20_max_to_keep_one_and_keep_period() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(1),
            keep_period: Some(3),
            ..opts()
        },
    );
    for s in 0..8 {
        assert!(save(&mut m, s));
    }
    assert_eq!(m.all_steps(), vec![0, 3, 6, 7]);
    assert_eq!(disk_steps(d.path()), vec![0, 3, 6, 7]);
}

#[test]
fn m21_interval_and_max_to_keep() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(2),
            save_interval_steps: Some(3),
            ..opts()
        },
    );
    let saved: Vec<u64> = (0..13).filter(|s| save(&mut m, *s)).collect();
    assert_eq!(saved, vec![0, 3, 6, 9, 12]);
    assert_eq!(m.all_steps(), vec![9, 12]);
}

#[test]
fn m22_time_interval_within_one_second() {
    let d = tempfile::tempdir().unwrap();
    let (clock, c) = hourly_clock();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(1),
            keep_time_interval_secs: Some(3600),
            clock: c,
            ..opts()
        },
    );
    for s in 0..3 {
        assert!(save(&mut m, s));
        clock.advance(TimeDelta::milliseconds(100));
    }
    assert_eq!(
        m.all_steps(),
        vec![0, 2],
        "0 as the interval anchor, 2 as the latest"
    );
}

#[test]
fn m23_reopen_with_max_to_keep_deletes_only_at_next_save() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    for s in 0..5 {
        assert!(save(&mut m, s));
    }
    m.close().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            max_to_keep: Some(2),
            ..opts()
        },
    );
    assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 4]);
    assert_eq!(disk_steps(d.path()), vec![0, 1, 2, 3, 4]);
    assert!(save(&mut m, 5));
    assert_eq!(m.all_steps(), vec![4, 5]);
    assert_eq!(disk_steps(d.path()), vec![4, 5]);
}

#[test]
fn s1_save_interval() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            save_interval_steps: Some(2),
            ..opts()
        },
    );
    let results: Vec<bool> = (0..6).map(|s| save(&mut m, s)).collect();
    assert_eq!(results, vec![true, false, true, false, true, false]);
    assert_eq!(m.all_steps(), vec![0, 2, 4]);
}

#[test]
fn s2_save_on_steps() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            save_interval_steps: Some(10000),
            save_on_steps: vec![1, 3, 5],
            ..opts()
        },
    );
    let saved: Vec<u64> = (0..6).filter(|s| save(&mut m, *s)).collect();
    assert_eq!(saved, vec![0, 1, 3, 5]);
}

#[test]
fn s3_latest_step() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    for s in 0..6 {
        assert!(save(&mut m, s));
    }
    assert_eq!(m.latest_step(), Some(5));
    assert!(save(&mut m, 6));
    assert_eq!(m.latest_step(), Some(6));
}

#[test]
fn s5_latest_step_restore() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            save_interval_steps: Some(2),
            ..opts()
        },
    );
    for s in 0..6 {
        save(&mut m, s);
    }
    assert_eq!(m.latest_step(), Some(4));
    let r = m.restore(None).unwrap();
    assert_eq!(r.step(), 4);
    assert_eq!(r.json_value("default").unwrap(), &item(4));
}

#[test]
fn s6_save_interval_force() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(
        d.path(),
        CheckpointManagerOptions {
            save_interval_steps: Some(2),
            ..opts()
        },
    );
    for s in 0..6 {
        save(&mut m, s);
    }
    let forced = m
        .save(
            5,
            Composite::new().json_value("default", item(5)),
            SaveOptions::default().force(true),
        )
        .unwrap();
    assert!(forced);
    assert_eq!(m.all_steps(), vec![0, 2, 4, 5]);
}

#[test]
fn s7_save_same_step_forced_twice() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    let items = Composite::new().json_value("default", item(0));
    assert!(m
        .save(0, items, SaveOptions::default().force(true))
        .unwrap());
    let before = std::fs::read(d.path().join("0/default/metadata")).unwrap();
    let other = Composite::new().json_value("default", json!({"other": true}));
    let err = m
        .save(0, other, SaveOptions::default().force(true))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(m.all_steps(), vec![0]);
    assert_eq!(
        std::fs::read(d.path().join("0/default/metadata")).unwrap(),
        before,
        "data unchanged"
    );
    // D1 + "StepAlreadyExists does not leave save in progress stuck": the next save works.
    assert!(save(&mut m, 1));
}

#[test]
fn s8_lower_and_equal_steps_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    let results: Vec<bool> = [5, 3, 5, 6].iter().map(|s| save(&mut m, *s)).collect();
    assert_eq!(results, vec![true, false, false, true]);
    assert_eq!(m.all_steps(), vec![5, 6]);
}

#[test]
fn s14_read_only_never_saves() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("absent");
    let mut m = open(
        &root,
        CheckpointManagerOptions {
            read_only: true,
            create: false,
            save_interval_steps: Some(0),
            ..opts()
        },
    );
    assert!(!m.should_save(0));
    assert!(!save(&mut m, 0));
    assert!(!root.exists(), "read-only creates nothing");
    // D3: a forced save on a read-only manager is an error, not a write.
    let err = m
        .save(
            0,
            Composite::new().json_value("default", item(0)),
            SaveOptions::default().force(true),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly);
    assert!(!root.exists());
}

#[test]
fn s17_initial_save() {
    for first in [0, 10] {
        let d = tempfile::tempdir().unwrap();
        let mut m = open(
            d.path(),
            CheckpointManagerOptions {
                save_interval_steps: Some(7),
                ..opts()
            },
        );
        assert!(save(&mut m, first), "first save at {first}");
    }
}

#[test]
fn s21_zero_interval_is_rejected_when_built() {
    // D4: Orbax raises ZeroDivisionError at every save; ckpt refuses the options up front.
    let d = tempfile::tempdir().unwrap();
    let err = CheckpointManager::open(
        d.path().to_str().unwrap(),
        CheckpointManagerOptions {
            save_interval_steps: Some(0),
            ..opts()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock"))
            .count(),
        0,
        "nothing written"
    );
}

#[test]
fn s22_tmp_dir_is_not_a_step() {
    for fixed in [None, Some(8usize)] {
        let d = tempfile::tempdir().unwrap();
        let o = CheckpointManagerOptions {
            step_format_fixed_length: fixed,
            ..opts()
        };
        let mut m = open(d.path(), o.clone());
        for s in 0..5 {
            save(&mut m, s);
        }
        let tmp_name = match fixed {
            Some(_) => "00000005.orbax-checkpoint-tmp",
            None => "5.orbax-checkpoint-tmp",
        };
        std::fs::create_dir(d.path().join(tmp_name)).unwrap();
        m.reload().unwrap();
        assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 4]);
        assert_eq!(m.latest_step(), Some(4));
        drop(m);
        let m = open(d.path(), o);
        assert_eq!(m.all_steps(), vec![0, 1, 2, 3, 4]);
    }
}

#[test]
fn s23_save_preempted_cleanup() {
    for prefix in [None, Some("checkpoint")] {
        let d = tempfile::tempdir().unwrap();
        let tmp_name = match prefix {
            Some(p) => format!("{p}_0.orbax-checkpoint-tmp"),
            None => "0.orbax-checkpoint-tmp".to_string(),
        };
        std::fs::create_dir_all(d.path().join(&tmp_name).join("default")).unwrap();
        std::fs::create_dir(d.path().join("notes")).unwrap();
        let mut m = open(
            d.path(),
            CheckpointManagerOptions {
                cleanup_tmp_directories: true,
                step_prefix: prefix.map(str::to_string),
                ..opts()
            },
        );
        assert!(m.all_steps().is_empty());
        assert!(!d.path().join(&tmp_name).exists(), "tmp dir removed");
        assert!(d.path().join("notes").exists(), "foreign dir kept");
        assert!(save(&mut m, 1));
        assert_eq!(m.all_steps(), vec![1]);
    }
}

#[test]
fn s27_delete() {
    for subdir in [None, Some("ttl=1h")] {
        let d = tempfile::tempdir().unwrap();
        let mut m = open(
            d.path(),
            CheckpointManagerOptions {
                todelete_subdir: subdir.map(str::to_string),
                ..opts()
            },
        );
        for s in 0..3 {
            save(&mut m, s);
        }
        m.delete(0).unwrap();
        m.delete(1).unwrap();
        assert_eq!(m.all_steps(), vec![2]);
        let mut entries: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
            })
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        match subdir {
            None => assert_eq!(entries, vec!["2"]),
            Some(s) => {
                assert_eq!(entries, vec!["2".to_string(), s.to_string()]);
                assert!(d.path().join(s).join("0").join("default").exists());
                assert!(d.path().join(s).join("1").join("default").exists());
            }
        }
    }
}

#[test]
fn s28_delete_on_read_only_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    save(&mut m, 0);
    let mut ro = open(
        d.path(),
        CheckpointManagerOptions {
            read_only: true,
            ..opts()
        },
    );
    // D3: Orbax silently does nothing; ckpt says so.
    assert_eq!(ro.delete(0).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(ro.all_steps(), vec![0]);
    assert_eq!(disk_steps(d.path()), vec![0]);
}

#[test]
fn s29_delete_missing_step() {
    let d = tempfile::tempdir().unwrap();
    let mut m = open(d.path(), opts());
    save(&mut m, 0);
    assert_eq!(m.delete(99).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(m.all_steps(), vec![0]);
}
