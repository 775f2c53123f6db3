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
    /// Each thread's two bounce buffers, allocated (and faulted in) once: each `ALIGN` bytes
    /// more than [`BUFFER_BYTES`], so that an aligned window of that size always fits.
    static BOUNCE: RefCell<[Vec<u8>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// The aligned window of [`BUFFER_BYTES`] in `vec` (grown to hold it on first use).
fn aligned(vec: &mut Vec<u8>) -> std::io::Result<&mut [u8]> {
    if vec.len() < BUFFER_BYTES + ALIGN {
        vec.resize(BUFFER_BYTES + ALIGN, 0);
    }
    let offset = vec.as_ptr().align_offset(ALIGN);
    if offset > ALIGN {
        return Err(std::io::Error::other(
            "cannot align the direct-write buffer",
        ));
    }
    Ok(&mut vec[offset..offset + BUFFER_BYTES])
}

/// Writes `parts`, one after another, as the whole contents of the file at `abs` (created or
/// truncated) with `O_DIRECT`, and returns the open file for the caller's fsync. Returns
/// `Ok(None)`, having written nothing, when the file system refuses `O_DIRECT`; the caller then
/// writes the file the usual way. Does not fsync. A file of more than one buffer is written by
/// a second thread while this one copies the next buffer's bytes (the copy then costs no time
/// of its own: about a tenth of a 1 GiB write here, 8 MiB at 16 GB/s against ~1.7 GB/s to the
/// device); where no thread can be started, the copies and writes take turns.
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
        let mut pair = cell.borrow_mut();
        let [first, second] = &mut *pair;
        let first = aligned(first)?;
        if total <= BUFFER_BYTES as u64 {
            return write_in_turns(&mut file, parts, first);
        }
        let second = aligned(second)?;
        write_overlapped(&mut file, parts, [first, second])
    })?;
    // The zeros of the padding go: the file is exactly the parts.
    file.set_len(total)?;
    Ok(Some(file))
}

/// The bytes of `parts` in pieces of at most [`BUFFER_BYTES`]: each piece copied into a buffer
/// from `take`, then handed to `hand` with its length (the last one padded with zeros to
/// [`ALIGN`]).
fn pieces<'b>(
    parts: &[&[u8]],
    mut take: impl FnMut() -> std::io::Result<&'b mut [u8]>,
    mut hand: impl FnMut(&'b mut [u8], usize) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = take()?;
    let mut filled = 0;
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            let n = rest.len().min(BUFFER_BYTES - filled);
            crate::copy_streaming(&mut buf[filled..filled + n], &rest[..n]);
            filled += n;
            rest = &rest[n..];
            if filled == BUFFER_BYTES {
                hand(buf, BUFFER_BYTES)?;
                buf = take()?;
                filled = 0;
            }
        }
    }
    if filled > 0 {
        let padded = filled.div_ceil(ALIGN) * ALIGN;
        buf[filled..padded].fill(0);
        hand(buf, padded)?;
    }
    Ok(())
}

/// Copies and writes in turn, through one buffer.
fn write_in_turns(file: &mut File, parts: &[&[u8]], buf: &mut [u8]) -> std::io::Result<()> {
    let slot = std::cell::Cell::new(Some(buf));
    pieces(
        parts,
        || {
            slot.take()
                .ok_or_else(|| std::io::Error::other("the direct-write buffer is in use"))
        },
        |b, len| {
            let r = file.write_all(&b[..len]);
            slot.set(Some(b));
            r
        },
    )
}

/// Copies into one buffer while a writer thread writes the other.
fn write_overlapped(file: &mut File, parts: &[&[u8]], bufs: [&mut [u8]; 2]) -> std::io::Result<()> {
    use std::sync::mpsc::sync_channel;
    let [a, b] = bufs;
    // The writer thread's, or this thread's if none can be started.
    let file = std::sync::Mutex::new(file);
    let file = &file;
    std::thread::scope(|scope| {
        // Full buffers to the writer; empty ones back.
        let (to_writer, full) = sync_channel::<(&mut [u8], usize)>(2);
        let (to_copier, empty) = sync_channel::<&mut [u8]>(2);
        let _ = to_copier.send(a);
        let _ = to_copier.send(b);
        let writer = std::thread::Builder::new()
            .name("ckpt-direct-write".into())
            .spawn_scoped(scope, move || -> std::io::Result<()> {
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                for (buf, len) in full {
                    file.write_all(&buf[..len])?;
                    // The copier may have stopped already (its error wins).
                    let _ = to_copier.send(buf);
                }
                Ok(())
            });
        let writer = match writer {
            Ok(w) => w,
            Err(_) => {
                // No thread: take the buffers back and take turns with one of them.
                drop(to_writer);
                let first = empty
                    .try_recv()
                    .map_err(|_| std::io::Error::other("the direct-write buffer is lost"))?;
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                return write_in_turns(&mut file, parts, first);
            }
        };
        let copied = pieces(
            parts,
            || {
                empty
                    .recv()
                    .map_err(|_| std::io::Error::other("the direct-write thread stopped"))
            },
            |buf, len| {
                to_writer
                    .send((buf, len))
                    .map_err(|_| std::io::Error::other("the direct-write thread stopped"))
            },
        );
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the direct-write thread panicked")));
        // The writer's error is the cause of the copier's "stopped".
        written.and(copied)
    })
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
            BUFFER_BYTES,
            BUFFER_BYTES + 5000,
            // Both buffers in flight, each reused: copies overlapping writes.
            3 * BUFFER_BYTES + 17,
            4 * BUFFER_BYTES,
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
