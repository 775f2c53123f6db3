//! Background deletion (Orbax `enable_background_delete`, spec §4.5): steps dropped by retention
//! or `delete` are removed by one deleter thread, so neither the caller nor the save thread waits
//! for large directories to go. The thread stops at its first error, which `close` reports.

use ckpt_core::{Error, ErrorKind, Result, Step};
use ckpt_core::{COMMIT_SUCCESS_FILE, TMP_DIR_SUFFIX};
use ckpt_storage::{AtomicityMode, CommitProtocol, Store};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Removes a step's directory `name`, or moves it into `todelete_subdir` where the store can
/// rename (spec §4.5: a replace-style move to `<root>/<todelete_subdir>/<name>`).
///
/// Crash-consistent (deviation: Orbax deletes in place, so a crash mid-delete leaves a listed,
/// half-deleted step): the step is first made invisible in one atomic operation — renamed to
/// `<name>.orbax-checkpoint-tmp-del` where the store can rename, else stripped of its
/// `commit_success.txt` (commit-file mode on object stores) — and only then removed. A crash in between leaves a
/// tmp directory that `cleanup_tmp_directories` removes.
pub(crate) fn remove_dir(
    store: &dyn Store,
    protocol: &dyn CommitProtocol,
    step: Step,
    name: &str,
    todelete_subdir: Option<&str>,
) -> Result<()> {
    let rename = store.capabilities().rename;
    if let (Some(sub), true) = (todelete_subdir, rename) {
        store.create_dir(sub)?;
        let target = format!("{sub}/{name}");
        store.delete_prefix(&target)?;
        return store.rename(name, &target).map_err(|e| e.with_step(step));
    }
    // First make the step invisible in one atomic operation; an error here leaves it intact.
    // Where the store can rename, a rename to a tmp name hides the step from readers of either
    // protocol; otherwise (object stores) removing the commit file does.
    let doomed = if rename {
        let doomed = format!("{name}{TMP_DIR_SUFFIX}-del");
        store
            .delete_prefix(&doomed)
            .map_err(|e| e.with_step(step))?;
        store.rename(name, &doomed).map_err(|e| e.with_step(step))?;
        doomed
    } else if protocol.mode() == AtomicityMode::CommitFile {
        store
            .delete(&format!("{name}/{COMMIT_SUCCESS_FILE}"))
            .map_err(|e| e.with_step(step))?;
        name.to_string()
    } else {
        return store.delete_prefix(name).map_err(|e| e.with_step(step));
    };
    // The step is gone now. What follows only frees space: a failure leaves an uncommitted
    // directory that `cleanup_tmp_directories` removes, so it is logged, not returned.
    let rest = store
        .sync_dir("")
        .and_then(|()| store.delete_prefix(&doomed));
    if let Err(e) = rest {
        tracing::warn!(step, dir = %doomed, error = %e.chain(),
            "the step is deleted but its directory could not be removed; cleanup_tmp_directories will");
    }
    Ok(())
}

/// The deleter thread and its queue.
#[derive(Debug)]
pub(crate) struct Deleter {
    tx: Mutex<Option<Sender<(Step, String)>>>,
    handle: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Deleter {
    /// Starts the deleter thread.
    ///
    /// # Errors
    /// `Storage` when the thread cannot be started.
    pub fn start(
        store: Arc<dyn Store>,
        protocol: Arc<dyn CommitProtocol>,
        todelete_subdir: Option<String>,
    ) -> Result<Deleter> {
        let (tx, rx) = mpsc::channel::<(Step, String)>();
        let handle = std::thread::Builder::new()
            .name("ckpt-deleter".into())
            .spawn(move || {
                for (step, name) in rx {
                    tracing::info!(step, dir = %name, "deleting step in the background");
                    remove_dir(
                        store.as_ref(),
                        protocol.as_ref(),
                        step,
                        &name,
                        todelete_subdir.as_deref(),
                    )?;
                }
                Ok(())
            })
            .map_err(|e| Error::storage("cannot start the deleter thread").with_source(e))?;
        Ok(Deleter {
            tx: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Queues the deletion of step `step` in directory `name`.
    ///
    /// # Errors
    /// The deleter's error when it has stopped at a failure (the step is then not queued).
    pub fn enqueue(&self, step: Step, name: String) -> Result<()> {
        let sent = match self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(tx) => tx.send((step, name)).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        self.drain()?;
        Err(Error::new(ErrorKind::Storage, "the deleter thread has stopped").with_step(step))
    }

    /// Closes the queue and waits until every queued deletion is done.
    ///
    /// # Errors
    /// The first deletion error (naming the step).
    pub fn drain(&self) -> Result<()> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            None => Ok(()),
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Storage,
                    "the deleter thread panicked",
                ))
            }),
        }
    }
}
