//! The scenario runner for the differential cases of `testdata/orbax/cases/` (contract: that
//! folder's README.md): replays a case's calls against the real `CheckpointManager` on a fresh
//! root — a temporary directory, or any root URI such as `s3://bucket/prefix` — and reports what
//! happened, in the README's output schema.
//!
//! On an object store (no directories of their own) two things of the contract map as follows:
//! a `pre_existing` entry cannot be an empty directory, so a step name becomes a committed step
//! with no items (`<name>/commit_success.txt`, the commit-file protocol these stores use) and any
//! other name a directory holding one marker object (`<name>/.keep`); and `disk_steps` counts a
//! step directory only when it holds its `commit_success.txt`.

mod compare;
mod options;

pub use compare::compare;

use ckpt_manager::core::{Error, NameFormat, StandardNameFormat, Step, COMMIT_SUCCESS_FILE};
use ckpt_manager::storage::{EntryKind, Store};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Runs `case` (a whole case file, or just its `scenario`) and returns the output object.
///
/// # Errors
/// A message when the case does not follow the schema (a malformed event, an unknown option);
/// errors of the manager are part of the output, not failures.
pub fn run_case(case: &Value) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let root = dir.path().join("root");
    let root = root.to_str().ok_or("temporary path is not UTF-8")?;
    run_case_at(case, root)
}

/// As [`run_case`], on the root at `root` (a local path or a URI such as `s3://bucket/prefix`),
/// which must be empty (not exist, or hold nothing).
///
/// # Errors
/// As [`run_case`]; also when the root cannot be opened.
pub fn run_case_at(case: &Value, root: &str) -> Result<Value, String> {
    let scenario = case.get("scenario").unwrap_or(case);
    let view = RootView::open(root)?;
    run_scenario(scenario, root, &view)
}

/// The root seen directly, not through the manager.
struct RootView {
    store: Arc<dyn Store>,
    /// No directories of their own: an object store.
    object: bool,
}

impl RootView {
    fn open(root: &str) -> Result<RootView, String> {
        let store = ckpt_manager::storage::open(root).map_err(|e| e.to_string())?;
        let object = !store.capabilities().directories;
        Ok(RootView { store, object })
    }

    /// Creates a `pre_existing` entry (see the module docs for object stores).
    fn create_entry(&self, name: &str, format: &dyn NameFormat) -> Result<(), String> {
        let made = if !self.object {
            self.store.create_dir(name)
        } else if format.parse_name(name).is_some() {
            self.store
                .write(&format!("{name}/{COMMIT_SUCCESS_FILE}"), b"pre-existing")
        } else {
            self.store.write(&format!("{name}/.keep"), b"")
        };
        made.map_err(|e| format!("cannot create {name}: {e}"))
    }

    /// Committed step directories, ascending.
    fn disk_steps(&self, format: &dyn NameFormat) -> Vec<Step> {
        let Ok(entries) = self.store.list_dir("") else {
            return Vec::new();
        };
        let mut steps: Vec<Step> = entries
            .into_iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .filter_map(|e| {
                let step = format.parse_name(&e.name)?;
                let committed = !self.object
                    || self
                        .store
                        .stat(&format!("{}/{COMMIT_SUCCESS_FILE}", e.name))
                        .ok()
                        .flatten()
                        .is_some();
                committed.then_some(step)
            })
            .collect();
        steps.sort_unstable();
        steps
    }

    /// The names directly in the root, sorted by code point; null when there is no root.
    fn root_entries(&self) -> Value {
        let names: Vec<String> = match self.store.list_dir("") {
            Ok(entries) => entries.into_iter().map(|e| e.name).collect(),
            Err(_) => return Value::Null,
        };
        let exists = !names.is_empty() || self.store.stat("").ok().flatten().is_some();
        if !exists {
            return Value::Null;
        }
        let mut names = names;
        names.sort();
        json!(names)
    }
}

fn run_scenario(scenario: &Value, root: &str, view: &RootView) -> Result<Value, String> {
    let options_json = scenario.get("options").cloned().unwrap_or(json!({}));
    let pre_existing: Vec<String> = match scenario.get("pre_existing") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("pre_existing holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("pre_existing must be a list".into()),
    };
    let events = scenario
        .get("events")
        .and_then(Value::as_array)
        .ok_or("scenario has no events list")?;
    if !pre_existing.is_empty() {
        let format = options::from_json(&options_json)
            .and_then(|o| o.name_format())
            .map_err(|e| e.to_string())
            .unwrap_or_else(|_| Arc::new(StandardNameFormat::default()));
        for name in &pre_existing {
            view.create_entry(name, format.as_ref())?;
        }
    }
    let root_str = root.to_string();
    let built = options::from_json(&options_json);
    let mut mngr = match built.and_then(|o| CheckpointManager::open(&root_str, o)) {
        Ok(m) => m,
        Err(e) => {
            return Ok(json!({
                "init_error": error_string(&e), "results": [], "steps_after_each_event": [],
                "disk_steps_after_each_event": [], "latest_after_each_event": [], "best_after_each_event": []
            }))
        }
    };
    let format = mngr.options().name_format().map_err(|e| e.to_string())?;
    let mut out = Output::default();
    for event in events {
        let result = run_event(&mut mngr, event, &root_str, &options_json)?;
        out.results.push(result);
        out.steps.push(json!(mngr.all_steps()));
        out.disk.push(json!(view.disk_steps(format.as_ref())));
        out.latest.push(json!(mngr.latest_step()));
        out.best.push(json!(mngr.best_step()));
    }
    let final_steps = mngr.all_steps();
    let mut metrics = Map::new();
    for step in &final_steps {
        let m = match mngr.metrics(*step) {
            Ok(Some(m)) => Value::Object(m),
            Ok(None) => Value::Null,
            Err(e) => json!({"error": error_string(&e)}),
        };
        metrics.insert(step.to_string(), m);
    }
    let latest = mngr.latest_step();
    let best = mngr.best_step();
    mngr.close().map_err(|e| e.to_string())?;
    let reopened =
        options::from_json(&options_json).and_then(|o| CheckpointManager::open(&root_str, o));
    let after = match reopened {
        Ok(m) => {
            let v = json!({"all_steps": m.all_steps(), "latest_step": m.latest_step(), "best_step": m.best_step()});
            m.close().map_err(|e| e.to_string())?;
            v
        }
        Err(e) => json!({"error": error_string(&e)}),
    };
    Ok(json!({
        "results": out.results,
        "steps_after_each_event": out.steps,
        "disk_steps_after_each_event": out.disk,
        "latest_after_each_event": out.latest,
        "best_after_each_event": out.best,
        "final_steps": final_steps,
        "final_disk_steps": view.disk_steps(format.as_ref()),
        "latest_step": latest,
        "best_step": best,
        "metrics": metrics,
        "after_final_reopen": after,
        "root_entries": view.root_entries(),
    }))
}

#[derive(Default)]
struct Output {
    results: Vec<Value>,
    steps: Vec<Value>,
    disk: Vec<Value>,
    latest: Vec<Value>,
    best: Vec<Value>,
}

fn run_event(
    mngr: &mut CheckpointManager,
    event: &Value,
    root: &str,
    options: &Value,
) -> Result<Value, String> {
    let obj = event.as_object().ok_or("an event is not an object")?;
    if let Some(step) = obj.get("save") {
        let step = as_step(step)?;
        let metrics = match obj.get("metrics") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err("save metrics must be an object or null".into()),
        };
        let custom_metadata = match obj.get("custom_metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err("save custom_metadata must be an object or null".into()),
        };
        let force = obj.get("force").and_then(Value::as_bool).unwrap_or(false);
        let o = SaveOptions {
            metrics,
            custom_metadata,
            force,
        };
        let items = Composite::new().json_value(
            ckpt_manager::core::DEFAULT_ITEM_NAME,
            json!({ "step": step }),
        );
        return Ok(match mngr.save(step, items, o) {
            Ok(saved) => json!({"saved": saved}),
            Err(e) => json!({"error": error_string(&e)}),
        });
    }
    if let Some(step) = obj.get("delete") {
        return Ok(match mngr.delete(as_step(step)?) {
            Ok(()) => json!({"deleted": true}),
            Err(e) => json!({"error": error_string(&e)}),
        });
    }
    if obj.contains_key("reopen") {
        // Close first: a root has one writer at a time.
        let old = std::mem::replace(mngr, placeholder()?);
        old.close().map_err(|e| e.to_string())?;
        return Ok(
            match options::from_json(options).and_then(|o| CheckpointManager::open(root, o)) {
                Ok(m) => {
                    *mngr = m;
                    json!({"reopened": true})
                }
                Err(e) => json!({"error": error_string(&e)}),
            },
        );
    }
    if obj.contains_key("reload") {
        return Ok(match mngr.reload() {
            Ok(()) => json!({"reloaded": true}),
            Err(e) => json!({"error": error_string(&e)}),
        });
    }
    if let Some(step) = obj.get("should_save") {
        return Ok(json!({"should_save": mngr.should_save(as_step(step)?)}));
    }
    if let Some(step) = obj.get("restore") {
        let step = match step {
            Value::Null => None,
            s => Some(as_step(s)?),
        };
        let item = ckpt_manager::core::DEFAULT_ITEM_NAME;
        return Ok(
            match mngr
                .restore_items(step, &[item])
                .and_then(|r| r.json_value(item).cloned())
            {
                Ok(v) => json!({"restored": v}),
                Err(e) => json!({"error": error_string(&e)}),
            },
        );
    }
    Err(format!("unknown event {event}"))
}

/// A manager on an empty in-memory root, standing in while the real one is reopened.
fn placeholder() -> Result<CheckpointManager, String> {
    CheckpointManager::open("memory://", Default::default()).map_err(|e| e.to_string())
}

fn as_step(v: &Value) -> Result<Step, String> {
    v.as_u64()
        .ok_or_else(|| format!("a step must be a non-negative integer, got {v}"))
}

/// `"<Kind>: <message>"`, as the cases write errors (with the causes after it: compared by kind).
fn error_string(e: &Error) -> String {
    e.chain().to_string()
}
