//! Issue 11, item 10: `save(step)` below the latest step returned `Ok(false)` with no reason and
//! no log (Orbax issue 527 is this complaint). `save_with_outcome` now says why a step was not
//! saved, and a step not above the latest is logged at WARN.

use ckpt_manager::{CheckpointManager, Composite, SaveOptions, SaveOutcome};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};

/// Keeps the WARN events' messages.
#[derive(Default, Clone)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message(String);
impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut m = Message(String::new());
        e.record(&mut m);
        self.0.lock().unwrap().push(m.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn items(v: u64) -> Composite<'static> {
    Composite::new().json_value("s", json!(v))
}

#[test]
fn a_save_below_the_latest_step_says_why_and_warns() {
    let d = tempfile::tempdir().unwrap();
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let mut m = CheckpointManager::builder(d.path().to_str().unwrap())
        .save_interval_steps(10)
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    assert_eq!(
        m.save_with_outcome(10, items(10), SaveOptions::default())
            .unwrap(),
        SaveOutcome::Saved
    );
    let below = m
        .save_with_outcome(5, items(5), SaveOptions::default())
        .unwrap();
    assert_eq!(below, SaveOutcome::NotAboveLatest { latest: 10 });
    assert!(below.reason().unwrap().contains("latest step 10"));
    assert_eq!(
        m.save_with_outcome(5, items(5), SaveOptions::default().force(true))
            .unwrap(),
        SaveOutcome::Saved,
        "a forced save saves a lower step (spec §3.6)"
    );
    let off_interval = m
        .save_with_outcome(11, items(11), SaveOptions::default())
        .unwrap();
    assert!(
        matches!(&off_interval, SaveOutcome::DeclinedByPolicy { policy } if policy.contains("10")),
        "{off_interval:?}"
    );
    assert!(!m.save(11, items(11), SaveOptions::default()).unwrap());
    let w = warnings.0.lock().unwrap().clone();
    assert!(
        w.iter()
            .any(|e| e.contains("not above the latest") && e.contains("step=5")),
        "a WARN names the skipped step: {w:?}"
    );
    assert!(
        !w.iter().any(|e| e.contains("step=11")),
        "a policy's no is not a warning: {w:?}"
    );
    assert_eq!(m.all_steps(), vec![5, 10]);
}
