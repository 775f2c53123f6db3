//! [`EtcdCoordinator`]: the processes of a job meet on an etcd server (feature `etcd`).
//!
//! # Keys
//! Everything lives under `ckpt/<job>/`, `<job>` being `barrier_sync_key_prefix` (default
//! `default`):
//!
//! ```text
//! ckpt/<job>/procs/<i>                       process i is alive: put with its lease (kept alive
//!                                            every third of the TTL), gone when the lease ends
//! ckpt/<job>/s/<session>/joined/<i>          process i joined this run (value: its lease id)
//! ckpt/<job>/s/<session>/b/<name>/<i>        process i arrived at barrier <name>
//! ckpt/<job>/s/<session>/a/<name>/<i>        process i's report in agreement <name>
//! ckpt/<job>/s/<session>/g/<name>/<i>        process i's bytes in gather <name>
//! ckpt/<job>/s/<session>/p/<name>/<primary>  the value the primary published as <name>
//! ```
//!
//! `<session>` is the lease id of the run's primary, so the keys of one run never meet those of
//! an earlier run of the same job (a restart after a crash); the primary of a new run deletes
//! the sessions whose primary's lease has ended. Keys under a session are not bound to a lease:
//! a process that arrived and then died still counts as arrived, so a barrier that one process
//! passed is passed by all. Each barrier or agreement leaves one key per process (tens of bytes)
//! until then.
//!
//! # Waiting
//! Each process follows the job's keys with one long-lived watch (opened when it joined, opened
//! again if it ends), whose events every wait of the process reads. A wait (a barrier,
//! agreement, gather or `await_published`) puts this process's key (unless it exists) and reads
//! the wait's keys and the `procs/` keys in one transaction; if that does not decide it, it
//! follows the watch's events after that read, so it sees every arrival and every ended lease
//! in order without polling. A wait thus costs each process one request (before: a transaction
//! to arrive, one to read, a watch and a second read). While the long-lived watch is down, or a
//! wait falls more than 1,024 watch messages behind it, the wait opens a watch of its own. A participant missing from a wait whose `procs/<i>` key
//! is gone or holds another lease than the one it joined with (it died, or died and was
//! restarted) makes the wait fail at once with `Coordination` naming it. The join when the
//! coordinator is built waits for every participant (as `jax.distributed.initialize`).
//!
//! # etcd stopping
//! A request etcd does not answer (connection refused or reset, no answer within
//! `request_timeout_secs`, the watch ended) is tried again, after 50 ms doubling up to 1 s,
//! from a fresh watch and read, until the wait's timeout has passed; then the wait fails with
//! `Timeout` (temporary) naming the phase, the last etcd error as its source. So an etcd that
//! comes back within the timeout is ridden out, and one that stays away is `Timeout` after the
//! timeout (the manager's `coordination_timeout_secs`), not a `Coordination` error at once
//! (deviation from the first version of this coordinator). `publish` tries again for one
//! `request_timeout_secs`. Connecting ([`EtcdCoordinator::connect`]) to an etcd that is not
//! there fails at once with `Coordination`.

use super::{
    validate_name, Agreement, Coordinator, MultiprocessingOptions, Report, MAX_PUBLISHED_LEN,
};
use ckpt_core::{Error, ErrorKind, Result};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

mod session;
mod wait;

use session::*;
use wait::*;

/// How an [`EtcdCoordinator`] reaches etcd and who this process is in the job.
///
/// Source: the process fields are those of `jax.distributed.initialize(coordinator_address,
/// num_processes, process_id, initialization_timeout)`, the rest as Orbax's
/// `MultiprocessingOptions`; the lease TTL and request timeout are ckpt's own (deviation: JAX's
/// coordination service notices dead processes by its own heartbeats, 100 s by default).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdOptions {
    /// The etcd client URLs, e.g. `["http://127.0.0.1:2379"]` (plain HTTP/2; TLS is not built
    /// in).
    pub endpoints: Vec<String>,
    /// This process's index, `0..process_count` (JAX `process_id`).
    pub process_index: usize,
    /// The number of processes in the job, at least 1 (JAX `num_processes`).
    pub process_count: usize,
    /// The primary, the participants and the job's key prefix (as Orbax
    /// `MultiprocessingOptions`).
    pub multiprocessing: MultiprocessingOptions,
    /// The time to live of this process's etcd lease, in seconds (default 10; at least 1; etcd
    /// may raise a very small value to its own minimum). A process that stops renewing it (dead,
    /// hung, cut off from etcd) is noticed by the others after at most this long; the lease is
    /// renewed every third of it.
    pub lease_ttl_secs: u64,
    /// How long, in seconds, [`EtcdCoordinator::connect`] waits for every participant to join
    /// (and for a process index held by an earlier, dead incarnation to be freed by its lease
    /// ending); default 300 (as JAX's `initialization_timeout`).
    pub join_timeout_secs: f64,
    /// The longest, in seconds, one request to etcd may take (default 10); one that takes
    /// longer is tried again within the wait's timeout. A barrier or agreement takes at most its
    /// own timeout plus one of these.
    pub request_timeout_secs: f64,
}

impl EtcdOptions {
    /// Options for process `process_index` of `process_count` on the etcd at `endpoints`, with
    /// the defaults: primary 0, every process participating, job `default`, lease TTL 10 s,
    /// join timeout 300 s, request timeout 10 s.
    pub fn new(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        process_index: usize,
        process_count: usize,
    ) -> EtcdOptions {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            process_index,
            process_count,
            multiprocessing: MultiprocessingOptions::default(),
            lease_ttl_secs: 10,
            join_timeout_secs: 300.0,
            request_timeout_secs: 10.0,
        }
    }

    /// Sets `multiprocessing.barrier_sync_key_prefix` (the job's name on the etcd server).
    pub fn job(mut self, prefix: impl Into<String>) -> EtcdOptions {
        self.multiprocessing.barrier_sync_key_prefix = Some(prefix.into());
        self
    }

    /// The participants, checking every option.
    fn validate(&self) -> Result<Vec<usize>> {
        let participants = self.multiprocessing.participants(self.process_count)?;
        if self.process_index >= self.process_count {
            return Err(Error::invalid_config(format!(
                "process_index {} is not below process_count {}",
                self.process_index, self.process_count
            )));
        }
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::invalid_config(format!(
                "etcd endpoints {:?}: give at least one URL, e.g. http://127.0.0.1:2379",
                self.endpoints
            )));
        }
        if self.lease_ttl_secs == 0 || self.lease_ttl_secs > i64::MAX as u64 {
            return Err(Error::invalid_config(format!(
                "lease_ttl_secs {} (at least 1)",
                self.lease_ttl_secs
            )));
        }
        for (what, v) in [
            ("join_timeout_secs", self.join_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(Error::invalid_config(format!(
                    "{what} {v} (a positive number of seconds)"
                )));
            }
        }
        Ok(participants)
    }
}

/// A [`Coordinator`] on an etcd server (feature `etcd`, the `etcd-client` crate). Each process
/// holds a lease kept alive in the background, so a dead process is noticed by the others
/// within the lease's TTL; every key is under the job's prefix (see the module docs for the
/// layout).
///
/// The calls block; they run on a small tokio runtime owned by the coordinator (one worker
/// thread), so they may be called from any thread, inside an async runtime or not (there they
/// block that thread). [`close`](EtcdCoordinator::close) (or dropping it) revokes the lease, so
/// the other processes see this one leave at once.
///
/// Source: the role of JAX's coordination service under Orbax (`jax.distributed.initialize`,
/// `multihost.sync_global_devices`), on etcd. Deviation: an agreement carries each process's
/// result and a barrier waiting on a dead process fails early naming it, where Orbax waits
/// until its barrier times out.
pub struct EtcdCoordinator {
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
    keep_alive: Option<JoinHandle<()>>,
    /// The task of [`follow`].
    follow: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("job", &self.shared.job)
            .field("process_index", &self.shared.index)
            .field("process_count", &self.shared.count)
            .field("primary", &self.shared.primary)
            .field("participants", &self.shared.participants)
            .field("lease", &self.shared.lease)
            .field("session", &self.shared.session)
            .finish()
    }
}

/// What the async side needs; shared with the keep-alive task and each call's future.
struct Shared {
    client: Client,
    job: String,
    /// `ckpt/<job>/`.
    root: String,
    session: String,
    index: usize,
    count: usize,
    primary: usize,
    participants: Vec<usize>,
    /// The lease each participant joined this run with.
    incarnations: BTreeMap<usize, i64>,
    lease: i64,
    request_timeout: Duration,
    /// Set by the keep-alive task when this process's lease has ended.
    lost: Arc<Mutex<Option<String>>>,
    /// The job's keys as this process's long-lived watch sees them ([`follow`]).
    feed: Arc<Feed>,
}

/// A call's phase, for messages: `barrier "save-1"`.
struct Phase {
    what: &'static str,
    name: String,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} \"{}\"", self.what, self.name)
    }
}

impl EtcdCoordinator {
    /// Connects to etcd, takes a lease, registers this process (`ckpt/<job>/procs/<index>`) and
    /// waits for every participant to join (at most `join_timeout_secs`); the primary then
    /// deletes the keys of earlier runs of the job whose primary is gone.
    ///
    /// # Errors
    /// - `InvalidConfig` for options that cannot work (see [`EtcdOptions`]).
    /// - `Coordination` when etcd cannot be reached or refuses a request (temporary), or the
    ///   runtime cannot be built.
    /// - `AlreadyExists` when another live process holds this process index of the job for the
    ///   whole join timeout (a second job with the same prefix, or a duplicate index), naming
    ///   its pid and host.
    /// - `Timeout` when some participant has not joined within the join timeout, naming them.
    pub fn connect(options: EtcdOptions) -> Result<EtcdCoordinator> {
        let participants = options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ckpt-etcd")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Coordination,
                    "cannot build the tokio runtime that drives the etcd client",
                )
                .with_source(e)
            })?;
        let lost = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let lost2 = lost.clone();
        runtime.spawn(async move {
            let _ = tx.send(join(options, participants, lost2).await);
        });
        let joined = rx.recv().map_err(|_| stopped())?;
        let (shared, keep_alive) = match joined {
            Ok(v) => v,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let follow = runtime.spawn(follow(
            shared.client.clone(),
            shared.request_timeout,
            shared.job.clone(),
            shared.root.clone(),
            Arc::clone(&shared.feed),
        ));
        Ok(EtcdCoordinator {
            shared: Arc::new(shared),
            runtime: Some(runtime),
            keep_alive: Some(keep_alive),
            follow: Some(follow),
        })
    }

    /// The job's name on the etcd server (`barrier_sync_key_prefix`, or `default`).
    pub fn job(&self) -> &str {
        &self.shared.job
    }

    /// How many requests this process's etcd coordinators (all of them, since the process
    /// started) have sent to etcd: each transaction, put, get, delete, watch creation and lease
    /// grant or revoke of a join, barrier, agreement, gather, publish, wait or close, each
    /// attempt counted; the lease renewals (one per third of the TTL) are not. For measuring
    /// what coordination costs (`cargo xtask bench` reports the requests per save); ckpt's own.
    pub fn requests_sent() -> u64 {
        session::REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This process's etcd lease id.
    pub fn lease_id(&self) -> i64 {
        self.shared.lease
    }

    /// Leaves the job: stops renewing the lease and revokes it, so the other processes see
    /// this one gone at once (a barrier still waiting for it fails with `Coordination`).
    ///
    /// # Errors
    /// `Coordination` (or `Timeout`) when the revoke did not reach etcd; the lease then ends by
    /// itself within its TTL.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(runtime) = self.runtime.take() else {
            return Ok(());
        };
        if let Some(k) = self.keep_alive.take() {
            k.abort();
        }
        if let Some(f) = self.follow.take() {
            f.abort();
        }
        let shared = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let mut client = shared.client.clone();
            let lease = shared.lease;
            let r = shared
                .rpc("closing: revoking the lease", client.lease_revoke(lease))
                .await;
            let _ = tx.send(r.map(drop));
        });
        let result = rx.recv().map_err(|_| stopped()).and_then(|r| r);
        runtime.shutdown_background();
        result
    }

    /// Runs `f` on the coordinator's runtime and waits for it.
    fn run<T, F>(&self, f: impl FnOnce(Arc<Shared>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Coordination, "the etcd coordinator is closed"))?;
        let fut = f(self.shared.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| stopped())?
    }

    fn require_participant(&self, phase: &Phase) -> Result<()> {
        if self.shared.participants.contains(&self.shared.index) {
            Ok(())
        } else {
            Err(Error::invalid_argument(format!(
                "{phase}: process {} is not among the participating processes {:?} \
                 (active_processes)",
                self.shared.index, self.shared.participants
            )))
        }
    }
}

impl Drop for EtcdCoordinator {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn stopped() -> Error {
    Error::new(
        ErrorKind::Coordination,
        "the etcd coordinator's runtime stopped before the call finished",
    )
}

impl Coordinator for EtcdCoordinator {
    fn process_index(&self) -> usize {
        self.shared.index
    }

    fn process_count(&self) -> usize {
        self.shared.count
    }

    fn primary_index(&self) -> usize {
        self.shared.primary
    }

    fn participants(&self) -> Vec<usize> {
        self.shared.participants.clone()
    }

    fn barrier(&self, name: &str, timeout: Duration) -> Result<()> {
        validate_name(name)?;
        let phase = Phase {
            what: "barrier",
            name: name.to_string(),
        };
        self.require_participant(&phase)?;
        self.run(move |s| async move {
            let prefix = s.session_key("b", &phase.name);
            s.arrive_and_wait(&phase, &prefix, b"", "did not arrive", timeout)
                .await
                .map(drop)
        })
    }

    fn agree(&self, name: &str, mine: Report, timeout: Duration) -> Result<Agreement> {
        validate_name(name)?;
        let phase = Phase {
            what: "agreement",
            name: name.to_string(),
        };
        self.require_participant(&phase)?;
        self.run(move |s| async move {
            let prefix = s.session_key("a", &phase.name);
            let values = s
                .arrive_and_wait(&phase, &prefix, &mine.encode(), "did not report", timeout)
                .await?;
            let results = values
                .into_iter()
                .map(|(i, v)| (i, Report::decode(&v)))
                .collect();
            Ok(Agreement::new(&phase.name, s.count, results))
        })
    }

    fn gather(&self, name: &str, mine: &[u8], timeout: Duration) -> Result<Vec<(usize, Vec<u8>)>> {
        validate_name(name)?;
        let phase = Phase {
            what: "gather",
            name: name.to_string(),
        };
        self.require_participant(&phase)?;
        if mine.len() > MAX_PUBLISHED_LEN {
            return Err(Error::invalid_argument(format!(
                "{phase}: the value is {} bytes (at most {MAX_PUBLISHED_LEN})",
                mine.len()
            )));
        }
        let mine = mine.to_vec();
        self.run(move |s| async move {
            let prefix = s.session_key("g", &phase.name);
            let values = s
                .arrive_and_wait(&phase, &prefix, &mine, "did not contribute", timeout)
                .await?;
            Ok(values.into_iter().collect())
        })
    }

    fn publish(&self, name: &str, value: &[u8]) -> Result<()> {
        validate_name(name)?;
        let phase = Phase {
            what: "publish",
            name: name.to_string(),
        };
        if !self.is_primary() {
            return Err(Error::invalid_argument(format!(
                "{phase}: only the primary (process {}) publishes; this is process {}",
                self.shared.primary, self.shared.index
            )));
        }
        if value.len() > MAX_PUBLISHED_LEN {
            return Err(Error::invalid_argument(format!(
                "{phase}: the value is {} bytes (at most {MAX_PUBLISHED_LEN})",
                value.len()
            )));
        }
        let value = value.to_vec();
        self.run(move |s| async move {
            let prefix = s.session_key("p", &phase.name);
            let timeout = s.request_timeout;
            let deadline = deadline_after(timeout);
            s.arrive(
                &phase,
                &prefix,
                &value,
                ExistingValue::AlreadyExists,
                timeout,
                deadline,
            )
            .await
        })
    }

    fn await_published(&self, name: &str, timeout: Duration) -> Result<Vec<u8>> {
        validate_name(name)?;
        let phase = Phase {
            what: "await_published",
            name: name.to_string(),
        };
        self.run(move |s| async move {
            let prefix = s.session_key("p", &phase.name);
            let deadline = deadline_after(timeout);
            let need = [s.primary];
            let mut values = s
                .wait(&phase, &prefix, timeout, deadline, None, |seen| {
                    s.evaluate(&phase, seen, &need, "did not publish it", timeout, true)
                })
                .await?;
            values.remove(&s.primary).ok_or_else(|| {
                Error::new(
                    ErrorKind::Coordination,
                    format!("{phase}: the value vanished while it was read"),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_parsed_only_directly_under_the_prefix() {
        assert_eq!(index_under(b"ckpt/j/procs/12", "ckpt/j/procs/"), Some(12));
        assert_eq!(index_under(b"ckpt/j/procs/", "ckpt/j/procs/"), None);
        assert_eq!(index_under(b"ckpt/j/procs/1/x", "ckpt/j/procs/"), None);
        assert_eq!(index_under(b"ckpt/j/procs/-1", "ckpt/j/procs/"), None);
        assert_eq!(
            index_under(b"ckpt/j/procs/99999999999", "ckpt/j/procs/"),
            None
        );
        assert_eq!(index_under(b"ckpt/k/procs/1", "ckpt/j/procs/"), None);
    }

    #[test]
    fn options_are_checked() {
        let ok = EtcdOptions::new(["http://127.0.0.1:2379"], 1, 2);
        assert_eq!(ok.validate().unwrap(), vec![0, 1]);
        let mut o = ok.clone();
        o.process_index = 2;
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut o = ok.clone();
        o.endpoints.clear();
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut o = ok.clone();
        o.lease_ttl_secs = 0;
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut o = ok.clone();
        o.request_timeout_secs = f64::NAN;
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let o = ok.job("a/b");
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
    }
}
