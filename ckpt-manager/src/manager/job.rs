//! [`Job`]: a manager's place in a multi-process job (issue 15): its coordinator, who the
//! primary is, the names of its coordination phases, and [`Job::exchange`], the one collective
//! every multi-process operation is built of (each process's outcome of a phase and its data,
//! gathered; a failure anywhere is an error on every process naming the failing process and the
//! phase).

use crate::coordination::{Agreement, Coordinator, Report, MAX_PUBLISHED_LEN};
use crate::options::CheckpointManagerOptions;
use crate::SaveOutcome;
use ckpt_core::{Error, ErrorKind, Result, Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The longest `barrier_sync_key_prefix` a manager accepts (bytes): its phase names add up to
/// ~60 bytes to it and must stay within [`crate::coordination::MAX_NAME_LEN`].
pub(crate) const MAX_PREFIX_LEN: usize = 120;

/// The coordination of one multi-process manager.
#[derive(Debug)]
pub(crate) struct Job {
    coordinator: Arc<dyn Coordinator>,
    index: usize,
    count: usize,
    primary: usize,
    /// `<prefix>.m<instance>`: unique per manager opened with this coordinator.
    base: String,
    timeout: Duration,
    /// The save attempts made per step (a save retried after a failure gets fresh names).
    attempts: Mutex<BTreeMap<Step, u32>>,
    /// Deletes and retention runs made, for their names.
    ops: Mutex<u64>,
    /// The agreed decision of the last step asked about.
    decided: Mutex<Option<Decided>>,
}

/// The agreed decision for one step.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub step: Step,
    /// Whether any process reported a preemption at this step.
    pub preempted: bool,
    /// The primary's decision, given `preempted`.
    pub outcome: SaveOutcome,
}

/// What one process contributes to the save decision of a step: whether its preemption source
/// fired, and its decision both ways (the primary's is taken, so time-based policies and
/// preemption give one answer everywhere, in one round trip).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Vote {
    pub preempted: bool,
    pub if_not: WireOutcome,
    pub if_preempted: WireOutcome,
}

/// [`SaveOutcome`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Saved,
    ReadOnly,
    NotAboveLatest(Step),
    DeclinedByPolicy(String),
    NotAgreed(String),
}

impl From<&SaveOutcome> for WireOutcome {
    fn from(o: &SaveOutcome) -> Self {
        match o {
            SaveOutcome::Saved => WireOutcome::Saved,
            SaveOutcome::ReadOnly => WireOutcome::ReadOnly,
            SaveOutcome::NotAboveLatest { latest } => WireOutcome::NotAboveLatest(*latest),
            SaveOutcome::DeclinedByPolicy { policy } => {
                WireOutcome::DeclinedByPolicy(policy.clone())
            }
            SaveOutcome::NotAgreed { error } => WireOutcome::NotAgreed(error.clone()),
        }
    }
}

impl From<WireOutcome> for SaveOutcome {
    fn from(o: WireOutcome) -> Self {
        match o {
            WireOutcome::Saved => SaveOutcome::Saved,
            WireOutcome::ReadOnly => SaveOutcome::ReadOnly,
            WireOutcome::NotAboveLatest(latest) => SaveOutcome::NotAboveLatest { latest },
            WireOutcome::DeclinedByPolicy(policy) => SaveOutcome::DeclinedByPolicy { policy },
            WireOutcome::NotAgreed(error) => SaveOutcome::NotAgreed { error },
        }
    }
}

/// One process's contribution to an exchange.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    Ok(Value),
    Failed { kind: String, message: String },
}

/// The managers opened per coordinator in this process (by the coordinator's address, kept
/// from reuse by the `Weak`), so that the names of a manager opened again with the same
/// coordinator never meet those of the earlier one. Every process opens its managers in the
/// same order, so the numbers agree across processes.
static INSTANCES: Mutex<Vec<(Weak<dyn Coordinator>, u64)>> = Mutex::new(Vec::new());

fn next_instance(c: &Arc<dyn Coordinator>) -> u64 {
    let mut all = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    let addr = Arc::as_ptr(c) as *const ();
    for (weak, n) in all.iter_mut() {
        if weak.as_ptr() as *const () == addr {
            *n += 1;
            return *n;
        }
    }
    all.push((Arc::downgrade(c), 0));
    0
}

impl Job {
    /// The job of a manager opened with `options` (which hold the coordinator).
    ///
    /// # Errors
    /// `InvalidConfig` when the multiprocessing options do not fit the coordinator: participants
    /// other than the coordinator's, a primary that is not one of them, this process not among
    /// them, a prefix that is not a valid name or longer than [`MAX_PREFIX_LEN`].
    pub fn new(
        coordinator: Arc<dyn Coordinator>,
        options: &CheckpointManagerOptions,
    ) -> Result<Job> {
        let mp = &options.multiprocessing_options;
        let count = coordinator.process_count();
        let participants = mp.participants(count)?;
        if participants != coordinator.participants() {
            return Err(Error::invalid_config(format!(
                "multiprocessing_options name the participants {participants:?}, the coordinator \
                 {:?}: give the coordinator the same active_processes",
                coordinator.participants()
            )));
        }
        let index = coordinator.process_index();
        if !participants.contains(&index) {
            return Err(Error::invalid_config(format!(
                "process {index} is not among the participating processes {participants:?} \
                 (active_processes): only they open a writing manager"
            )));
        }
        let prefix = mp.barrier_sync_key_prefix.as_deref().unwrap_or("ckpt");
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid_config(format!(
                "barrier_sync_key_prefix is {} bytes (at most {MAX_PREFIX_LEN})",
                prefix.len()
            )));
        }
        let base = format!("{prefix}.m{}", next_instance(&coordinator));
        Ok(Job {
            index,
            count,
            primary: mp.primary_host,
            base,
            timeout: Duration::from_secs(options.coordination_timeout_secs),
            attempts: Mutex::new(BTreeMap::new()),
            ops: Mutex::new(0),
            decided: Mutex::new(None),
            coordinator,
        })
    }

    /// Whether this process is the primary (which commits, deletes and writes root metadata).
    pub fn is_primary(&self) -> bool {
        self.index == self.primary
    }

    /// This process's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The primary's index.
    pub fn primary(&self) -> usize {
        self.primary
    }

    /// The names of the phases of the next save attempt of `step`: `<base>.save-<step>.<n>`.
    pub fn save_names(&self, step: Step) -> String {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(step).or_insert(0);
        let name = format!("{}.save-{step}.{n}", self.base);
        *n += 1;
        name
    }

    /// A fresh name for an operation of kind `what` (`delete-7`, `gc`): `<base>.<what>.<n>`.
    pub fn op_name(&self, what: &str) -> String {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        *ops += 1;
        format!("{}.{what}.{ops}", self.base)
    }

    /// The name of a phase of opening (`open`, `opened`).
    pub fn open_name(&self, what: &str) -> String {
        format!("{}.{what}", self.base)
    }

    /// The agreed decision of `step`, if it was made already.
    pub fn decided(&self, step: Step) -> Option<Decided> {
        self.decided
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|d| d.step == step)
    }

    /// Agrees on the decision of `step` from every process's `vote` (once per step: kept for
    /// later questions about the same step).
    ///
    /// # Errors
    /// As [`Job::exchange`].
    pub fn decide(&self, step: Step, vote: Vote) -> Result<Decided> {
        if let Some(d) = self.decided(step) {
            return Ok(d);
        }
        let name = format!("{}.decide-{step}", self.base);
        let mine = serde_json::to_value(&vote).map_err(|e| wire_error(&name, e))?;
        let all = self.exchange(&name, Ok(mine))?;
        let mut preempted = false;
        let mut primary_vote = None;
        for (i, v) in all {
            let v: Vote = serde_json::from_value(v).map_err(|e| wire_error(&name, e))?;
            preempted |= v.preempted;
            if i == self.primary {
                primary_vote = Some(v);
            }
        }
        let v = primary_vote.ok_or_else(|| {
            Error::new(
                ErrorKind::Coordination,
                format!("gather \"{name}\": the primary's vote is missing"),
            )
        })?;
        let outcome = if preempted { v.if_preempted } else { v.if_not };
        let d = Decided {
            step,
            preempted,
            outcome: outcome.into(),
        };
        *self.decided.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
        Ok(d)
    }

    /// Every participant contributes its outcome of phase `name` (`mine`: its data, or the
    /// error it met) and gets back every participant's data, ascending by process index.
    ///
    /// # Errors
    /// - when any process reported an error: the error of [`Agreement::check`], of the kind the
    ///   lowest-indexed failing process met, naming the phase and each failing process with
    ///   its message, the same on every process;
    /// - `Timeout` naming the phase and the processes that did not come within
    ///   `coordination_timeout_secs`, or naming the phase when the coordination service
    ///   stopped answering for that long (etcd stopped); `Coordination` naming a process known
    ///   gone, or when the coordination service refused a request (from the coordinator).
    pub fn exchange(&self, name: &str, mine: Result<Value>) -> Result<Vec<(usize, Value)>> {
        let wire = match mine {
            Ok(v) => Wire::Ok(v),
            Err(e) => failed(&e),
        };
        let mut bytes = serde_json::to_vec(&wire).map_err(|e| wire_error(name, e))?;
        if bytes.len() > MAX_PUBLISHED_LEN {
            let e = Error::new(
                ErrorKind::Unsupported,
                format!(
                    "this process's part of the phase is {} bytes (at most {MAX_PUBLISHED_LEN}: \
                     too many files in one process's part of a step)",
                    bytes.len()
                ),
            );
            bytes = serde_json::to_vec(&failed(&e)).map_err(|e| wire_error(name, e))?;
        }
        let all = self.coordinator.gather(name, &bytes, self.timeout)?;
        let mut reports = Vec::with_capacity(all.len());
        let mut values = Vec::with_capacity(all.len());
        for (i, b) in all {
            match serde_json::from_slice::<Wire>(&b) {
                Ok(Wire::Ok(v)) => {
                    reports.push((i, Report::Ok));
                    values.push((i, v));
                }
                Ok(Wire::Failed { kind, message }) => reports.push((
                    i,
                    Report::Failed {
                        kind: ErrorKind::from_name(&kind).unwrap_or(ErrorKind::Coordination),
                        message,
                    },
                )),
                Err(e) => reports.push((
                    i,
                    Report::Failed {
                        kind: ErrorKind::Coordination,
                        message: format!("unreadable contribution: {e}"),
                    },
                )),
            }
        }
        Agreement::new(name, self.count, reports).check()?;
        Ok(values)
    }
}

/// The wire form of `e`: its kind and its text with causes (as [`Report::failed`]).
fn failed(e: &Error) -> Wire {
    match Report::failed(e) {
        Report::Failed { kind, message } => Wire::Failed {
            kind: kind.name().to_string(),
            message,
        },
        Report::Ok => Wire::Failed {
            kind: e.kind().name().to_string(),
            message: e.to_string(),
        },
    }
}

/// A contribution that cannot be encoded or decoded.
pub(crate) fn wire_error(name: &str, e: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Coordination,
        format!("phase \"{name}\": a contribution cannot be encoded or decoded"),
    )
    .with_source(e)
}
