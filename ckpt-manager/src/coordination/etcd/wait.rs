//! Waiting on etcd: a snapshot of the keys under a prefix, then a watch from its revision,
//! until every expected process has written its key or one of them is gone.

use super::*;

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
    /// the same value is fine (a repeated call), another value is an error.
    pub(super) async fn arrive(
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
    pub(super) async fn wait_for_participants(
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

    /// Reads the keys under `prefix` and the `procs/` keys, then follows their changes until
    /// `evaluate` decides or `deadline` passes (then its pending error).
    pub(super) async fn wait<T>(
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
pub(super) async fn wait_keys<T>(
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
pub(super) async fn snapshot(
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
