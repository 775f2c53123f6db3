//! Core types of ckpt, a checkpoint manager modelled on Orbax's `CheckpointManager`.
//!
//! This crate holds what every other ckpt crate shares and does no I/O:
//! - [`Step`], [`CheckpointInfo`] and [`Metrics`]: what a policy sees of a checkpoint;
//! - [`Error`] and [`ErrorKind`]: the one error type of the workspace;
//! - [`StepMetadata`] and [`RootMetadata`]: Orbax's `_CHECKPOINT_METADATA` and `_ROOT_METADATA`
//!   schemas, read and written byte for byte as Orbax does (spec §1.5–§1.6);
//! - [`pyjson`]: JSON written as Python's `json.dumps` writes it, and read leniently (NaN, Infinity);
//! - [`NameFormat`], [`StandardNameFormat`], [`CompositeNameFormat`]: step directory names (spec §1.2);
//! - [`Clock`], [`SystemClock`], [`ManualClock`]: injectable time, so time-based rules are testable.
#![deny(missing_docs)]

mod clock;
mod error;
mod info;
mod metadata;
mod name_format;
pub mod pyjson;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorKind, Result};
pub use info::{CheckpointInfo, Metrics, Step};
pub use metadata::{ItemHandlers, RootMetadata, StepMetadata};
pub use name_format::{CompositeNameFormat, NameFormat, StandardNameFormat};

/// Suffix of a tmp directory: a save in progress, or one that died (spec §1.3, `TMP_DIR_SUFFIX`).
pub const TMP_DIR_SUFFIX: &str = ".orbax-checkpoint-tmp";
/// Name of the file that marks a committed step or item directory (spec §1.3, `COMMIT_SUCCESS_FILE`).
pub const COMMIT_SUCCESS_FILE: &str = "commit_success.txt";
/// File name of the step metadata inside a step directory (spec §1.5).
pub const STEP_METADATA_FILE: &str = "_CHECKPOINT_METADATA";
/// In commit-file mode, the file a writer creates (conditionally) in a step directory before it
/// writes anything there, holding its writer token: of two writers of one step only the one
/// whose claim was created writes, commits or removes that directory (ckpt's own; Orbax writes
/// in place without one and ignores the file, which is not a directory).
pub const STEP_CLAIM_FILE: &str = "_CKPT_WRITER";
/// Directory holding the root metadata, directly under the root (spec §1.6, `METADATA_ITEM_NAME`).
pub const ROOT_METADATA_DIR: &str = "metadata";
/// File name of the root metadata inside [`ROOT_METADATA_DIR`] (spec §1.6).
pub const ROOT_METADATA_FILE: &str = "_ROOT_METADATA";
/// Legacy root metadata file name, read only as a fallback (spec §1.6).
pub const LEGACY_ROOT_METADATA_FILE: &str = "metadata";
/// Item name of the single unnamed item (spec §1.4, `DEFAULT_ITEM_NAME`).
pub const DEFAULT_ITEM_NAME: &str = "default";
/// Item name under which a step's metrics are stored, as `<step>/metrics/metrics` (spec §1.7).
pub const METRICS_ITEM_NAME: &str = "metrics";

/// The text Orbax writes into `commit_success.txt`: `Checkpoint commit was successful to <path>`.
pub fn commit_success_text(final_path: &str) -> String {
    format!("Checkpoint commit was successful to {final_path}")
}

/// Whether `name` is the name of a tmp directory: it contains [`TMP_DIR_SUFFIX`] anywhere, which
/// also matches the legacy `<name>.orbax-checkpoint-tmp-<number>` form (spec §1.3).
pub fn is_tmp_name(name: &str) -> bool {
    name.contains(TMP_DIR_SUFFIX)
}

/// Checks that `name` can be used as an item name: a single path component that is not empty,
/// `.` or `..`, holds no `/`, `\\` or control character (NUL, newline, …), does not begin or end
/// with whitespace (object stores and some file systems trim it), and has no tmp suffix.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] naming the item when it is not such a name.
pub fn validate_item_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name.starts_with(char::is_whitespace)
        || name.ends_with(char::is_whitespace)
        || is_tmp_name(name);
    if bad {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid item name {name:?}: an item name must be one path component (no '/', '..', control characters, edge whitespace or tmp suffix)"),
        ));
    }
    Ok(())
}
