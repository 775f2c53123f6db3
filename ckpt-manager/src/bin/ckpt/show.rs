//! `ckpt ls` and `ckpt show`: the committed steps, and one step in full.

use super::*;

/// Opens ROOT read-only with `best`'s metric (if any) as the manager's `best_metric`, so that
/// [`CheckpointManager::best_step`] ranks by it.
fn open_with_best(args: &RootArgs, best: &BestArgs) -> Result<CheckpointManager> {
    open_root(args, true, |o| CheckpointManagerOptions {
        best_metric: best.best_metric.clone(),
        best_mode: best_mode(best),
        ..o
    })
}

/// `--best-mode` as a [`ckpt_manager::BestMode`].
fn best_mode(best: &BestArgs) -> ckpt_manager::BestMode {
    match best.best_mode.as_str() {
        "min" => ckpt_manager::BestMode::Min,
        _ => ckpt_manager::BestMode::Max,
    }
}

/// The total size in bytes of the files of step `step` (every file below its directory).
fn step_bytes(mngr: &CheckpointManager, step: Step) -> Result<u64> {
    let dir = mngr.step_dir_name(step);
    let store = mngr.store();
    let mut total = 0;
    for file in store.list_recursive(&dir)? {
        if let Some(m) = store.stat(&format!("{dir}/{file}"))? {
            total += m.size;
        }
    }
    Ok(total)
}

/// `n` bytes for people: `512 B`, `12.3 KiB`, `4.0 MiB`, … (powers of 1024).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub(crate) fn ls(args: &RootArgs, best: &BestArgs) -> Result<()> {
    let mngr = open_with_best(args, best)?;
    let latest = mngr.latest_step();
    let best_step = best.best_metric.as_ref().and_then(|_| mngr.best_step());
    if let Some(metric) = &best.best_metric {
        // A misspelt metric would mark no step and pass for "no best step".
        let any_metrics = mngr.checkpoints().iter().any(|c| c.metrics.is_some());
        if best_step.is_none() && any_metrics {
            return Err(Error::invalid_argument(format!(
                "no step of {} has a usable value of the metric {metric:?}: {}",
                mngr.directory(),
                metric_names(&mngr)
            ))
            .with_path(mngr.store().location("")));
        }
    }
    let mut steps = Vec::new();
    for c in mngr.checkpoints() {
        // A live writer's retention may delete a step between the listing and this read.
        let items: Vec<String> = match mngr.item_handlers(c.step) {
            Ok(h) => h.into_keys().collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let bytes = step_bytes(&mngr, c.step)?;
        steps.push(json!({
            "step": c.step,
            "name": mngr.step_dir_name(c.step),
            "commit_time": c.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "bytes": bytes,
            "items": items,
            "metrics": c.metrics.clone().map(Value::Object).unwrap_or(Value::Null),
        }));
    }
    if steps.is_empty() {
        if let Some(why) = why_no_steps(mngr.store().as_ref(), args, "ls")? {
            return Err(Error::invalid_argument(why));
        }
    }
    if args.json {
        let mut out = json!({"root": mngr.directory(), "steps": steps, "latest_step": latest});
        if let Some(metric) = &best.best_metric {
            out["best_step"] = json!(best_step);
            out["best_metric"] = json!(metric);
            out["best_mode"] = json!(best.best_mode);
        }
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    // One row of cells per step; each column as wide as its widest cell, so that long item
    // lists or step names never push the columns out of line.
    let rows: Vec<[String; 5]> = steps
        .iter()
        .map(|s| {
            let step = s["step"].as_u64().unwrap_or_default();
            let marks: Vec<&str> = [(latest, "latest"), (best_step, "best")]
                .iter()
                .filter(|(at, _)| *at == Some(step))
                .map(|(_, m)| *m)
                .collect();
            let mark = if marks.is_empty() {
                step.to_string()
            } else {
                format!("{step} ({})", marks.join(", "))
            };
            let items = s["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let metrics = match &s["metrics"] {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "-".to_string(),
            };
            let time = s["commit_time"].as_str().unwrap_or("-").to_string();
            let size = human_bytes(s["bytes"].as_u64().unwrap_or_default());
            [mark, time, size, items, metrics]
        })
        .collect();
    let header = ["STEP", "COMMIT TIME (UTC)", "SIZE", "ITEMS", "METRICS"];
    // Widths in terminal cells (a CJK character takes two), not in chars.
    let cells = |t: &str| unicode_width::UnicodeWidthStr::width(t);
    let width = |col: usize| {
        rows.iter()
            .map(|r| cells(&r[col]))
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let line = |r: [&str; 5]| {
        let mut out = String::new();
        for (col, w) in widths.iter().enumerate() {
            out.push_str(r[col]);
            out.push_str(&" ".repeat(w - cells(r[col]) + 2));
        }
        out.push_str(r[4]);
        out
    };
    out!("{}", line(header));
    for [mark, time, size, items, metrics] in &rows {
        out!("{}", line([mark, time, size, items, metrics]));
    }
    if steps.is_empty() {
        out!("(no committed steps in {})", mngr.directory());
    } else if let Some(metric) = &best.best_metric {
        match best_step {
            Some(b) => out!("best: step {b} by {metric} ({})", best.best_mode),
            None => out!(
                "best: no step has a usable value of {metric} ({})",
                metric_names(&mngr)
            ),
        }
    }
    Ok(())
}

/// The metrics the root's steps have, as a phrase: `its steps have the metrics a, b` (or `its
/// steps have no metrics`).
fn metric_names(mngr: &CheckpointManager) -> String {
    let mut names: Vec<String> = mngr
        .checkpoints()
        .iter()
        .filter_map(|c| c.metrics.as_ref())
        .flat_map(|m| m.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        "its steps have no metrics".to_string()
    } else {
        format!("its steps have the metrics {}", names.join(", "))
    }
}

/// The step `spec` names: a number (which must be a committed step: otherwise a `NotFound`
/// error listing the steps there are), `latest`, or `best` (by `best`'s metric; an error
/// saying so when none was given).
fn resolve_step(
    mngr: &CheckpointManager,
    args: &RootArgs,
    best: &BestArgs,
    spec: &str,
) -> Result<Step> {
    let steps = mngr.all_steps();
    let root = mngr.directory();
    let root_path = mngr.store().location("");
    resolve(mngr, args, best, spec, &steps, &root).map_err(|e| {
        if e.path().is_some() {
            e
        } else {
            e.with_path(root_path.clone())
        }
    })
}

/// [`resolve_step`] without the root's path on its errors.
fn resolve(
    mngr: &CheckpointManager,
    args: &RootArgs,
    best: &BestArgs,
    spec: &str,
    steps: &[Step],
    root: &str,
) -> Result<Step> {
    let none_there = || -> Result<Error> {
        let why = why_no_steps(mngr.store().as_ref(), args, "show")?
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        Ok(Error::not_found(format!(
            "{root} has no committed steps{why}"
        )))
    };
    match spec {
        "latest" => match mngr.latest_step() {
            Some(s) => Ok(s),
            None => Err(none_there()?),
        },
        "best" => {
            let Some(metric) = &best.best_metric else {
                return Err(Error::invalid_argument(format!(
                    "`best` needs the metric that ranks the steps, which a root does not record: pass --best-metric NAME [--best-mode min|max] ({})",
                    metric_names(mngr)
                )));
            };
            if steps.is_empty() {
                return Err(none_there()?);
            }
            mngr.best_step().ok_or_else(|| {
                Error::not_found(format!(
                    "no step of {root} has a usable value of {metric}: {}",
                    metric_names(mngr)
                ))
            })
        }
        _ => {
            let step = parse_step(spec).map_err(|_| {
                Error::invalid_argument(format!(
                    "the step must be a non-negative integer (decimal digits only), `latest` or `best`, got {spec:?}"
                ))
            })?;
            if steps.binary_search(&step).is_ok() {
                return Ok(step);
            }
            if steps.is_empty() {
                return Err(none_there()?
                    .prefixed(&format!("no step {step}: "))
                    .with_step(step));
            }
            Err(Error::not_found(format!(
                "no step {step} in {root}; its steps are {}",
                step_list(steps)
            ))
            .with_step(step))
        }
    }
}

pub(crate) fn show(args: &RootArgs, step: &str, best: &BestArgs) -> Result<()> {
    let mngr = open_with_best(args, best)?;
    let step = resolve_step(&mngr, args, best, step)?;
    let meta = mngr.step_metadata(step)?;
    let metrics = mngr.metrics(step)?;
    let handlers = mngr.item_handlers(step)?;
    let item_meta = mngr.item_metadata(step)?;
    let mut names: Vec<String> = item_meta.keys().cloned().collect();
    for n in handlers.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    let mut items = serde_json::Map::new();
    for name in &names {
        let handler = handlers.get(name).cloned();
        let is_json = handler.as_deref() == Some(ckpt_manager::handlers::ORBAX_JSON_HANDLER);
        let value = if is_json {
            match mngr.restore_items(Some(step), &[name.as_str()]) {
                Ok(r) => r.json_value(name)?.clone(),
                Err(e) if e.kind() == ErrorKind::NotFound => Value::Null,
                Err(e) => return Err(e),
            }
        } else {
            Value::Null
        };
        let metadata = item_meta
            .get(name)
            .cloned()
            .flatten()
            .unwrap_or(Value::Null);
        items.insert(
            name.clone(),
            json!({"handler": handler, "value": value, "metadata": metadata}),
        );
    }
    let out = json!({
        "step": step,
        "metadata": meta.to_value(),
        "metrics": metrics.map(Value::Object).unwrap_or(Value::Null),
        "items": items,
    });
    if args.json {
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    out!("step {step} ({})", mngr.step_dir_name(step));
    let ts = |v: Option<i64>| {
        v.map(|n| {
            chrono::DateTime::from_timestamp_nanos(n)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|| "-".into())
    };
    out!("  init time:   {}", ts(meta.init_timestamp_nsecs));
    out!("  commit time: {}", ts(meta.commit_timestamp_nsecs));
    out!(
        "  custom metadata: {}",
        Value::Object(meta.custom_metadata.clone())
    );
    out!("  metrics: {}", out["metrics"]);
    out!("  items:");
    for (name, item) in &items {
        out!(
            "    {name}: {}",
            item["handler"].as_str().unwrap_or("(no handler recorded)")
        );
        if !item["value"].is_null() {
            out!("      value: {}", item["value"]);
        }
        for line in array_lines(&item["metadata"]) {
            out!("      {line}");
        }
    }
    Ok(())
}

/// One line per array of an item's metadata: a pytree's leaves (`key dtype[shape] bytes`) or a
/// tensors item's tensors (`name dtype[shape] bytes`); nothing for other items.
pub(crate) fn array_lines(metadata: &Value) -> Vec<String> {
    let dims = |v: &Value| {
        let d: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        d.join(", ")
    };
    let mut out = Vec::new();
    if let Some(leaves) = metadata.get("leaves").and_then(Value::as_array) {
        out.push(format!(
            "layout: {}, {} leaves",
            metadata["layout"].as_str().unwrap_or("?"),
            leaves.len()
        ));
        for l in leaves {
            let key = l["key"].as_str().unwrap_or("?");
            match l.get("dtype").and_then(Value::as_str) {
                Some(dtype) => out.push(format!(
                    "{key}: {dtype}[{}] {} bytes{}",
                    dims(&l["shape"]),
                    l["bytes"],
                    if l["value_type"] == "scalar" {
                        " (scalar)"
                    } else {
                        ""
                    }
                )),
                None => out.push(format!(
                    "{key}: {}",
                    l["value_type"].as_str().unwrap_or("?")
                )),
            }
        }
    } else if let Some(tensors) = metadata.get("tensors").and_then(Value::as_object) {
        for (name, t) in tensors {
            out.push(format!(
                "{name}: {}[{}] {} bytes",
                t["dtype"].as_str().unwrap_or("?"),
                dims(&t["shape"]),
                t["bytes"]
            ));
        }
    }
    out
}
