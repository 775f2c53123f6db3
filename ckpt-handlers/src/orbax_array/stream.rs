//! Large stored values decoded as a stream, a piece at a time through one reused buffer,
//! instead of being read whole first.

use super::source::ItemFiles;
use crate::ocdbt::DbFiles;
use ckpt_core::{Error, Result};

/// Values above this many bytes (16 MiB) are decoded as a stream, [`STREAM_PIECE`] bytes of
/// stored data at a time through one reused buffer, instead of being read whole first: a value
/// that is its whole file through [`ckpt_storage::Store::open_read`] (a checking store verifies
/// the file as it streams), one sharing its file (Orbax's data files) by ranged reads.
pub(super) const STREAM_VALUE_BYTES: u64 = 16 << 20;
/// The piece of a streamed value read at a time, in bytes.
const STREAM_PIECE: u64 = 8 << 20;

/// Where a [`PieceReader`] gets its pieces from.
enum Pieces<'f> {
    /// Ranged reads of bytes `pos .. end` of a file.
    Ranged {
        files: &'f ItemFiles<'f>,
        file: &'f str,
        pos: u64,
        end: u64,
    },
    /// A whole file, streamed ([`ckpt_storage::Store::open_read`]).
    Stream(Box<dyn ckpt_storage::ReadStream + 'f>),
}

/// A stored value read [`STREAM_PIECE`] bytes at a time into one buffer reused for every
/// piece (fresh memory costs as much as the read itself on some machines: README,
/// "Performance").
struct PieceReader<'f> {
    pieces: Pieces<'f>,
    piece: Vec<u8>,
    /// Valid bytes of `piece`.
    filled: usize,
    at: usize,
}

impl PieceReader<'_> {
    /// Reads the next piece into `piece`: its length, 0 at the end.
    fn refill(&mut self) -> Result<usize> {
        let left = match &self.pieces {
            Pieces::Ranged { pos, end, .. } => end - pos,
            Pieces::Stream(s) => s.size() - s.position(),
        };
        let n = STREAM_PIECE.min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        if self.piece.len() < n {
            self.piece.resize(n, 0);
        }
        match &mut self.pieces {
            Pieces::Ranged {
                files, file, pos, ..
            } => {
                files.read_range_into(file, *pos, &mut self.piece[..n])?;
                *pos += n as u64;
            }
            Pieces::Stream(s) => s.read_exact(&mut self.piece[..n])?,
        }
        Ok(n)
    }
}

impl std::io::Read for PieceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.filled {
            self.filled = self.refill().map_err(std::io::Error::other)?;
            self.at = 0;
            if self.filled == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.filled - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decodes the value at `file[offset .. offset + length]` (the whole file when `whole_file`)
/// into `out` as a stream — a zstd frame when `zstd`, else raw bytes — which must fill `out`
/// exactly; a checking store's verdict on a whole file is taken at the end.
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
    use std::io::Read;
    let pieces = if whole_file {
        let dir = files.0;
        Pieces::Stream(dir.store().open_read(&dir.nested_path(file)?)?)
    } else {
        Pieces::Ranged {
            files,
            file,
            pos: offset,
            end: offset + length,
        }
    };
    let mut reader = PieceReader {
        pieces,
        piece: Vec::new(),
        filled: 0,
        at: 0,
    };
    let short = |e: std::io::Error| {
        Error::corrupt(format!(
            "{what}: the stored chunk does not decode to the chunk's size"
        ))
        .with_source(e)
    };
    let mut extra = [0u8; 1];
    let more = if zstd {
        let mut decoder = zstd::stream::read::Decoder::with_buffer(
            std::io::BufReader::with_capacity(1 << 16, &mut reader),
        )
        .map_err(|e| Error::corrupt(format!("{what}: zstd")).with_source(e))?
        .single_frame();
        decoder.read_exact(out).map_err(short)?;
        decoder
            .read(&mut extra)
            .map_err(|e| Error::corrupt(format!("{what}: zstd chunk")).with_source(e))?
    } else {
        reader.read_exact(out).map_err(short)?;
        reader
            .read(&mut extra)
            .map_err(|e| Error::corrupt(what.to_string()).with_source(e))?
    };
    if more != 0 {
        return Err(Error::corrupt(format!(
            "{what}: the stored chunk decodes to more than {} bytes",
            out.len()
        )));
    }
    if let Pieces::Stream(s) = reader.pieces {
        s.finish()?;
    }
    Ok(())
}
