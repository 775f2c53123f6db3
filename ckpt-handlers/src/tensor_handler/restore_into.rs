//! Restoring a tensors item into tensors the caller owns: [`TensorHandler::restore_into`].

use super::decode::{read_header, Entry};
use super::{at_file, TensorHandler};
use crate::common::read_error;
use crate::{DType, ItemDir, Tensor};
use ckpt_core::{Error, ErrorKind, Result};
use ckpt_storage::ReadStream;
use std::collections::BTreeMap;

/// Skipped tensors (in the file, not asked for) are read through a buffer of at most this many
/// bytes (4 MiB), so that a checking store still sees, and checks, every byte of the file.
const SKIP_CHUNK: usize = 4 << 20;

const WHAT: &str = "tensors item file";

impl TensorHandler {
    /// Restores the tensors of the item in `dir` into `targets`, tensors the caller owns (the
    /// model's parameters, say), each filled in place from the file's tensor of the same name:
    /// the file is read once, in order, straight into each target's memory (no buffer of its
    /// own per tensor, no copy of the file), so the restore needs no fresh memory. The file's
    /// tensors that no target names are read (a checking store checks the whole file) but not
    /// kept. Through a checking store ([`ckpt_storage::VerifyingStore`]) the file is verified as
    /// it streams, and this returns `Ok` only once it was (`finish`). ckpt's own (Orbax
    /// restores into new arrays only).
    ///
    /// `targets` holds `(name, tensor)` pairs; each tensor must have the dtype and shape the
    /// file has for that name.
    ///
    /// # Errors
    /// `InvalidArgument` naming the tensor (and the file) when a target's name is not in the
    /// file, is given twice, or its dtype or shape differs from the file's — nothing is read
    /// into any target then (on a checking store, `Corrupt` instead when the file is damaged); `NotFound` naming the file when it is missing; `Corrupt` naming it
    /// when it does not match its checksum, is not valid safetensors, or a `bool` tensor holds
    /// a byte other than 0 or 1; the store's errors. After a `Corrupt` or store error, targets
    /// may hold part of the file's data (the caller's to discard or restore again).
    pub fn restore_into(
        &self,
        dir: &ItemDir<'_>,
        targets: &mut [(&str, &mut Tensor)],
    ) -> Result<()> {
        let mut stream = dir
            .open_read(Self::FILENAME)
            .map_err(|e| read_error(dir, Self::FILENAME, WHAT, e))?;
        match fill(dir, stream.as_mut(), targets) {
            Ok(()) => {
                stream
                    .finish()
                    .map_err(|e| read_error(dir, Self::FILENAME, WHAT, e))?;
                for (name, t) in targets.iter() {
                    t.check_bool_bytes()
                        .map_err(|e| at_file(dir, e.prefixed(&format!("tensor {name:?}: "))))?;
                }
                Ok(())
            }
            // A damaged file: say so (its checksum) rather than what decoding tripped on (a
            // flipped bit in the header can look like a missing tensor or a wrong shape).
            Err(e) => match stream.finish() {
                Err(c) if c.kind() == ErrorKind::Corrupt => {
                    Err(read_error(dir, Self::FILENAME, WHAT, c))
                }
                _ if e.path().is_some() => Err(e),
                _ => Err(at_file(dir, e)),
            },
        }
    }
}

/// Reads the header from `s`, matches `targets` against it, then reads the data in file order
/// into the targets (skipping the rest). Leaves the stream unfinished.
fn fill(
    dir: &ItemDir<'_>,
    s: &mut dyn ReadStream,
    targets: &mut [(&str, &mut Tensor)],
) -> Result<()> {
    let entries = read_header(s)?;
    let by_name: BTreeMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    // For each entry (file order), the target it is read into.
    let mut slot_of: Vec<Option<usize>> = vec![None; entries.len()];
    for (t, (name, tensor)) in targets.iter().enumerate() {
        let bad = |what: String| {
            Error::invalid_argument(format!("tensor {name:?}: {what}"))
                .with_path(dir.location(TensorHandler::FILENAME))
        };
        let Some(&i) = by_name.get(name) else {
            return Err(bad(format!(
                "the item has no such tensor (it has {})",
                names_list(&entries)
            )));
        };
        if slot_of[i].is_some() {
            return Err(bad("given twice".into()));
        }
        check_matches(&entries[i], tensor).map_err(bad)?;
        slot_of[i] = Some(t);
    }
    let mut bufs: Vec<Option<&mut [u8]>> = targets
        .iter_mut()
        .map(|(_, t)| Some(t.bytes_mut()))
        .collect();
    let mut run: Vec<&mut [u8]> = Vec::new();
    let mut scratch: Vec<u8> = Vec::new();
    for (entry, slot) in entries.iter().zip(slot_of) {
        match slot.and_then(|t| bufs.get_mut(t)).and_then(Option::take) {
            Some(buf) => run.push(buf),
            None => {
                // One call for a run of targets: a checking store checks one while reading the
                // next.
                s.read_parts(&mut run)?;
                run.clear();
                let (start, end) = entry.info.data_offsets;
                skip(s, end - start, &mut scratch)?;
            }
        }
    }
    s.read_parts(&mut run)
}

/// Reads (and drops) the next `n` bytes of `s` through `scratch`.
fn skip(s: &mut dyn ReadStream, mut n: usize, scratch: &mut Vec<u8>) -> Result<()> {
    if n > 0 && scratch.is_empty() {
        scratch.resize(n.min(SKIP_CHUNK), 0);
    }
    while n > 0 {
        let k = n.min(scratch.len());
        s.read_exact(&mut scratch[..k])?;
        n -= k;
    }
    Ok(())
}

/// Why `target` cannot hold `entry`'s data (dtype or shape), if it cannot.
fn check_matches(entry: &Entry, target: &Tensor) -> std::result::Result<(), String> {
    let dtype = DType::try_from(entry.info.dtype).map_err(|_| {
        format!(
            "the item holds it as safetensors {}, which ckpt cannot read",
            entry.info.dtype
        )
    })?;
    if dtype != target.dtype() || entry.info.shape != target.shape() {
        return Err(format!(
            "the item holds {dtype} {:?}, the target is {} {:?}",
            entry.info.shape,
            target.dtype(),
            target.shape()
        ));
    }
    Ok(())
}

/// The names of `entries`, sorted and quoted, at most 10 of them.
fn names_list(entries: &[Entry]) -> String {
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("{n:?}")).collect();
    match names.len() {
        0 => "no tensors".into(),
        n if n > 10 => format!("{}, … ({n} in all)", shown.join(", ")),
        _ => shown.join(", "),
    }
}
