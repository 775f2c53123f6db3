//! Every root in `testdata/orbax/fixtures/` (written by orbax-checkpoint 0.12.8) reads back as
//! Orbax reported it in the matching `*.expected.json` (`reopen`), through the manager and through
//! `ckpt ls/show --json`; opening a root changes no file in it.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

use ckpt_manager::core::ErrorKind;
use ckpt_manager::{BestMode, CheckpointManager, CheckpointManagerOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: [&str; 9] = [
    "composite",
    "default_async",
    "default_sync",
    "json_only",
    "metrics",
    "no_ocdbt",
    "no_ocdbt_zarr3",
    "prefix",
    "tmp_left",
];
/// Whether `h` is Orbax's StandardCheckpointHandler or PyTreeCheckpointHandler.
fn is_array_handler(h: &str) -> bool {
    h == ckpt_manager::handlers::orbax_array::STANDARD_HANDLER
        || h == ckpt_manager::handlers::orbax_array::PYTREE_HANDLER
}

/// A restored pytree in the fixtures' JSON encoding of what Orbax's restore gave: dicts and
/// lists as such, scalars as numbers, arrays as `{"__ndarray__": true, dtype, shape, values}`
/// (values nested by shape).
fn pytree_json(t: &ckpt_manager::handlers::PyTree) -> Value {
    use ckpt_manager::handlers::{DType, PyTree, Tensor};
    fn flat(t: &Tensor) -> Vec<Value> {
        let v: Vec<Value> = match t.dtype() {
            DType::F32 => t
                .to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(|x| serde_json::json!(x as f64))
                .collect(),
            DType::F64 => t
                .to_vec::<f64>()
                .unwrap()
                .into_iter()
                .map(|x| serde_json::json!(x))
                .collect(),
            DType::I32 => t
                .to_vec::<i32>()
                .unwrap()
                .into_iter()
                .map(|x| serde_json::json!(x))
                .collect(),
            DType::I64 => t
                .to_vec::<i64>()
                .unwrap()
                .into_iter()
                .map(|x| serde_json::json!(x))
                .collect(),
            DType::Bool => t
                .to_vec::<bool>()
                .unwrap()
                .into_iter()
                .map(|x| serde_json::json!(x))
                .collect(),
            other => panic!("fixture dtype {other} not expected"),
        };
        v
    }
    fn nest(values: &[Value], shape: &[usize]) -> Value {
        match shape.split_first() {
            None => values[0].clone(),
            Some((n, rest)) => {
                let step = rest.iter().product::<usize>();
                Value::Array((0..*n).map(|i| nest(&values[i * step..], rest)).collect())
            }
        }
    }
    match t {
        PyTree::Dict(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), pytree_json(v))).collect())
        }
        PyTree::List(l) => Value::Array(l.iter().map(pytree_json).collect()),
        PyTree::Scalar(t) => flat(t)[0].clone(),
        PyTree::Array(t) => serde_json::json!({
            "__ndarray__": true,
            "dtype": t.dtype().name(),
            "shape": t.shape(),
            "values": nest(&flat(t), t.shape()),
        }),
        PyTree::String(s) => Value::String(s.clone()),
        PyTree::None => Value::Null,
    }
}

const JSON_HANDLER: &str =
    "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/fixtures")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file and directory under `root` with its content and modification time.
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                stack.push(e.path());
                out.insert(rel + "/", (Vec::new(), meta.modified().unwrap()));
            } else {
                out.insert(
                    rel,
                    (std::fs::read(e.path()).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn expected(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixtures_dir().join(format!("{name}.expected.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The manager options the fixture was written with, as far as reading it matters.
fn options_of(exp: &Value) -> CheckpointManagerOptions {
    let o = &exp["written_with"]["options"];
    let mut options = CheckpointManagerOptions {
        step_prefix: o["step_prefix"].as_str().map(str::to_string),
        step_format_fixed_length: o["step_format_fixed_length"].as_u64().map(|n| n as usize),
        ..Default::default()
    };
    if let Some(f) = o["best_fn"].as_str() {
        // "lambda m: m['loss']"
        let metric = f.split('\'').nth(1).unwrap().to_string();
        options.best_metric = Some(metric);
        options.best_mode = if o["best_mode"] == "min" {
            BestMode::Min
        } else {
            BestMode::Max
        };
    }
    options
}

fn steps(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

fn check_fixture(name: &str) {
    let exp = expected(name);
    let reopen = &exp["reopen"];
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join(name);
    copy_tree(&fixtures_dir().join(name), &root);
    // Git keeps no empty directories: recreate the empty ones Orbax left (tmp_left's
    // `3.orbax-checkpoint-tmp`), so the root is what Orbax wrote.
    for entry in reopen["root_entries"].as_array().unwrap() {
        let p = root.join(entry.as_str().unwrap());
        if !p.exists() {
            std::fs::create_dir(&p).unwrap();
        }
    }
    let before = snapshot(&root);

    let mngr = CheckpointManager::open(root.to_str().unwrap(), options_of(&exp)).unwrap();
    assert_eq!(
        mngr.all_steps(),
        steps(&reopen["all_steps"]),
        "{name}: all_steps"
    );
    assert_eq!(
        mngr.latest_step(),
        reopen["latest_step"].as_u64(),
        "{name}: latest_step"
    );
    assert_eq!(
        mngr.best_step(),
        reopen["best_step"].as_u64(),
        "{name}: best_step"
    );

    for (step, m) in reopen["metrics"].as_object().unwrap() {
        let step: u64 = step.parse().unwrap();
        let got = mngr
            .metrics(step)
            .unwrap()
            .map(Value::Object)
            .unwrap_or(Value::Null);
        assert_eq!(&got, m, "{name}: metrics({step})");
        // The in-memory listing carries the same metrics.
        let listed = mngr
            .checkpoints()
            .into_iter()
            .find(|c| c.step == step)
            .unwrap();
        assert_eq!(
            listed
                .metrics
                .clone()
                .map(Value::Object)
                .unwrap_or(Value::Null),
            *m,
            "{name}: listed metrics"
        );
    }

    let root_meta = mngr.metadata().unwrap();
    assert_eq!(
        Value::Object(root_meta.custom_metadata),
        reopen["root_metadata"]["custom_metadata"],
        "{name}: root custom"
    );
    assert_eq!(
        Value::Object(root_meta.internal_metadata),
        reopen["root_metadata"]["internal_metadata"],
        "{name}: root internal"
    );

    for (step, sm) in reopen["step_metadata"].as_object().unwrap() {
        let step: u64 = step.parse().unwrap();
        let meta = mngr.step_metadata(step).unwrap();
        let handlers: BTreeMap<String, String> = meta.item_handler_map();
        let want: BTreeMap<String, String> = sm["item_handlers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(handlers, want, "{name}: item_handlers of {step}");
        assert_eq!(
            Value::Object(meta.custom_metadata.clone()),
            sm["custom_metadata"],
            "{name}: custom_metadata of {step}"
        );
        assert_eq!(
            meta.init_timestamp_nsecs,
            sm["init_timestamp_nsecs"].as_i64(),
            "{name}: init ts of {step}"
        );
        assert_eq!(
            meta.commit_timestamp_nsecs,
            sm["commit_timestamp_nsecs"].as_i64(),
            "{name}: commit ts of {step}"
        );
        assert_eq!(
            Value::Object(meta.metrics.clone()),
            sm["metrics"],
            "{name}: step metadata metrics of {step}"
        );
        // Listing time comes from the commit timestamp.
        let listed = mngr
            .checkpoints()
            .into_iter()
            .find(|c| c.step == step)
            .unwrap();
        assert_eq!(
            listed.time.timestamp_nanos_opt(),
            meta.commit_timestamp_nsecs,
            "{name}: listed time of {step}"
        );
    }

    for (step, value) in reopen["restored"].as_object().unwrap() {
        let step: u64 = step.parse().unwrap();
        let handlers = mngr.item_handlers(step).unwrap();
        let user_items: Vec<&String> = handlers
            .keys()
            .filter(|k| k.as_str() != "metrics")
            .collect();
        let default_mode = user_items.len() == 1 && user_items[0] == "default";
        for item in user_items {
            let want = if default_mode {
                value
            } else {
                &value[item.as_str()]
            };
            let handler = &handlers[item];
            let got = mngr.restore_items(Some(step), &[item.as_str()]);
            if handler == JSON_HANDLER {
                let got = got.unwrap();
                assert_eq!(
                    got.json_value(item).unwrap(),
                    want,
                    "{name}: restored {item} of {step}"
                );
            } else if is_array_handler(handler) {
                // Orbax's array items (StandardSave/PyTreeSave) restore as pytrees whose values
                // are what Orbax's own restore gave (the fixture's expected JSON).
                let got = got.unwrap();
                assert_eq!(
                    &pytree_json(got.pytree(item).unwrap()),
                    want,
                    "{name}: restored {item} of {step}"
                );
            } else {
                let err = got.err().unwrap();
                assert_eq!(
                    err.kind(),
                    ErrorKind::Unsupported,
                    "{name}: {item} of {step}: {err}"
                );
                let text = err.to_string();
                assert!(
                    text.contains(item.as_str()) && text.contains(handler.as_str()),
                    "{name}: error names item and handler: {text}"
                );
            }
        }
        // Every item of these fixtures (JSON and arrays) restores.
        let all = mngr.restore(Some(step));
        assert!(
            all.is_ok(),
            "{name}: restore all of {step}: {:?}",
            all.err()
        );
    }
    mngr.close().unwrap();

    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let want: Vec<String> = reopen["root_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(entries, want, "{name}: root entries");
    assert!(reopen["reopen_modified_files"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        snapshot(&root),
        before,
        "{name}: opening the root changed a file"
    );

    check_cli(name, &root, &exp);
}

fn ckpt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_cli(name: &str, root: &Path, exp: &Value) {
    let reopen = &exp["reopen"];
    let o = &exp["written_with"]["options"];
    let mut common: Vec<String> = vec![root.to_str().unwrap().to_string()];
    if let Some(p) = o["step_prefix"].as_str() {
        common.extend(["--step-prefix".to_string(), p.to_string()]);
    }
    if let Some(n) = o["step_format_fixed_length"].as_u64() {
        common.extend(["--step-format-fixed-length".to_string(), n.to_string()]);
    }
    let mut args = vec!["ls", "--json"];
    args.extend(common.iter().map(String::as_str));
    let (ok, out, err) = ckpt(&args);
    assert!(ok, "{name}: ckpt ls failed: {err}");
    let ls: Value = serde_json::from_str(&out).unwrap();
    let listed: Vec<u64> = ls["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, steps(&reopen["all_steps"]), "{name}: ckpt ls steps");
    assert_eq!(
        ls["latest_step"], reopen["latest_step"],
        "{name}: ckpt ls latest"
    );
    for s in ls["steps"].as_array().unwrap() {
        let key = s["step"].to_string();
        assert_eq!(
            s["metrics"], reopen["metrics"][&key],
            "{name}: ckpt ls metrics of {key}"
        );
        let items: Vec<&str> = s["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let want: Vec<&str> = reopen["step_metadata"][&key]["item_handlers"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(items, want, "{name}: ckpt ls items of {key}");
    }
    for step in steps(&reopen["all_steps"]) {
        let step_s = step.to_string();
        let mut args = vec!["show", "--json"];
        args.extend(common.iter().map(String::as_str));
        args.push(&step_s);
        let (ok, out, err) = ckpt(&args);
        assert!(ok, "{name}: ckpt show {step} failed: {err}");
        let show: Value = serde_json::from_str(&out).unwrap();
        let sm = &reopen["step_metadata"][&step_s];
        assert_eq!(show["step"], step);
        assert_eq!(show["metadata"]["custom_metadata"], sm["custom_metadata"]);
        assert_eq!(
            show["metadata"]["commit_timestamp_nsecs"],
            sm["commit_timestamp_nsecs"]
        );
        assert_eq!(show["metrics"], reopen["metrics"][&step_s]);
        for (item, handler) in sm["item_handlers"].as_object().unwrap() {
            assert_eq!(
                &show["items"][item]["handler"], handler,
                "{name}: show handler of {item}"
            );
            if handler == JSON_HANDLER && item != "metrics" {
                let restored = &reopen["restored"][&step_s];
                let want = if sm["item_handlers"].as_object().unwrap().len() == 1 {
                    restored
                } else {
                    &restored[item]
                };
                assert_eq!(
                    &show["items"][item]["value"], want,
                    "{name}: show value of {item}"
                );
            } else if handler != JSON_HANDLER {
                assert!(show["items"][item]["value"].is_null());
            }
        }
    }
}

#[test]
fn composite() {
    check_fixture("composite");
}
#[test]
fn default_async() {
    check_fixture("default_async");
}
#[test]
fn default_sync() {
    check_fixture("default_sync");
}
#[test]
fn json_only() {
    check_fixture("json_only");
}
#[test]
fn metrics() {
    check_fixture("metrics");
}
#[test]
fn no_ocdbt() {
    check_fixture("no_ocdbt");
}
#[test]
fn no_ocdbt_zarr3() {
    check_fixture("no_ocdbt_zarr3");
}
#[test]
fn prefix() {
    check_fixture("prefix");
}
#[test]
fn tmp_left() {
    check_fixture("tmp_left");
}

#[test]
fn the_list_of_fixtures_is_complete() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".expected.json").map(str::to_string))
        })
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, FIXTURES.to_vec());
}

#[test]
fn metrics_fixture_without_best_fn_ranks_by_latest() {
    let exp = expected("metrics");
    let want = &exp["reopen_without_best_fn"];
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("m");
    copy_tree(&fixtures_dir().join("metrics"), &root);
    let mngr = CheckpointManager::open(root.to_str().unwrap(), CheckpointManagerOptions::default())
        .unwrap();
    assert_eq!(mngr.all_steps(), steps(&want["all_steps"]));
    assert_eq!(mngr.best_step(), want["best_step"].as_u64());
    assert_eq!(mngr.latest_step(), want["latest_step"].as_u64());
}
