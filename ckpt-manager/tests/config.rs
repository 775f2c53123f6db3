//! Policies and manager options in config files (issue 3, "What it must show" 4): a policy read
//! from a JSON file and from a TOML file keeps the same steps as the same policy built in code,
//! over the same saves at the same (injected) times; a whole `ManagerConfig` round-trips; bad
//! configs are `InvalidConfig` naming the file and the field or line; and a policy defined outside
//! ckpt-policy (the `custom_policy` example) is used by the manager through a config.

#[allow(dead_code)]
#[path = "../examples/custom_policy.rs"]
mod custom_policy;

use chrono::{TimeDelta, TimeZone, Utc};
use ckpt_manager::core::ManualClock;
use ckpt_manager::policy::{
    AnyPreservationPolicy, BestMode, BestN, CustomSteps, EveryNSeconds, EveryNSteps,
    EveryNStepsClosest, FixedIntervalPolicy, LatestDuration, LatestN, PreservationPolicy,
};
use ckpt_manager::{
    preservation_policy_from_file, CheckpointManager, CheckpointManagerOptions, Composite,
    ErrorKind, ManagerConfig, SaveOptions,
};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// Save `step` with metric `loss` (None: no metrics).
type Save = (u64, Option<f64>);

/// Steps 1..=30 with losses that go down and up again, a few without metrics, and ties (steps 18 and 19).
fn saves() -> Vec<Save> {
    (1..=30)
        .map(|s: u64| {
            let loss = match s % 7 {
                0 => None,
                r => Some(((s as f64 - 22.0).abs() + r as f64) / 10.0),
            };
            (s, loss)
        })
        .collect()
}

/// Seconds between save `i` and the one before: uneven, so time policies have work to do.
fn gap_secs(i: usize) -> i64 {
    [600, 1800, 60, 3600, 7200, 300][i % 6]
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
    ))
}

/// Runs `saves` through a manager on a fresh temp root built from `options` (its clock replaced
/// by a fresh manual one), and returns the steps listed after each save.
fn survivors(mut options: CheckpointManagerOptions, saves: &[Save]) -> Vec<Vec<u64>> {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    options.clock = clock.clone();
    options.enable_async_checkpointing = false;
    let mut m =
        CheckpointManager::open(dir.path().join("root").to_str().unwrap(), options).unwrap();
    let mut out = Vec::new();
    for (i, (step, loss)) in saves.iter().enumerate() {
        clock.advance(TimeDelta::seconds(gap_secs(i)));
        let mut o = SaveOptions::default();
        if let Some(l) = loss {
            let mut metrics = serde_json::Map::new();
            metrics.insert("loss".into(), json!(l));
            o = o.metrics(metrics);
        }
        m.save(
            *step,
            Composite::new().json_value("state", json!({ "step": step })),
            o,
        )
        .unwrap();
        out.push(m.all_steps());
    }
    m.close().unwrap();
    out
}

fn with_policy(p: Box<dyn PreservationPolicy>) -> CheckpointManagerOptions {
    CheckpointManagerOptions {
        preservation_policy: Some(Arc::from(p)),
        ..Default::default()
    }
}

/// A policy in code, the same as JSON and as TOML.
struct Case {
    code: fn() -> Box<dyn PreservationPolicy>,
    json: &'static str,
    toml: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            code: || {
                Box::new(AnyPreservationPolicy::new(vec![
                    Box::new(LatestN::new(Some(3))),
                    Box::new(BestN::new("loss", BestMode::Min, Some(2))),
                    Box::new(EveryNSteps::new(10)),
                ]))
            },
            json: r#"{"type": "AnyPreservationPolicy", "policies": [
                {"type": "LatestN", "n": 3},
                {"type": "BestN", "metric": "loss", "mode": "min", "n": 2},
                {"type": "EveryNSteps", "interval_steps": 10}]}"#,
            toml: r#"
                type = "AnyPreservationPolicy"

                [[policies]]
                type = "LatestN"
                n = 3

                [[policies]]
                type = "BestN"
                metric = "loss"
                mode = "min"
                n = 2

                [[policies]]
                type = "EveryNSteps"
                interval_steps = 10
            "#,
        },
        Case {
            code: || {
                Box::new(
                    BestN::new("loss", BestMode::Max, Some(3)).keep_checkpoints_without_metrics(false),
                )
            },
            json: r#"{"type": "BestN", "metric": "loss", "reverse": false, "n": 3,
                      "keep_checkpoints_without_metrics": false}"#,
            toml: "type = \"BestN\"\nmetric = \"loss\"\nn = 3\nkeep_checkpoints_without_metrics = false\n",
        },
        Case {
            code: || {
                Box::new(AnyPreservationPolicy::new(vec![
                    Box::new(EveryNSeconds::new(3 * 3600)),
                    Box::new(LatestDuration::new(2 * 3600)),
                ]))
            },
            json: r#"{"type": "AnyPreservationPolicy", "policies": [
                {"type": "EveryNSeconds", "interval_secs": 10800},
                {"type": "LatestDuration", "duration_secs": 7200}]}"#,
            toml: r#"type = "AnyPreservationPolicy"
                policies = [{ type = "EveryNSeconds", interval_secs = 10800 },
                            { type = "LatestDuration", duration_secs = 7200 }]"#,
        },
        Case {
            code: || {
                Box::new(AnyPreservationPolicy::new(vec![
                    Box::new(EveryNStepsClosest::new(8, Some(3))),
                    Box::new(CustomSteps::new([5, 13])),
                    Box::new(LatestN::new(Some(1))),
                ]))
            },
            json: r#"{"type": "AnyPreservationPolicy", "policies": [
                {"type": "EveryNStepsClosest", "interval_steps": 8, "max_to_keep": 3},
                {"type": "CustomSteps", "steps": [5, 13]},
                {"type": "LatestN", "n": 1}]}"#,
            toml: r#"type = "AnyPreservationPolicy"
                policies = [{ type = "EveryNStepsClosest", interval_steps = 8, max_to_keep = 3 },
                            { type = "CustomSteps", steps = [5, 13] },
                            { type = "LatestN", n = 1 }]"#,
        },
    ]
}

#[test]
fn a_policy_from_json_or_toml_keeps_what_the_same_policy_in_code_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let saves = saves();
    for (i, case) in cases().into_iter().enumerate() {
        let json_file = dir.path().join(format!("policy{i}.json"));
        let toml_file = dir.path().join(format!("policy{i}.toml"));
        std::fs::write(&json_file, case.json).unwrap();
        std::fs::write(&toml_file, case.toml).unwrap();

        let in_code = survivors(with_policy((case.code)()), &saves);
        let from_json = survivors(
            with_policy(preservation_policy_from_file(&json_file).unwrap()),
            &saves,
        );
        let from_toml = survivors(
            with_policy(preservation_policy_from_file(&toml_file).unwrap()),
            &saves,
        );
        assert_eq!(from_json, in_code, "case {i}: JSON");
        assert_eq!(from_toml, in_code, "case {i}: TOML");
        // The cases are not trivial: something was deleted, and not everything.
        let last = in_code.last().unwrap();
        assert!(
            last.len() > 1 && last.len() < saves.len(),
            "case {i}: {last:?}"
        );

        // Read as a whole manager config, from either format, the same.
        let config_json = dir.path().join(format!("config{i}.json"));
        std::fs::write(
            &config_json,
            format!(r#"{{"preservation_policy": {}}}"#, case.json),
        )
        .unwrap();
        let config_toml = dir.path().join(format!("config{i}.toml"));
        let nested = case
            .toml
            .replace("[[policies]]", "[[preservation_policy.policies]]");
        let body = if nested.contains("[[preservation_policy.policies]]") {
            format!("[preservation_policy]\n{nested}")
        } else {
            format!("[preservation_policy]\n{}", case.toml)
        };
        std::fs::write(&config_toml, body).unwrap();
        for file in [&config_json, &config_toml] {
            let options = ManagerConfig::from_file(file)
                .unwrap()
                .into_options()
                .unwrap();
            assert_eq!(survivors(options, &saves), in_code, "case {i}: {file:?}");
        }
    }
}

#[test]
fn a_save_decision_policy_from_a_config_decides_as_in_code() {
    let config = ManagerConfig::from_toml_str(
        "[save_decision_policy]\ntype = \"FixedIntervalPolicy\"\ninterval = 4\n",
    )
    .unwrap();
    let options = config.into_options().unwrap();
    let in_code = CheckpointManagerOptions {
        save_decision_policy: Some(Arc::new(FixedIntervalPolicy::new(4))),
        ..Default::default()
    };
    let saves: Vec<Save> = (1..=12).map(|s| (s, None)).collect();
    let a = survivors(options, &saves);
    assert_eq!(a, survivors(in_code, &saves));
    assert_eq!(a.last().unwrap(), &vec![4, 8, 12]);
}

/// A config with every field away from its default, as JSON.
fn full_config_json() -> serde_json::Value {
    json!({
        "save_interval_steps": 5,
        "save_on_steps": [3, 7],
        "best_metric": "val_loss",
        "best_mode": "min",
        "keep_checkpoints_without_metrics": false,
        "allow_missing_best_metric": true,
        "step_prefix": "ckpt",
        "step_format_fixed_length": 6,
        "create": false,
        "read_only": true,
        "cleanup_tmp_directories": true,
        "todelete_subdir": "trash",
        "save_root_metadata": false,
        "root_metadata": {"experiment": "e1", "seed": 3},
        "prevent_write_metrics": true,
        "atomicity": "commit_file",
        "lightweight_initialize": true,
        "enable_async_checkpointing": false,
        "async_timeout_secs": 30,
        "enable_background_delete": true,
        "verify_checksums": false,
        "save_decision_policy": {"type": "AnySavePolicy", "policies": [
            {"type": "FixedIntervalPolicy", "interval": 100},
            {"type": "ContinuousCheckpointingPolicy", "minimum_interval_secs": 60}]},
        "preservation_policy": {"type": "AnyPreservationPolicy", "policies": [
            {"type": "LatestN", "n": 3},
            {"type": "BestN", "metric": "val_loss", "mode": "min", "n": 2,
             "keep_checkpoints_without_metrics": true}]}
    })
}

#[test]
fn the_whole_config_round_trips_through_json_toml_and_options() {
    let text = serde_json::to_string_pretty(&full_config_json()).unwrap();
    let config = ManagerConfig::from_json_str(&text).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&config.to_json_string().unwrap()).unwrap();
    assert_eq!(written, full_config_json());

    // JSON -> TOML -> JSON.
    let toml_text = config.to_toml_string().unwrap();
    let from_toml = ManagerConfig::from_toml_str(&toml_text).unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&from_toml.to_json_string().unwrap()).unwrap();
    assert_eq!(again, full_config_json(), "via TOML:\n{toml_text}");

    // Config -> options -> config.
    let options = from_toml.into_options().unwrap();
    assert_eq!(options.save_interval_steps, Some(5));
    assert_eq!(options.step_prefix.as_deref(), Some("ckpt"));
    assert_eq!(options.atomicity.as_str(), "commit_file");
    assert!(options.read_only && !options.enable_async_checkpointing && !options.verify_checksums);
    let back = ManagerConfig::from_options(&options).unwrap();
    let back: serde_json::Value = serde_json::from_str(&back.to_json_string().unwrap()).unwrap();
    assert_eq!(back, full_config_json());

    // The defaults round-trip too, and `save_interval_steps` off survives TOML (no null there).
    let off = ManagerConfig::from_json_str(r#"{"save_interval_steps": null}"#).unwrap();
    let toml_text = off.to_toml_string().unwrap();
    assert!(
        toml_text.contains("save_interval_steps = false"),
        "{toml_text}"
    );
    let off = ManagerConfig::from_toml_str(&toml_text)
        .unwrap()
        .into_options()
        .unwrap();
    assert_eq!(off.save_interval_steps, None);
    let defaults = ManagerConfig::from_options(&CheckpointManagerOptions::default()).unwrap();
    let defaults = ManagerConfig::from_json_str(&defaults.to_json_string().unwrap())
        .unwrap()
        .into_options()
        .unwrap();
    assert_eq!(defaults.save_interval_steps, Some(1));
    assert!(defaults.create && defaults.save_root_metadata);
}

#[test]
fn what_a_config_cannot_say_is_refused_when_converting_back() {
    let options = CheckpointManagerOptions {
        save_decision_policy: Some(Arc::new(ckpt_manager::policy::ShouldSaveFnPolicy::new(
            |_step, _previous| true,
        ))),
        ..Default::default()
    };
    let e = ManagerConfig::from_options(&options).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("save_decision_policy"), "{e}");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_configs_are_invalid_config_naming_the_file_and_the_field_or_line() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str, needles: &[&str]| {
        let p = write(dir.path(), name, text);
        let e = ManagerConfig::from_file(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{name}: {e}");
        assert_eq!(e.path(), Some(p.to_str().unwrap()), "{name}: {e}");
        let s = e.to_string();
        assert!(!s.contains('\n'), "{name}: one line: {s}");
        for n in needles {
            assert!(s.contains(n), "{name}: {s:?} should mention {n:?}");
        }
    };
    check(
        "unknown.json",
        "{\n  \"max_to_kep\": 3\n}",
        &["max_to_kep", "line 2"],
    );
    check(
        "unknown.toml",
        "create = true\nmax_to_kep = 3\n",
        &["max_to_kep", "line 2"],
    );
    check(
        "policy_field.json",
        r#"{"preservation_policy": {"type": "LatestN", "count": 3}}"#,
        &["count"],
    );
    check(
        "policy_type.toml",
        "[preservation_policy]\ntype = \"KeepAllForever\"\n",
        &["KeepAllForever"],
    );
    check("wrong_type.json", r#"{"max_to_keep": "three"}"#, &["three"]);
    check("best_mode.json", r#"{"best_mode": "lowest"}"#, &["lowest"]);
    check(
        "zero.json",
        r#"{"preservation_policy": {"type": "EveryNSteps", "interval_steps": 0}}"#,
        &["preservation_policy", "interval_steps"],
    );
    check("syntax.toml", "max_to_keep = \n", &["line 1"]);
    check("config.yaml", "max_to_keep: 3", &[".json or .toml"]);

    // Options that cannot work together are refused when turned into options.
    let c = ManagerConfig::from_json_str(
        r#"{"max_to_keep": 3, "preservation_policy": {"type": "LatestN", "n": 3}}"#,
    )
    .unwrap();
    assert_eq!(
        c.into_options().unwrap_err().kind(),
        ErrorKind::InvalidConfig
    );
    let missing = ManagerConfig::from_file(dir.path().join("missing.toml")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[test]
fn a_policy_defined_outside_ckpt_policy_is_used_through_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let kept = custom_policy::run(&dir.path().join("root"), &dir.path().join("c.json")).unwrap();
    assert_eq!(kept, [2, 4, 6, 7]);

    // The same config as TOML, and the policy alone as a policy file, name it just as well.
    let toml = write(
        dir.path(),
        "c.toml",
        "enable_async_checkpointing = false\n[preservation_policy]\ntype = \"KeepEvenSteps\"\n",
    );
    let options = ManagerConfig::from_file(&toml)
        .unwrap()
        .into_options()
        .unwrap();
    let steps: Vec<(u64, Option<f64>)> = (1..=5).map(|s| (s, None)).collect();
    assert_eq!(survivors(options, &steps).last().unwrap(), &vec![2, 4]);
    let policy =
        preservation_policy_from_file(write(dir.path(), "p.json", r#"{"type": "KeepEvenSteps"}"#))
            .unwrap();
    let written = serde_json::to_value(&*policy).unwrap();
    assert_eq!(written, json!({"type": "KeepEvenSteps"}));
    // The manager's config round trip keeps it.
    let c = ManagerConfig::from_json_str(custom_policy::CONFIG_JSON).unwrap();
    let options = c.into_options().unwrap();
    let back = ManagerConfig::from_options(&options).unwrap();
    assert!(back.to_json_string().unwrap().contains("KeepEvenSteps"));
}
