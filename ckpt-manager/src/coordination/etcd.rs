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
//! A wait reads its keys and the `procs/` keys in one transaction; if that does not decide it,
//! it starts a watch on the job's keys, reads once more and follows the events after that read,
//! so it sees every arrival and every ended lease in order without polling. A participant missing from a wait whose `procs/<i>` key is gone or holds another
//! lease than the one it joined with (it died, or died and was restarted) makes the wait fail
//! at once with `Coordination` naming it. The join when the coordinator is built waits for every
//! participant (as `jax.distributed.initialize`).

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
    /// The longest, in seconds, one request to etcd may take (default 10). A barrier or
    /// agreement takes at most its own timeout plus a few of these.
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
        Ok(EtcdCoordinator {
            shared: Arc::new(shared),
            runtime: Some(runtime),
            keep_alive: Some(keep_alive),
        })
    }

    /// The job's name on the etcd server (`barrier_sync_key_prefix`, or `default`).
    pub fn job(&self) -> &str {
        &self.shared.job
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
            let deadline = deadline_after(timeout);
            s.arrive(&phase, &prefix, b"", ExistingValue::Same).await?;
            s.wait_for_participants(&phase, &prefix, "did not arrive", timeout, deadline)
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
            let deadline = deadline_after(timeout);
            s.arrive(&phase, &prefix, &mine.encode(), ExistingValue::Same)
                .await?;
            let values = s
                .wait_for_participants(&phase, &prefix, "did not report", timeout, deadline)
                .await?;
            let results = values
                .into_iter()
                .map(|(i, v)| (i, Report::decode(&v)))
                .collect();
            Ok(Agreement::new(&phase.name, s.count, results))
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
            s.arrive(&phase, &prefix, &value, ExistingValue::AlreadyExists)
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
                .wait(&phase, &prefix, deadline, |seen| {
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

/// What [`Shared::arrive`] does when its key already exists with another value.
#[derive(Clone, Copy)]
enum ExistingValue {
    /// An error of kind InvalidArgument: the name was used before with another value.
    Same,
    /// An error of kind AlreadyExists (a value published twice).
    AlreadyExists,
}

/// The state a wait has seen: the values of its keys by process index, and the lease of each
/// process's `procs/<i>` key.
#[derive(Default)]
struct Seen {
    values: BTreeMap<usize, Vec<u8>>,
    alive: BTreeMap<usize, i64>,
}

/// A wait's evaluation of what it has seen.
enum Verdict<T> {
    Done(T),
    /// Not yet: the error to return if the deadline passes now.
    Pending(Error),
    Fail(Error),
    /// Start over with a fresh read (the join's primary changed).
    Restart,
}

impl Shared {
    fn procs_prefix(&self) -> String {
        format!("{}procs/", self.root)
    }

    fn session_key(&self, kind: &str, name: &str) -> String {
        format!("{}s/{}/{kind}/{name}/", self.root, self.session)
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `f`, at most the request timeout, its error mapped.
    async fn rpc<T>(
        &self,
        what: &str,
        f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        rpc(self.request_timeout, &self.job, what, f).await
    }

    /// Puts this process's key `prefix<index>` = `value` unless it exists; an existing key with
    /// the same value is fine (a repeated call), another value is an error.
    async fn arrive(
        &self,
        phase: &Phase,
        prefix: &str,
        value: &[u8],
        existing: ExistingValue,
    ) -> Result<()> {
        if let Some(why) = self.lost() {
            return Err(lost_error(phase, &self.job, self.index, &why));
        }
        let key = format!("{prefix}{}", self.index);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = self.client.clone();
        let resp = self
            .rpc(&format!("{phase}: arriving"), client.txn(txn))
            .await?;
        if resp.succeeded() {
            return Ok(());
        }
        let old = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        match old {
            Some(old) if old == value => Ok(()),
            None => Ok(()), // deleted in between: only a new run's primary deletes; nothing to do
            Some(_) => Err(match existing {
                ExistingValue::AlreadyExists => Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{phase}: already published with a different value"),
                ),
                ExistingValue::Same => Error::invalid_argument(format!(
                    "{phase}: this name was used before in this run with another value (use \
                     each name once, e.g. with the step in it)"
                )),
            }),
        }
    }

    /// Waits until every participant has its key under `prefix`; their values.
    async fn wait_for_participants(
        &self,
        phase: &Phase,
        prefix: &str,
        missing_verb: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<BTreeMap<usize, Vec<u8>>> {
        self.wait(phase, prefix, deadline, |seen| {
            self.evaluate(phase, seen, &self.participants, missing_verb, timeout, true)
        })
        .await
    }

    /// Done when every one of `need` has a value; Fail when one of the missing is gone (if
    /// `check_gone`) or this process lost its lease.
    fn evaluate(
        &self,
        phase: &Phase,
        seen: &Seen,
        need: &[usize],
        missing_verb: &str,
        timeout: Duration,
        check_gone: bool,
    ) -> Verdict<BTreeMap<usize, Vec<u8>>> {
        let missing: Vec<usize> = need
            .iter()
            .copied()
            .filter(|i| !seen.values.contains_key(i))
            .collect();
        if missing.is_empty() {
            let values = need
                .iter()
                .filter_map(|i| seen.values.get(i).map(|v| (*i, v.clone())))
                .collect();
            return Verdict::Done(values);
        }
        if let Some(why) = self.lost() {
            return Verdict::Fail(lost_error(phase, &self.job, self.index, &why));
        }
        if check_gone {
            let gone: Vec<usize> = missing
                .iter()
                .copied()
                .filter(|i| seen.alive.get(i) != self.incarnations.get(i))
                .collect();
            if !gone.is_empty() {
                let role = if gone == [self.primary] && need == [self.primary] {
                    "the primary, "
                } else {
                    ""
                };
                return Verdict::Fail(Error::new(
                    ErrorKind::Coordination,
                    format!(
                        "{phase} of job \"{}\": {role}{} of {} {} gone (its etcd lease ended: it \
                         died, closed its coordinator or lost etcd) and {missing_verb}",
                        self.job,
                        processes_phrase(&gone),
                        self.count,
                        if gone.len() == 1 { "is" } else { "are" },
                    ),
                ));
            }
        }
        Verdict::Pending(Error::new(
            ErrorKind::Timeout,
            format!(
                "{phase} of job \"{}\": {} of {} {missing_verb} within {}",
                self.job,
                processes_phrase(&missing),
                self.count,
                secs(timeout)
            ),
        ))
    }

    /// Reads the keys under `prefix` and the `procs/` keys, then follows their changes until
    /// `evaluate` decides or `deadline` passes (then its pending error).
    async fn wait<T>(
        &self,
        phase: &Phase,
        prefix: &str,
        deadline: Instant,
        evaluate: impl FnMut(&Seen) -> Verdict<T>,
    ) -> Result<T> {
        wait_keys(
            &self.client,
            self.request_timeout,
            &self.job,
            &self.root,
            &self.procs_prefix(),
            phase,
            prefix,
            deadline,
            evaluate,
        )
        .await?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Coordination,
                format!("{phase}: internal: a wait asked to start over"),
            )
        })
    }
}

/// The wait of [`Shared::wait`], usable before a [`Shared`] exists (the join). `None` when
/// `evaluate` asked to start over ([`Verdict::Restart`]).
#[allow(clippy::too_many_arguments)]
async fn wait_keys<T>(
    client: &Client,
    request_timeout: Duration,
    job: &str,
    root: &str,
    procs_prefix: &str,
    phase: &Phase,
    prefix: &str,
    deadline: Instant,
    mut evaluate: impl FnMut(&Seen) -> Verdict<T>,
) -> Result<Option<T>> {
    let mut client = client.clone();
    'fresh: loop {
        let (seen, _) = snapshot(
            &mut client,
            request_timeout,
            job,
            phase,
            prefix,
            procs_prefix,
        )
        .await?;
        match evaluate(&seen) {
            Verdict::Done(v) => return Ok(Some(v)),
            Verdict::Fail(e) => return Err(e),
            Verdict::Restart => return Ok(None),
            Verdict::Pending(_) => {}
        }
        // Not decided yet: watch from now on, then read again, then follow the events after
        // that read. (A watch from a past revision would start "unsynced", and etcd catches
        // those up only every 100 ms.)
        let mut stream = rpc(
            request_timeout,
            job,
            &format!("{phase}: watching"),
            client.watch(root, Some(WatchOptions::new().with_prefix())),
        )
        .await?;
        loop {
            let created = rpc(
                request_timeout,
                job,
                &format!("{phase}: watching"),
                stream.message(),
            )
            .await?;
            match created {
                Some(m) if m.canceled() => {
                    return Err(Error::new(
                        ErrorKind::Coordination,
                        format!(
                            "{phase} of job \"{job}\": etcd refused the watch: {}",
                            m.cancel_reason()
                        ),
                    )
                    .with_temporary(true))
                }
                Some(m) if m.created() => break,
                Some(_) => continue,
                None => {
                    return Err(Error::new(
                        ErrorKind::Coordination,
                        format!("{phase} of job \"{job}\": etcd ended the watch"),
                    )
                    .with_temporary(true))
                }
            }
        }
        let (mut seen, revision) = snapshot(
            &mut client,
            request_timeout,
            job,
            phase,
            prefix,
            procs_prefix,
        )
        .await?;
        let mut pending = match evaluate(&seen) {
            Verdict::Done(v) => return Ok(Some(v)),
            Verdict::Fail(e) => return Err(e),
            Verdict::Restart => return Ok(None),
            Verdict::Pending(e) => e,
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(pending);
            }
            let message = match tokio::time::timeout(deadline - now, stream.message()).await {
                Err(_) => return Err(pending),
                Ok(Err(e)) => return Err(from_etcd(e, job, &format!("{phase}: watching"))),
                Ok(Ok(None)) => {
                    return Err(Error::new(
                        ErrorKind::Coordination,
                        format!("{phase} of job \"{job}\": etcd ended the watch"),
                    )
                    .with_temporary(true))
                }
                Ok(Ok(Some(m))) => m,
            };
            if message.canceled() {
                if message.compact_revision() > 0 {
                    // The history was compacted under the watch: read afresh.
                    continue 'fresh;
                }
                return Err(Error::new(
                    ErrorKind::Coordination,
                    format!(
                        "{phase} of job \"{job}\": etcd cancelled the watch: {}",
                        message.cancel_reason()
                    ),
                )
                .with_temporary(true));
            }
            if message.events().is_empty() {
                continue;
            }
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                if kv.mod_revision() <= revision {
                    continue; // already in the snapshot
                }
                apply(&mut seen, event.event_type(), kv, prefix, procs_prefix);
            }
            pending = match evaluate(&seen) {
                Verdict::Done(v) => return Ok(Some(v)),
                Verdict::Fail(e) => return Err(e),
                Verdict::Restart => return Ok(None),
                Verdict::Pending(e) => e,
            };
        }
    }
}

/// Reads the keys under `prefix` and the `procs/` keys in one transaction; what it saw and the
/// revision it saw it at.
async fn snapshot(
    client: &mut Client,
    request_timeout: Duration,
    job: &str,
    phase: &Phase,
    prefix: &str,
    procs_prefix: &str,
) -> Result<(Seen, i64)> {
    let txn = Txn::new().and_then([
        TxnOp::get(prefix, Some(GetOptions::new().with_prefix())),
        TxnOp::get(procs_prefix, Some(GetOptions::new().with_prefix())),
    ]);
    let resp = rpc(
        request_timeout,
        job,
        &format!("{phase}: reading"),
        client.txn(txn),
    )
    .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut seen = Seen::default();
    let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g),
        _ => None,
    });
    if let Some(g) = gets.next() {
        for kv in g.kvs() {
            if let Some(i) = index_under(kv.key(), prefix) {
                seen.values.insert(i, kv.value().to_vec());
            }
        }
    }
    if let Some(g) = gets.next() {
        for kv in g.kvs() {
            if let Some(i) = index_under(kv.key(), procs_prefix) {
                seen.alive.insert(i, kv.lease());
            }
        }
    }
    Ok((seen, revision))
}

/// Applies one watch event to what a wait has seen. A key may be both a wait's own key and a
/// `procs/` key (the join waits on `procs/` itself): both views are updated.
fn apply(seen: &mut Seen, ty: EventType, kv: &KeyValue, prefix: &str, procs_prefix: &str) {
    if let Some(i) = index_under(kv.key(), prefix) {
        match ty {
            EventType::Put => {
                seen.values.insert(i, kv.value().to_vec());
            }
            EventType::Delete => {
                seen.values.remove(&i);
            }
        }
    }
    if let Some(i) = index_under(kv.key(), procs_prefix) {
        match ty {
            EventType::Put => {
                seen.alive.insert(i, kv.lease());
            }
            EventType::Delete => {
                seen.alive.remove(&i);
            }
        }
    }
}

/// The process index of `key` = `prefix<decimal index>`; `None` for any other key.
fn index_under(key: &[u8], prefix: &str) -> Option<usize> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    if rest.is_empty() || rest.len() > 9 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// `f` bounded by `request_timeout`, its error mapped by [`from_etcd`].
async fn rpc<T>(
    request_timeout: Duration,
    job: &str,
    what: &str,
    f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(request_timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(from_etcd(e, job, what)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "{what} (job \"{job}\"): etcd did not answer within {} (request_timeout_secs)",
                secs(request_timeout)
            ),
        )
        .with_temporary(true)),
    }
}

/// An etcd client error as `Coordination`, temporary when trying again may help (the server
/// unreachable or busy: a transport or I/O error, or gRPC's UNKNOWN, DEADLINE_EXCEEDED,
/// RESOURCE_EXHAUSTED, ABORTED or UNAVAILABLE status).
fn from_etcd(e: etcd_client::Error, job: &str, what: &str) -> Error {
    let temporary = match &e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 2 | 4 | 8 | 10 | 14),
        _ => false,
    };
    Error::new(
        ErrorKind::Coordination,
        format!("{what} (job \"{job}\"): the etcd request failed"),
    )
    .with_temporary(temporary)
    .with_source(e)
}

fn lost_error(phase: &Phase, job: &str, index: usize, why: &str) -> Error {
    Error::new(
        ErrorKind::Coordination,
        format!(
            "{phase} of job \"{job}\": this process (index {index}) lost its place in the job: \
             {why}; the other processes count it as gone"
        ),
    )
}

/// Connects, takes the lease, registers, joins the run; the shared state and the keep-alive
/// task.
async fn join(
    options: EtcdOptions,
    participants: Vec<usize>,
    lost: Arc<Mutex<Option<String>>>,
) -> Result<(Shared, JoinHandle<()>)> {
    let job = options
        .multiprocessing
        .barrier_sync_key_prefix
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let root = format!("ckpt/{job}/");
    let request_timeout = Duration::from_secs_f64(options.request_timeout_secs);
    let join_timeout = Duration::from_secs_f64(options.join_timeout_secs);
    let deadline = deadline_after(join_timeout);
    let index = options.process_index;
    let primary = options.multiprocessing.primary_host;
    let connect = ConnectOptions::new()
        .with_connect_timeout(request_timeout)
        .with_keep_alive(Duration::from_secs(2), request_timeout);
    let mut client = rpc(
        request_timeout,
        &job,
        &format!("connecting to etcd at {:?}", options.endpoints),
        Client::connect(options.endpoints.clone(), Some(connect)),
    )
    .await?;
    let ttl = options.lease_ttl_secs as i64;
    let grant = rpc(
        request_timeout,
        &job,
        "taking a lease",
        client.lease_grant(ttl, None),
    )
    .await?;
    let lease = grant.id();
    let granted_ttl = grant.ttl().max(1) as u64;
    let interval = Duration::from_millis((granted_ttl * 1000 / 3).max(200));
    let keep_alive = tokio::spawn(keep_alive(
        client.clone(),
        lease,
        interval,
        request_timeout,
        lost.clone(),
    ));
    let result = async {
        register(
            &mut client,
            request_timeout,
            &job,
            &root,
            index,
            lease,
            deadline,
            join_timeout,
        )
        .await?;
        let procs_prefix = format!("{root}procs/");
        // The run is the primary's lease: read it, announce this process in it, wait for all.
        loop {
            let phase = Phase {
                what: "joining",
                name: job.clone(),
            };
            let session = wait_keys(
                &client,
                request_timeout,
                &job,
                &root,
                &procs_prefix,
                &phase,
                &procs_prefix,
                deadline,
                |seen| match seen.alive.get(&primary) {
                    Some(l) => Verdict::Done(*l),
                    None => Verdict::Pending(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "joining job \"{job}\": the primary (process {primary}) did not \
                             join within {}",
                            secs(join_timeout)
                        ),
                    )),
                },
            )
            .await?;
            let Some(session) = session else { continue };
            let joined_prefix = format!("{root}s/{session}/joined/");
            let mut put = client.clone();
            rpc(
                request_timeout,
                &job,
                "joining: announcing this process",
                put.put(
                    format!("{joined_prefix}{index}"),
                    lease.to_string(),
                    None::<PutOptions>,
                ),
            )
            .await?;
            let joined = wait_keys(
                &client,
                request_timeout,
                &job,
                &root,
                &procs_prefix,
                &phase,
                &joined_prefix,
                deadline,
                |seen| {
                    if seen.alive.get(&primary) != Some(&session) {
                        return Verdict::Restart;
                    }
                    let missing: Vec<usize> = participants
                        .iter()
                        .copied()
                        .filter(|i| !seen.values.contains_key(i))
                        .collect();
                    if missing.is_empty() {
                        Verdict::Done(seen.values.clone())
                    } else {
                        Verdict::Pending(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "joining job \"{job}\": {} of {} did not join within {}",
                                processes_phrase(&missing),
                                options.process_count,
                                secs(join_timeout)
                            ),
                        ))
                    }
                },
            )
            .await?;
            // None: the primary changed (it restarted) while this process waited: join anew.
            let Some(joined) = joined else { continue };
            let mut incarnations = BTreeMap::new();
            for i in &participants {
                let lease_of = joined
                    .get(i)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|s| s.parse::<i64>().ok());
                match lease_of {
                    Some(l) => {
                        incarnations.insert(*i, l);
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::Coordination,
                            format!(
                                "joining job \"{job}\": process {i}'s join key holds no lease id"
                            ),
                        ))
                    }
                }
            }
            if incarnations.get(&primary) != Some(&session) {
                // The primary restarted between the two reads: join its new run.
                continue;
            }
            return Ok((session.to_string(), incarnations));
        }
    }
    .await;
    let (session, incarnations) = match result {
        Ok(v) => v,
        Err(e) => {
            keep_alive.abort();
            let mut revoke = client.clone();
            let _ = tokio::time::timeout(request_timeout, revoke.lease_revoke(lease)).await;
            return Err(e);
        }
    };
    let shared = Shared {
        client,
        job,
        root,
        session,
        index,
        count: options.process_count,
        primary,
        participants,
        incarnations,
        lease,
        request_timeout,
        lost,
    };
    if index == primary {
        // Best effort: a failure leaves old keys behind, which harms nothing.
        let _ = delete_old_sessions(&shared).await;
    }
    Ok((shared, keep_alive))
}

/// Puts `procs/<index>` with this process's lease, retrying while another live lease holds it
/// (an earlier incarnation's lease ends within its TTL) until `deadline`.
#[allow(clippy::too_many_arguments)]
async fn register(
    client: &mut Client,
    request_timeout: Duration,
    job: &str,
    root: &str,
    index: usize,
    lease: i64,
    deadline: Instant,
    join_timeout: Duration,
) -> Result<()> {
    let key = format!("{root}procs/{index}");
    let value = format!(
        "lease={lease} pid={} host={}",
        std::process::id(),
        host_name()
    );
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = rpc(
            request_timeout,
            job,
            "joining: registering this process",
            client.txn(txn),
        )
        .await?;
        if resp.succeeded() {
            return Ok(());
        }
        let holder = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_default();
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "joining job \"{job}\": process index {index} is held by another live \
                     process ({holder}) for the whole join timeout ({}): a second job with the \
                     same barrier_sync_key_prefix, or two processes given the same index",
                    secs(join_timeout)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Deletes `s/<session>/` of every earlier run whose primary's lease has ended.
async fn delete_old_sessions(s: &Shared) -> Result<()> {
    let sessions_prefix = format!("{}s/", s.root);
    let mut client = s.client.clone();
    let listing = s
        .rpc(
            "deleting old runs' keys: listing",
            client.get(
                sessions_prefix.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        )
        .await?;
    let old: BTreeSet<String> = listing
        .kvs()
        .iter()
        .filter_map(|kv| {
            let rest = kv.key().strip_prefix(sessions_prefix.as_bytes())?;
            let id = rest.split(|b| *b == b'/').next()?;
            let id = std::str::from_utf8(id).ok()?;
            (id != s.session && id.parse::<i64>().is_ok()).then(|| id.to_string())
        })
        .collect();
    for id in old {
        let Ok(lease) = id.parse::<i64>() else {
            continue;
        };
        let ttl = s
            .rpc(
                "deleting old runs' keys: checking a lease",
                client.lease_time_to_live(lease, None),
            )
            .await?;
        if ttl.ttl() > 0 {
            continue; // that run's primary is alive: not ours to delete
        }
        s.rpc(
            "deleting old runs' keys",
            client.delete(
                format!("{sessions_prefix}{id}/"),
                Some(DeleteOptions::new().with_prefix()),
            ),
        )
        .await?;
    }
    Ok(())
}

/// Renews `lease` every `interval` until it is found ended (then says so in `lost`) or the task
/// is aborted; an unreachable etcd is retried.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    interval: Duration,
    request_timeout: Duration,
    lost: Arc<Mutex<Option<String>>>,
) {
    let set_lost = |why: String| {
        *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    loop {
        if let Ok(Ok((mut keeper, mut stream))) =
            tokio::time::timeout(request_timeout, client.lease_keep_alive(lease)).await
        {
            loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(request_timeout, stream.message()).await {
                    Ok(Ok(Some(resp))) if resp.ttl() <= 0 => {
                        set_lost(format!(
                            "its etcd lease {lease} ended (not renewed within its TTL)"
                        ));
                        return;
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
                tokio::time::sleep(interval).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200).min(interval)).await;
    }
}

/// Now + `timeout`; a timeout too long to add (e.g. `Duration::MAX`) waits ~136 years instead.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// This machine's name, for the registration value (diagnostics only).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "?".to_string())
}

/// "process 2", "processes [2, 3]": for messages.
fn processes_phrase(indices: &[usize]) -> String {
    match indices {
        [one] => format!("process {one}"),
        many => format!("processes {many:?}"),
    }
}

/// Seconds of `d` for messages, e.g. `30.0 s`.
fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
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
