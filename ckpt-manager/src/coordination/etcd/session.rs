//! A job's session on etcd: requests with their timeout and error mapping, joining (the lease,
//! the process key, the primary's session), removing ended sessions, keeping the lease alive.

use super::*;

/// The requests sent to etcd by this process's coordinators through [`rpc`] (every request a
/// barrier, agreement, gather, publish, join or close makes; the lease renewals are not
/// counted): see [`EtcdCoordinator::requests_sent`].
pub(super) static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The request `f` (counted in [`REQUESTS`]), bounded by `request_timeout`, its error mapped by
/// [`from_etcd`].
pub(super) async fn rpc<T>(
    request_timeout: Duration,
    job: &str,
    what: &str,
    f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    answer(request_timeout, job, what, f).await
}

/// `f` (an answer on an open stream, not a request of its own) bounded by `request_timeout`,
/// its error mapped by [`from_etcd`].
pub(super) async fn answer<T>(
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
/// unreachable or busy: a transport or I/O error, or gRPC's CANCELLED (a connection closed
/// under the request), UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED or UNAVAILABLE
/// status). A wait tries temporary errors again until its deadline (see `wait_keys`).
pub(super) fn from_etcd(e: etcd_client::Error, job: &str, what: &str) -> Error {
    let temporary = match &e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 1 | 2 | 4 | 8 | 10 | 14),
        _ => false,
    };
    Error::new(
        ErrorKind::Coordination,
        format!("{what} (job \"{job}\"): the etcd request failed"),
    )
    .with_temporary(temporary)
    .with_source(e)
}

pub(super) fn lost_error(phase: &Phase, job: &str, index: usize, why: &str) -> Error {
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
pub(super) async fn join(
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
                join_timeout,
                deadline,
                None,
                None,
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
                join_timeout,
                deadline,
                None,
                None,
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
        feed: Arc::new(Feed::new()),
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
pub(super) async fn register(
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
pub(super) async fn delete_old_sessions(s: &Shared) -> Result<()> {
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
pub(super) async fn keep_alive(
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
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// This machine's name, for the registration value (diagnostics only).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "?".to_string())
}

/// "process 2", "processes [2, 3]": for messages.
pub(super) fn processes_phrase(indices: &[usize]) -> String {
    match indices {
        [one] => format!("process {one}"),
        many => format!("processes {many:?}"),
    }
}

/// Seconds of `d` for messages, e.g. `30.0 s`.
pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
