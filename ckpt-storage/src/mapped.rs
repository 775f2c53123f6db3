//! [`MappedFile`]: a local file mapped read-only into memory ([`crate::Store::map_file`]), for
//! restores that hand out the file's bytes without copying them (issue 14). ckpt's own; Orbax
//! has no mapped restore.
//!
//! **Caveat.** The mapping shows the file as it is on disk *now*, not as it was when it was
//! mapped: while a [`MappedFile`] (or anything borrowing from it) is alive, the file must not be
//! truncated, rewritten or written to by anyone. Truncating it makes a later access to the pages
//! past its new end kill the process (`SIGBUS`); rewriting it in place changes the bytes seen,
//! after any checksum was verified. ckpt itself never changes a committed step's files (a step is
//! written once, in its tmp directory, and only ever deleted whole); deleting or renaming the
//! file is harmless (the mapping keeps the inode alive). So the caveat is about other writers:
//! tools or people that rewrite checkpoint files in place.

use crate::error_map::from_io;
use ckpt_core::Result;
use std::fmt;
use std::ops::Deref;

/// The bytes of a local file, mapped read-only into this process's memory (`mmap`, through the
/// `memmap2` crate), from [`crate::Store::map_file`]. Dereferences to the file's bytes; the
/// mapping is undone when this is dropped. ckpt's own.
///
/// See the module docs for the caveat: the file must not be truncated or rewritten while it is
/// mapped.
pub struct MappedFile {
    map: memmap2::Mmap,
    location: String,
}

impl fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedFile")
            .field("location", &self.location)
            .field("len", &self.map.len())
            .finish()
    }
}

impl MappedFile {
    /// Maps the whole of `file` (opened for reading; `location` names it in errors) read-only;
    /// with `populate`, every page is mapped now (`MAP_POPULATE` on Linux: one call instead of
    /// a page fault per 64 KiB, and the file is read into the page cache if it is not there).
    ///
    /// # Errors
    /// `Storage` at `location` when the file cannot be mapped.
    pub(crate) fn map(file: &std::fs::File, location: String, populate: bool) -> Result<Self> {
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        // SAFETY: memmap2 marks mapping unsafe because another process may change the file
        // under the mapping (undefined behaviour for `&[u8]`). ckpt maps only committed
        // checkpoint files, which it never changes in place; the caveat that nobody else may
        // (module docs) is documented on every public way in.
        let map = unsafe { options.map(file) }.map_err(|e| from_io(e, "map", location.clone()))?;
        Ok(MappedFile { map, location })
    }

    /// The file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The file's full location (an absolute local path), as [`crate::Store::location`] names it.
    pub fn location(&self) -> &str {
        &self.location
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}
