//! Reading what a root holds: committed steps, their metadata, metrics and times.

use chrono::{DateTime, Utc};
use ckpt_core::{
    is_tmp_name, CheckpointInfo, Error, ErrorKind, Metrics, NameFormat, Result, Step, StepMetadata,
    METRICS_ITEM_NAME, STEP_METADATA_FILE,
};
use ckpt_storage::{CommitProtocol, Store};
use std::collections::BTreeMap;

/// The committed steps directly under the root and their directory names, ascending by step.
/// Names that do not parse as steps of `format`, files, tmp directories and (in commit-file mode)
/// directories without a commit file are not steps. When two names parse to the same step (a
/// composite format), the first in name order wins.
///
/// Requests: one listing of the root ([`CommitProtocol::committed_children`]); on an object
/// store in commit-file mode that is one paginated recursive listing, with no request per step.
pub(crate) fn committed_steps(
    store: &dyn Store,
    protocol: &dyn CommitProtocol,
    format: &dyn NameFormat,
) -> Result<BTreeMap<Step, String>> {
    let mut out = BTreeMap::new();
    for name in protocol.committed_children(store, "")? {
        if is_tmp_name(&name) {
            continue;
        }
        let Some(step) = format.parse_name(&name) else {
            continue;
        };
        out.entry(step).or_insert(name);
    }
    Ok(out)
}

/// Reads `<dir>/_CHECKPOINT_METADATA`: `Ok(None)` when the file is missing.
///
/// # Errors
/// `Corrupt` (naming the file) when it cannot be parsed; `Storage` when it cannot be read.
pub(crate) fn read_step_metadata(store: &dyn Store, dir: &str) -> Result<Option<StepMetadata>> {
    let path = format!("{dir}/{STEP_METADATA_FILE}");
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
    let path = format!("{dir}/{METRICS_ITEM_NAME}/{METRICS_ITEM_NAME}");
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
            tracing::warn!(step, error = %e, "ignoring unreadable step metadata");
            None
        }
    };
    let time = commit_time
        .or_else(|| store.stat(dir).ok().flatten().and_then(|m| m.modified))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let metrics = match read_metrics(store, dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(step, error = %e, "ignoring unreadable metrics");
            None
        }
    };
    CheckpointInfo::new(step, time, metrics)
}
