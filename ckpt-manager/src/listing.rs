//! Reading what a root holds: committed steps, their metadata, metrics and times.

use chrono::{DateTime, Utc};
use ckpt_core::{
    is_tmp_name, CheckpointInfo, Error, ErrorKind, Metrics, NameFormat, Result, Step, StepMetadata,
};
use ckpt_storage::{CommitProtocol, Store};
use std::collections::BTreeMap;

/// The committed steps directly under the root and their directory names, ascending by step.
/// Names that do not parse as steps of `format`, files, tmp directories and (in commit-file mode)
/// directories without a commit file are not steps. When two names parse to the same step (a
/// composite format), the first in name order wins; [`committed_steps_with_shadowed`] also
/// returns the others.
///
/// Requests: one listing of the root ([`CommitProtocol::committed_children`]); on an object
/// store in commit-file mode that is one paginated recursive listing, with no request per step.
pub(crate) fn committed_steps(
    store: &dyn Store,
    protocol: &dyn CommitProtocol,
    format: &dyn NameFormat,
) -> Result<BTreeMap<Step, String>> {
    Ok(committed_steps_with_shadowed(store, protocol, format)?.0)
}

/// The other committed names of steps listed under more than one name.
pub(crate) type Shadowed = BTreeMap<Step, Vec<String>>;

/// As [`committed_steps`], plus, for each step listed under more than one name (a composite
/// format reading `7` and `ckpt_7`), the committed names it is not listed under: deleting the
/// step deletes those too, or the step would come back at the next listing (issue 11, item 7).
pub(crate) fn committed_steps_with_shadowed(
    store: &dyn Store,
    protocol: &dyn CommitProtocol,
    format: &dyn NameFormat,
) -> Result<(BTreeMap<Step, String>, Shadowed)> {
    let mut out = BTreeMap::new();
    let mut shadowed: BTreeMap<Step, Vec<String>> = BTreeMap::new();
    for name in protocol.committed_children(store, "")? {
        if is_tmp_name(&name) {
            continue;
        }
        let Some(step) = format.parse_name(&name) else {
            continue;
        };
        match out.entry(step) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(name);
            }
            std::collections::btree_map::Entry::Occupied(_) => {
                shadowed.entry(step).or_default().push(name)
            }
        }
    }
    Ok((out, shadowed))
}

/// Logs a warning for each symbolic link directly under a local root whose name is a step's
/// (`5 -> /elsewhere/5`): it is not listed, since ckpt never follows a link out of a root (a
/// restore could read, and retention delete, what is not the root's), and without the warning
/// the step would just be missing. Object stores have no links: nothing is listed for them.
///
/// # Errors
/// `Storage` when the root cannot be listed.
pub(crate) fn warn_linked_steps(store: &dyn Store, format: &dyn NameFormat) -> Result<()> {
    if !store.capabilities().local {
        return Ok(());
    }
    // Once per link and process: a command that opens a root twice says it once.
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for e in store.list_dir("")? {
        if e.kind == ckpt_storage::EntryKind::Symlink {
            let first = WARNED
                .lock()
                .map(|mut w| w.insert(store.location(&e.name)))
                .unwrap_or(true);
            if let (Some(step), true) = (format.parse_name(&e.name), first) {
                tracing::warn!(
                    step,
                    link = %store.location(&e.name),
                    "step directory {} is a symbolic link: not listed as a step (ckpt never follows links out of a root); move the step into the root, or copy it with `ckpt cp`",
                    e.name
                );
            }
        }
    }
    Ok(())
}

/// Reads `<dir>/_CHECKPOINT_METADATA`: `Ok(None)` when the file is missing.
///
/// # Errors
/// `Corrupt` (naming the file) when it cannot be parsed; `Storage` when it cannot be read.
pub(crate) fn read_step_metadata(store: &dyn Store, dir: &str) -> Result<Option<StepMetadata>> {
    let path = ckpt_core::layout::step_metadata_file(dir);
    match store.read(&path) {
        Ok(bytes) => StepMetadata::from_json_bytes(&bytes)
            .map(Some)
            .map_err(|e| {
                Error::corrupt(format!("cannot read step metadata: {}", e.message()))
                    .with_path(store.location(&path))
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `<dir>/metrics/metrics`: `Ok(None)` when missing.
///
/// # Errors
/// `Corrupt` (naming the file) when it is not a JSON object; `Storage` when it cannot be read.
pub(crate) fn read_metrics(store: &dyn Store, dir: &str) -> Result<Option<Metrics>> {
    let path = ckpt_core::layout::metrics_file(dir);
    match store.read(&path) {
        Ok(bytes) => match ckpt_core::pyjson::from_slice(&bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(Error::corrupt("metrics file is not a JSON object")
                .with_path(store.location(&path))),
            Err(e) => Err(
                Error::corrupt(format!("cannot read metrics: {}", e.message()))
                    .with_path(store.location(&path)),
            ),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The [`CheckpointInfo`] of a committed step directory: time from `commit_timestamp_nsecs`, else
/// the directory's modification time, else the Unix epoch; metrics from its metrics file. A
/// broken metadata or metrics file is logged and treated as absent (spec §1.5: "treated as no
/// metadata"), so one bad step never stops a root from opening.
pub(crate) fn load_info(
    store: &dyn Store,
    step: Step,
    dir: &str,
    lightweight: bool,
) -> CheckpointInfo {
    if lightweight {
        return CheckpointInfo::new(step, DateTime::<Utc>::UNIX_EPOCH, None);
    }
    let commit_time = match read_step_metadata(store, dir) {
        Ok(Some(m)) => m.commit_time(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(step, error = %e.chain(), "ignoring unreadable step metadata");
            None
        }
    };
    let time = commit_time
        .or_else(|| store.stat(dir).ok().flatten().and_then(|m| m.modified))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let metrics = match read_metrics(store, dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(step, error = %e.chain(), "ignoring unreadable metrics");
            None
        }
    };
    CheckpointInfo::new(step, time, metrics)
}

/// [`load_info`] of every step of `names`, in their (ascending) order. In normal mode the small
/// reads run on several threads: they are latency-bound (a page-cache or disk round trip per
/// file locally, a request per file on an object store), so 10,000 steps open in a fraction of
/// the sequential time. Lightweight mode reads nothing and stays on this thread.
pub(crate) fn load_infos(
    store: &dyn Store,
    names: &BTreeMap<Step, String>,
    lightweight: bool,
) -> Vec<CheckpointInfo> {
    let list: Vec<(Step, &str)> = names.iter().map(|(s, n)| (*s, n.as_str())).collect();
    let threads = if lightweight || list.len() < MIN_STEPS_PER_THREAD * 2 {
        1
    } else if store.capabilities().directories {
        // A local file system: warm, bounded by the CPU (parsing); cold, by disk round trips,
        // which more reads in flight overlap (8 threads: 3.2 s -> 1.0 s for 10,000 steps here).
        8
    } else {
        // An object store: bounded by request latency.
        16
    }
    .min(list.len() / MIN_STEPS_PER_THREAD)
    .max(1);
    let sequential = |part: &[(Step, &str)]| -> Vec<CheckpointInfo> {
        part.iter()
            .map(|(step, name)| load_info(store, *step, name, lightweight))
            .collect()
    };
    if threads == 1 {
        return sequential(&list);
    }
    let chunk = list.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = list
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .name("ckpt-list".into())
                    .spawn_scoped(s, move || sequential(part))
                    .map_err(|_| part)
            })
            .collect();
        let mut out = Vec::with_capacity(list.len());
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(infos) => out.extend(infos),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                // No thread could be started: this part on this thread.
                Err(part) => out.extend(sequential(part)),
            }
        }
        out
    })
}

/// Fewest steps worth a thread of their own in [`load_infos`].
const MIN_STEPS_PER_THREAD: usize = 64;
