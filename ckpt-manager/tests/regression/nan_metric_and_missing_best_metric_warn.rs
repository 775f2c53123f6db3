//! Item 11: a NaN metric passed from Rust became `null` on disk with no warning, and a step
//! missing the best metric was deleted with only an INFO log. Now `save` warns once per step
//! for each such metric, naming step and metric, and retention deleting a step without a usable
//! value of the metric it ranks by logs at WARN.

use crate::common::{capture_events, metrics, CapturedEvent};
use ckpt_manager::policy::BestN;
use ckpt_manager::{BestMode, CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::Arc;
use tracing::Level;

fn warnings(events: &[CapturedEvent]) -> Vec<&CapturedEvent> {
    events.iter().filter(|e| e.level == Level::WARN).collect()
}

#[test]
fn a_nan_metric_is_written_as_null_with_one_warning_naming_step_and_metric() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let (_, events) = capture_events(|| {
        let mut m = CheckpointManager::builder(root)
            .enable_async_checkpointing(false)
            .best_metric("val_loss", BestMode::Min)
            .max_to_keep(5)
            .build()
            .unwrap();
        let bad = metrics(&[
            ("val_loss", f64::NAN),
            ("acc", 0.5),
            ("grad_norm", f64::INFINITY),
        ]);
        m.save(
            1,
            Composite::new().json_value("s", json!(1)),
            SaveOptions::default().metrics(bad),
        )
        .unwrap();
        // Later saves and their retention runs do not warn about step 1 again.
        for step in [2, 3] {
            m.save(
                step,
                Composite::new().json_value("s", json!(step)),
                SaveOptions::default().metrics(metrics(&[("val_loss", 0.1), ("acc", 0.6)])),
            )
            .unwrap();
        }
        m.close().unwrap();
    });
    let warned = warnings(&events);
    assert_eq!(
        warned.len(),
        2,
        "one warning per non-finite metric: {events:#?}"
    );
    let mut named: Vec<(&str, &str)> = warned
        .iter()
        .map(|e| (e.field("step"), e.field("metric")))
        .collect();
    named.sort();
    assert_eq!(
        named,
        [("1", "grad_norm"), ("1", "val_loss")],
        "{warned:#?}"
    );
    assert!(
        warned.iter().all(|e| e.field("message").contains("null")),
        "{warned:#?}"
    );
    // On disk: null, as documented.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("1/metrics/metrics")).unwrap())
            .unwrap();
    assert_eq!(
        on_disk,
        json!({"val_loss": null, "acc": 0.5, "grad_norm": null})
    );
}

#[test]
fn retention_deleting_a_step_without_the_best_metric_warns() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let (_, events) = capture_events(|| {
        let mut m = CheckpointManager::builder(root)
            .enable_async_checkpointing(false)
            .preservation_policy(Arc::new(BestN::new("val_loss", BestMode::Min, Some(1))))
            .build()
            .unwrap();
        // Step 2 lacks val_loss (other metrics only), step 3 has a NaN one, 1 and 4 real ones.
        let saves = [
            (1, metrics(&[("val_loss", 0.5)])),
            (2, metrics(&[("acc", 0.9)])),
            (3, metrics(&[("val_loss", f64::NAN)])),
            (4, metrics(&[("val_loss", 0.4)])),
        ];
        for (step, ms) in saves {
            m.save(
                step,
                Composite::new().json_value("s", json!(step)),
                SaveOptions::default().metrics(ms),
            )
            .unwrap();
        }
        assert_eq!(m.all_steps(), [4]);
        m.close().unwrap();
    });
    let deletions: Vec<&CapturedEvent> = events
        .iter()
        .filter(|e| e.field("message").contains("deleting step"))
        .collect();
    let level_of = |step: &str| {
        deletions
            .iter()
            .find(|e| e.field("step") == step)
            .map(|e| e.level)
            .unwrap_or_else(|| panic!("no deletion logged for step {step}: {events:#?}"))
    };
    // Steps 2 and 3 had no usable val_loss: WARN, naming the metric; step 1 lost on its value
    // (0.5 against step 4's 0.4): INFO.
    assert_eq!(level_of("2"), Level::WARN);
    assert_eq!(level_of("3"), Level::WARN);
    assert_eq!(level_of("1"), Level::INFO);
    for e in deletions.iter().filter(|e| e.level == Level::WARN) {
        assert_eq!(e.field("metric"), "val_loss", "{e:?}");
        assert!(!e.field("reason").is_empty(), "{e:?}");
    }
}
