//! The one private, process-wide tokio runtime that drives opendal's blocking operators.
//!
//! opendal's `blocking::Operator` is a wrapper that runs each call as a task on a tokio runtime
//! and waits for it (notes/dependencies.md §2, G4): it takes the runtime's handle when it is
//! built, and the runtime must be multi-threaded (a current-thread runtime never drives the task
//! and the call hangs). Two worker threads are plenty for a checkpoint store.

use ckpt_core::{Error, Result};
use std::sync::LazyLock;
use tokio::runtime::Runtime;

/// Built on first use; a failure is kept (as its message) and returned on every later use.
static RUNTIME: LazyLock<std::result::Result<Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ckpt-storage")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
});

/// The process-wide runtime.
///
/// # Errors
/// `Storage` when the runtime could not be built (e.g. no threads can be spawned).
pub(crate) fn runtime() -> Result<&'static Runtime> {
    match &*RUNTIME {
        Ok(rt) => Ok(rt),
        Err(msg) => Err(Error::storage(format!(
            "cannot build the tokio runtime that drives opendal: {msg}"
        ))),
    }
}
