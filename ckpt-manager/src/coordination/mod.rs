//! How the processes of one job coordinate a checkpoint (issue 15): who they are, waiting for
//! each other, agreeing on an outcome, and the primary telling the others a value.
//!
//! Orbax's `CheckpointManager` is called by every process of a multi-process JAX job and
//! synchronizes them internally (`multihost.sync_global_devices` barriers keyed by
//! `barrier_sync_key_prefix`, the primary host doing the process-wide work). ckpt puts that
//! behind one small strategy trait, [`Coordinator`], in the spirit of its other strategy traits
//! (`PreemptionSource`, `SaveDecisionPolicy`, `Store`):
//!
//! - [`SingleProcess`]: the default, one process (index 0 of 1, the primary); every call is
//!   local and returns at once.
//! - `EtcdCoordinator` (feature `etcd`): the processes meet on an etcd server, each holding a
//!   lease so that a dead process is noticed (a wait for it fails with
//!   [`ErrorKind::Coordination`] naming it, before the wait's timeout), every key under a per-job
//!   prefix (as Orbax's `barrier_sync_key_prefix`).
//!
//! Every name passed to the trait (a barrier's, an agreement's, a published value's) is used
//! once per job run and is the same on every process: include the step and the phase, e.g.
//! `save-100-written`, so the barrier of one step never meets the barrier of another. A name is
//! 1 to 200 bytes of printable ASCII without `/` (checked by [`validate_name`]); anything else is
//! [`ErrorKind::InvalidArgument`].
//!
//! # Wrapping your own collective
//!
//! A job that already has a collective (MPI, NCCL through a framework's process group,
//! `torch.distributed`, JAX's own coordination service) implements [`Coordinator`] on top of it
//! instead of running etcd. Map the calls as follows:
//!
//! - [`Coordinator::process_index`] / [`Coordinator::process_count`]: the rank and the world
//!   size.
//! - [`Coordinator::barrier`]: the collective's barrier. If it has no timeout of its own, run it
//!   on a helper thread and return [`ErrorKind::Timeout`] naming the barrier when `timeout`
//!   passes (the wrapped collective may then be unusable, which is what a timeout means).
//! - [`Coordinator::agree`]: an all-gather of [`Report::encode`]d bytes (variable length: gather
//!   the lengths first), decoded with [`Report::decode`] into [`Agreement::new`].
//! - [`Coordinator::gather`]: the same all-gather of the caller's bytes.
//! - [`Coordinator::publish`] / [`Coordinator::await_published`]: a broadcast from the primary
//!   rank; the primary keeps the value so a repeated `await_published` returns it.
//!
//! ```
//! use ckpt_manager::coordination::{Agreement, Coordinator, Report};
//! use ckpt_manager::{Error, ErrorKind, Result};
//! use std::time::Duration;
//!
//! /// A stand-in for the job's collective library (an MPI communicator, say).
//! #[derive(Debug)]
//! struct Comm { rank: usize, size: usize }
//! impl Comm {
//!     fn barrier(&self) -> std::result::Result<(), String> { Ok(()) }
//!     fn all_gather(&self, mine: Vec<u8>) -> std::result::Result<Vec<Vec<u8>>, String> {
//!         Ok(vec![mine; self.size])
//!     }
//!     fn broadcast(&self, _root: usize, v: Option<&[u8]>) -> std::result::Result<Vec<u8>, String> {
//!         Ok(v.unwrap_or_default().to_vec())
//!     }
//! }
//!
//! #[derive(Debug)]
//! struct CommCoordinator(Comm);
//!
//! fn failed(what: &str, name: &str, e: String) -> Error {
//!     Error::new(ErrorKind::Coordination, format!("{what} \"{name}\": {e}"))
//! }
//!
//! impl Coordinator for CommCoordinator {
//!     fn process_index(&self) -> usize { self.0.rank }
//!     fn process_count(&self) -> usize { self.0.size }
//!     fn barrier(&self, name: &str, _timeout: Duration) -> Result<()> {
//!         self.0.barrier().map_err(|e| failed("barrier", name, e))
//!     }
//!     fn agree(&self, name: &str, mine: Report, _timeout: Duration) -> Result<Agreement> {
//!         let all = self.0.all_gather(mine.encode()).map_err(|e| failed("agreement", name, e))?;
//!         let results = all.iter().enumerate().map(|(i, b)| (i, Report::decode(b))).collect();
//!         Ok(Agreement::new(name, self.0.size, results))
//!     }
//!     fn gather(&self, name: &str, mine: &[u8], _t: Duration) -> Result<Vec<(usize, Vec<u8>)>> {
//!         let all = self.0.all_gather(mine.to_vec()).map_err(|e| failed("gather", name, e))?;
//!         Ok(all.into_iter().enumerate().collect())
//!     }
//!     fn publish(&self, name: &str, value: &[u8]) -> Result<()> {
//!         self.0.broadcast(0, Some(value)).map(drop).map_err(|e| failed("publish", name, e))
//!     }
//!     fn await_published(&self, name: &str, _timeout: Duration) -> Result<Vec<u8>> {
//!         self.0.broadcast(0, None).map_err(|e| failed("await_published", name, e))
//!     }
//! }
//!
//! let c = CommCoordinator(Comm { rank: 0, size: 1 });
//! c.barrier("save-100-written", Duration::from_secs(60))?;
//! c.agree("save-100-committed", Report::Ok, Duration::from_secs(60))?.check()?;
//! # Ok::<(), Error>(())
//! ```
//!
//! (A broadcast is collective, so `publish` and `await_published` must then be called in the
//! same order by the primary and the others; the etcd coordinator has no such constraint.)

use ckpt_core::{Error, ErrorKind, Result};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

#[cfg(feature = "etcd")]
mod etcd;
mod single;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdCoordinator, EtcdOptions};
pub use single::SingleProcess;

/// The longest name (bytes) [`validate_name`] accepts.
pub const MAX_NAME_LEN: usize = 200;

/// The largest value (bytes) [`Coordinator::publish`] must accept: 512 KiB (etcd's default
/// request limit is 1.5 MiB; a step number or a short JSON fits many times over). Larger values
/// may be refused with [`ErrorKind::InvalidArgument`].
pub const MAX_PUBLISHED_LEN: usize = 512 * 1024;

/// The longest error message (bytes) a [`Report`] carries between processes; [`Report::failed`]
/// cuts a longer one (at a character boundary) and says so.
pub const MAX_REPORT_MESSAGE_LEN: usize = 16 * 1024;

/// The processes of one job and what they do together around a checkpoint (issue 15).
///
/// Every process of the job holds one coordinator (shared, e.g. in an `Arc`, between the
/// threads of that process) and calls the same methods with the same names in the same order.
/// Implementations: [`SingleProcess`] (the default), `EtcdCoordinator` (feature `etcd`), or the
/// job's own collective (see the module docs).
///
/// Source: the roles of Orbax's `multihost` helpers (`process_index`, `process_count`,
/// `sync_global_devices`, `broadcast_one_to_all`) behind `CheckpointManager`. Deviation: Orbax
/// calls JAX's coordination service directly and has no such trait; the agreement carrying each
/// process's result is ckpt's own (Orbax's barriers carry no outcome, so one host's failure
/// leaves the others waiting until the barrier times out).
pub trait Coordinator: Debug + Send + Sync {
    /// This process's index in the job, `0..process_count()` (Orbax `multihost.process_index()`,
    /// JAX `jax.process_index()`).
    fn process_index(&self) -> usize;

    /// The number of processes in the job, at least 1 (Orbax `multihost.process_count()`).
    fn process_count(&self) -> usize;

    /// The index of the primary process, which does the job-wide work (commit, retention,
    /// deletes, root metadata) and is the only one that may [`publish`](Coordinator::publish).
    /// Default 0 (as Orbax `MultiprocessingOptions.primary_host`).
    fn primary_index(&self) -> usize {
        0
    }

    /// Whether this process is the primary.
    fn is_primary(&self) -> bool {
        self.process_index() == self.primary_index()
    }

    /// The indices of the processes that take part in barriers and agreements, ascending and
    /// including the primary. Default: every process (as Orbax
    /// `MultiprocessingOptions.active_processes = None`).
    fn participants(&self) -> Vec<usize> {
        (0..self.process_count()).collect()
    }

    /// Waits until every participant has called `barrier` with this `name`, at most `timeout`
    /// (a wall-clock duration) for the others to arrive (requests to the coordination service
    /// may add their own bounded time).
    ///
    /// # Errors
    /// - [`ErrorKind::Timeout`] when some participant has not arrived within `timeout`; the
    ///   message names the barrier and the missing process indices. Also `Timeout` (temporary)
    ///   when the coordination service stopped answering (etcd: stopped, unreachable; tried
    ///   again until `timeout` has passed, so a service back within it is ridden out); the
    ///   message names the barrier.
    /// - [`ErrorKind::Coordination`] when a missing participant is known to be gone (etcd: its
    ///   lease ended), naming it; or the coordination service refused a request.
    /// - [`ErrorKind::InvalidArgument`] for a bad `name` or when this process is not a
    ///   participant.
    fn barrier(&self, name: &str, timeout: Duration) -> Result<()>;

    /// Every participant contributes its own result of a phase (`mine`: [`Report::Ok`] or the
    /// error it met) and gets back the results of all participants, as one [`Agreement`] that is
    /// the same on every process; [`Agreement::check`] turns a failure anywhere into an error
    /// naming the failing process and the phase (`name`). Waits at most `timeout` for the
    /// others, as [`barrier`](Coordinator::barrier).
    ///
    /// # Errors
    /// As [`barrier`](Coordinator::barrier): `Timeout` naming the missing processes, or the
    /// phase when the service stopped answering for the whole `timeout`; `Coordination` for a
    /// process known gone or a refused request; `InvalidArgument` for a bad name or a
    /// non-participant. A reported failure is not an error of this call: it is in the
    /// returned agreement.
    fn agree(&self, name: &str, mine: Report, timeout: Duration) -> Result<Agreement>;

    /// Every participant contributes `mine` (at most [`MAX_PUBLISHED_LEN`] bytes) and gets
    /// back every participant's bytes, `(process index, bytes)` ascending by index, the same on
    /// every process (an all-gather). Waits at most `timeout` for the others, as
    /// [`barrier`](Coordinator::barrier). A multi-process [`crate::CheckpointManager`] carries
    /// each process's outcome of a phase and what the primary needs from it (the files it wrote
    /// and their checksums, its vote on preemption) this way.
    ///
    /// # Errors
    /// As [`agree`](Coordinator::agree); also [`ErrorKind::InvalidArgument`] when `mine` is
    /// larger than [`MAX_PUBLISHED_LEN`].
    ///
    /// Source: ckpt's own (Orbax's `multihost` helpers broadcast from one process only).
    fn gather(&self, name: &str, mine: &[u8], timeout: Duration) -> Result<Vec<(usize, Vec<u8>)>>;

    /// Publishes `value` (at most [`MAX_PUBLISHED_LEN`] bytes) under `name` for every other
    /// process to read with [`await_published`](Coordinator::await_published), e.g. the step
    /// every process saves at on preemption (Orbax's `reached_preemption` agreement). Primary
    /// only; publishing a name again with the same value is allowed and does nothing.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] when this process is not the primary, for a bad name or a
    /// value that is too large; [`ErrorKind::AlreadyExists`] when `name` was published with a
    /// different value; [`ErrorKind::Timeout`] when the coordination service did not answer
    /// (etcd: tried again for one request timeout); [`ErrorKind::Coordination`] when it refused.
    fn publish(&self, name: &str, value: &[u8]) -> Result<()>;

    /// The value the primary published under `name`, waiting at most `timeout` for it. On the
    /// primary, its own value.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when nothing was published within `timeout` (at once for a
    /// coordinator on which nobody else could publish it), or the service stopped answering
    /// for that long; [`ErrorKind::Coordination`] when the primary is known gone before it
    /// published, or the service refused a request;
    /// [`ErrorKind::InvalidArgument`] for a bad name.
    fn await_published(&self, name: &str, timeout: Duration) -> Result<Vec<u8>>;
}

/// One process's result of a phase, as carried by an agreement: ok, or the kind and message of
/// the error it met.
///
/// Source: ckpt's own (deviation: Orbax's barriers carry no result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The phase succeeded on that process.
    Ok,
    /// The phase failed on that process.
    Failed {
        /// The kind of that process's error.
        kind: ErrorKind,
        /// That process's error as displayed (`Kind: message (step N): cause`), at most
        /// [`MAX_REPORT_MESSAGE_LEN`] bytes.
        message: String,
    },
}

impl Report {
    /// The report of `error`: its kind and its displayed text with its causes
    /// ([`Error::chain`]; cut to [`MAX_REPORT_MESSAGE_LEN`] bytes).
    pub fn failed(error: &Error) -> Report {
        Report::Failed {
            kind: error.kind(),
            message: cut(error.chain().to_string()),
        }
    }

    /// `Ok` for `Ok(_)`, [`Report::failed`] of the error otherwise.
    pub fn from_result<T>(result: &Result<T>) -> Report {
        match result {
            Ok(_) => Report::Ok,
            Err(e) => Report::failed(e),
        }
    }

    /// Whether the phase succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Report::Ok)
    }

    /// The report as bytes, for carrying it over a collective: `ok`, or
    /// `failed\n<kind name>\n<message>` (UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Report::Ok => b"ok".to_vec(),
            Report::Failed { kind, message } => {
                format!("failed\n{}\n{message}", kind.name()).into_bytes()
            }
        }
    }

    /// The report [`encode`](Report::encode) wrote. Never fails: bytes that are not a report
    /// (another program's key, a newer ckpt's kind) decode to a `Failed` report of kind
    /// [`ErrorKind::Coordination`] (or that kind, for an unknown kind name) saying so, so a
    /// garbled result is never taken for success.
    pub fn decode(bytes: &[u8]) -> Report {
        if bytes == b"ok" {
            return Report::Ok;
        }
        let text = String::from_utf8_lossy(bytes);
        let mut parts = text.splitn(3, '\n');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("failed"), Some(kind), Some(message)) => Report::Failed {
                kind: ErrorKind::from_name(kind).unwrap_or(ErrorKind::Coordination),
                message: cut(message.to_string()),
            },
            _ => Report::Failed {
                kind: ErrorKind::Coordination,
                message: cut(format!("unreadable result {text:?}")),
            },
        }
    }
}

/// `message` cut to [`MAX_REPORT_MESSAGE_LEN`] bytes at a character boundary.
fn cut(mut message: String) -> String {
    if message.len() > MAX_REPORT_MESSAGE_LEN {
        let mut end = MAX_REPORT_MESSAGE_LEN - 20;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" … (cut)");
    }
    message
}

/// The results of one agreement: every participant's [`Report`], by process index, the same on
/// every process.
///
/// Source: ckpt's own (deviation: Orbax's barriers carry no result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    name: String,
    process_count: usize,
    results: Vec<(usize, Report)>,
}

impl Agreement {
    /// The agreement `name` of a job of `process_count` processes with `results` (process index,
    /// report; put in ascending order of index here). For implementations of [`Coordinator`].
    pub fn new(name: &str, process_count: usize, mut results: Vec<(usize, Report)>) -> Agreement {
        results.sort_by_key(|(i, _)| *i);
        Agreement {
            name: name.to_string(),
            process_count,
            results,
        }
    }

    /// The agreement's name (the phase).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every participant's report, ascending by process index.
    pub fn results(&self) -> &[(usize, Report)] {
        &self.results
    }

    /// The report of process `index`, if it took part.
    pub fn report_of(&self, index: usize) -> Option<&Report> {
        self.results
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, r)| r)
    }

    /// The indices of the processes that reported a failure, ascending.
    pub fn failed_processes(&self) -> Vec<usize> {
        self.results
            .iter()
            .filter(|(_, r)| !r.is_ok())
            .map(|(i, _)| *i)
            .collect()
    }

    /// Whether every participant reported `Ok`.
    pub fn is_ok(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// `Ok(())` when every participant reported `Ok`; otherwise an error of the kind the
    /// lowest-indexed failing process reported (so every process gets the same error), whose
    /// message names the phase and each failing process with its message, e.g.
    /// `agreement "save-100-written": process 2 of 4 failed: Storage: write … failed`.
    ///
    /// # Errors
    /// As said: when any process reported a failure.
    pub fn check(&self) -> Result<()> {
        let failures: Vec<String> = self
            .results
            .iter()
            .filter_map(|(i, r)| match r {
                Report::Ok => None,
                Report::Failed { message, .. } => Some(format!(
                    "process {i} of {} failed: {message}",
                    self.process_count
                )),
            })
            .collect();
        let kind = self.results.iter().find_map(|(_, r)| match r {
            Report::Ok => None,
            Report::Failed { kind, .. } => Some(*kind),
        });
        match kind {
            None => Ok(()),
            Some(kind) => Err(Error::new(
                kind,
                format!("agreement \"{}\": {}", self.name, failures.join("; ")),
            )),
        }
    }
}

/// Which processes take part and which one is the primary; as Orbax's `MultiprocessingOptions`
/// (orbax-checkpoint 0.12.8, `checkpoint_manager.py`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiprocessingOptions {
    /// The index of the primary process (default 0; as Orbax `primary_host`). Must be a
    /// participant.
    pub primary_host: usize,
    /// The indices of the processes that take part in checkpointing (`None`: all of them; as
    /// Orbax `active_processes`). Barriers and agreements wait for these only.
    pub active_processes: Option<BTreeSet<usize>>,
    /// A name for the job that keeps its coordination keys apart from other jobs' on one
    /// service (as Orbax `barrier_sync_key_prefix`; `None`: `default`). Same rules as a
    /// barrier name ([`validate_name`]).
    pub barrier_sync_key_prefix: Option<String>,
}

impl MultiprocessingOptions {
    /// The participants of a job of `process_count` processes, ascending.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] when `process_count` is 0, `active_processes` is empty or
    /// names an index `>= process_count`, the primary is not among the participants, or the
    /// key prefix is not a valid name.
    pub fn participants(&self, process_count: usize) -> Result<Vec<usize>> {
        if process_count == 0 {
            return Err(Error::invalid_config(
                "a job has at least 1 process (process_count is 0)",
            ));
        }
        if let Some(p) = &self.barrier_sync_key_prefix {
            validate_name(p).map_err(|e| {
                Error::invalid_config(format!("barrier_sync_key_prefix: {}", e.message()))
            })?;
        }
        let participants: Vec<usize> = match &self.active_processes {
            None => (0..process_count).collect(),
            Some(set) => {
                if set.is_empty() {
                    return Err(Error::invalid_config(
                        "active_processes is empty (None means every process)",
                    ));
                }
                if let Some(bad) = set.iter().find(|&&i| i >= process_count) {
                    return Err(Error::invalid_config(format!(
                        "active_processes names process {bad}, but the job has {process_count} \
                         processes (0..{process_count})"
                    )));
                }
                set.iter().copied().collect()
            }
        };
        if !participants.contains(&self.primary_host) {
            return Err(Error::invalid_config(format!(
                "primary_host {} is not among the participating processes {participants:?}",
                self.primary_host
            )));
        }
        Ok(participants)
    }
}

/// Checks a barrier, agreement, published-value or job name: 1 to [`MAX_NAME_LEN`] bytes of
/// printable ASCII (`!` to `~`) other than `/`.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] naming what is wrong.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_argument("a coordination name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid_argument(format!(
            "a coordination name is {} bytes long (at most {MAX_NAME_LEN})",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || *c == '/') {
        return Err(Error::invalid_argument(format!(
            "coordination name {name:?} holds {c:?} (printable ASCII other than '/' and space only)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let failed = Report::failed(&Error::storage("disk full").with_step(7));
        for r in [Report::Ok, failed.clone()] {
            assert_eq!(Report::decode(&r.encode()), r);
        }
        assert_eq!(
            failed,
            Report::Failed {
                kind: ErrorKind::Storage,
                message: "Storage: disk full (step 7)".into()
            }
        );
        assert!(matches!(
            Report::decode(b"garbage"),
            Report::Failed {
                kind: ErrorKind::Coordination,
                ..
            }
        ));
        assert!(matches!(
            Report::decode(b"failed\nNewKind\nx\ny"),
            Report::Failed { kind: ErrorKind::Coordination, message } if message == "x\ny"
        ));
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let e = Error::storage("é".repeat(MAX_REPORT_MESSAGE_LEN));
        let Report::Failed { message, .. } = Report::failed(&e) else {
            panic!("not failed")
        };
        assert!(message.len() <= MAX_REPORT_MESSAGE_LEN && message.ends_with("(cut)"));
    }

    #[test]
    fn check_names_every_failing_process_with_the_first_kind() {
        let a = Agreement::new(
            "save-1-written",
            4,
            vec![
                (
                    3,
                    Report::Failed {
                        kind: ErrorKind::Handler,
                        message: "h".into(),
                    },
                ),
                (0, Report::Ok),
                (
                    2,
                    Report::Failed {
                        kind: ErrorKind::Storage,
                        message: "s".into(),
                    },
                ),
                (1, Report::Ok),
            ],
        );
        assert_eq!(a.failed_processes(), vec![2, 3]);
        let e = a.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert_eq!(
            e.message(),
            "agreement \"save-1-written\": process 2 of 4 failed: s; process 3 of 4 failed: h"
        );
    }

    #[test]
    fn names_and_options_are_checked() {
        for bad in [
            "",
            "a/b",
            "a b",
            "tab\t",
            &"x".repeat(MAX_NAME_LEN + 1),
            "é",
        ] {
            assert_eq!(
                validate_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        validate_name("save-100_written.v2:x").unwrap();
        let mut o = MultiprocessingOptions::default();
        assert_eq!(o.participants(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(
            o.participants(0).unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
        o.active_processes = Some([1, 2].into());
        assert_eq!(
            o.participants(3).unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
        o.primary_host = 1;
        assert_eq!(o.participants(3).unwrap(), vec![1, 2]);
        o.active_processes = Some([1, 5].into());
        assert_eq!(
            o.participants(3).unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
        o.active_processes = Some(BTreeSet::new());
        assert_eq!(
            o.participants(3).unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
    }
}
