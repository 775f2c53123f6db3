//! Where the manager learns that the job is being preempted.

use ckpt_core::Step;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Tells the manager that a preemption was signalled, so the save decision saves the current
/// step (Orbax `reached_preemption`, spec §3.4; `PreemptionCheckpointingPolicy`, spec §3.2).
pub trait PreemptionSource: Debug + Send + Sync {
    /// Whether a preemption has been signalled by the time `step` is asked about.
    fn reached_preemption(&self, step: Step) -> bool;
}

/// A preemption flag set from code (a test, or a job's own signal handling); clones share the
/// flag.
#[derive(Debug, Clone, Default)]
pub struct ManualPreemption {
    flag: Arc<AtomicBool>,
}

impl ManualPreemption {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals a preemption.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a preemption was signalled.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

impl PreemptionSource for ManualPreemption {
    fn reached_preemption(&self, _step: Step) -> bool {
        self.is_triggered()
    }
}
