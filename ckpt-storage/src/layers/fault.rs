//! [`FaultStore`]: a store that fails chosen operations, for tests.

use super::{lock, OpKind, PathPattern};
use crate::{Entry, EntryMeta, Store};
use ckpt_core::{Error, Result};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// When [`FaultStore`] fails an operation. A rule matches an operation when *every* condition it
/// has holds; a rule with no condition ([`FaultRule::always`]) matches every operation.
///
/// Build one from [`FaultRule::nth`], [`FaultRule::op`], [`FaultRule::path`] or
/// [`FaultRule::always`], then narrow it with [`FaultRule::and_op`] / [`FaultRule::and_path`],
/// and change what it does with [`FaultRule::once`] and [`FaultRule::torn`]:
///
/// ```
/// use ckpt_storage::{FaultRule, OpKind};
/// // Fail the 3rd operation, whatever it is.
/// let a = FaultRule::nth(3);
/// // Fail the first rename only; later renames go through.
/// let b = FaultRule::op(OpKind::Rename).once();
/// // Every write below step 20 writes half its data and fails (a crash mid-write).
/// let c = FaultRule::op(OpKind::Write).and_path("20.orbax-checkpoint-tmp/").torn();
/// # let _ = (a, b, c);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultRule {
    nth: Option<u64>,
    op: Option<OpKind>,
    path: Option<PathPattern>,
    once: bool,
    torn: bool,
    temporary: bool,
}

impl FaultRule {
    /// Matches every operation (until narrowed).
    pub fn always() -> Self {
        FaultRule::default()
    }

    /// Matches the `k`-th operation the [`FaultStore`] sees, counting every [`Store`] call
    /// except `capabilities` and `location` from 1 (see [`FaultStore::ops_seen`]; the count
    /// restarts at [`FaultStore::reset`]). Fires at most once by nature; `k == 0` never matches.
    pub fn nth(k: u64) -> Self {
        FaultRule {
            nth: Some(k),
            ..FaultRule::default()
        }
    }

    /// Matches every operation of kind `kind`.
    pub fn op(kind: OpKind) -> Self {
        FaultRule::always().and_op(kind)
    }

    /// Matches every operation on a path matching `pattern` (a substring, or a `*` glob over the
    /// whole path: see [`PathPattern`]); `rename` matches when either of its paths does.
    pub fn path(pattern: impl Into<PathPattern>) -> Self {
        FaultRule::always().and_path(pattern)
    }

    /// Narrows the rule to operations of kind `kind` (replacing an earlier kind).
    pub fn and_op(mut self, kind: OpKind) -> Self {
        self.op = Some(kind);
        self
    }

    /// Narrows the rule to paths matching `pattern` (replacing an earlier pattern).
    pub fn and_path(mut self, pattern: impl Into<PathPattern>) -> Self {
        self.path = Some(pattern.into());
        self
    }

    /// The rule fires once, on its first match, and is spent after that.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// The injected error is temporary ([`ckpt_core::Error::is_temporary`]), as an object
    /// store's 500 or 503 is: a retry layer above retries it.
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// A torn write: when the matched operation is a `write`, the first half of the data
    /// (`len / 2` bytes, rounded down) is written through to the inner store before the error is
    /// returned, as a crash in the middle of the write would leave it. On every other operation
    /// (`write_if_absent` included: conditional creates are atomic on the stores that have them)
    /// a torn rule fails like a plain one, before delegating.
    pub fn torn(mut self) -> Self {
        self.torn = true;
        self
    }

    fn matches(&self, n: u64, op: OpKind, paths: &[&str]) -> bool {
        self.nth.is_none_or(|k| k == n)
            && self.op.is_none_or(|o| o == op)
            && self
                .path
                .as_ref()
                .is_none_or(|p| paths.iter().any(|path| p.matches(path)))
    }
}

#[derive(Debug, Default)]
struct FaultState {
    ops_seen: u64,
    faults_injected: u64,
    /// Rules and whether each is spent (a `once` or `nth` rule that fired).
    rules: Vec<(FaultRule, bool)>,
}

/// What [`FaultState::check`] decided for one operation.
struct Injected {
    /// The operation's number (from 1).
    n: u64,
    torn: bool,
    temporary: bool,
}

impl FaultState {
    fn check(&mut self, op: OpKind, paths: &[&str]) -> Option<Injected> {
        self.ops_seen += 1;
        let n = self.ops_seen;
        for (rule, spent) in self.rules.iter_mut() {
            if *spent || !rule.matches(n, op, paths) {
                continue;
            }
            if rule.once || rule.nth.is_some() {
                *spent = true;
            }
            self.faults_injected += 1;
            return Some(Injected {
                n,
                torn: rule.torn,
                temporary: rule.temporary,
            });
        }
        None
    }
}

/// A [`Store`] that fails the operations its [`FaultRule`]s select, for tests (fault-injection
/// tests of the commit protocols and of the manager, issue 4). ckpt's own; Orbax has no such
/// store.
///
/// With no rule (as built by [`FaultStore::new`], or after [`FaultStore::disarm`]) it passes
/// every call through unchanged. Otherwise, on each operation (every [`Store`] call except
/// `capabilities` and `location`) it counts the operation, then asks the rules in the order they
/// were added; the first that matches fails the operation *before* anything is delegated, so a
/// failed write writes nothing (but see [`FaultRule::torn`]). An injected failure is an
/// [`ckpt_core::ErrorKind::Storage`] error whose message starts with `injected fault` and names
/// the operation, its path(s) and its number, with the path attached
/// ([`ckpt_core::Error::path`]).
///
/// Rules can be added and removed while the store is in use (it is shared as `Arc<FaultStore>`
/// with the code under test); the state sits behind one mutex, so the count is exact across
/// threads.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn Store>,
    state: Mutex<FaultState>,
}

impl FaultStore {
    /// Wraps `inner`, with no rule: nothing is injected until a rule is added.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultStore {
            inner,
            state: Mutex::new(FaultState::default()),
        }
    }

    /// Adds `rule` (builder form of [`FaultStore::add_rule`]).
    pub fn with_rule(self, rule: FaultRule) -> Self {
        self.add_rule(rule);
        self
    }

    /// Adds `rule` after the rules already there.
    pub fn add_rule(&self, rule: FaultRule) {
        lock(&self.state).rules.push((rule, false));
    }

    /// Shorthand for `add_rule(FaultRule::nth(k))`: fail the `k`-th operation (from 1).
    pub fn fail_nth(&self, k: u64) {
        self.add_rule(FaultRule::nth(k));
    }

    /// Shorthand for `add_rule(FaultRule::op(kind))`: fail every operation of `kind`.
    pub fn fail_op(&self, kind: OpKind) {
        self.add_rule(FaultRule::op(kind));
    }

    /// Shorthand for `add_rule(FaultRule::path(pattern))`: fail every operation on a matching
    /// path.
    pub fn fail_path(&self, pattern: impl Into<PathPattern>) {
        self.add_rule(FaultRule::path(pattern));
    }

    /// Removes every rule: from now on every call passes through. Counters are kept.
    pub fn disarm(&self) {
        lock(&self.state).rules.clear();
    }

    /// Removes every rule and sets [`FaultStore::ops_seen`] and [`FaultStore::faults_injected`]
    /// back to 0 (so a following [`FaultRule::nth`] counts from the next operation).
    pub fn reset(&self) {
        *lock(&self.state) = FaultState::default();
    }

    /// How many operations this store has seen since it was built or last [`reset`]: every
    /// [`Store`] call but `capabilities` and `location`, failed ones included.
    ///
    /// [`reset`]: FaultStore::reset
    pub fn ops_seen(&self) -> u64 {
        lock(&self.state).ops_seen
    }

    /// How many operations were failed by a rule since the store was built or last reset.
    pub fn faults_injected(&self) -> u64 {
        lock(&self.state).faults_injected
    }

    /// Whether any rule is still able to fire (added and not spent).
    pub fn is_armed(&self) -> bool {
        lock(&self.state).rules.iter().any(|(_, spent)| !spent)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn check(&self, op: OpKind, paths: &[&str]) -> Option<Injected> {
        lock(&self.state).check(op, paths)
    }

    /// Counts the operation and fails it when a rule matches.
    fn gate(&self, op: OpKind, path: &str) -> Result<()> {
        match self.check(op, &[path]) {
            None => Ok(()),
            Some(inj) => Err(injected(op, path, None, inj.n, "").with_temporary(inj.temporary)),
        }
    }
}

fn injected(op: OpKind, path: &str, to: Option<&str>, n: u64, extra: &str) -> Error {
    let target = match to {
        Some(to) => format!(" to {to:?}"),
        None => String::new(),
    };
    Error::storage(format!(
        "injected fault: {op} of {path:?}{target} (operation #{n}){extra}"
    ))
    .with_path(path.to_string())
}

impl crate::StoreLayer for FaultStore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    /// Not forwarded: as one [`Store::write`] of the concatenated parts, so that it is faulted as
    /// a `write` (what [`Store::write_parts`] does by default).
    fn write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        crate::provided::write_parts(self, path, parts)
    }

    /// Not forwarded: one [`Store::read`], served from memory, so that it is faulted as a `read`
    /// (what [`Store::open_read`] does by default).
    fn open_read(&self, path: &str) -> Result<Box<dyn crate::ReadStream + '_>> {
        crate::provided::open_read(self, path)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        match self.check(OpKind::Write, &[path]) {
            None => self.inner.write(path, data),
            Some(Injected {
                n,
                torn: false,
                temporary,
            }) => Err(injected(OpKind::Write, path, None, n, "").with_temporary(temporary)),
            Some(Injected {
                n,
                torn: true,
                temporary,
            }) => {
                let half = data.len() / 2;
                let extra = format!(" (torn write: {half} of {} bytes written)", data.len());
                let err = injected(OpKind::Write, path, None, n, &extra).with_temporary(temporary);
                match self.inner.write(path, &data[..half]) {
                    Ok(()) => Err(err),
                    Err(e) => Err(err.with_source(e)),
                }
            }
        }
    }

    fn write_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        self.gate(OpKind::WriteIfAbsent, path)?;
        self.inner.write_if_absent(path, data)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.gate(OpKind::Read, path)?;
        self.inner.read(path)
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.gate(OpKind::ReadRange, path)?;
        self.inner.read_range(path, range)
    }

    fn stat(&self, path: &str) -> Result<Option<EntryMeta>> {
        self.gate(OpKind::Stat, path)?;
        self.inner.stat(path)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>> {
        self.gate(OpKind::ListDir, path)?;
        self.inner.list_dir(path)
    }

    /// Gated as one [`OpKind::ListDir`] call.
    fn list_recursive(&self, path: &str) -> Result<Vec<String>> {
        self.gate(OpKind::ListDir, path)?;
        self.inner.list_recursive(path)
    }

    fn create_dir(&self, path: &str) -> Result<()> {
        self.gate(OpKind::CreateDir, path)?;
        self.inner.create_dir(path)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.gate(OpKind::Delete, path)?;
        self.inner.delete(path)
    }

    fn delete_prefix(&self, path: &str) -> Result<()> {
        self.gate(OpKind::DeletePrefix, path)?;
        self.inner.delete_prefix(path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        if let Some(inj) = self.check(OpKind::Rename, &[from, to]) {
            return Err(
                injected(OpKind::Rename, from, Some(to), inj.n, "").with_temporary(inj.temporary)
            );
        }
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &str) -> Result<()> {
        self.gate(OpKind::SyncDir, path)?;
        self.inner.sync_dir(path)
    }

    /// Faulted as an [`OpKind::Write`] (a torn one writes the first half of the parts).
    fn write_parts_unsynced(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        match self.check(OpKind::Write, &[path]) {
            None => self.inner.write_parts_unsynced(path, parts),
            Some(Injected {
                n,
                torn: false,
                temporary,
            }) => Err(injected(OpKind::Write, path, None, n, "").with_temporary(temporary)),
            Some(Injected {
                n,
                torn: true,
                temporary,
            }) => {
                let data = crate::stream::concat(parts);
                let half = data.len() / 2;
                let extra = format!(" (torn write: {half} of {} bytes written)", data.len());
                let err = injected(OpKind::Write, path, None, n, &extra).with_temporary(temporary);
                match self.inner.write_parts_unsynced(path, &[&data[..half]]) {
                    Ok(()) => Err(err),
                    Err(e) => Err(err.with_source(e)),
                }
            }
        }
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        self.gate(OpKind::SyncFile, path)?;
        self.inner.sync_file(path)
    }
}
