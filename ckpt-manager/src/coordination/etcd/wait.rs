//! Waiting on etcd: a snapshot of the keys under a prefix, then a watch from its revision,
//! until every expected process has written its key or one of them is gone.

use super::*;
use std::ops::ControlFlow;

/// What [`Shared::arrive`] does when its key already exists with another value.
#[derive(Clone, Copy)]
pub(super) enum ExistingValue {
    /// An error of kind InvalidArgument: the name was used before with another value.
    Same,
    /// An error of kind AlreadyExists (a value published twice).
    AlreadyExists,
}

/// The state a wait has seen: the values of its keys by process index, and the lease of each
/// process's `procs/<i>` key.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) values: BTreeMap<usize, Vec<u8>>,
    pub(super) alive: BTreeMap<usize, i64>,
}

/// A wait's evaluation of what it has seen.
pub(super) enum Verdict<T> {
    Done(T),
    /// Not yet: the error to return if the deadline passes now.
    Pending(Error),
    Fail(Error),
    /// Start over with a fresh read (the join's primary changed).
    Restart,
}

impl<T> Verdict<T> {
    /// What a wait does with this verdict: `Break` ends it with its result (`Done`: the value,
    /// `Restart`: `None`, `Fail`: the error); `Continue` waits on, with the error to give if the
    /// deadline passes.
    pub(super) fn step(self) -> ControlFlow<Result<Option<T>>, Error> {
        match self {
            Verdict::Done(v) => ControlFlow::Break(Ok(Some(v))),
            Verdict::Fail(e) => ControlFlow::Break(Err(e)),
            Verdict::Restart => ControlFlow::Break(Ok(None)),
            Verdict::Pending(e) => ControlFlow::Continue(e),
        }
    }
}

/// The job's keys as one long-lived watch of this process follows them (see [`follow`]): every
/// wait of the process reads its events from here instead of opening a watch of its own, so a
/// wait costs one transaction.
pub(super) struct Feed {
    tx: tokio::sync::broadcast::Sender<Note>,
    /// Whether the watch is open and synced (a wait that subscribed while it is can trust the
    /// feed: every later event, or [`Note::Broken`], reaches it).
    up: std::sync::atomic::AtomicBool,
}

/// What the feed passes on.
#[derive(Clone)]
pub(super) enum Note {
    /// The events of one watch message, in revision order.
    Events(Arc<Vec<etcd_client::Event>>),
    /// The watch ended: a wait reading the feed opens a watch of its own.
    Broken,
}

/// How many watch messages the feed holds for a slow wait (one that falls further behind
/// opens a watch of its own).
const FEED_CAPACITY: usize = 1024;

impl Feed {
    pub(super) fn new() -> Feed {
        Feed {
            tx: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
            up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A receiver of every note after now, if the watch is up.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Note>> {
        let rx = self.tx.subscribe();
        self.up
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(rx)
    }
}

/// Follows every key under `root` with one watch for the coordinator's life, passing its
/// events to `feed`; a watch that ends is opened again (after 200 ms), the waits reading the
/// feed told ([`Note::Broken`]).
pub(super) async fn follow(
    client: Client,
    request_timeout: Duration,
    job: String,
    root: String,
    feed: Arc<Feed>,
) {
    let phase = Phase {
        what: "following",
        name: job.clone(),
    };
    let mut client = client;
    loop {
        if let Ok(mut stream) = watch(&mut client, request_timeout, &job, &phase, &root).await {
            feed.up.store(true, std::sync::atomic::Ordering::SeqCst);
            while let Ok(Some(m)) = stream.message().await {
                if m.canceled() {
                    break;
                }
                if !m.events().is_empty() {
                    let _ = feed.tx.send(Note::Events(Arc::new(m.events().to_vec())));
                }
            }
            feed.up.store(false, std::sync::atomic::Ordering::SeqCst);
            let _ = feed.tx.send(Note::Broken);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Shared {
    pub(super) fn procs_prefix(&self) -> String {
        format!("{}procs/", self.root)
    }

    pub(super) fn session_key(&self, kind: &str, name: &str) -> String {
        format!("{}s/{}/{kind}/{name}/", self.root, self.session)
    }

    pub(super) fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `f`, at most the request timeout, its error mapped.
    pub(super) async fn rpc<T>(
        &self,
        what: &str,
        f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        rpc(self.request_timeout, &self.job, what, f).await
    }

    /// Puts this process's key `prefix<index>` = `value` unless it exists; an existing key with
    /// the same value is fine (a repeated call), another value is an error. An unreachable etcd
    /// is tried again until `deadline`, then `Timeout` ([`unreachable`]; `timeout` for the
    /// message).
    pub(super) async fn arrive(
        &self,
        phase: &Phase,
        prefix: &str,
        value: &[u8],
        existing: ExistingValue,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<()> {
        if let Some(why) = self.lost() {
            return Err(lost_error(phase, &self.job, self.index, &why));
        }
        let arrival = self.arrival(prefix, value, existing);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    arrival.key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(arrival.key.clone(), arrival.value.clone(), None)])
                .or_else([TxnOp::get(arrival.key.clone(), None)]);
            let mut client = self.client.clone();
            let resp = match self
                .rpc(&format!("{phase}: arriving"), client.txn(txn))
                .await
            {
                Ok(r) => r,
                Err(e) if e.is_temporary() => {
                    if Instant::now() + backoff >= deadline {
                        return Err(unreachable(phase, &self.job, timeout, e));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if resp.succeeded() {
                return Ok(());
            }
            let old = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            });
            return match old {
                Some(old) if old != value => Err(arrival.conflict(phase)),
                // The same value (a repeated call), or deleted in between (only a new run's
                // primary deletes): nothing to do.
                _ => Ok(()),
            };
        }
    }

    /// This process's [`Arrival`] under `prefix`.
    pub(super) fn arrival(&self, prefix: &str, value: &[u8], existing: ExistingValue) -> Arrival {
        Arrival {
            key: format!("{prefix}{}", self.index),
            index: self.index,
            value: value.to_vec(),
            existing,
        }
    }

    /// Puts this process's key under `prefix` (`value`; as [`Shared::arrive`]) and waits until
    /// every participant has its key there; their values.
    pub(super) async fn arrive_and_wait(
        &self,
        phase: &Phase,
        prefix: &str,
        value: &[u8],
        missing_verb: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<usize, Vec<u8>>> {
        if let Some(why) = self.lost() {
            return Err(lost_error(phase, &self.job, self.index, &why));
        }
        let deadline = deadline_after(timeout);
        let arrival = self.arrival(prefix, value, ExistingValue::Same);
        self.wait(phase, prefix, timeout, deadline, Some(arrival), |seen| {
            self.evaluate(phase, seen, &self.participants, missing_verb, timeout, true)
        })
        .await
    }

    /// Done when every one of `need` has a value; Fail when one of the missing is gone (if
    /// `check_gone`) or this process lost its lease.
    pub(super) fn evaluate(
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

    /// Reads the keys under `prefix` and the `procs/` keys (putting `arrival` first, if
    /// given), then follows their changes until `evaluate` decides or `deadline` passes (then
    /// its pending error); see [`wait_keys`].
    pub(super) async fn wait<T>(
        &self,
        phase: &Phase,
        prefix: &str,
        timeout: Duration,
        deadline: Instant,
        arrival: Option<Arrival>,
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
            timeout,
            deadline,
            arrival,
            Some(&self.feed),
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

/// This process's key in a wait that it writes itself, in the same transaction as the wait's
/// first read (so a barrier, agreement or gather costs one transaction and one watch per
/// process).
pub(super) struct Arrival {
    /// The full key, `<prefix><index>`.
    pub(super) key: String,
    /// This process's index (the key's last component).
    pub(super) index: usize,
    /// The value to put unless the key exists.
    pub(super) value: Vec<u8>,
    /// What an existing key with another value means.
    pub(super) existing: ExistingValue,
}

impl Arrival {
    /// The error for an existing key of another value.
    fn conflict(&self, phase: &Phase) -> Error {
        match self.existing {
            ExistingValue::AlreadyExists => Error::new(
                ErrorKind::AlreadyExists,
                format!("{phase}: already published with a different value"),
            ),
            ExistingValue::Same => Error::invalid_argument(format!(
                "{phase}: this name was used before in this run with another value (use each \
                 name once, e.g. with the step in it)"
            )),
        }
    }
}

/// The error of a wait that could not reach etcd until its deadline: `Timeout` naming the
/// phase, the last etcd error as its source.
pub(super) fn unreachable(phase: &Phase, job: &str, timeout: Duration, last: Error) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "{phase} of job \"{job}\": the coordination service (etcd) stopped answering and \
             did not answer again within the phase's {} (tried again until then); nothing was \
             agreed",
            secs(timeout)
        ),
    )
    .with_temporary(true)
    .with_source(last)
}

/// The first wait for an answer after a failed request: 50 ms, doubling up to 1 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The wait of [`Shared::wait`], usable before a [`Shared`] exists (the join). `None` when
/// `evaluate` asked to start over ([`Verdict::Restart`]).
///
/// Opens a watch on the job's keys, then (one transaction) puts `arrival` if given and reads
/// the keys under `prefix` and the `procs/` keys, then follows the events after that read. A
/// request that fails because etcd is unreachable (a temporary error: refused, reset, no answer
/// within the request timeout, the watch ended) is tried again, from a fresh watch and read,
/// until `deadline`; then `Timeout` naming the phase ([`unreachable`]; `timeout` is the
/// phase's, for the message).
#[allow(clippy::too_many_arguments)]
pub(super) async fn wait_keys<T>(
    client: &Client,
    request_timeout: Duration,
    job: &str,
    root: &str,
    procs_prefix: &str,
    phase: &Phase,
    prefix: &str,
    timeout: Duration,
    deadline: Instant,
    mut arrival: Option<Arrival>,
    feed: Option<&Feed>,
    mut evaluate: impl FnMut(&Seen) -> Verdict<T>,
) -> Result<Option<T>> {
    let mut client = client.clone();
    let mut backoff = FIRST_BACKOFF;
    // Whether to read the feed (when there is one and it is up); once it failed this wait, a
    // watch of its own.
    let mut use_feed = feed.is_some();
    'fresh: loop {
        // A request etcd did not answer: again after a pause, until the deadline.
        macro_rules! reach {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) if e.is_temporary() => {
                        if Instant::now() + backoff >= deadline {
                            return Err(unreachable(phase, job, timeout, e));
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue 'fresh;
                    }
                    Err(e) => return Err(e),
                }
            };
        }
        // Watch from now on, then read (and arrive), then follow the events after that read:
        // nothing is missed, and the watch starts "synced" (one from a past revision would
        // start unsynced, and etcd catches those up only every 100 ms).
        let mut notes = if use_feed {
            feed.and_then(Feed::subscribe)
        } else {
            None
        };
        let mut stream = match notes {
            Some(_) => None,
            None => Some(reach!(
                watch(&mut client, request_timeout, job, phase, root).await
            )),
        };
        let (mut seen, revision, succeeded) = reach!(
            snapshot(
                &mut client,
                request_timeout,
                job,
                phase,
                prefix,
                procs_prefix,
                arrival.as_ref(),
            )
            .await
        );
        if let Some(a) = arrival.take() {
            match seen.values.get(&a.index) {
                Some(old) if !succeeded && *old != a.value => return Err(a.conflict(phase)),
                // Put now (the same transaction's read may not show it), or by an earlier try
                // whose answer was lost; or deleted in between (only a new run's primary
                // deletes, and never the current run's keys): counted as arrived.
                _ => {
                    seen.values.insert(a.index, a.value);
                }
            }
        }
        let mut pending = match evaluate(&seen).step() {
            ControlFlow::Break(r) => return r,
            ControlFlow::Continue(e) => e,
        };
        // From the feed: the events after the read, until the feed fails this wait.
        if let Some(rx) = notes.as_mut() {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Err(pending);
                }
                let events = match tokio::time::timeout(deadline - now, rx.recv()).await {
                    Err(_) => return Err(pending),
                    Ok(Ok(Note::Events(events))) => events,
                    // The feed's watch ended, or this wait fell behind: a watch of its own,
                    // from a fresh read.
                    Ok(Ok(Note::Broken)) | Ok(Err(_)) => {
                        use_feed = false;
                        continue 'fresh;
                    }
                };
                apply_after(&mut seen, events.iter(), revision, prefix, procs_prefix);
                pending = match evaluate(&seen).step() {
                    ControlFlow::Break(r) => return r,
                    ControlFlow::Continue(e) => e,
                };
            }
        }
        let Some(stream) = stream.as_mut() else {
            continue 'fresh; // not reached: without the feed there is a stream
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(pending);
            }
            let message = match tokio::time::timeout(deadline - now, stream.message()).await {
                Err(_) => return Err(pending),
                Ok(Err(e)) => reach!(Err(from_etcd(e, job, &format!("{phase}: watching")))),
                Ok(Ok(None)) => reach!(Err(Error::new(
                    ErrorKind::Coordination,
                    format!("{phase} of job \"{job}\": etcd ended the watch"),
                )
                .with_temporary(true))),
                Ok(Ok(Some(m))) => m,
            };
            if message.canceled() {
                if message.compact_revision() > 0 {
                    // The history was compacted under the watch: read afresh.
                    continue 'fresh;
                }
                reach!(Err(Error::new(
                    ErrorKind::Coordination,
                    format!(
                        "{phase} of job \"{job}\": etcd cancelled the watch: {}",
                        message.cancel_reason()
                    ),
                )
                .with_temporary(true)));
            }
            if message.events().is_empty() {
                continue;
            }
            // A message after a failed request shows etcd answering again.
            backoff = FIRST_BACKOFF;
            apply_after(&mut seen, message.events(), revision, prefix, procs_prefix);
            pending = match evaluate(&seen).step() {
                ControlFlow::Break(r) => return r,
                ControlFlow::Continue(e) => e,
            };
        }
    }
}

/// Opens a watch on every key under `root` from now on, and waits for etcd to confirm it.
async fn watch(
    client: &mut Client,
    request_timeout: Duration,
    job: &str,
    phase: &Phase,
    root: &str,
) -> Result<etcd_client::WatchStream> {
    let what = format!("{phase}: watching");
    let mut stream = rpc(
        request_timeout,
        job,
        &what,
        client.watch(root, Some(WatchOptions::new().with_prefix())),
    )
    .await?;
    loop {
        match answer(request_timeout, job, &what, stream.message()).await? {
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
            Some(m) if m.created() => return Ok(stream),
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
}

/// Reads the keys under `prefix` and the `procs/` keys in one transaction, first putting
/// `arrival` unless its key exists; what it saw, the revision it saw it at, and whether
/// `arrival` was put by this transaction.
pub(super) async fn snapshot(
    client: &mut Client,
    request_timeout: Duration,
    job: &str,
    phase: &Phase,
    prefix: &str,
    procs_prefix: &str,
    arrival: Option<&Arrival>,
) -> Result<(Seen, i64, bool)> {
    let gets = || {
        [
            TxnOp::get(prefix, Some(GetOptions::new().with_prefix())),
            TxnOp::get(procs_prefix, Some(GetOptions::new().with_prefix())),
        ]
    };
    let (txn, what) = match arrival {
        None => (Txn::new().and_then(gets()), format!("{phase}: reading")),
        Some(a) => {
            let [g1, g2] = gets();
            (
                Txn::new()
                    .when([Compare::create_revision(a.key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(a.key.clone(), a.value.clone(), None), g1, g2])
                    .or_else(gets()),
                format!("{phase}: arriving"),
            )
        }
    };
    let resp = rpc(request_timeout, job, &what, client.txn(txn)).await?;
    let succeeded = resp.succeeded();
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
    Ok((seen, revision, succeeded))
}

/// Applies the watch events after `revision` (the snapshot's, which already holds the earlier
/// ones) to what a wait has seen, in order: the feed's and a wait's own watch alike.
fn apply_after<'e>(
    seen: &mut Seen,
    events: impl IntoIterator<Item = &'e etcd_client::Event>,
    revision: i64,
    prefix: &str,
    procs_prefix: &str,
) {
    for event in events {
        let Some(kv) = event.kv() else { continue };
        if kv.mod_revision() > revision {
            apply(seen, event.event_type(), kv, prefix, procs_prefix);
        }
    }
}

/// Applies one watch event to what a wait has seen. A key may be both a wait's own key and a
/// `procs/` key (the join waits on `procs/` itself): both views are updated.
pub(super) fn apply(
    seen: &mut Seen,
    ty: EventType,
    kv: &KeyValue,
    prefix: &str,
    procs_prefix: &str,
) {
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
pub(super) fn index_under(key: &[u8], prefix: &str) -> Option<usize> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    if rest.is_empty() || rest.len() > 9 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}
