//! Writes checkpoint roots with ckpt for the Orbax interoperability check (`cargo xtask interop`).
//!
//! ```text
//! cargo run -p ckpt-manager --example write_interop_root -- OUT_DIR
//! ```
//!
//! `OUT_DIR` must not exist or be empty. Each root is written into `OUT_DIR/<name>/` through
//! [`CheckpointManager`] (nothing is written by hand but the leftovers of the two "died" roots), and
//! a manifest of what was written, for `xtask/interop/check_orbax.py`, goes to
//! `OUT_DIR/manifest.json` and to stdout. The roots:
//!
//! - `default_item`: one unnamed JSON item (`default`, Orbax's default-item mode), metrics with
//!   `best_metric("loss", Min)` and `max_to_keep(3)` over steps 0..=4, per-step custom metadata,
//!   root metadata;
//! - `named_items`: `step_prefix("ckpt")`, `step_format_fixed_length(8)`, JSON items `meta` and
//!   `extra` plus a tensor item `params` (type string `ckpt.tensors`, unknown to Orbax), metrics
//!   without a best metric (deviation D2: they are written all the same);
//! - `deleted_step`: JSON items `a` and `b`, steps 0..=3, then step 1 deleted;
//! - `tmp_leftover`: steps 0..=2, then a hand-made `3.orbax-checkpoint-tmp/` as a save that died
//!   mid-write leaves it;
//! - `commit_file`: the commit-file protocol, fixed length 4, steps 0..=2, then a hand-made `0003/`
//!   without `commit_success.txt` (a commit-file save that died).
//!
//! The JSON values are chosen to exercise Python's `json.dumps` output: non-ASCII and control
//! characters, `\u007f`, an astral-plane character, large integers, floats whose Python repr
//! differs from Rust's shortest form (`1e+16`, `1e-07`, `5e-324`), `-0.0`, nested containers.

use ckpt_handlers::{Tensor, TensorHandler, TensorMap, ORBAX_JSON_HANDLER};
use ckpt_manager::storage::AtomicityMode;
use ckpt_manager::{BestMode, CheckpointManager, Composite, Metrics, SaveOptions, Step};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: write_interop_root OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = run(&out) {
        eprintln!(
            "write_interop_root: {}",
            ckpt_manager::core::ErrorChain(&*e)
        );
        std::process::exit(1);
    }
}

fn run(out: &Path) -> Result<(), AnyError> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    if std::fs::read_dir(out)?.next().is_some() {
        return Err(format!("{} is not empty; give a fresh directory", out.display()).into());
    }
    let out = out.canonicalize()?;
    let roots = vec![
        default_item(&out.join("default_item"))?,
        named_items(&out.join("named_items"))?,
        deleted_step(&out.join("deleted_step"))?,
        tmp_leftover(&out.join("tmp_leftover"))?,
        commit_file(&out.join("commit_file"))?,
    ];
    let manifest = json!({
        "writer": format!("ckpt-manager {}", env!("CARGO_PKG_VERSION")),
        "orbax_json_handler": ORBAX_JSON_HANDLER,
        "roots": roots,
    });
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(out.join("manifest.json"), &text)?;
    println!("{text}");
    Ok(())
}

/// What one root should look like to Orbax, built up while it is written.
struct RootRecord {
    name: String,
    path: PathBuf,
    options: Value,
    mode: &'static str,
    root_custom_metadata: Metrics,
    steps: Map<String, Value>,
    not_steps: Vec<String>,
    argless_restore: &'static str,
}

impl RootRecord {
    fn new(path: &Path, options: Value, mode: &'static str) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        RootRecord {
            name,
            path: path.to_path_buf(),
            options,
            mode,
            root_custom_metadata: Metrics::new(),
            steps: Map::new(),
            not_steps: Vec::new(),
            argless_restore: "ok",
        }
    }

    /// Saves `items` as `step` and records it; `json_items` are the JSON items' values.
    fn save(
        &mut self,
        m: &mut CheckpointManager,
        step: Step,
        items: Composite<'_>,
        json_items: Map<String, Value>,
        other_items: Map<String, Value>,
        save: SaveOptions,
    ) -> Result<(), AnyError> {
        if !m.save(step, items, save.clone())? {
            return Err(format!("{}: the manager declined to save step {step}", self.name).into());
        }
        // Saves are asynchronous: wait for the commit (and retention) before recording.
        m.wait_until_finished()?;
        let mut handlers = Map::new();
        for name in json_items.keys() {
            handlers.insert(name.clone(), ORBAX_JSON_HANDLER.into());
        }
        handlers.extend(other_items);
        if save.metrics.is_some() {
            handlers.insert("metrics".into(), ORBAX_JSON_HANDLER.into());
        }
        let record = json!({
            "dir": m.step_dir_name(step),
            "metrics": save.metrics,
            "custom_metadata": save.custom_metadata.unwrap_or_default(),
            "item_handlers": handlers,
            "json_items": json_items,
        });
        self.steps.insert(step.to_string(), record);
        Ok(())
    }

    /// The manifest entry: only the steps `m` still lists, checked against `expected`.
    fn finish(
        mut self,
        m: &CheckpointManager,
        expected: &[Step],
        best: Option<Step>,
    ) -> Result<Value, AnyError> {
        if m.all_steps() != expected {
            return Err(format!(
                "{}: ckpt lists {:?}, expected {expected:?}",
                self.name,
                m.all_steps()
            )
            .into());
        }
        if m.options().best_metric.is_some() && m.best_step() != best {
            return Err(format!(
                "{}: ckpt's best step is {:?}, expected {best:?}",
                self.name,
                m.best_step()
            )
            .into());
        }
        self.steps
            .retain(|s, _| expected.iter().any(|e| e.to_string() == *s));
        Ok(json!({
            "name": self.name,
            "path": self.path.to_string_lossy(),
            "options": self.options,
            "mode": self.mode,
            "all_steps": expected,
            "latest_step": expected.last(),
            "best_step": best,
            "root_custom_metadata": self.root_custom_metadata,
            "steps": self.steps,
            "not_steps": self.not_steps,
            "argless_restore": self.argless_restore,
        }))
    }
}

fn obj(v: Value) -> Metrics {
    match v {
        Value::Object(m) => m,
        _ => Metrics::new(),
    }
}

/// A JSON value that exercises Python `json.dumps`' exact output.
fn tricky_value(step: Step) -> Value {
    json!({
        "step": step,
        "name": "run-α ✓",
        "emoji": "😀",
        "ctrl": "tab\tnl\nbell\u{7}del\u{7f}quote\"back\\slash/",
        "big": 9_007_199_254_740_993_u64,
        "u64max": u64::MAX,
        "neg": -7,
        "floats": [0.1, 1.0, 1e16, 1e-7, 1.5e300, 5e-324, -0.0, 123_456_789.0, 1.0 / 3.0],
        "nested": {"empty_obj": {}, "empty_list": [], "none": null, "t": true, "f": false,
                   "z_then_a": {"z": 1, "a": 2}},
        "lr": 0.001 * (step as f64 + 1.0),
    })
}

fn default_item(path: &Path) -> Result<Value, AnyError> {
    let root_meta = obj(json!({"run": "interop", "version": 1.1, "tags": ["a", "β"], "seed": 42}));
    let mut m = CheckpointManager::builder(path.to_string_lossy())
        .max_to_keep(3)
        .best_metric("loss", BestMode::Min)
        .root_metadata(root_meta.clone())
        .build()?;
    let options = json!({"step_prefix": null, "step_format_fixed_length": null, "best_metric": "loss",
                         "best_mode": "min", "max_to_keep": 3, "atomicity": "atomic_rename"});
    let mut rec = RootRecord::new(path, options, "default");
    rec.root_custom_metadata = root_meta;
    let losses = [0.5, 0.2, 0.9, 0.1, 0.3];
    for (step, loss) in (0..).zip(losses) {
        let value = tricky_value(step);
        let items = Composite::new().json_value("default", value.clone());
        let save = SaveOptions::default()
            .metrics(obj(json!({"loss": loss, "acc": 1.0 - loss, "step": step})))
            .custom_metadata(obj(
                json!({"lr": 0.1, "phase": format!("phase-{step}"), "ünï": [step]}),
            ));
        rec.save(
            &mut m,
            step,
            items,
            obj(json!({"default": value})),
            Map::new(),
            save,
        )?;
    }
    // Best 3 by lowest loss: steps 3 (0.1), 1 (0.2), 4 (0.3).
    rec.finish(&m, &[1, 3, 4], Some(3))
}

fn named_items(path: &Path) -> Result<Value, AnyError> {
    let mut m = CheckpointManager::builder(path.to_string_lossy())
        .step_prefix("ckpt")
        .step_format_fixed_length(8)
        .build()?;
    let options = json!({"step_prefix": "ckpt", "step_format_fixed_length": 8, "best_metric": null,
                         "best_mode": null, "max_to_keep": null, "atomicity": "atomic_rename"});
    let mut rec = RootRecord::new(path, options, "composite");
    rec.argless_restore = "fails:params";
    for step in [0, 5, 10] {
        let meta = json!({"epoch": step / 5, "order": [3, 1, 2], "label": format!("ckpt-{step}")});
        let extra = tricky_value(step);
        let mut params = TensorMap::new();
        params.insert(
            "w".into(),
            Tensor::from_slice([2, 2], &[1.0f32, 2.0, 3.0, step as f32])?,
        );
        params.insert("b".into(), Tensor::from_slice([2], &[-1i64, step as i64])?);
        let items = Composite::new()
            .json_value("meta", meta.clone())
            .json_value("extra", extra.clone())
            .tensors("params", &params);
        let save = SaveOptions::default()
            .metrics(obj(
                json!({"loss": 1.0 / (step as f64 + 1.0), "accuracy": 0.5}),
            ))
            .custom_metadata(obj(json!({"note": format!("step {step}")})));
        let others = obj(json!({"params": TensorHandler::TYPE_STRING}));
        rec.save(
            &mut m,
            step,
            items,
            obj(json!({"meta": meta, "extra": extra})),
            others,
            save,
        )?;
    }
    rec.finish(&m, &[0, 5, 10], None)
}

fn ab_items(step: Step) -> (Value, Value) {
    (
        json!({"a": step}),
        json!({"b": [step, step * 2], "s": "x".repeat(step as usize)}),
    )
}

fn deleted_step(path: &Path) -> Result<Value, AnyError> {
    let mut m = CheckpointManager::builder(path.to_string_lossy()).build()?;
    let options = json!({"step_prefix": null, "step_format_fixed_length": null, "best_metric": null,
                         "best_mode": null, "max_to_keep": null, "atomicity": "atomic_rename"});
    let mut rec = RootRecord::new(path, options, "composite");
    for step in 0..4 {
        let (a, b) = ab_items(step);
        let items = Composite::new()
            .json_value("a", a.clone())
            .json_value("b", b.clone());
        rec.save(
            &mut m,
            step,
            items,
            obj(json!({"a": a, "b": b})),
            Map::new(),
            SaveOptions::default(),
        )?;
    }
    m.delete(1)?;
    rec.not_steps.push("1".into());
    rec.finish(&m, &[0, 2, 3], None)
}

fn tmp_leftover(path: &Path) -> Result<Value, AnyError> {
    let mut m = CheckpointManager::builder(path.to_string_lossy()).build()?;
    let options = json!({"step_prefix": null, "step_format_fixed_length": null, "best_metric": null,
                         "best_mode": null, "max_to_keep": null, "atomicity": "atomic_rename"});
    let mut rec = RootRecord::new(path, options, "default");
    for step in 0..3 {
        let value = json!({"step": step});
        let items = Composite::new().json_value("default", value.clone());
        let save = SaveOptions::default().custom_metadata(obj(json!({"k": step})));
        rec.save(
            &mut m,
            step,
            items,
            obj(json!({"default": value})),
            Map::new(),
            save,
        )?;
    }
    // What an atomic-rename save of step 3 leaves when it dies after writing its item.
    let tmp = path.join("3.orbax-checkpoint-tmp");
    std::fs::create_dir_all(tmp.join("default.orbax-checkpoint-tmp"))?;
    std::fs::write(
        tmp.join("_CHECKPOINT_METADATA"),
        r#"{"item_handlers": null, "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": 1795973162937459942, "commit_timestamp_nsecs": null, "custom_metadata": {}}"#,
    )?;
    std::fs::write(
        tmp.join("default.orbax-checkpoint-tmp/metadata"),
        r#"{"step": 3}"#,
    )?;
    rec.not_steps.push("3.orbax-checkpoint-tmp".into());
    let listed = rec.finish(&m, &[0, 1, 2], None)?;
    // A root has one writer at a time: close this one before a fresh one opens it.
    m.close()?;
    // A fresh ckpt manager does not list it either.
    let fresh = CheckpointManager::builder(path.to_string_lossy()).build()?;
    if fresh.all_steps() != [0, 1, 2] {
        return Err(format!(
            "tmp_leftover: a fresh ckpt manager lists {:?}",
            fresh.all_steps()
        )
        .into());
    }
    Ok(listed)
}

fn commit_file(path: &Path) -> Result<Value, AnyError> {
    let mut m = CheckpointManager::builder(path.to_string_lossy())
        .atomicity(AtomicityMode::CommitFile)
        .step_format_fixed_length(4)
        .build()?;
    let options = json!({"step_prefix": null, "step_format_fixed_length": 4, "best_metric": null,
                         "best_mode": null, "max_to_keep": null, "atomicity": "commit_file"});
    let mut rec = RootRecord::new(path, options, "default");
    for step in 0..3 {
        let value = json!({"step": step, "protocol": "commit_file"});
        let items = Composite::new().json_value("default", value.clone());
        let save = SaveOptions::default().metrics(obj(json!({"loss": step as f64 / 4.0})));
        rec.save(
            &mut m,
            step,
            items,
            obj(json!({"default": value})),
            Map::new(),
            save,
        )?;
    }
    // What a commit-file save of step 3 leaves when it dies before its commit file.
    let dead = path.join("0003");
    std::fs::create_dir_all(dead.join("default"))?;
    std::fs::write(dead.join("default/metadata"), r#"{"step": 3}"#)?;
    rec.not_steps.push("0003".into());
    rec.finish(&m, &[0, 1, 2], None)
}
