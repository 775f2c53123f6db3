//! `ckpt watch`: print each newly committed step of a root as it commits (an evaluator's view).

use super::*;
use ckpt_manager::StepWatcher;

/// `ckpt watch ROOT [--after STEP] [--until STEP] [--timeout S] [--interval S] [--json]`:
/// prints every committed step after `after` (all of them without it), then each new one as it
/// commits, in order, until a step at or after `until` was printed or `timeout` seconds pass
/// without a new step (for ever without either); with `--json`
/// one JSON object a line: `{"step": 120, "name": "120", "committed_at": "…", "metrics": {…}}`.
pub(crate) fn watch(
    args: &RootArgs,
    after: Option<&str>,
    until: Option<&str>,
    timeout: Option<f64>,
    interval: f64,
) -> Result<()> {
    if !(interval.is_finite() && interval > 0.0) {
        return Err(Error::invalid_argument(format!(
            "--interval must be a positive number of seconds, got {interval}"
        )));
    }
    if let Some(t) = timeout {
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::invalid_argument(format!(
                "--timeout must be a number of seconds (0 or more), got {t}"
            )));
        }
    }
    let store = ckpt_manager::storage::open(&args.root)?;
    // ROOT may not exist yet (the trainer has not started); but a step directory, a file or a
    // root whose steps are named another way would make the wait endless and silent.
    match store.stat("")? {
        Some(m) if m.kind == ckpt_manager::storage::EntryKind::File => {
            return Err(Error::invalid_argument(format!(
                "{} is a file, not a directory: ckpt watch {}",
                args.root,
                parent_of(&args.root)
            )))
        }
        _ => {}
    }
    if let Some(why) = why_no_steps(store.as_ref(), args, "watch")? {
        return Err(Error::invalid_argument(why).with_path(store.location("")));
    }
    let options = CheckpointManagerOptions {
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    };
    let mut watcher = StepWatcher::with_store(store)
        .options(options.clone())
        .poll_interval_secs(interval)
        .timeout_secs(timeout);
    let after = after.map(parse_step).transpose()?;
    let until = until.map(parse_step).transpose()?;
    if let (Some(a), Some(u)) = (after, until) {
        if u <= a {
            return Err(Error::invalid_argument(format!(
                "--until {u} is not above --after {a}: every step printed would be past it; give an --until above {a}"
            )));
        }
    }
    if let Some(a) = after {
        watcher = watcher.after(a);
    }
    if let Some(u) = until {
        watcher = watcher.until(u);
    }
    let names = options.name_format()?;
    for info in watcher {
        let info = info?;
        let committed_at = info
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let name = names.build_name(info.step);
        if args.json {
            let line = json!({
                "step": info.step,
                "name": name,
                "committed_at": committed_at,
                "metrics": info.metrics.clone().map(Value::Object).unwrap_or(Value::Null),
            });
            out!("{}", serde_json::to_string(&line).map_err(json_err)?);
        } else {
            let metrics = info
                .metrics
                .as_ref()
                .map(|m| serde_json::to_string(m).unwrap_or_default())
                .unwrap_or_default();
            out!("{}  {name}  {committed_at}  {metrics}", info.step);
        }
    }
    Ok(())
}
