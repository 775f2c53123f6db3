//! The writer lease of a root on a store without a lock of its own (object stores, memory):
//! the object `<root>/.ckpt-writer.lease`, holding JSON that names the holder and when the lease
//! expires.
//!
//! * Taking it: a conditional create ([`Store::write_if_absent`]). When the object exists and
//!   has not expired, the root is `Locked` (the error names the holder and the expiry). When it
//!   has expired (its writer died or lost its network for longer than the time to live), it is
//!   deleted and created again; of two writers doing so at once one may remove the other's
//!   fresh lease, which the loser notices at its next renewal or [`WriterLock::check`] (it
//!   reads a holder that is not itself) and stops writing.
//! * Keeping it: a thread renews it every third of its time to live (read, check the holder is
//!   still us, write a later expiry). A renewal that finds another holder, or a lease that
//!   expired before it could be renewed, marks it lost: [`WriterLock::check`] then fails, and the
//!   manager checks before it writes or deletes anything.
//! * Letting it go: dropping the guard stops the thread and deletes the object if it still names
//!   us.
//!
//! Expiry times are wall-clock times (RFC 3339, UTC) compared across machines: clocks should
//! agree to well within the time to live (default 30 s).

use super::{host_name, writer_token, WriterLock};
use crate::Store;
use chrono::{DateTime, Utc};
use ckpt_core::{Error, ErrorKind, Result};
use serde_json::{json, Value};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The name of the lease object in a root.
pub const LEASE_FILE: &str = ".ckpt-writer.lease";

/// The default time to live of a lease (seconds): how long a writer that died blocks the root.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 30;

/// What a lease object says.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRecord {
    /// The holder's writer token (host, process id, start time, counter).
    pub holder: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When the lease ends unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl LeaseRecord {
    /// This process's record for the writer `token`, expiring `ttl` after `now`.
    fn mine(token: &str, now: DateTime<Utc>, ttl: Duration) -> LeaseRecord {
        LeaseRecord {
            holder: token.to_string(),
            host: host_name(),
            pid: std::process::id(),
            expires_at: now + chrono_ttl(ttl),
        }
    }

    fn to_bytes(&self, ttl: Duration) -> Vec<u8> {
        let v = json!({
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "expires_at": self.expires_at.to_rfc3339(),
            "ttl_secs": ttl.as_secs(),
        });
        v.to_string().into_bytes()
    }

    /// Parses a lease object.
    ///
    /// # Errors
    /// `Corrupt` when it is not the JSON a lease holds.
    pub fn from_bytes(bytes: &[u8]) -> Result<LeaseRecord> {
        let bad = |what: &str| Error::corrupt(format!("the writer lease is not valid: {what}"));
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no string {k:?}")))
        };
        let expires_at = DateTime::parse_from_rfc3339(&s("expires_at")?)
            .map_err(|e| bad(&format!("expires_at: {e}")))?
            .with_timezone(&Utc);
        Ok(LeaseRecord {
            holder: s("holder")?,
            host: s("host")?,
            pid: v
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| bad("no process id"))?,
            expires_at,
        })
    }
}

/// A held writer lease; dropping it releases the lease.
#[derive(Debug)]
pub struct WriterLease {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn Store>,
    token: String,
    ttl: Duration,
    /// The expiry last written, and why the lease was lost (once it is).
    state: Mutex<(DateTime<Utc>, Option<String>)>,
}

fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

impl WriterLease {
    /// Takes the writer lease of `store`'s root for `ttl` (renewed while held).
    ///
    /// # Errors
    /// `InvalidConfig` for a `ttl` under 1 s; `Locked` naming the holder and the expiry when a
    /// live writer holds it; `Locked` when the lease object cannot be read as one (it names the
    /// object to remove when no writer is alive); `Unsupported` on a store without conditional
    /// creates; `Storage` when the store fails.
    pub fn acquire(store: Arc<dyn Store>, ttl: Duration) -> Result<WriterLease> {
        if ttl < Duration::from_secs(1) {
            return Err(Error::invalid_config(
                "the writer lease time to live must be at least 1 s",
            ));
        }
        if !store.capabilities().write_if_absent {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a writer lease needs a store with conditional creates",
            )
            .with_path(store.location("")));
        }
        let token = writer_token();
        for attempt in 0..2 {
            let now = Utc::now();
            let mine = LeaseRecord::mine(&token, now, ttl);
            match store.write_if_absent(LEASE_FILE, &mine.to_bytes(ttl)) {
                Ok(()) => return Ok(Self::start(store, token, ttl, mine.expires_at)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let theirs = match store.read(LEASE_FILE) {
                Ok(bytes) => LeaseRecord::from_bytes(&bytes).map_err(|e| {
                    Error::new(
                        ErrorKind::Locked,
                        format!(
                            "the root holds a writer lease that cannot be read ({}); if no writer is alive, delete {}",
                            e.message(),
                            store.location(LEASE_FILE)
                        ),
                    )
                    .with_path(store.location(""))
                })?,
                // Released between our create and our read: try again.
                Err(e) if e.kind() == ErrorKind::NotFound && attempt == 0 => continue,
                Err(e) => return Err(e),
            };
            if theirs.holder == token {
                // Our own create, retried after its answer was lost (a retry layer below).
                return Ok(Self::start(store, token, ttl, theirs.expires_at));
            }
            if theirs.expires_at > now {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "another live checkpoint manager is writing this root (writer lease held by process {} on {}, expires at {} unless renewed); wait for it to finish or stop it (readers are never blocked: `ckpt ls/show/verify`, or a manager opened with `read_only`)",
                        theirs.pid, theirs.host, theirs.expires_at.to_rfc3339()
                    ),
                )
                .with_path(store.location("")));
            }
            if attempt == 0 {
                tracing::warn!(holder = %theirs.holder, expired_at = %theirs.expires_at.to_rfc3339(),
                    root = %store.location(""), "taking over the expired writer lease of a writer that stopped renewing it");
                store.delete(LEASE_FILE)?;
            }
        }
        Err(Error::new(
            ErrorKind::Locked,
            "another writer took the writer lease of this root at the same moment",
        )
        .with_path(store.location("")))
    }

    fn start(
        store: Arc<dyn Store>,
        token: String,
        ttl: Duration,
        expires_at: DateTime<Utc>,
    ) -> WriterLease {
        let shared = Arc::new(Shared {
            store,
            token,
            ttl,
            state: Mutex::new((expires_at, None)),
        });
        let (tx, rx) = mpsc::channel::<()>();
        let s = Arc::clone(&shared);
        let renewer = std::thread::Builder::new()
            .name("ckpt-lease".to_string())
            .spawn(move || loop {
                match rx.recv_timeout(s.ttl / 3) {
                    Err(RecvTimeoutError::Timeout) => {
                        if !s.renew() {
                            return;
                        }
                    }
                    _ => return,
                }
            });
        let renewer = match renewer {
            Ok(h) => Some(h),
            Err(e) => {
                shared.lose(format!("the lease renewal thread could not start: {e}"));
                None
            }
        };
        WriterLease {
            shared,
            stop: Some(tx),
            renewer,
        }
    }

    /// This lease's writer token (also written into the lease object).
    pub fn token(&self) -> &str {
        &self.shared.token
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (DateTime<Utc>, Option<String>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lose(&self, why: String) {
        tracing::warn!(root = %self.store.location(""), reason = %why, "the writer lease was lost; this manager writes nothing more");
        let mut st = self.lock();
        if st.1.is_none() {
            st.1 = Some(why);
        }
    }

    /// One renewal; false when the lease is lost (the thread then stops).
    fn renew(&self) -> bool {
        let now = Utc::now();
        let expired = {
            let st = self.lock();
            if st.1.is_some() {
                return false;
            }
            st.0 <= now
        };
        if expired {
            self.lose("it expired before it could be renewed".to_string());
            return false;
        }
        let current = match self.store.read(LEASE_FILE) {
            Ok(bytes) => LeaseRecord::from_bytes(&bytes).ok(),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                // A network error: try again at the next tick while the lease still runs.
                tracing::warn!(error = %e.chain(), "could not read the writer lease to renew it");
                return true;
            }
        };
        match current {
            Some(r) if r.holder == self.token => {}
            Some(r) => {
                self.lose(format!("process {} on {} holds it now", r.pid, r.host));
                return false;
            }
            None => {
                self.lose("its object was removed".to_string());
                return false;
            }
        }
        let record = LeaseRecord::mine(&self.token, now, self.ttl);
        match self.store.write(LEASE_FILE, &record.to_bytes(self.ttl)) {
            Ok(()) => self.lock().0 = record.expires_at,
            Err(e) => tracing::warn!(error = %e.chain(), "could not renew the writer lease"),
        }
        true
    }
}

impl WriterLock for WriterLease {
    fn check(&self) -> Result<()> {
        let st = self.shared.lock();
        let why = match &st.1 {
            Some(why) => why.clone(),
            None if st.0 <= Utc::now() => "it expired before it could be renewed".to_string(),
            None => return Ok(()),
        };
        Err(Error::new(
            ErrorKind::Locked,
            format!("this manager lost the writer lease of its root ({why}); another writer may have taken over, so nothing more is written"),
        )
        .with_path(self.shared.store.location("")))
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        if self.shared.lock().1.is_some() {
            return;
        }
        let store = &self.shared.store;
        match store.read(LEASE_FILE) {
            Ok(bytes) => match LeaseRecord::from_bytes(&bytes) {
                Ok(r) if r.holder == self.shared.token => {
                    if let Err(e) = store.delete(LEASE_FILE) {
                        tracing::warn!(error = %e.chain(), "could not release the writer lease; it expires by itself");
                    }
                }
                _ => {}
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e.chain(), "could not release the writer lease; it expires by itself")
            }
        }
    }
}
