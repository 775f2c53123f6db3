//! `ckpt gc` and `ckpt rm`: deleting steps by a policy, or by name.

use super::*;

pub(crate) fn gc(
    args: &RootArgs,
    policy_file: &std::path::Path,
    dry_run: bool,
    allow_missing_metric: bool,
    allow_empty: bool,
) -> Result<()> {
    let policy = ckpt_manager::preservation_policy_from_file(policy_file)?;
    let mut mngr = open_root(args, dry_run, |o| CheckpointManagerOptions {
        allow_missing_best_metric: allow_missing_metric,
        ..o
    })?;
    // Decide first, delete exactly what was decided: a policy that keeps none of the steps of
    // a non-empty root is refused before anything is deleted (issue 11, item 9).
    let mut decisions = mngr.apply_preservation(policy.as_ref(), true)?;
    let keeps_none = !decisions.is_empty() && decisions.iter().all(|d| !d.keep);
    let refusal = (keeps_none && !allow_empty).then(|| {
        Error::invalid_config(format!(
            "the policy keeps none of the {} step(s) of {}: it would delete every step; nothing was deleted (pass --allow-empty to delete them all)",
            decisions.len(),
            mngr.directory()
        ))
    });
    if let Some(e) = refusal {
        if !dry_run {
            return Err(e);
        }
        // A dry run still shows what the policy decides, then says that gc would refuse it.
        print_gc(args, &decisions, true, &mngr.directory())?;
        return Err(e);
    }
    if !dry_run {
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            mngr.delete(d.step)?;
            d.deleted = true;
        }
    }
    print_gc(args, &decisions, dry_run, &mngr.directory())?;
    mngr.close()
}

/// Prints `ckpt gc`'s decisions: a table (or `--json`, a list) and a summary line.
pub(crate) fn print_gc(
    args: &RootArgs,
    decisions: &[ckpt_manager::RetentionDecision],
    dry_run: bool,
    root: &str,
) -> Result<()> {
    if args.json {
        let out: Vec<Value> = decisions
            .iter()
            .map(|d| json!({"step": d.step, "keep": d.keep, "reason": d.reason, "deleted": d.deleted}))
            .collect();
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        out!("{:<14} {:<14} REASON", "STEP", "ACTION");
        for d in decisions {
            let action = match (d.keep, d.deleted) {
                (true, _) => "kept",
                (false, true) => "deleted",
                (false, false) => "would delete",
            };
            out!("{:<14} {:<14} {}", d.step, action, d.reason);
        }
        let dropped = decisions.iter().filter(|d| !d.keep).count();
        let kept = decisions.len() - dropped;
        if dry_run {
            out!("dry run: {kept} kept, {dropped} would be deleted in {root}");
        } else {
            out!("{kept} kept, {dropped} deleted in {root}");
        }
    }
    Ok(())
}

/// `ckpt rm`: deletes `steps` (all checked first: each must be a committed step) with
/// [`CheckpointManager::delete`]. Without `yes` it asks `delete step N of ROOT? [y/N]` (on
/// stderr) for each step when stdin is a terminal (anything but `y`/`yes` keeps it), and refuses
/// when it is not; either way nothing is deleted before every step was checked.
pub(crate) fn rm(args: &RootArgs, steps: &[String], yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let mut wanted = Vec::new();
    for s in steps {
        let step = parse_step(s)?;
        if !wanted.contains(&step) {
            wanted.push(step);
        }
    }
    let mut mngr = open_root(args, false, |o| o)?;
    let listed = mngr.all_steps();
    let missing: Vec<Step> = wanted
        .iter()
        .copied()
        .filter(|s| listed.binary_search(s).is_err())
        .collect();
    let root_path = mngr.store().location("");
    if let Some(&first) = missing.first() {
        if listed.is_empty() {
            if let Some(why) = why_no_steps(mngr.store().as_ref(), args, "rm")? {
                return Err(Error::not_found(format!("{why}; nothing was deleted"))
                    .with_step(first)
                    .with_path(root_path));
            }
        }
        return Err(Error::not_found(format!(
            "no step {missing:?} in {}; its steps are {listed:?}; nothing was deleted",
            mngr.directory()
        ))
        .with_step(first)
        .with_path(root_path));
    }
    if !yes && !std::io::stdin().is_terminal() {
        let e = Error::invalid_argument(format!(
            "refusing to delete step(s) {wanted:?} of {} without confirmation: stdin is not a terminal; pass --yes to delete them",
            mngr.directory()
        ))
        .with_path(root_path);
        return Err(match wanted.first() {
            Some(&s) => e.with_step(s),
            None => e,
        });
    }
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for step in wanted {
        if !yes {
            eprint!("delete step {step} of {}? [y/N] ", mngr.directory());
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .map_err(|e| Error::invalid_argument("cannot read the answer").with_source(e))?;
            let answer = answer.trim().to_ascii_lowercase();
            if answer != "y" && answer != "yes" {
                if !args.json {
                    out!("kept step {step}");
                }
                kept.push(step);
                continue;
            }
        }
        mngr.delete(step)?;
        if !args.json {
            out!("deleted step {step}");
        }
        deleted.push(step);
    }
    if args.json {
        let out = json!({"root": mngr.directory(), "deleted": deleted, "kept": kept});
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    }
    mngr.close()
}
