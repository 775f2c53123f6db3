//! The single-writer guard of a root: one live writing manager per root (ckpt's own; Orbax has
//! none, docs/design.md "Single writer").
//!
//! * [`local`]: a local directory is locked with a POSIX record lock (`fcntl(F_SETLK)`) on the
//!   file `<root>/.ckpt-writer.lock`, plus a registry of the roots this process has locked.
//!   Record locks die with the process that holds them and, unlike `flock`, are not inherited
//!   by child processes, so a process another thread forks (a data loader, a test harness
//!   spawning a command) never keeps a closed manager's root locked.
//! * [`lease`]: an object store (or memory) root is guarded by a lease object
//!   `<root>/.ckpt-writer.lease`, created with a conditional put, renewed by a background thread
//!   while the manager lives and expiring after its time to live, so a writer that died blocks
//!   the root for at most that long.
//!
//! Both are files, never directories, so no reader (Orbax included) takes them for a step or a
//! tmp directory.

pub mod lease;
pub mod local;

use ckpt_core::Result;
use std::fmt::Debug;

/// A held single-writer guard ([`crate::Store::lock_for_writing`], [`lease::WriterLease`]);
/// dropping it releases the guard.
pub trait WriterLock: Debug + Send + Sync {
    /// Whether the guard is still held. A local lock always is; a lease is lost when it could
    /// not be renewed before it expired, or when another writer took it over.
    ///
    /// # Errors
    /// `Locked` saying why the guard was lost; the manager then refuses to write anything more.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A unique name for one writer: host, process id, start time (nanoseconds) and a counter, so
/// that two managers of one process differ too. Written into lease objects and step claims.
pub fn writer_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{}:{}:{nanos}:{n}", host_name(), std::process::id())
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `HOSTNAME`, else `unknown`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}
