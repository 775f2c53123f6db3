//! [`SingleProcess`]: the coordinator of a job of one process.

use super::{validate_name, Agreement, Coordinator, Report, MAX_PUBLISHED_LEN};
use ckpt_core::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The coordinator of a job of one process, the default: process 0 of 1, the primary and only
/// participant. Every call is local and returns at once: a barrier passes, an agreement holds
/// this process's report alone, a published value is kept in memory, and waiting for a value
/// that was not published is a `Timeout` at once (nobody else could publish it).
///
/// Source: Orbax with `jax.process_count() == 1`, where every `multihost` sync is a no-op.
#[derive(Debug, Default)]
pub struct SingleProcess {
    published: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl SingleProcess {
    /// The coordinator of a one-process job.
    pub fn new() -> SingleProcess {
        SingleProcess::default()
    }

    fn published(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-changed: take it anyway.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Coordinator for SingleProcess {
    fn process_index(&self) -> usize {
        0
    }

    fn process_count(&self) -> usize {
        1
    }

    fn barrier(&self, name: &str, _timeout: Duration) -> Result<()> {
        validate_name(name)
    }

    fn agree(&self, name: &str, mine: Report, _timeout: Duration) -> Result<Agreement> {
        validate_name(name)?;
        Ok(Agreement::new(name, 1, vec![(0, mine)]))
    }

    fn gather(&self, name: &str, mine: &[u8], _timeout: Duration) -> Result<Vec<(usize, Vec<u8>)>> {
        validate_name(name)?;
        check_len("gather", name, mine)?;
        Ok(vec![(0, mine.to_vec())])
    }

    fn publish(&self, name: &str, value: &[u8]) -> Result<()> {
        validate_name(name)?;
        if value.len() > MAX_PUBLISHED_LEN {
            return Err(Error::invalid_argument(format!(
                "publish \"{name}\": the value is {} bytes (at most {MAX_PUBLISHED_LEN})",
                value.len()
            )));
        }
        let mut published = self.published();
        match published.get(name) {
            Some(old) if old.as_slice() == value => Ok(()),
            Some(_) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("publish \"{name}\": already published with a different value"),
            )),
            None => {
                published.insert(name.to_string(), value.to_vec());
                Ok(())
            }
        }
    }

    fn await_published(&self, name: &str, _timeout: Duration) -> Result<Vec<u8>> {
        validate_name(name)?;
        self.published().get(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "await_published \"{name}\": nothing was published under this name (a \
                     single-process job: no other process could publish it)"
                ),
            )
        })
    }
}

/// `InvalidArgument` when `value` is larger than [`MAX_PUBLISHED_LEN`].
fn check_len(what: &str, name: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_PUBLISHED_LEN {
        return Err(Error::invalid_argument(format!(
            "{what} \"{name}\": the value is {} bytes (at most {MAX_PUBLISHED_LEN})",
            value.len()
        )));
    }
    Ok(())
}
