//! ckpt's `CheckpointManager`: an Orbax-compatible checkpoint manager for Rust training loops.
//!
//! ```no_run
//! use ckpt_manager::{BestMode, CheckpointManager, Composite, SaveOptions};
//! # fn main() -> ckpt_core::Result<()> {
//! # let params = ckpt_handlers::TensorMap::new();
//! # #[derive(serde::Serialize, serde::Deserialize)] struct State { epoch: u32 }
//! # let state = State { epoch: 0 };
//! let mut mngr = CheckpointManager::builder("runs/exp1")
//!     .max_to_keep(3)
//!     .keep_period(1000)
//!     .best_metric("val_loss", BestMode::Min)
//!     .build()?;
//! let mut metrics = serde_json::Map::new();
//! metrics.insert("val_loss".into(), 0.25.into());
//! mngr.save(100, Composite::new().tensors("params", &params).json("state", &state),
//!           SaveOptions::default().metrics(metrics))?;
//! let restored = mngr.restore(None)?;            // the latest committed step
//! let state: State = restored.json("state")?;
//! # Ok(()) }
//! ```
//!
//! The crates underneath are re-exported: [`core`], [`policy`], [`storage`], [`handlers`].
//!
//! # Features
//! All on by default; a library user can depend with `default-features = false` plus the ones
//! it needs, and then pulls no command-line or HTTP crate.
//! - `latest`, `interval`, `best`, `time`, `custom`: the preservation-policy families of
//!   `ckpt-policy` (`LatestN`; `EveryNSteps`; `BestN`; `EveryNSeconds`/`LatestDuration`;
//!   `CustomSteps`). A config naming a family that is off is `InvalidConfig`.
//! - `sigterm`: `SigtermPreemption` (signal-hook).
//! - `s3`, `gcs`, `azblob`: the object-store backends of `ckpt-storage` (`s3://`, `gs://`,
//!   `azblob://` roots); without one, such a root is `Unsupported` naming the feature.
//! - `config`: `ManagerConfig` and `preservation_policy_from_*` (TOML and JSON files; toml).
//! - `cli`: the `ckpt` tool and the `train` example (clap, indicatif, unicode-width); implies
//!   `config` and every backend.
//! - `etcd` (off by default, not in `cli`): `coordination::EtcdCoordinator`, multi-process
//!   coordination on an etcd server (etcd-client; building it needs `protoc`).
#![deny(missing_docs)]
// docs.rs (`cfg(docsrs)`, see Cargo.toml) marks items behind a Cargo feature with a badge
// (`doc_cfg`, which took in `doc_auto_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cli")]
pub mod cli;
mod composite;
#[cfg(feature = "config")]
mod config;
pub mod coordination;
pub mod copy;
mod deleter;
pub mod export;
mod listing;
#[cfg(feature = "cli")]
pub mod logging;
mod manager;
mod open_root;
mod option_list;
mod options;
mod preemption;
mod progress;
mod restored;
mod retention;
mod save;
mod save_plan;
pub mod sharded;
#[cfg(feature = "sigterm")]
mod sigterm;
mod staging;
mod verify;
mod watch;

pub use ckpt_core as core;
pub use ckpt_handlers as handlers;
pub use ckpt_policy as policy;
pub use ckpt_storage as storage;

pub use ckpt_core::{CheckpointInfo, Error, ErrorKind, Metrics, Result, Step};
pub use ckpt_policy::BestMode;
pub use composite::{Composite, SaveOptions};
#[cfg(feature = "config")]
pub use config::{
    preservation_policy_from_file, preservation_policy_from_json_str,
    preservation_policy_from_toml_str, ManagerConfig,
};
pub use manager::{CheckpointManager, SaveOutcome};
pub use options::{CheckpointManagerBuilder, CheckpointManagerOptions};
pub use preemption::{ManualPreemption, PreemptionSource};
pub use progress::{Operation, Progress, ProgressFn, ProgressObserver};
pub use restored::Restored;
pub use retention::RetentionDecision;
pub use sharded::ArrayShard;
#[cfg(feature = "sigterm")]
pub use sigterm::{SigtermOptions, SigtermPreemption};
pub use staging::StagingStats;
pub use verify::{verify_step, StepProblem, VerifyReport};
pub use watch::{wait_for_new_checkpoint, StepWatcher};

/// The examples of this crate's README.md, run as doctests so they stay true to the API.
#[cfg(all(doctest, feature = "best"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
