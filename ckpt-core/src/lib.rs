//! Core types of ckpt, a checkpoint manager modelled on Orbax's `CheckpointManager`.
//!
//! This crate holds what every other ckpt crate shares and does no I/O:
//! - [`Step`], [`CheckpointInfo`] and [`Metrics`]: what a policy sees of a checkpoint;
//! - [`Error`] and [`ErrorKind`]: the one error type of the workspace, and [`ErrorChain`] to
//!   print an error with its causes;
//! - [`StepMetadata`] and [`RootMetadata`]: Orbax's `_CHECKPOINT_METADATA` and `_ROOT_METADATA`
//!   schemas, read and written byte for byte as Orbax does (spec §1.5–§1.6);
//! - [`pyjson`]: JSON written as Python's `json.dumps` writes it, and read leniently (NaN, Infinity);
//! - [`NameFormat`], [`StandardNameFormat`], [`CompositeNameFormat`]: step directory names (spec §1.2);
//! - [`Clock`], [`SystemClock`], [`ManualClock`]: injectable time, so time-based rules are testable;
//! - [`layout`]: every on-disk name of a root (step metadata, commit files, tmp suffix, root
//!   metadata, metrics, checksums, writer lock and lease) with the path builders over them, and
//!   the one check of a name component that item names, item files and store paths share.
#![deny(missing_docs)]
// docs.rs (`cfg(docsrs)`, see Cargo.toml) marks items behind a Cargo feature with a badge
// (`doc_cfg`, which took in `doc_auto_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod error;
mod info;
pub mod layout;
mod metadata;
mod name_format;
pub mod pyjson;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, ErrorChain, ErrorKind, Result};
pub use info::{CheckpointInfo, Metrics, Step};
pub use layout::{
    commit_success_text, is_tmp_name, validate_item_name, COMMIT_SUCCESS_FILE, DEFAULT_ITEM_NAME,
    LEGACY_ROOT_METADATA_FILE, METRICS_ITEM_NAME, ROOT_METADATA_DIR, ROOT_METADATA_FILE,
    STEP_CLAIM_FILE, STEP_METADATA_FILE, TMP_DIR_SUFFIX,
};
pub use metadata::{ItemHandlers, RootMetadata, StepMetadata};
pub use name_format::{CompositeNameFormat, NameFormat, StandardNameFormat};

/// The examples of this crate's README.md, run as doctests so they stay true to the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
