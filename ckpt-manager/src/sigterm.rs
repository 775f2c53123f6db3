//! `SigtermPreemption` (feature `sigterm`): SIGTERM, and optionally SIGINT, as a preemption
//! signal.

use crate::PreemptionSource;
use ckpt_core::{Error, ErrorKind, Result, Step};
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook::SigId;
use std::collections::btree_map::{BTreeMap, Entry};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Which signals a [`SigtermPreemption`] catches and what a repeated signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigtermOptions {
    /// Also catch SIGINT (Ctrl-C) as a preemption (default false: Ctrl-C ends the process as
    /// usual).
    pub sigint: bool,
    /// When a caught signal arrives a second time, end the process at once with exit status
    /// 128 + the signal number (143 for SIGTERM, 130 for SIGINT), so a job stuck while saving
    /// can still be stopped (default true). With false, every further signal is only recorded.
    pub exit_on_second_signal: bool,
}

impl Default for SigtermOptions {
    fn default() -> Self {
        SigtermOptions {
            sigint: false,
            exit_on_second_signal: true,
        }
    }
}

/// A [`PreemptionSource`] set by SIGTERM (what a cluster scheduler sends before it preempts a
/// job; Orbax learns of preemption from JAX's multihost sync instead), and by SIGINT if asked.
///
/// While it exists, the signals it catches no longer end the process: they set a flag that
/// [`SigtermPreemption::is_triggered`] and [`PreemptionSource::reached_preemption`] report, so the
/// training loop can save the current step and exit cleanly. With
/// [`SigtermOptions::exit_on_second_signal`] (the default) a second signal ends the process at
/// once. Dropping it gives the signals their default action (ending the process) back once no
/// other `SigtermPreemption` catches them.
///
/// ```no_run
/// use ckpt_manager::{CheckpointManager, Composite, SaveOptions, SigtermPreemption};
/// use std::sync::Arc;
/// # fn main() -> ckpt_manager::Result<()> {
/// let preemption = Arc::new(SigtermPreemption::install()?);
/// let mut mngr = CheckpointManager::builder("runs/exp1")
///     .preemption(preemption.clone())
///     .build()?;
/// for step in 1..=1000u64 {
///     // ... train one step ...
///     // Read once, before the save: a signal caught from here on is seen by the save decision
///     // too, so the step that stops the loop is always saved.
///     let preempted = preemption.is_triggered();
///     let state = serde_json::json!({"step": step});
///     mngr.save(step, Composite::new().json_value("state", state), SaveOptions::default())?;
///     if preempted {
///         mngr.close()?; // waits for the save to commit
///         return Ok(());
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Built on signal-hook's `flag` actions; Unix signals only.
#[derive(Debug)]
pub struct SigtermPreemption {
    /// Set by the first caught signal.
    flag: Arc<AtomicBool>,
    /// The number of the last caught signal (0: none).
    last_signal: Arc<AtomicUsize>,
    /// This source's registrations, unregistered on drop.
    ids: Vec<SigId>,
    /// The signals it catches.
    signals: Vec<i32>,
}

/// Per signal: the condition of the process-wide "default action" fallback, and how many
/// `SigtermPreemption`s catch the signal now.
struct Fallback {
    none_alive: Arc<AtomicBool>,
    alive: usize,
}

/// The fallbacks, one per signal ever caught. signal-hook cannot put the default disposition of a
/// signal back once it has a handler, so each signal gets one action, registered before any
/// other, that runs the default action (ending the process) while no source catches it.
static FALLBACKS: Mutex<BTreeMap<i32, Fallback>> = Mutex::new(BTreeMap::new());

fn register_error(signal: i32, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("cannot catch signal {signal} for preemption"),
    )
    .with_source(e)
}

impl SigtermPreemption {
    /// Catches SIGTERM (default [`SigtermOptions`]).
    ///
    /// # Errors
    /// `Unsupported` when the signal handler cannot be registered (the OS refused it).
    pub fn install() -> Result<SigtermPreemption> {
        Self::install_with(SigtermOptions::default())
    }

    /// Catches SIGTERM, and SIGINT with `options.sigint`.
    ///
    /// # Errors
    /// `Unsupported` when a signal handler cannot be registered (the OS refused it); nothing
    /// stays registered then.
    pub fn install_with(options: SigtermOptions) -> Result<SigtermPreemption> {
        let mut signals = vec![SIGTERM];
        if options.sigint {
            signals.push(SIGINT);
        }
        let mut source = SigtermPreemption {
            flag: Arc::new(AtomicBool::new(false)),
            last_signal: Arc::new(AtomicUsize::new(0)),
            ids: Vec::new(),
            signals: Vec::new(),
        };
        let mut fallbacks = FALLBACKS.lock().unwrap_or_else(PoisonError::into_inner);
        for &signal in &signals {
            if let Entry::Vacant(slot) = fallbacks.entry(signal) {
                let none_alive = Arc::new(AtomicBool::new(true));
                signal_hook::flag::register_conditional_default(signal, none_alive.clone())
                    .map_err(|e| register_error(signal, e))?;
                slot.insert(Fallback {
                    none_alive,
                    alive: 0,
                });
            }
            // The exit must come before the flag is set, so it fires from the second signal
            // on (actions run in registration order).
            if options.exit_on_second_signal {
                let id = signal_hook::flag::register_conditional_shutdown(
                    signal,
                    128 + signal,
                    source.flag.clone(),
                )
                .map_err(|e| register_error(signal, e))?;
                source.ids.push(id);
            }
            let id = signal_hook::flag::register_usize(
                signal,
                source.last_signal.clone(),
                usize::try_from(signal).unwrap_or_default(),
            )
            .map_err(|e| register_error(signal, e))?;
            source.ids.push(id);
            let id = signal_hook::flag::register(signal, source.flag.clone())
                .map_err(|e| register_error(signal, e))?;
            source.ids.push(id);
            if let Some(f) = fallbacks.get_mut(&signal) {
                f.alive += 1;
                f.none_alive.store(false, Ordering::SeqCst);
            }
            source.signals.push(signal);
        }
        Ok(source)
    }

    /// Whether a caught signal has arrived since this source was installed.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The number of the last caught signal (15 for SIGTERM, 2 for SIGINT), if any arrived.
    pub fn signal(&self) -> Option<i32> {
        match self.last_signal.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// Sets the flag as a caught signal would (for tests, or a job's own reasons to stop).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// The signals this source catches.
    pub fn signals(&self) -> &[i32] {
        &self.signals
    }
}

impl PreemptionSource for SigtermPreemption {
    fn reached_preemption(&self, _step: Step) -> bool {
        self.is_triggered()
    }
}

impl Drop for SigtermPreemption {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        let mut fallbacks = FALLBACKS.lock().unwrap_or_else(PoisonError::into_inner);
        for signal in &self.signals {
            if let Some(f) = fallbacks.get_mut(signal) {
                f.alive = f.alive.saturating_sub(1);
                if f.alive == 0 {
                    f.none_alive.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, so no other test of this process raises SIGTERM while it runs.
    #[test]
    fn a_raised_sigterm_sets_the_flag_instead_of_ending_the_process() {
        let quiet = SigtermOptions {
            sigint: false,
            exit_on_second_signal: false,
        };
        let source = SigtermPreemption::install_with(quiet).unwrap();
        assert!(!source.is_triggered());
        assert!(!source.reached_preemption(3));
        assert_eq!(source.signal(), None);
        signal_hook::low_level::raise(SIGTERM).unwrap();
        // The handler ran before raise returned (the signal was sent to this thread).
        assert!(source.is_triggered());
        assert!(source.reached_preemption(3));
        assert_eq!(source.signal(), Some(SIGTERM));
        assert_eq!(source.signals(), &[SIGTERM]);

        // A second source installed while the first lives sees only signals after it.
        let second = SigtermPreemption::install_with(quiet).unwrap();
        assert!(!second.is_triggered());
        second.trigger();
        assert!(second.is_triggered());
        assert_eq!(second.signal(), None);
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert_eq!(second.signal(), Some(SIGTERM));
        drop(source);
        drop(second);
    }
}
