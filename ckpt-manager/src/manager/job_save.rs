//! The save of one step by every process of a multi-process job (issue 15), in three phases,
//! each ending in one [`Job::exchange`]:
//!
//! 1. `prepared`: each process checks its part (its items) as a single-process save checks
//!    them; the primary also prepares the step's working directory (the tmp directory, or in
//!    commit-file mode the claimed step directory). Exchanged: each part's item names. A
//!    failure anywhere, an item given by two processes, or nothing to save at all: every
//!    process fails and the primary removes the working directory.
//! 2. `written`: each process writes its items into the working directory (whose name every
//!    process knows from the step's name and the commit protocol), each file recorded with its
//!    size and CRC32C. Exchanged: each part's handler strings and checksums. A failure
//!    anywhere (or a process that does not come): every process fails and the primary removes
//!    the working directory; nothing is committed.
//! 3. `committed`: the primary merges the parts into one `_CKPT_CHECKSUMS` and one
//!    `item_handlers` map, commits the items and the step, records it and runs retention.
//!    Exchanged: the primary's outcome, the step's time and metrics, and the steps retention
//!    deleted, which every other process then forgets, so every process lists the same steps.
//!
//! A committed step is the step a single process saving the union of the parts would have
//! written (the same files, one manifest), but for the times in `_CHECKPOINT_METADATA`.

use super::job::Job;
use crate::open_root::OpenRoot;
use crate::save::{Fence, Phase, Staged};
use crate::save_plan::SavePlan;
use crate::{Composite, SaveOptions};
use ckpt_core::{CheckpointInfo, Error, ErrorKind, Metrics, Result, Step};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Saves this process's part (`items`) of `step` together with the other processes of `job`.
///
/// # Errors
/// Every process gets the same error when any process fails a phase before the commit (naming
/// the failing process and the phase), as [`Job::exchange`]; nothing is then committed.
/// `InvalidArgument` when two processes give an item of the same name, or every part is empty
/// (and there are no metrics). After the primary committed, a process that does not come to the
/// last phase makes the others' `save` fail with `Timeout` or `Coordination` although the step
/// is committed (the primary lists it; the others list it after a `reload`).
pub(super) fn save_in_job(
    root: &OpenRoot,
    job: &Job,
    step: Step,
    mut items: Composite<'_>,
    mut options: SaveOptions,
) -> Result<()> {
    let primary = job.is_primary();
    // Pytree shards: this process writes `ocdbt.process_<index>/`; the primary merges (phase 3).
    items.set_shard_role(ckpt_handlers::orbax_array::ShardRole {
        process: job.index(),
        primary,
        merge: false,
    });
    if !primary {
        // The step's metrics and custom metadata are the primary's (spec §5.11: the primary
        // writes the step metadata and the JSON items).
        options.metrics = None;
        options.custom_metadata = None;
    }
    let base = job.save_names(step);

    // 1. prepared
    let mut plan = None;
    let mut staged = None;
    let prepared = SavePlan::new_as(root, step, &items, options, true).and_then(|p| {
        if primary {
            let s = Staged::begin(root, step, &p.name, p.items_total)?;
            s.prepare_shared(root, &items.shard_names())?;
            staged = Some(s);
        }
        let mut names: Vec<&str> = items.names();
        names.sort_unstable();
        let v = json!({
            "items": names,
            "metrics": p.write_metrics,
            "sharded": items.shard_names(),
            "layouts": items.shard_layouts(),
        });
        plan = Some(p);
        Ok(v)
    });
    let mut shard_owners = BTreeMap::new();
    let checked = job
        .exchange(&format!("{base}.prepared"), prepared)
        .and_then(|parts| {
            shard_owners = check_parts(step, &parts, job.primary())?;
            Ok(())
        });
    let plan = match (checked, plan) {
        (Ok(()), Some(plan)) => plan,
        (Err(e), _) => return Err(abandon(root, staged, e, step)),
        (Ok(()), None) => {
            return Err(abandon(
                root,
                staged,
                internal("prepared without a plan"),
                step,
            ))
        }
    };

    // 2. written
    let mut staged = match staged {
        Some(s) => s,
        None if primary => return Err(internal("the primary has no working directory")),
        None => Staged::join(root, step, &plan.name, plan.items_total),
    };
    let metrics: Option<Metrics> = plan
        .write_metrics
        .then(|| plan.options.metrics.clone().unwrap_or_default());
    let written = staged
        .write_items(root, &items, metrics.as_ref(), false)
        .and_then(|()| staged.part());
    drop(items);
    let parts = match job.exchange(&format!("{base}.written"), written) {
        Ok(parts) => parts,
        Err(e) => return Err(abandon(root, primary.then_some(staged), e, step)),
    };

    // 3. committed
    let committed = if primary {
        commit(root, job, &plan, staged, &parts, &shard_owners)
    } else {
        Ok(Value::Null)
    };
    let all = job
        .exchange(&format!("{base}.committed"), committed)
        .map_err(|e| e.with_step(step))?;
    if !primary {
        let outcome = all
            .iter()
            .find(|(i, _)| *i == job.primary())
            .map(|(_, v)| v)
            .ok_or_else(|| internal("the primary's outcome is missing"))?;
        record(root, step, &plan.name, outcome)?;
    }
    Ok(())
}

/// The primary's third phase: merges the other parts, commits the step, records it and runs
/// retention; the outcome every other process records.
fn commit(
    root: &OpenRoot,
    job: &Job,
    plan: &SavePlan,
    mut staged: Staged,
    parts: &[(usize, Value)],
    shard_owners: &BTreeMap<String, Vec<usize>>,
) -> Result<Value> {
    let step = plan.step;
    let time = root.options.clock.now();
    let merged = parts
        .iter()
        .filter(|(i, _)| *i != job.index())
        .try_for_each(|(i, part)| staged.add_part(root, *i, part));
    let save_job = crate::save::SaveJob {
        step,
        name: plan.name.clone(),
        items: Composite::new(),
        options: plan.options.clone(),
        write_metrics: plan.write_metrics,
        time,
        check_committed: false,
        fence: Arc::new(Fence::default()),
        items_total: plan.items_total,
    };
    let phase = Arc::new(Mutex::new(Phase::Committing));
    let merged = merged.and_then(|()| staged.merge_shards(root, shard_owners));
    if let Err(e) = merged.and_then(|()| staged.commit(root, &save_job, &phase)) {
        return Err(staged.abandon(root, e));
    }
    staged.report_finished();
    let before: BTreeSet<Step> = root.state().checkpoints.iter().map(|c| c.step).collect();
    let info = CheckpointInfo::new(step, time, plan.options.metrics.clone());
    root.state().insert(info, plan.name.clone());
    crate::retention::after_save(root);
    let after: BTreeSet<Step> = root.state().checkpoints.iter().map(|c| c.step).collect();
    let deleted: Vec<Step> = before
        .iter()
        .chain(std::iter::once(&step))
        .filter(|s| !after.contains(s))
        .copied()
        .collect();
    Ok(json!({
        "time_nanos": time.timestamp_nanos_opt(),
        "metrics": plan.options.metrics,
        "deleted": deleted,
    }))
}

/// A non-primary process records the step the primary committed (with the primary's time and
/// metrics) and forgets the steps the primary's retention deleted.
fn record(root: &OpenRoot, step: Step, name: &str, outcome: &Value) -> Result<()> {
    let bad = |what: &str| {
        Error::new(
            ErrorKind::Coordination,
            format!("the primary's outcome of the save of step {step} is unreadable: {what}"),
        )
        .with_step(step)
    };
    let time = outcome
        .get("time_nanos")
        .and_then(Value::as_i64)
        .map(chrono::DateTime::from_timestamp_nanos)
        .ok_or_else(|| bad("no time"))?;
    let metrics: Option<Metrics> = match outcome.get("metrics") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(bad("metrics are not an object")),
    };
    let deleted: Vec<Step> = outcome
        .get("deleted")
        .cloned()
        .map(serde_json::from_value)
        .ok_or_else(|| bad("no deleted steps"))?
        .map_err(|e| bad(&e.to_string()))?;
    let mut st = root.state();
    st.insert(CheckpointInfo::new(step, time, metrics), name.to_string());
    for s in deleted {
        st.forget(s);
    }
    Ok(())
}

/// The same check on every process of what the parts hold: no item given by two processes
/// (but pytree shards, given by every process that holds a shard, the primary among them), and
/// something to save. Returns the processes giving each pytree shard item.
fn check_parts(
    step: Step,
    parts: &[(usize, Value)],
    primary: usize,
) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut owners: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut sharded: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut metrics = false;
    for (i, p) in parts {
        for item in p
            .get("sharded")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = item.as_str() {
                sharded.entry(name).or_default().push(*i);
            }
        }
        metrics |= p.get("metrics").and_then(Value::as_bool).unwrap_or(false);
        for item in p
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = item.as_str() {
                owners.entry(name).or_default().push(*i);
            }
        }
    }
    if let Some((item, _)) = sharded
        .iter()
        .find(|(name, by)| owners.get(*name) != Some(*by) || !by.contains(&primary))
    {
        return Err(Error::invalid_argument(format!(
            "pytree shard item {item:?} of step {step} is given by processes {:?} as a shard and \
             by {:?} in all; every process giving it must give a shard \
             (Composite::pytree_shard), the primary ({primary}) among them; nothing was saved",
            sharded.get(item).cloned().unwrap_or_default(),
            owners.get(item).cloned().unwrap_or_default()
        ))
        .with_step(step));
    }
    check_shard_layouts(step, parts, primary)?;
    if let Some((item, by)) = owners
        .iter()
        .find(|(name, by)| by.len() > 1 && !sharded.contains_key(*name))
    {
        return Err(Error::invalid_argument(format!(
            "item {item:?} of step {step} is given by processes {by:?}; in a multi-process save \
             each item comes from one process (give the processes' parts different names); \
             nothing was saved"
        ))
        .with_step(step));
    }
    if owners.is_empty() && !metrics {
        return Err(Error::invalid_argument(format!(
            "nothing to save for step {step}: every process's part is empty"
        ))
        .with_step(step));
    }
    Ok(sharded
        .into_iter()
        .map(|(n, by)| (n.to_string(), by))
        .collect())
}

/// Every sharded leaf of every process agrees with the primary's: the same dtype, global shape
/// and chunk shape, and the primary shards it too (it writes the leaf's `.zarray`). Otherwise
/// the chunks of one array would be written with different dtypes or grids and the merged item
/// would restore wrong values.
fn check_shard_layouts(step: Step, parts: &[(usize, Value)], primary: usize) -> Result<()> {
    let empty = serde_json::Map::new();
    fn layouts(p: &Value) -> Option<&serde_json::Map<String, Value>> {
        p.get("layouts").and_then(Value::as_object)
    }
    let Some(of_primary) = parts
        .iter()
        .find(|(i, _)| *i == primary)
        .and_then(|(_, p)| layouts(p))
    else {
        return Ok(());
    };
    for (i, p) in parts {
        let Some(mine) = layouts(p) else { continue };
        for (item, leaves) in mine {
            let Some(leaves) = leaves.as_object() else {
                continue;
            };
            let primary_leaves = of_primary
                .get(item)
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            for (leaf, layout) in leaves {
                let theirs = primary_leaves.get(leaf);
                if theirs != Some(layout) {
                    return Err(Error::invalid_argument(format!(
                        "pytree shard item {item:?} of step {step}: process {i} gives leaf \
                         {leaf:?} as a shard of {layout}, the primary ({primary}) {}; every \
                         process must give the same dtype, global shape and chunk shape for a \
                         sharded leaf; nothing was saved",
                        theirs.map_or_else(
                            || "does not shard it".to_string(),
                            |t| format!("as a shard of {t}")
                        )
                    ))
                    .with_step(step));
                }
            }
        }
    }
    Ok(())
}

/// `e` naming the step; on the primary (which holds `staged`) the working directory is removed
/// first.
fn abandon(root: &OpenRoot, staged: Option<Staged>, e: Error, step: Step) -> Error {
    let e = match staged {
        Some(s) => s.abandon(root, e),
        None => e,
    };
    if e.step().is_some() {
        e
    } else {
        e.with_step(step)
    }
}

fn internal(what: &str) -> Error {
    Error::new(
        ErrorKind::Coordination,
        format!("multi-process save: {what} (a bug in ckpt)"),
    )
}
