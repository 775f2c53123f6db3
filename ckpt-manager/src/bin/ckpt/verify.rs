//! `ckpt verify`: checksums and a restore of every item.

use super::*;

/// What restoring one item of a step as `restore` would gave, for `ckpt verify`.
pub(crate) enum ItemCheck {
    /// The item restores.
    Restores,
    /// It does not: the step is broken.
    Fails(String),
    /// This program cannot restore it (an Orbax tensorstore format, a handler it does not link,
    /// no handler recorded): not checked, not counted as bad.
    NotChecked(String),
}

/// `ckpt verify`: re-reads every file recorded in each step's `_CKPT_CHECKSUMS`, checks the step
/// metadata, and (unless `checksums_only`) restores each item of each step as `restore` would
/// (its handler from the step metadata, checksums verified), one item at a time; prints each bad
/// file and each item that does not restore, and exits 3 (a `Corrupt` error naming them) when
/// there is one. Steps without checksums (written by Orbax) are reported as such and are not
/// errors; items this program cannot restore (`Unsupported`: tensorstore formats, handlers not
/// linked in; or no handler recorded) are reported as not checked.
pub(crate) fn verify(args: &RootArgs, step: Option<&str>, checksums_only: bool) -> Result<()> {
    let mngr = open(args)?;
    let step_given = step;
    let steps = match step {
        Some(s) => {
            let step = parse_step(s)?;
            let listed = mngr.all_steps();
            if listed.binary_search(&step).is_err() {
                let there = if listed.is_empty() {
                    why_no_steps(mngr.store().as_ref(), args, "verify")?
                        .unwrap_or_else(|| "it has no committed steps".to_string())
                } else {
                    format!("its steps are {}", step_list(&listed))
                };
                return Err(Error::not_found(format!(
                    "no step {step} in {}; {there}",
                    mngr.directory()
                ))
                .with_step(step)
                .with_path(mngr.store().location("")));
            }
            vec![step]
        }
        None => mngr.all_steps(),
    };
    if steps.is_empty() {
        // Verifying nothing is no "ok" when ROOT was the wrong directory.
        if let Some(why) = why_no_steps(mngr.store().as_ref(), args, "verify")? {
            return Err(Error::invalid_argument(why));
        }
    }
    let mut reports = Vec::new();
    let mut bad = Vec::new();
    let mut failed = Vec::new();
    let gone = |step: Step| -> Result<bool> {
        let dir = mngr.step_dir_name(step);
        Ok(mngr.store().stat(&dir)?.is_none())
    };
    let mut deleted = Vec::new();
    'steps: for step in steps {
        let dir = mngr.step_dir_name(step);
        let mut manifest_error = None;
        let report = match ckpt_manager::verify_step(mngr.store().as_ref(), &dir) {
            Ok(r) => r,
            // A live writer's retention may delete a listed step while it is being verified.
            Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() => {
                deleted.push(step);
                continue;
            }
            // A manifest that does not parse: this step is bad, the others are still checked.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported) => {
                manifest_error = Some(e.chain().to_string());
                ckpt_manager::VerifyReport {
                    step_location: mngr.store().location(&dir),
                    step_dir: dir.clone(),
                    has_checksums: true,
                    files: Vec::new(),
                    problems: Vec::new(),
                }
            }
            Err(e) => return Err(e.with_step(step)),
        };
        if !report.is_ok() && step_given.is_none() && gone(step)? {
            deleted.push(step);
            continue;
        }
        for problem in &report.problems {
            bad.push(format!("{}: {problem}", report.step_location));
        }
        for (path, status) in report.bad_files() {
            bad.push(format!("{}: {status}", report.location_of(path)));
        }
        // The step metadata and metrics must parse too (they are not handler files), and a
        // step written by ckpt's own handlers must still have its checksum manifest.
        let mut meta_error = None;
        let mut handlers = std::collections::BTreeMap::new();
        match mngr.step_metadata(step) {
            Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() && gone(step)? => {
                deleted.push(step);
                continue;
            }
            Err(e) => meta_error = Some(e.chain().to_string()),
            Ok(meta) => {
                handlers = meta.item_handler_map();
                let ours = handlers.values().any(|h| h.starts_with("ckpt."));
                if ours && !report.has_checksums {
                    meta_error = Some(format!(
                        "written by ckpt, but its checksum manifest {} is missing",
                        ckpt_manager::storage::MANIFEST_FILE
                    ));
                }
            }
        }
        if let Some(e) = manifest_error {
            meta_error = Some(e);
        }
        if let Some(e) = &meta_error {
            bad.push(format!("step {step}: {e}"));
        }
        // Each item restored as `restore` would: only for a step whose files and metadata
        // passed (a bad one is reported already, and restore would fail on the same file).
        let mut items: Vec<(String, ItemCheck)> = Vec::new();
        if !checksums_only && report.is_ok() && meta_error.is_none() {
            let names = match mngr.item_names(step) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() => {
                    deleted.push(step);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for item in names {
                let check = match mngr.restore_items(Some(step), &[item.as_str()]) {
                    Ok(_) => ItemCheck::Restores,
                    Err(e)
                        if e.kind() == ErrorKind::NotFound
                            && step_given.is_none()
                            && gone(step)? =>
                    {
                        deleted.push(step);
                        continue 'steps;
                    }
                    Err(e) if e.kind() == ErrorKind::Unsupported => {
                        ItemCheck::NotChecked(e.chain().to_string())
                    }
                    Err(e)
                        if e.kind() == ErrorKind::InvalidArgument
                            && !handlers.contains_key(&item)
                            && item != ckpt_manager::core::METRICS_ITEM_NAME =>
                    {
                        ItemCheck::NotChecked(format!(
                            "the step records no handler for it: {}",
                            e.chain()
                        ))
                    }
                    Err(e) => {
                        let why = e.chain().to_string();
                        failed.push(format!(
                            "step {step}: item {item:?} does not restore: {why}"
                        ));
                        ItemCheck::Fails(why)
                    }
                };
                items.push((item, check));
            }
        }
        reports.push((step, report, meta_error, items));
    }
    if args.json {
        let out: Vec<Value> = reports
            .iter()
            .map(|(step, r, meta_error, items)| {
                let files: Vec<Value> = r
                    .files
                    .iter()
                    .map(|(p, st)| json!({"path": p, "status": st.to_string(), "bad": st.is_bad()}))
                    .collect();
                let restore: Vec<Value> = items
                    .iter()
                    .map(|(item, c)| match c {
                        ItemCheck::Restores => {
                            json!({"item": item, "restores": true, "checked": true, "error": null})
                        }
                        ItemCheck::Fails(e) => {
                            json!({"item": item, "restores": false, "checked": true, "error": e})
                        }
                        ItemCheck::NotChecked(e) => {
                            json!({"item": item, "restores": null, "checked": false, "error": e})
                        }
                    })
                    .collect();
                let restores = !items.iter().any(|(_, c)| matches!(c, ItemCheck::Fails(_)));
                json!({"step": step, "has_checksums": r.has_checksums,
                       "ok": r.is_ok() && meta_error.is_none() && restores,
                       "metadata_error": meta_error, "files": files,
                       "problems": r.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                       "restore_checked": !checksums_only, "items": restore})
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        for (step, r, meta_error, items) in &reports {
            let checked = r
                .files
                .iter()
                .filter(|(_, st)| {
                    !matches!(
                        st,
                        ckpt_manager::storage::FileStatus::Unchecked
                            | ckpt_manager::storage::FileStatus::Unrecorded
                    )
                })
                .count();
            let restored: Vec<&str> = items
                .iter()
                .filter(|(_, c)| matches!(c, ItemCheck::Restores))
                .map(|(i, _)| i.as_str())
                .collect();
            let restores = if checksums_only || restored.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} item(s) restore ({})",
                    restored.len(),
                    restored.join(", ")
                )
            };
            if let Some(e) = meta_error {
                out!("step {step}: BAD metadata: {e}");
            }
            if !r.has_checksums && r.is_ok() {
                out!("step {step}: no checksums recorded{restores}");
            } else if r.is_ok() {
                if meta_error.is_none() {
                    out!("step {step}: ok ({checked} files){restores}");
                }
            } else {
                out!("step {step}: BAD");
                for problem in &r.problems {
                    out!("  {problem}");
                }
                for (path, status) in r.bad_files() {
                    out!("  {}: {status}", r.location_of(path));
                }
            }
            for (item, c) in items {
                match c {
                    ItemCheck::Restores => {}
                    ItemCheck::Fails(e) => {
                        out!("step {step}: BAD: item {item:?} does not restore: {e}")
                    }
                    ItemCheck::NotChecked(e) => {
                        out!("step {step}: item {item:?} not checked (this program cannot restore it): {e}")
                    }
                }
            }
        }
        for step in &deleted {
            out!("step {step}: deleted while verifying (skipped)");
        }
        if reports.is_empty() && deleted.is_empty() {
            out!("(no committed steps in {})", mngr.directory());
        }
    }
    let mut parts = Vec::new();
    if !bad.is_empty() {
        parts.push(format!("{} bad file(s)", bad.len()));
    }
    if !failed.is_empty() {
        parts.push(format!("{} item(s) that do not restore", failed.len()));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        bad.extend(failed);
        Err(Error::corrupt(format!(
            "{}: {}",
            parts.join(", "),
            bad.join("; ")
        )))
    }
}
