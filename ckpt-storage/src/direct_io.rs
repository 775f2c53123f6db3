//! Writing a whole file with `O_DIRECT` (Linux): the bytes go from an aligned bounce buffer to
//! the device without passing through the page cache, for [`crate::LocalStore::with_direct_io`].
//!
//! Why (issue 14's investigation, `xtask/bench-results/async-commit-investigation-2026-12-07.md`):
//! on VMs that hand freed memory back to their host, a buffered write of a large checkpoint
//! spends most of its time faulting in fresh page-cache pages; a direct write of 1 GiB took
//! about half the time. The cost: the file is not left in the page cache (a restore right after
//! reads the device), and every write is copied once more, into the aligned buffer.
//!
//! How: the parts are copied (with streaming stores, [`crate::copy_streaming`]) into a buffer
//! of [`BUFFER_BYTES`], aligned to 4 KiB and kept per thread; each full buffer is written at
//! once, the last block is padded with zeros to the alignment and the file then truncated to
//! its real size; the caller fsyncs. A file system that refuses
//! `O_DIRECT` at open (tmpfs: `EINVAL`) gets `Ok(None)` and the caller writes it buffered.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// The alignment of offsets, lengths and memory that `O_DIRECT` asks for: 4 KiB covers
/// devices with 512-byte and 4 KiB logical blocks.
const ALIGN: usize = 4096;

/// The bounce buffer's size (bytes): 8 MiB, a multiple of [`ALIGN`].
pub(crate) const BUFFER_BYTES: usize = 8 << 20;

thread_local! {
    /// Each thread's bounce buffer, allocated (and faulted in) once: `ALIGN` bytes more than
    /// [`BUFFER_BYTES`], so that an aligned window of that size always fits.
    static BOUNCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `parts`, one after another, as the whole contents of the file at `abs` (created or
/// truncated) with `O_DIRECT`, and returns the open file for the caller's fsync. Returns
/// `Ok(None)`, having written nothing, when the file system refuses `O_DIRECT`; the caller then
/// writes the file the usual way. Does not fsync.
///
/// # Errors
/// The io error of the open, a write or the final truncation.
pub(crate) fn write_direct(abs: &Path, parts: &[&[u8]]) -> std::io::Result<Option<File>> {
    let mut file = match open_direct(abs)? {
        Some(f) => f,
        None => return Ok(None),
    };
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    BOUNCE.with(|cell| -> std::io::Result<()> {
        let mut vec = cell.borrow_mut();
        if vec.len() < BUFFER_BYTES + ALIGN {
            vec.resize(BUFFER_BYTES + ALIGN, 0);
        }
        let offset = vec.as_ptr().align_offset(ALIGN);
        if offset > ALIGN {
            return Err(std::io::Error::other(
                "cannot align the direct-write buffer",
            ));
        }
        let buf = &mut vec[offset..offset + BUFFER_BYTES];
        let mut filled = 0;
        for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                let n = rest.len().min(BUFFER_BYTES - filled);
                crate::copy_streaming(&mut buf[filled..filled + n], &rest[..n]);
                filled += n;
                rest = &rest[n..];
                if filled == BUFFER_BYTES {
                    file.write_all(buf)?;
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            let padded = filled.div_ceil(ALIGN) * ALIGN;
            buf[filled..padded].fill(0);
            file.write_all(&buf[..padded])?;
        }
        Ok(())
    })?;
    // The zeros of the padding go: the file is exactly the parts.
    file.set_len(total)?;
    Ok(Some(file))
}

/// The file at `abs` created or truncated for writing with `O_DIRECT`; `None` when the file
/// system refuses the flag.
#[cfg(target_os = "linux")]
fn open_direct(abs: &Path) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(abs);
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Elsewhere there is no `O_DIRECT`: always the buffered write.
#[cfg(not(target_os = "linux"))]
fn open_direct(_abs: &Path) -> std::io::Result<Option<File>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of sizes around the alignment and the buffer, from several parts, read back equal
    /// (on the file system of the temp dir; where it refuses O_DIRECT the write says so).
    #[test]
    fn direct_writes_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0usize,
            1,
            4095,
            4096,
            4097,
            BUFFER_BYTES - 1,
            BUFFER_BYTES + 5000,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let cut = size / 3;
            let parts = [&data[..cut], &data[cut..]];
            let path = dir.path().join(format!("f{size}"));
            std::fs::write(&path, b"old contents, longer than some of the new").unwrap();
            if write_direct(&path, &parts).unwrap().is_none() {
                return; // the file system refuses O_DIRECT
            }
            assert_eq!(std::fs::read(&path).unwrap(), data, "size {size}");
        }
    }
}
