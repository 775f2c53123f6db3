//! Large stored values decoded as a stream, a piece at a time through a reused buffer, instead
//! of being read whole first; zstd frames decode straight into the array's memory.

use super::buffers::BufferPool;
use super::source::ItemFiles;
use crate::ocdbt::DbFiles;
use ckpt_core::{Error, ErrorKind, Result};
use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

/// Values above this many bytes (1 MiB) are decoded as a stream, [`STREAM_PIECE`] bytes of
/// stored data at a time through a reused buffer, instead of being read whole into fresh
/// memory first: a value that is its whole file through [`ckpt_storage::Store::open_read`] (a
/// checking store verifies the file as it streams), one sharing its file (Orbax's data files) by
/// ranged reads.
pub(super) const STREAM_VALUE_BYTES: u64 = 1 << 20;
/// The piece of a streamed value read at a time, in bytes (1 MiB: small enough to be decoded
/// while it is still in the CPU's cache after the read copied it there).
const STREAM_PIECE: usize = 1 << 20;
/// Piece buffers of earlier streamed values, reused (at most 8, 8 MiB in all): fresh memory
/// costs as much as the read itself on some machines, and a restore decodes its arrays on
/// threads that end with it.
static PIECES: BufferPool = BufferPool::new(8, 8 * STREAM_PIECE);

/// Decodes the value at `file[offset .. offset + length]` (the whole file when `whole_file`)
/// into `out` — a zstd frame (or several, back to back) when `zstd`, else raw bytes — which
/// must fill `out` exactly; a checking store's verdict on a whole file is taken at the end.
/// zstd writes straight into `out` (its stable-output mode: no window buffer of its own, no
/// copy out of it), and raw bytes are read straight into it.
///
/// # Errors
/// `Corrupt` naming `what` when the value does not decode, or decodes to fewer or more bytes
/// than `out.len()`; as the store for the reads.
#[allow(clippy::too_many_arguments)]
pub(super) fn stream_decode(
    files: &ItemFiles<'_>,
    file: &str,
    offset: u64,
    length: u64,
    whole_file: bool,
    zstd: bool,
    out: &mut [u8],
    what: &str,
) -> Result<()> {
    if whole_file {
        // A whole file streamed (`open_read`): its store checks it once it is read to its end.
        let dir = files.0;
        let mut stream = dir.store().open_read(&dir.nested_path(file)?)?;
        with_piece(zstd, |piece| {
            decode_value(&mut |b| stream.read_exact(b), length, piece, out, what)
        })?;
        return stream.finish();
    }
    let mut pos = offset;
    with_piece(zstd, |piece| {
        decode_value(
            &mut |b| {
                files.read_range_into(file, pos, b)?;
                pos += b.len() as u64;
                Ok(())
            },
            length,
            piece,
            out,
            what,
        )
    })
}

/// Decodes the values that fill data file `file` back to back, in file order, from one stream
/// of it ([`ckpt_storage::Store::open_read`], which a checking store verifies as it goes): each
/// `(length, out, what)` a value of `length` stored bytes decoded into `out` (zstd frames when
/// `zstd`, else raw bytes), which it must fill exactly. The store's verdict on the whole file
/// is taken at the end.
///
/// # Errors
/// `Corrupt` naming the value's `what` when it does not decode to `out.len()` bytes (the
/// store's `Corrupt`, naming the file, instead when a checking store finds the file damaged);
/// `InvalidArgument` (from the stream) when the values reach beyond the file; as the store.
pub(super) fn stream_decode_run(
    files: &ItemFiles<'_>,
    file: &str,
    values: &mut [(u64, &mut [u8], String)],
    zstd: bool,
) -> Result<()> {
    let dir = files.0;
    let mut stream = dir.store().open_read(&dir.nested_path(file)?)?;
    let decoded = with_piece(zstd, |mut piece| {
        values.iter_mut().try_for_each(|(length, out, what)| {
            let read = &mut |b: &mut [u8]| stream.read_exact(b);
            decode_value(read, *length, piece.as_deref_mut(), out, what)
        })
    });
    match decoded {
        Ok(()) => stream.finish(),
        // A value that does not decode in a file the store finds damaged: the store's verdict,
        // which names the file, is the cause.
        Err(e) => Err(stream
            .finish()
            .err()
            .filter(|f| f.kind() == ErrorKind::Corrupt)
            .unwrap_or(e)),
    }
}

/// `f` given a piece buffer of [`STREAM_PIECE`] bytes from [`PIECES`] when `zstd` (given back
/// afterwards), else `None`.
fn with_piece<T>(zstd: bool, f: impl FnOnce(Option<&mut [u8]>) -> T) -> T {
    if !zstd {
        return f(None);
    }
    let mut piece = PIECES.take(STREAM_PIECE);
    piece.resize(STREAM_PIECE, 0);
    let r = f(Some(&mut piece));
    PIECES.give(piece);
    r
}

/// Decodes a value of `length` stored bytes, which `read` gives in order (each call fills the
/// buffer it is given with the next bytes), into `out`: zstd frames through `piece` when there
/// is one, else raw bytes read straight into `out`, which must be `length` bytes.
///
/// # Errors
/// `Corrupt` naming `what` when the value does not decode to exactly `out.len()` bytes; as
/// `read`.
fn decode_value(
    read: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    length: u64,
    piece: Option<&mut [u8]>,
    out: &mut [u8],
    what: &str,
) -> Result<()> {
    let Some(piece) = piece else {
        if length != out.len() as u64 {
            return Err(Error::corrupt(format!(
                "{what}: the stored chunk is {length} bytes, {} expected uncompressed",
                out.len()
            )));
        }
        return read(out);
    };
    let mut left = length;
    zstd_into(
        &mut |buf: &mut [u8]| {
            let n = left.min(buf.len() as u64) as usize;
            read(&mut buf[..n])?;
            left -= n as u64;
            Ok(n)
        },
        piece,
        out,
        what,
    )
}

/// Decodes the zstd frames read by `next` (which fills the start of the buffer it is given and
/// returns how many bytes it put there, 0 at the end) into `out`, through `piece`.
fn zstd_into(
    next: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    piece: &mut [u8],
    out: &mut [u8],
    what: &str,
) -> Result<()> {
    let zstd_error = |code: usize| {
        Error::corrupt(format!(
            "{what}: the stored chunk does not decode to the chunk's size (zstd: {})",
            zstd::zstd_safe::get_error_name(code)
        ))
    };
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::StableOutBuffer(true))
        .map_err(zstd_error)?;
    let want = out.len();
    let mut output = OutBuffer::around(out);
    // 0 once a frame has ended (and nothing of a next one was read).
    let mut hint = 1usize;
    loop {
        let n = next(piece)?;
        if n == 0 {
            break;
        }
        let mut input = InBuffer::around(&piece[..n]);
        while input.pos() < n {
            let (in_before, out_before) = (input.pos(), output.pos());
            hint =
                dctx.decompress_stream(&mut output, &mut input)
                    .map_err(|code| {
                        // zstd's error results are `-(its error code)`; with a stable output buffer
                        // a frame larger than the room left is refused as too small for it.
                        let too_small = code == 0usize.wrapping_sub(
                            zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall
                                as usize,
                        );
                        if too_small || output.pos() == want {
                            Error::corrupt(format!(
                                "{what}: the stored chunk decodes to more than {want} bytes"
                            ))
                        } else {
                            zstd_error(code)
                        }
                    })?;
            if input.pos() == in_before && output.pos() == out_before {
                return Err(Error::corrupt(format!(
                    "{what}: the stored chunk decodes to more than {want} bytes"
                )));
            }
        }
    }
    if hint != 0 || output.pos() != want {
        return Err(Error::corrupt(format!(
            "{what}: the stored chunk does not decode to the chunk's size ({} of {want} bytes)",
            output.pos()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `stored` into `want` bytes through pieces of `piece` bytes.
    fn decode(stored: &[u8], want: usize, piece: usize) -> Result<Vec<u8>> {
        let mut at = 0;
        let mut next = |buf: &mut [u8]| {
            let n = buf.len().min(stored.len() - at);
            buf[..n].copy_from_slice(&stored[at..at + n]);
            at += n;
            Ok(n)
        };
        let mut out = vec![0u8; want];
        zstd_into(&mut next, &mut vec![0u8; piece], &mut out, "value")?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i * 7 % 251) as u8 ^ (i >> 12) as u8)
            .collect()
    }

    #[test]
    fn frames_decode_through_pieces_of_any_size() {
        let raw = data(3 << 20);
        let frame = zstd::bulk::compress(&raw, 1).expect("compress");
        for piece in [1, 7, 4096, 1 << 20, 8 << 20] {
            assert_eq!(
                decode(&frame, raw.len(), piece).expect("decodes"),
                raw,
                "{piece}"
            );
        }
        // Two frames back to back decode as their concatenation, as the bulk decoder does.
        let (a, b) = raw.split_at(1000);
        let mut two = zstd::bulk::compress(a, 1).expect("compress");
        two.extend(zstd::bulk::compress(b, 3).expect("compress"));
        assert_eq!(decode(&two, raw.len(), 4096).expect("decodes"), raw);
    }

    #[test]
    fn wrong_sizes_and_bad_bytes_are_corrupt() {
        let raw = data(1 << 20);
        let frame = zstd::bulk::compress(&raw, 1).expect("compress");
        let kind = |r: Result<Vec<u8>>| r.expect_err("must fail").kind();
        // Decodes to more than the chunk's size.
        let e = decode(&frame, raw.len() - 1, 4096).expect_err("too large");
        assert_eq!(e.kind(), ckpt_core::ErrorKind::Corrupt);
        assert!(e.message().contains("more than"), "{e}");
        // Decodes to less.
        let e = decode(&frame, raw.len() + 1, 4096).expect_err("too small");
        assert!(e.message().contains("does not decode"), "{e}");
        // Truncated frame.
        assert_eq!(
            kind(decode(&frame[..frame.len() / 2], raw.len(), 4096)),
            ckpt_core::ErrorKind::Corrupt
        );
        // Garbage after the frame.
        let mut tail = frame.clone();
        tail.extend_from_slice(b"not a frame");
        assert_eq!(
            kind(decode(&tail, raw.len(), 4096)),
            ckpt_core::ErrorKind::Corrupt
        );
        // A flipped byte inside (the frame has no checksum: it decodes wrongly or fails, but
        // never panics or writes past the buffer).
        let mut flipped = frame.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        let _ = decode(&flipped, raw.len(), 4096);
        // Not zstd at all; empty input.
        assert_eq!(
            kind(decode(&raw[..4096], 4096, 1024)),
            ckpt_core::ErrorKind::Corrupt
        );
        assert_eq!(kind(decode(&[], 16, 1024)), ckpt_core::ErrorKind::Corrupt);
    }
}
