//! Every on-disk name of a checkpoint root, the path builders over them, and the one check of a
//! name component that item names ([`validate_item_name`]), an item's file names
//! (`ckpt_handlers::ItemDir::file_path`) and store paths (`ckpt_storage::validate_path`) share
//! ([`component_problem`]). What each file holds: docs/design.md, "On-disk format".
//!
//! A root holds step directories (named by a [`crate::NameFormat`]), each with
//! [`STEP_METADATA_FILE`], one directory per item, [`COMMIT_SUCCESS_FILE`] (commit-file mode),
//! [`CHECKSUM_MANIFEST_FILE`] and [`STEP_CLAIM_FILE`] (ckpt's own), and the metrics as
//! [`metrics_file`]; the root metadata as [`root_metadata_file`]; a save in progress under
//! [`tmp_path`]; and, while a writer lives, [`LOCAL_LOCK_FILE`] or [`LEASE_FILE`].

use crate::{Error, ErrorKind, Result};

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

/// Name of the checksum manifest of a step directory: size and CRC32C of every file a handler
/// wrote (ckpt's own; Orbax has no checksums and ignores the file).
pub const CHECKSUM_MANIFEST_FILE: &str = "_CKPT_CHECKSUMS";
/// The writer lock of a local root, a file directly under it that exists while a writer lives
/// (ckpt's own; Orbax takes no lock).
pub const LOCAL_LOCK_FILE: &str = ".ckpt-writer.lock";
/// The writer lease of an object-store root, directly under it (ckpt's own).
pub const LEASE_FILE: &str = ".ckpt-writer.lease";

/// The tmp path a save writes `final_path` under before its commit (rename mode): `<final_path>`
/// + [`TMP_DIR_SUFFIX`] (spec §1.3).
pub fn tmp_path(final_path: &str) -> String {
    format!("{final_path}{TMP_DIR_SUFFIX}")
}

/// The metrics file of the step directory `step_dir`: `<step_dir>/metrics/metrics` (spec §1.7).
pub fn metrics_file(step_dir: &str) -> String {
    format!("{step_dir}/{METRICS_ITEM_NAME}/{METRICS_ITEM_NAME}")
}

/// The step metadata file of the step directory `step_dir`: `<step_dir>/_CHECKPOINT_METADATA`
/// (spec §1.5).
pub fn step_metadata_file(step_dir: &str) -> String {
    format!("{step_dir}/{STEP_METADATA_FILE}")
}

/// The root metadata file, relative to the root: `metadata/_ROOT_METADATA` (spec §1.6).
pub fn root_metadata_file() -> String {
    format!("{ROOT_METADATA_DIR}/{ROOT_METADATA_FILE}")
}

/// Why a string cannot be one component of a path in a root, in the order the checks are
/// reported (the first that applies to any component of a path wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComponentProblem {
    /// It holds a NUL byte.
    Nul,
    /// It holds a backslash (a separator on Windows).
    Backslash,
    /// It is empty (`//` in a path).
    Empty,
    /// It is `.` or `..`.
    Dot,
    /// It begins or ends with whitespace (object stores and opendal trim it).
    EdgeWhitespace,
    /// It holds a `/` (only when checking a single component).
    Slash,
}

impl ComponentProblem {
    /// The rule broken, as said in error messages, e.g. `"it must not contain a backslash"`.
    pub fn rule(self) -> &'static str {
        match self {
            ComponentProblem::Nul => "it must not contain NUL",
            ComponentProblem::Backslash => "it must not contain a backslash",
            ComponentProblem::Empty => "it must not contain an empty component ('//')",
            ComponentProblem::Dot => "it must not contain a '.' or '..' component",
            ComponentProblem::EdgeWhitespace => "no component may begin or end with whitespace",
            ComponentProblem::Slash => "it must be one path component (no '/')",
        }
    }
}

/// The first problem (by [`ComponentProblem`]'s order) that makes `component` unusable as one
/// component of a path in a root, or `None` when it is usable. The one check behind item names,
/// item file names and store paths.
pub fn component_problem(component: &str) -> Option<ComponentProblem> {
    if component.contains('\0') {
        Some(ComponentProblem::Nul)
    } else if component.contains('\\') {
        Some(ComponentProblem::Backslash)
    } else if component.is_empty() {
        Some(ComponentProblem::Empty)
    } else if component == "." || component == ".." {
        Some(ComponentProblem::Dot)
    } else if component.starts_with(char::is_whitespace) || component.ends_with(char::is_whitespace)
    {
        Some(ComponentProblem::EdgeWhitespace)
    } else if component.contains('/') {
        Some(ComponentProblem::Slash)
    } else {
        None
    }
}

/// Checks that `name` can be used as an item name: one usable path component
/// ([`component_problem`]) that holds no control character (newline, …) and no tmp suffix.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] naming the item when it is not such a name.
pub fn validate_item_name(name: &str) -> Result<()> {
    let bad = component_problem(name).is_some()
        || name.chars().any(char::is_control)
        || is_tmp_name(name);
    if bad {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid item name {name:?}: an item name must be one path component (no '/', '..', control characters, edge whitespace or tmp suffix)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_problems_in_order() {
        let cases = [
            ("a", None),
            ("a.b", None),
            ("", Some(ComponentProblem::Empty)),
            (".", Some(ComponentProblem::Dot)),
            ("..", Some(ComponentProblem::Dot)),
            ("a\\b", Some(ComponentProblem::Backslash)),
            ("a\0", Some(ComponentProblem::Nul)),
            (" a", Some(ComponentProblem::EdgeWhitespace)),
            ("a\t", Some(ComponentProblem::EdgeWhitespace)),
            ("a/b", Some(ComponentProblem::Slash)),
            ("\0\\", Some(ComponentProblem::Nul)),
        ];
        for (c, want) in cases {
            assert_eq!(component_problem(c), want, "{c:?}");
        }
    }

    #[test]
    fn item_names() {
        for ok in ["state", "params", "a b", "ünï", "x.y"] {
            assert!(validate_item_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\nb",
            " a",
            "a ",
            "x.orbax-checkpoint-tmp",
        ] {
            let e = validate_item_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn path_builders() {
        assert_eq!(tmp_path("3"), "3.orbax-checkpoint-tmp");
        assert_eq!(metrics_file("3"), "3/metrics/metrics");
        assert_eq!(step_metadata_file("3"), "3/_CHECKPOINT_METADATA");
        assert_eq!(root_metadata_file(), "metadata/_ROOT_METADATA");
    }
}
