//! Reading a file into buffers the caller sized ([`ReadStream`], from [`crate::Store::open_read`]),
//! and the in-memory stream every store gets by default.

use ckpt_core::{Error, Result};

/// A file being read from its start, one [`ReadStream::read_exact`] after another, into buffers
/// the caller allocated (e.g. one per tensor, sized from a header read first), so that no
/// intermediate copy of the whole file is made. From [`crate::Store::open_read`].
///
/// Always end with [`ReadStream::finish`]: a checking store ([`crate::VerifyingStore`]) only
/// vouches for the bytes read once `finish` returned `Ok`; until then they must not be used.
pub trait ReadStream: Send {
    /// The file's size in bytes.
    fn size(&self) -> u64;

    /// How many bytes have been read so far.
    fn position(&self) -> u64;

    /// Fills `buf` with the next `buf.len()` bytes of the file.
    ///
    /// # Errors
    /// `InvalidArgument` when fewer than `buf.len()` bytes remain (nothing is read); `Storage`
    /// when the store fails (the stream is then unusable).
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()>;

    /// Fills each of `bufs` in turn with the next bytes of the file: the same as one
    /// [`ReadStream::read_exact`] per buffer, in one call, so that a checking store can overlap
    /// checking one buffer with reading the next (e.g. every tensor of a file).
    ///
    /// # Errors
    /// As [`ReadStream::read_exact`]; the buffers before the failing one are filled.
    fn read_parts(&mut self, bufs: &mut [&mut [u8]]) -> Result<()> {
        for b in bufs.iter_mut() {
            self.read_exact(b)?;
        }
        Ok(())
    }

    /// Ends the read. A checking store reads whatever the caller left unread and checks the
    /// whole file against its checksum here.
    ///
    /// # Errors
    /// `Corrupt` naming the file when a checking store finds it damaged; `Storage`.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// A [`ReadStream`] over bytes already in memory: what [`crate::Store::open_read`] gives by
/// default (the whole file read with [`crate::Store::read`] first).
#[derive(Debug)]
pub struct BufferStream<B> {
    data: B,
    pos: usize,
    location: String,
}

impl<B: AsRef<[u8]> + Send> BufferStream<B> {
    /// A stream over `data`, the contents of the file at `location` (for messages).
    pub fn new(data: B, location: String) -> Self {
        BufferStream {
            data,
            pos: 0,
            location,
        }
    }
}

impl<B: AsRef<[u8]> + Send> ReadStream for BufferStream<B> {
    fn size(&self) -> u64 {
        self.data.as_ref().len() as u64
    }

    fn position(&self) -> u64 {
        self.pos as u64
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let data = self.data.as_ref();
        let end = self
            .pos
            .checked_add(buf.len())
            .filter(|&e| e <= data.len())
            .ok_or_else(|| beyond_end(&self.location, self.pos as u64, buf.len(), self.size()))?;
        buf.copy_from_slice(&data[self.pos..end]);
        self.pos = end;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// The `InvalidArgument` error of a read past the end of a file.
pub(crate) fn beyond_end(location: &str, pos: u64, want: usize, size: u64) -> Error {
    Error::invalid_argument(format!(
        "cannot read {want} bytes at offset {pos}: the file has {size} bytes"
    ))
    .with_path(location.to_string())
}

/// The bytes of `parts` one after another, in one buffer (what the default
/// [`crate::Store::write_parts`] writes).
pub(crate) fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        buf.extend_from_slice(p);
    }
    buf
}

/// A [`ReadStream`] over anything `std::io::Read` of a known size: an open local file, or the
/// buffer of a whole object read by opendal.
pub(crate) struct IoStream<R> {
    /// What is read.
    pub(crate) inner: R,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Bytes read so far.
    pub(crate) pos: u64,
    /// The location of the file, for messages.
    pub(crate) location: String,
}

impl<R: std::io::Read + Send> ReadStream for IoStream<R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        if self.pos.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(beyond_end(&self.location, self.pos, buf.len(), self.size));
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| crate::error_map::from_io(e, "read", self.location.clone()))?;
        self.pos += len;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_stream_reads_in_order_and_refuses_past_the_end() {
        let mut s = BufferStream::new(vec![1u8, 2, 3, 4, 5], "memory:///f".into());
        assert_eq!(s.size(), 5);
        let mut a = [0u8; 2];
        s.read_exact(&mut a).unwrap();
        assert_eq!(a, [1, 2]);
        let mut b = [0u8; 4];
        let e = s.read_exact(&mut b).unwrap_err();
        assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument);
        assert_eq!(s.position(), 2);
        let mut c = [0u8; 3];
        s.read_exact(&mut c).unwrap();
        assert_eq!(c, [3, 4, 5]);
        s.read_exact(&mut []).unwrap();
        Box::new(s).finish().unwrap();
        assert_eq!(concat(&[b"ab", b"", b"c"]), b"abc");
    }
}
