//! Item 8: a `BestN` (or `best_metric`) naming a metric that no saved step has — a typo like
//! `val_los` — deleted the best checkpoints silently: `ckpt gc --policy` with it kept 1 of 231
//! steps and exited 0, and `train --config` with it kept only the newest. Such a policy is now an
//! `InvalidConfig` error naming the metric and the metrics that exist, in `gc`, at save and when
//! a manager (a config) is opened on a root with steps, unless the user opts in.

use crate::common::{ckpt, metrics, root_with_losses, steps_of};
use ckpt_manager::policy::{AnyPreservationPolicy, BestN, LatestN, PreservationPolicy};
use ckpt_manager::{
    BestMode, CheckpointManager, CheckpointManagerOptions, Composite, ErrorKind, ManagerConfig,
    SaveOptions,
};
use serde_json::json;
use std::sync::Arc;

const TYPO_POLICY: &str = r#"{"type": "AnyPreservationPolicy", "policies": [
    {"type": "LatestN", "n": 1},
    {"type": "BestN", "metric": "val_los", "mode": "min", "n": 2}
]}"#;

fn typo_policy() -> Arc<dyn PreservationPolicy> {
    let policies: Vec<Box<dyn PreservationPolicy>> = vec![
        Box::new(LatestN::new(Some(1))),
        Box::new(BestN::new("val_los", BestMode::Min, Some(2))),
    ];
    Arc::new(AnyPreservationPolicy::new(policies))
}

fn assert_names_the_metrics(text: &str) {
    assert!(
        text.contains("InvalidConfig")
            && text.contains("\"val_los\"")
            && text.contains("\"val_loss\""),
        "the error should name the missing metric and the existing ones: {text}"
    );
}

#[test]
fn gc_with_a_policy_ranking_by_a_metric_no_step_has_is_refused_and_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 6);
    let policy = d.path().join("typo.json");
    std::fs::write(&policy, TYPO_POLICY).unwrap();
    let policy = policy.to_str().unwrap();
    for dry_run in [false, true] {
        let mut args = vec!["gc", root.as_str(), "--policy", policy];
        if dry_run {
            args.push("--dry-run");
        }
        let (code, out, err) = ckpt(&args);
        assert_eq!(code, Some(1), "dry_run={dry_run}: gc applied it: {out}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_names_the_metrics(&err);
        assert!(err.contains("--allow-missing-metric"), "{err}");
        assert_eq!(
            steps_of(&root),
            [10, 20, 30, 40, 50, 60],
            "gc deleted steps"
        );
    }
    // Opted in, it does what the policy says: no step has a `val_los`, so BestN's two slots go
    // to the newest steps (ties rank the higher step better), and the best step, 20, goes.
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy, "--allow-missing-metric"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(steps_of(&root), [50, 60]);
}

#[test]
fn save_with_a_best_n_metric_that_no_step_has_is_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let root = root.to_str().unwrap();
    let mut m = CheckpointManager::builder(root)
        .preservation_policy(typo_policy())
        .build()
        .unwrap();
    // A step without metrics, in a root where no step has any: nothing to compare, saved.
    assert!(m
        .save(
            1,
            Composite::new().json_value("s", json!(1)),
            SaveOptions::default()
        )
        .unwrap());
    m.wait_until_finished().unwrap();
    // The first step with metrics, none of them the policy's: refused, nothing written.
    let e = m
        .save(
            2,
            Composite::new().json_value("s", json!(2)),
            SaveOptions::default().metrics(metrics(&[("val_loss", 0.5), ("acc", 0.7)])),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert_names_the_metrics(&e.to_string());
    assert!(e.to_string().contains("\"acc\""), "{e}");
    assert_eq!(e.step(), Some(2));
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), [1]);
    assert!(!d.path().join("root/2").exists());
    assert!(!d.path().join("root/2.orbax-checkpoint-tmp").exists());
    drop(m);

    // The same through the legacy options (best_metric with max_to_keep).
    let legacy = d.path().join("legacy");
    let mut m = CheckpointManager::builder(legacy.to_str().unwrap())
        .max_to_keep(2)
        .best_metric("val_los", BestMode::Min)
        .build()
        .unwrap();
    // (best_metric also requires the key in every step's metrics: D5, InvalidArgument.)
    let e = m
        .save(
            1,
            Composite::new().json_value("s", json!(1)),
            SaveOptions::default().metrics(metrics(&[("val_loss", 0.5)])),
        )
        .unwrap_err();
    assert!(e.to_string().contains("val_los"), "{e}");
    drop(m);

    // Opted in: saved, and retention does what the policy says.
    let mut m = CheckpointManager::builder(root)
        .preservation_policy(typo_policy())
        .allow_missing_best_metric(true)
        .build()
        .unwrap();
    for step in [2, 3, 4] {
        assert!(m
            .save(
                step,
                Composite::new().json_value("s", json!(step)),
                SaveOptions::default().metrics(metrics(&[("val_loss", 0.5)])),
            )
            .unwrap());
    }
    m.close().unwrap();
    // Step 1 has no metrics (kept: keep_checkpoints_without_metrics); of 2..=4, none with a
    // `val_los`, BestN keeps the two highest.
    assert_eq!(steps_of(root), [1, 3, 4]);
}

#[test]
fn opening_a_root_with_a_policy_ranking_by_a_missing_metric_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 4);
    let e = CheckpointManager::builder(root.as_str())
        .preservation_policy(typo_policy())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert_names_the_metrics(&e.to_string());

    // A config file loaded against the root: the same, and its own field opts in.
    let file = d.path().join("manager.toml");
    let toml =
        "[preservation_policy]\ntype = \"BestN\"\nmetric = \"val_los\"\nmode = \"min\"\nn = 1\n";
    std::fs::write(&file, toml).unwrap();
    let options = ManagerConfig::from_file(&file)
        .unwrap()
        .apply_to(CheckpointManagerOptions::default())
        .unwrap();
    let e = CheckpointManager::open(&root, options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert_names_the_metrics(&e.to_string());
    assert_eq!(steps_of(&root), [10, 20, 30, 40]);
    std::fs::write(&file, format!("allow_missing_best_metric = true\n{toml}")).unwrap();
    let options = ManagerConfig::from_file(&file)
        .unwrap()
        .into_options()
        .unwrap();
    assert!(options.allow_missing_best_metric);
    CheckpointManager::open(&root, options).unwrap();

    // The right name opens; a reader never checks (it deletes nothing).
    CheckpointManager::builder(root.as_str())
        .preservation_policy(Arc::new(BestN::new("val_loss", BestMode::Min, Some(1))))
        .build()
        .unwrap();
    CheckpointManager::builder(root.as_str())
        .read_only(true)
        .preservation_policy(typo_policy())
        .build()
        .unwrap();
    assert_eq!(steps_of(&root), [10, 20, 30, 40]);
}

/// `train --config FILE` whose policy names `val_los`: refused on a root with steps (nothing
/// deleted), and on a fresh root at its first save (nothing saved).
#[test]
fn train_config_with_a_misspelt_best_metric_is_refused() {
    let data = crate::data::Data::wine_quality();
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("manager.json");
    std::fs::write(&file, format!("{{\"preservation_policy\": {TYPO_POLICY}}}")).unwrap();
    let config = |dir: &str, steps| crate::checkpoint::RunConfig {
        dir: dir.to_string(),
        steps,
        save_every: 10,
        max_to_keep: 3,
        best_n: 1,
        keep_period: None,
        seed: 1,
        config_file: None,
        preemption: None,
        resume_from: None,
        ignore_other_steps: false,
    };
    let root = d.path().join("root");
    let root = root.to_str().unwrap();
    crate::checkpoint::run(&config(root, 30), &data, &mut Vec::new()).unwrap();
    assert_eq!(steps_of(root), [10, 20, 30]);

    let mut cfg = config(root, 60);
    cfg.config_file = Some(file.clone());
    let e = crate::checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap_err();
    assert_names_the_metrics(&e.to_string());
    assert_eq!(steps_of(root), [10, 20, 30]);

    let fresh = d.path().join("fresh");
    let mut cfg = config(fresh.to_str().unwrap(), 30);
    cfg.config_file = Some(file);
    let e = crate::checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap_err();
    assert_names_the_metrics(&e.to_string());
    assert_eq!(steps_of(fresh.to_str().unwrap()), Vec::<u64>::new());
}
