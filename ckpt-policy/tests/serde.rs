//! Policies read from JSON behave as the same policies built in code; written JSON reads back.

mod common;

#[allow(unused_imports)]
use ckpt_core::{CheckpointInfo, ErrorKind};
#[allow(unused_imports)]
use ckpt_policy::*;
#[allow(unused_imports)]
use common::{cx, kept, listing, with_loss};

/// A few listings with gaps, ties, missing metrics and unusable values.
#[allow(dead_code)]
fn listings() -> Vec<Vec<CheckpointInfo>> {
    let mut out = vec![
        listing(&[]),
        listing(&[0, 1, 2, 3, 4]),
        with_loss(
            &[0, 1, 2, 3, 4, 5],
            &[Some(5.0), None, Some(1.0), Some(1.0), None, Some(7.0)],
        ),
        with_loss(
            &[3, 6, 9, 12],
            &[Some(2.0), Some(2.0), Some(2.0), Some(2.0)],
        ),
    ];
    let mut odd = with_loss(&[10, 20, 30, 40], &[Some(3.0), None, Some(-1.0), Some(0.5)]);
    odd[1].metrics = Some(common::loss(serde_json::Value::from(f64::NAN)));
    out.push(odd);
    out
}

#[cfg(all(feature = "latest", feature = "best"))]
#[test]
fn any_of_latest_and_best_from_json_behaves_as_built_in_code() {
    let text = r#"{"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}, {"type": "BestN", "metric": "loss", "mode": "min", "n": 2}]}"#;
    let from_json: Box<dyn PreservationPolicy> = serde_json::from_str(text).unwrap();
    let in_code = AnyPreservationPolicy::new(vec![
        Box::new(LatestN::new(Some(3))),
        Box::new(BestN::new("loss", BestMode::Min, Some(2))),
    ]);
    for cs in listings() {
        assert_eq!(
            from_json.should_preserve(&cs, &cx()),
            in_code.should_preserve(&cs, &cx()),
            "{cs:?}"
        );
    }
    // Written back, it is the same policy, with every default spelled out.
    let written = serde_json::to_string(&from_json).unwrap();
    assert_eq!(
        written,
        r#"{"type":"AnyPreservationPolicy","policies":[{"type":"LatestN","n":3},{"type":"BestN","metric":"loss","mode":"min","n":2,"keep_checkpoints_without_metrics":true}]}"#
    );
    assert_eq!(
        written,
        serde_json::to_string(&in_code as &dyn PreservationPolicy).unwrap()
    );
    let again = preservation_policy_from_json(&written).unwrap();
    for cs in listings() {
        assert_eq!(
            again.should_preserve(&cs, &cx()),
            in_code.should_preserve(&cs, &cx())
        );
    }
}

#[test]
fn every_family_round_trips() {
    #[allow(unused_mut)]
    let mut texts = vec![
        r#"{"type":"PreserveAll"}"#,
        r#"{"type":"AnyPreservationPolicy","policies":[{"type":"PreserveAll"}]}"#,
    ];
    #[cfg(feature = "latest")]
    texts.extend([
        r#"{"type":"LatestN","n":null}"#,
        r#"{"type":"LatestN","n":0}"#,
    ]);
    #[cfg(feature = "interval")]
    texts.extend([
        r#"{"type":"EveryNSteps","interval_steps":3,"exact_interval":false,"max_to_keep":2}"#,
        r#"{"type":"EveryNStepsClosest","interval_steps":4,"max_to_keep":null}"#,
    ]);
    #[cfg(feature = "time")]
    texts.extend([
        r#"{"type":"EveryNSeconds","interval_secs":3600}"#,
        r#"{"type":"LatestDuration","duration_secs":86400}"#,
    ]);
    #[cfg(feature = "custom")]
    texts.push(r#"{"type":"CustomSteps","steps":[14,13]}"#);
    #[cfg(feature = "best")]
    texts.push(
        r#"{"type":"BestN","metric":"acc","mode":"max","n":null,"keep_checkpoints_without_metrics":false}"#,
    );
    for text in texts {
        let p = preservation_policy_from_json(text).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
        for cs in listings() {
            let back: Box<dyn PreservationPolicy> = serde_json::from_str(text).unwrap();
            assert_eq!(
                back.should_preserve(&cs, &cx()),
                p.should_preserve(&cs, &cx())
            );
        }
    }
}

#[cfg(feature = "interval")]
#[test]
fn defaults_when_fields_are_omitted() {
    let p: Box<dyn PreservationPolicy> =
        serde_json::from_str(r#"{"interval_steps": 3, "type": "EveryNSteps"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"type":"EveryNSteps","interval_steps":3,"exact_interval":true,"max_to_keep":null}"#
    );
}

#[cfg(feature = "best")]
#[test]
fn best_n_mode_or_reverse() {
    let read = |text: &str| -> BestN {
        let p = preservation_policy_from_json(text).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        let mut v = v.as_object().unwrap().clone();
        v.remove("type");
        serde_json::from_value(serde_json::Value::Object(v)).unwrap()
    };
    let min = BestN::new("loss", BestMode::Min, Some(2));
    assert_eq!(
        read(r#"{"type": "BestN", "metric": "loss", "mode": "min", "n": 2}"#),
        min
    );
    assert_eq!(
        read(r#"{"type": "BestN", "metric": "loss", "reverse": true, "n": 2}"#),
        min
    );
    assert_eq!(
        read(r#"{"type": "BestN", "mode": "min", "reverse": true, "n": 2}"#),
        min,
        "metric defaults to loss; agreeing mode and reverse are fine"
    );
    assert_eq!(
        read(r#"{"type": "BestN", "reverse": false}"#),
        BestN::new("loss", BestMode::Max, None)
    );
    assert_eq!(
        read(r#"{"type": "BestN"}"#),
        BestN::new("loss", BestMode::Max, None)
    );
    let bad = [
        r#"{"type": "BestN", "mode": "min", "reverse": false}"#,
        r#"{"type": "BestN", "mode": "MIN"}"#,
        r#"{"type": "BestN", "mode": "median"}"#,
        r#"{"type": "BestN", "n": -1}"#,
        r#"{"type": "BestN", "best_fn": "loss"}"#,
    ];
    for text in bad {
        let err = preservation_policy_from_json(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{text}: {err}");
    }
    let err = preservation_policy_from_json(bad[0]).unwrap_err();
    assert!(err.message().contains("disagree"), "{err}");
}

#[test]
fn bad_configs_are_invalid_config() {
    #[allow(unused_mut)]
    let mut bad = vec![
        "",
        "[]",
        r#"{"type": "NoSuchPolicy"}"#,
        r#"{"n": 3}"#,
        r#"{"type": "PreserveAll", "n": 3}"#,
        r#"{"type": "AnyPreservationPolicy", "policies": []}"#,
        r#"{"type": "AnyPreservationPolicy"}"#,
    ];
    #[cfg(feature = "latest")]
    bad.extend([
        r#"{"type": "LatestN", "n": "3"}"#,
        r#"{"type": "LatestN", "max_to_keep": 3}"#,
    ]);
    #[cfg(feature = "interval")]
    bad.extend([
        r#"{"type": "EveryNSteps", "interval_steps": 0}"#,
        r#"{"type": "EveryNStepsClosest", "interval_steps": 0}"#,
        r#"{"type": "EveryNSteps"}"#,
        r#"{"type": "AnyPreservationPolicy", "policies": [{"type": "EveryNSteps", "interval_steps": 0}]}"#,
    ]);
    for text in bad {
        let err = preservation_policy_from_json(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{text}: {err}");
    }
}

/// A family whose feature is off is an unknown `type`.
#[cfg(not(feature = "latest"))]
#[test]
fn a_disabled_family_is_unknown() {
    let err = preservation_policy_from_json(r#"{"type": "LatestN", "n": 3}"#).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}
