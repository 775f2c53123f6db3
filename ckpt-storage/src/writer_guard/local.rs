//! The writer lock of a local root: a POSIX record lock on `<root>/.ckpt-writer.lock`.
//!
//! Why not `flock` on the root directory (what ckpt did first): an `flock` belongs to the open
//! file description, which `fork` duplicates. While any thread of the process is between
//! `fork` and `exec` of a child (`std::process::Command::spawn` from another thread, a data
//! loader starting workers), the child holds a copy of the descriptor, so a manager closed in
//! that window leaves the root locked and the next writer opened right after it gets a spurious
//! `Locked` (issue 11, item 5; `tests/regression/spurious_locked_while_spawning.rs`). Record
//! locks (`fcntl(F_SETLK)`) belong to the process and are never inherited by a child. They are
//! also released when the process closes ANY descriptor of the file, and a process never
//! conflicts with itself; both are handled by a registry of the roots this process holds
//! locked: a second manager of the same process is refused from the registry without opening
//! the file, and the descriptor is closed before the root leaves the registry.
//!
//! The lock file exists only while a writer holds it (and after a writer that was killed, until
//! the next one takes and releases it): it is removed, still locked, when the lock is released.
//! A locker that raced with a removal finds, after taking the lock, that the path no longer
//! names the file it locked, and starts again. The file holds a line naming the holder (process
//! id, host, time) for the error message of the next writer; it is a file, never taken for a
//! step.

use super::{host_name, WriterLock};
use ckpt_core::{Error, ErrorKind, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The name of the lock file in a local root.
pub const LOCAL_LOCK_FILE: &str = ".ckpt-writer.lock";

/// The roots (device, inode of the root directory) this process holds locked.
static HELD: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

fn held() -> MutexGuard<'static, BTreeSet<(u64, u64)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// A held lock of a local root; dropping it releases the lock.
#[derive(Debug)]
struct LocalWriterLock {
    file: Option<File>,
    path: std::path::PathBuf,
    key: (u64, u64),
}

impl WriterLock for LocalWriterLock {}

impl Drop for LocalWriterLock {
    fn drop(&mut self) {
        let mut held = held();
        // Remove the file while it is still locked, close it (this releases the record lock),
        // and only then let this process lock the root again.
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(error = %e, "could not remove the writer lock file");
        }
        drop(self.file.take());
        held.remove(&self.key);
    }
}

fn locked_error(location: &str, holder: &str) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!(
            "another live checkpoint manager is writing this root ({holder}); wait for it to finish or stop it (readers are never blocked: `ckpt ls/show/verify`, or a manager opened with `read_only`)"
        ),
    )
    .with_path(location.to_string())
}

fn io_error(e: std::io::Error, what: &str, location: &str) -> Error {
    // The io error is the source only (shown by `Error::chain`), not part of the message.
    Error::storage(what)
        .with_path(location.to_string())
        .with_source(e)
}

/// Locks the local root `root` for writing (`location` names it in errors).
///
/// # Errors
/// `Locked` naming the holder when another manager, in this process or another, holds the
/// lock; `Storage` when the lock file cannot be opened or locked for another reason (also when
/// it is a symbolic link).
pub fn lock_local_root(root: &Path, location: &str) -> Result<Box<dyn WriterLock>> {
    let meta = std::fs::metadata(root).map_err(|e| io_error(e, "reading the root", location))?;
    let key = dev_ino(&meta);
    let lock_path = root.join(LOCAL_LOCK_FILE);
    let lock_location = lock_path.to_string_lossy().into_owned();
    let mut held = held();
    if held.contains(&key) {
        return Err(locked_error(
            location,
            &format!("a manager of this process, {}", std::process::id()),
        ));
    }
    // A few rounds at most: each is lost only to a writer releasing (removing) the file
    // between our open and our lock.
    let mut attempt = 0;
    let file = loop {
        attempt += 1;
        let file = open_lock_file(&lock_path)
            .map_err(|e| io_error(e, "opening the writer lock file", &lock_location))?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let who = holder_of(&file, &lock_path);
                // Closing our descriptor releases no lock: we hold none on this file.
                drop(file);
                return Err(locked_error(location, &who));
            }
            Err(e) => return Err(io_error(e, "locking the root for writing", &lock_location)),
        }
        if still_named(&file, &lock_path) {
            break file;
        }
        if attempt >= 16 {
            return Err(locked_error(
                location,
                "the lock file keeps being replaced by other writers",
            ));
        }
    };
    let line = format!(
        "pid {} on {} since {}\n",
        std::process::id(),
        host_name(),
        chrono::Utc::now().to_rfc3339()
    );
    // Only for the next writer's error message: a failure here leaves the lock held.
    if let Err(e) = write_holder(&file, &line) {
        tracing::debug!(error = %e, "could not record the holder in the writer lock file");
    }
    held.insert(key);
    Ok(Box::new(LocalWriterLock {
        file: Some(file),
        path: lock_path,
        key,
    }))
}

fn write_holder(mut file: &File, line: &str) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())
}

/// Who holds the lock, as far as can be told: the process id the kernel reports and the line
/// the holder wrote.
fn holder_of(file: &File, lock_path: &Path) -> String {
    let recorded = std::fs::read_to_string(lock_path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() < 512);
    match (lock_holder_pid(file), recorded) {
        (Some(pid), Some(line)) => format!("held by process {pid}; lock file says: {line}"),
        (Some(pid), None) => format!("held by process {pid}"),
        (None, Some(line)) => format!("lock file says: {line}"),
        (None, None) => "holder unknown".to_string(),
    }
}

/// Whether `path` still names the open `file` (a releasing writer may have removed it).
fn still_named(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => dev_ino(&a) == dev_ino(&b),
        _ => false,
    }
}

#[cfg(unix)]
fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dev_ino(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(unix)]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(not(unix))]
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// A whole-file write lock request for `fcntl`.
#[cfg(unix)]
fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, however long
    fl
}

/// `Ok(true)` when the lock was taken, `Ok(false)` when another process holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: a valid open descriptor and a pointer to an initialised `flock` for this call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(unix)]
fn lock_holder_pid(file: &File) -> Option<i64> {
    use std::os::unix::io::AsRawFd;
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: a valid open descriptor and a pointer to an initialised `flock` it may fill in.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    (r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short).then_some(i64::from(fl.l_pid))
}

#[cfg(not(unix))]
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(not(unix))]
fn lock_holder_pid(_file: &File) -> Option<i64> {
    None
}
