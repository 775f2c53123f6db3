//! Helpers shared by the regression tests: running the `ckpt` binary, listing a root.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the real `ckpt` binary with `args`, stdin closed (not a terminal); returns its exit
/// status, stdout and stderr.
pub fn ckpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names directly in `dir`.
pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Metrics from `(name, value)` pairs.
pub fn metrics(pairs: &[(&str, f64)]) -> ckpt_manager::Metrics {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
        .collect()
}

/// A root at `dir/root` with steps 10, 20, …, 10 × `n`, each with a `val_loss` (step 20 best)
/// and a JSON item; returns its path.
pub fn root_with_losses(dir: &Path, n: u64) -> String {
    let root = dir.join("root");
    let mut m = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    for i in 1..=n {
        let step = 10 * i;
        let loss = if step == 20 { 0.01 } else { 1.0 / i as f64 };
        m.save(
            step,
            ckpt_manager::Composite::new().json_value("state", serde_json::json!({ "step": step })),
            ckpt_manager::SaveOptions::default().metrics(metrics(&[("val_loss", loss)])),
        )
        .unwrap();
    }
    m.close().unwrap();
    root.to_str().unwrap().to_string()
}

/// The committed steps of the root at `root`, read by a read-only manager.
pub fn steps_of(root: &str) -> Vec<u64> {
    ckpt_manager::CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap()
        .all_steps()
}

/// One `tracing` event as [`capture_events`] saw it: its level and its fields as text
/// (`message` included; string fields without quotes).
#[derive(Debug, Clone)]
pub struct CapturedEvent {
    /// The event's level.
    pub level: tracing::Level,
    /// Field name → value.
    pub fields: std::collections::BTreeMap<String, String>,
}

impl CapturedEvent {
    /// The field `name`, or "".
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// A subscriber that keeps every event (spans are ignored).
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<CapturedEvent>>>);

struct Fields<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = std::collections::BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let captured = CapturedEvent {
            level: *event.metadata().level(),
            fields,
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(captured);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with a subscriber on this thread that records every event, and returns `f`'s result
/// and the events. Only events of this thread are seen: use synchronous saves.
pub fn capture_events<R>(f: impl FnOnce() -> R) -> (R, Vec<CapturedEvent>) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let result = tracing::subscriber::with_default(Capture(events.clone()), f);
    let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (result, events)
}
