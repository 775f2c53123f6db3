//! Stores that wrap another store (opendal's "layer" idea): each holds an `Arc<dyn Store>`,
//! implements [`Store`] itself, and adds one thing on the way through.
//!
//! * test doubles, behind the feature `test-layers` (not in the default public API):
//!   `FaultStore` (injects failures: the k-th operation, an operation kind, a path pattern; a
//!   torn write), `CountingStore` (counts calls and bytes per operation, logs the calls that
//!   change the store), `LatencyStore` and `Gate` (a delay; writes held until a test opens a
//!   gate), with `OpKind` and `PathPattern` for their rules (`rules.rs`);
//! * [`RetryStore`] with [`RetryPolicy`]: retries temporary failures with backoff and jitter
//!   (what `open` puts over every object store);
//! * [`DeferredSyncStore`]: writes without fsync, remembering what to sync later
//!   ([`sync_files`]);
//! * [`RecordingStore`], [`VerifyingStore`]: CRC32C checksums of the files a step holds,
//!   recorded when written and checked when read, for the step's manifest
//!   ([`crate::ChecksumManifest`], `checksum_manifest.rs`; ckpt's own, Orbax has no checksums).
//!
//! None of the layers calls the inner store for `capabilities` or `location` other than to
//! pass the call through unchanged.

mod checksum;
#[cfg(any(test, feature = "test-layers"))]
mod counting;
mod deferred_sync;
#[cfg(any(test, feature = "test-layers"))]
mod fault;
#[cfg(any(test, feature = "test-layers"))]
mod latency;
mod retry;
#[cfg(any(test, feature = "test-layers"))]
mod rules;

pub use checksum::{RecordingStore, VerifyingStore};
#[cfg(any(test, feature = "test-layers"))]
pub use counting::{CountingStore, LoggedOp, OpCounts};
pub use deferred_sync::{sync_files, DeferredSyncStore};
#[cfg(any(test, feature = "test-layers"))]
pub use fault::{FaultRule, FaultStore};
#[cfg(any(test, feature = "test-layers"))]
pub use latency::{Gate, LatencyStore};
pub use retry::{RetryPolicy, RetryStore};
#[cfg(any(test, feature = "test-layers"))]
pub use rules::{OpKind, PathPattern};

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the data of a poisoned mutex: a panic in another thread (a failing test
/// assertion) must not turn every later call of a layer into a panic too. Every layer keeps its
/// state consistent between statements, so the data is usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
