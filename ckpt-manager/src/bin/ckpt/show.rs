//! `ckpt ls` and `ckpt show`: the committed steps, and one step in full.

use super::*;

pub(crate) fn ls(args: &RootArgs) -> Result<()> {
    let mngr = open(args)?;
    let latest = mngr.latest_step();
    let mut steps = Vec::new();
    for c in mngr.checkpoints() {
        // A live writer's retention may delete a step between the listing and this read.
        let items: Vec<String> = match mngr.item_handlers(c.step) {
            Ok(h) => h.into_keys().collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        steps.push(json!({
            "step": c.step,
            "name": mngr.step_dir_name(c.step),
            "commit_time": c.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "items": items,
            "metrics": c.metrics.clone().map(Value::Object).unwrap_or(Value::Null),
        }));
    }
    if args.json {
        let out = json!({"root": mngr.directory(), "steps": steps, "latest_step": latest});
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    // One row of cells per step; each column as wide as its widest cell, so that long item
    // lists or step names never push the columns out of line.
    let rows: Vec<[String; 4]> = steps
        .iter()
        .map(|s| {
            let step = s["step"].as_u64().unwrap_or_default();
            let mark = if Some(step) == latest {
                format!("{step} (latest)")
            } else {
                step.to_string()
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
            [mark, time, items, metrics]
        })
        .collect();
    let header = ["STEP", "COMMIT TIME (UTC)", "ITEMS", "METRICS"];
    // Widths in terminal cells (a CJK character takes two), not in chars.
    let cells = |t: &str| unicode_width::UnicodeWidthStr::width(t);
    let width = |col: usize| {
        rows.iter()
            .map(|r| cells(&r[col]))
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |r: [&str; 4]| {
        let mut out = String::new();
        for (col, w) in widths.iter().enumerate() {
            out.push_str(r[col]);
            out.push_str(&" ".repeat(w - cells(r[col]) + 2));
        }
        out.push_str(r[3]);
        out
    };
    out!("{}", line(header));
    for [mark, time, items, metrics] in &rows {
        out!("{}", line([mark, time, items, metrics]));
    }
    if steps.is_empty() {
        out!("(no committed steps in {})", mngr.directory());
    }
    Ok(())
}

pub(crate) fn show(args: &RootArgs, step: &str) -> Result<()> {
    let step = parse_step(step)?;
    let mngr = open(args)?;
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
/// tensors item's tensors (`name dtype[shape]`); nothing for other items.
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
                "{name}: {}[{}]",
                t["dtype"].as_str().unwrap_or("?"),
                dims(&t["shape"])
            ));
        }
    }
    out
}
