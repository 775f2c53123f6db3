//! Copying checkpoints between stores (`ckpt cp`): one step, or every committed step of a root,
//! from any store to any other (local disk to S3 and back), each step committed at the
//! destination with the destination's own commit protocol. ckpt's own; Orbax has no copy.
//!
//! A step is copied as: `prepare` at the destination (atomic rename: a fresh
//! `<name>.orbax-checkpoint-tmp/`; commit file: `<name>/` in place) → every file of the step
//! except its top-level `commit_success.txt` (items first, then `_CHECKPOINT_METADATA`, then the
//! checksum manifest `_CKPT_CHECKSUMS`, which is the source's, unchanged) → `commit` (the
//! destination writes its own `commit_success.txt`, naming the destination). Each source file
//! that has an entry in the source's manifest is checked against it as it is read; a mismatch
//! stops the copy with a `Corrupt` error naming the source file, and the destination's working
//! directory is removed, so no partial step is ever visible there.
//!
//! Files are read whole into memory one at a time (memory held: the largest file of the step).

use crate::listing::committed_steps;
use ckpt_core::{
    Error, ErrorKind, NameFormat, Result, Step, COMMIT_SUCCESS_FILE, LEGACY_ROOT_METADATA_FILE,
    ROOT_METADATA_DIR, ROOT_METADATA_FILE, STEP_CLAIM_FILE, STEP_METADATA_FILE,
};
use ckpt_storage::{
    join_path, protocol_for, AtomicityMode, ChecksumManifest, CommitProtocol, FileStatus,
    StepClaim, Store, MANIFEST_FILE,
};
use std::sync::Arc;

/// Where a copy reads and writes, and how it recognises steps.
#[derive(Debug, Clone)]
pub struct CopySpec {
    /// The source store (its root is the checkpoint root).
    pub src: Arc<dyn Store>,
    /// The destination store (its root is the destination checkpoint root).
    pub dst: Arc<dyn Store>,
    /// How step directories are named (the same at both ends: a step keeps its directory name).
    pub format: Arc<dyn NameFormat>,
    /// How the source's steps were committed: `Auto` (the default) follows the source store's
    /// capabilities, as a manager opening it would.
    pub src_atomicity: AtomicityMode,
    /// How steps are committed at the destination: `Auto` (the default) follows the destination
    /// store's capabilities (commit file on object stores, atomic rename on local disk).
    pub dst_atomicity: AtomicityMode,
}

/// What a copy reports as it goes, for a progress bar or log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyEvent {
    /// Before anything is copied: the whole job, counted first (the steps to copy, their files
    /// and bytes; steps already at the destination are not counted), so a progress bar's total
    /// and rate are right from the start.
    Planned {
        /// Steps to copy.
        steps: usize,
        /// Files to copy in all (commit files excluded).
        files: usize,
        /// Their total size in bytes.
        bytes: u64,
    },
    /// A step's copy begins: how many files and bytes it holds.
    StepStarted {
        /// The step.
        step: Step,
        /// Files to copy (the step's own `commit_success.txt` excluded).
        files: usize,
        /// Their total size in bytes.
        bytes: u64,
    },
    /// One file was copied (and verified, when the manifest lists it).
    FileCopied {
        /// The step.
        step: Step,
        /// The file's path relative to the step directory.
        path: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The step is committed at the destination.
    StepCommitted {
        /// The step.
        step: Step,
    },
    /// The step was not copied: the destination already holds it committed (root copies only;
    /// copying one step that exists is an error).
    StepSkipped {
        /// The step.
        step: Step,
    },
    /// The root metadata was copied (the destination had none).
    RootMetadataCopied,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySummary {
    /// Steps copied and committed at the destination, ascending.
    pub copied: Vec<Step>,
    /// Steps skipped because the destination already held them committed, ascending.
    pub skipped: Vec<Step>,
    /// Bytes of step files copied (commit files excluded).
    pub bytes: u64,
    /// Whether the root metadata was copied.
    pub root_metadata_copied: bool,
}

impl CopySpec {
    /// A spec with `Auto` atomicity at both ends and the standard step names (`<step>`).
    pub fn new(src: Arc<dyn Store>, dst: Arc<dyn Store>) -> Self {
        CopySpec {
            src,
            dst,
            format: Arc::new(ckpt_core::StandardNameFormat::default()),
            src_atomicity: AtomicityMode::Auto,
            dst_atomicity: AtomicityMode::Auto,
        }
    }

    fn protocols(&self) -> Result<(Arc<dyn CommitProtocol>, Arc<dyn CommitProtocol>)> {
        Ok((
            protocol_for(self.src_atomicity, self.src.capabilities())?,
            protocol_for(self.dst_atomicity, self.dst.capabilities())?,
        ))
    }
}

/// Copies every committed step of the source root (ascending), skipping those the destination
/// already holds committed, then the root metadata when the destination has none.
///
/// # Errors
/// As [`copy_step`], for the first step that fails (the steps before it stay copied);
/// `InvalidConfig` for an atomicity mode a store cannot do.
pub fn copy_root(spec: &CopySpec, progress: &mut dyn FnMut(&CopyEvent)) -> Result<CopySummary> {
    let (src_protocol, dst_protocol) = spec.protocols()?;
    let _guard = guard_destination(spec)?;
    let steps = committed_steps(
        spec.src.as_ref(),
        src_protocol.as_ref(),
        spec.format.as_ref(),
    )?;
    let mut summary = CopySummary::default();
    let mut plans = Vec::new();
    for (step, name) in steps {
        if committed_at(spec.dst.as_ref(), dst_protocol.as_ref(), &name)? {
            progress(&CopyEvent::StepSkipped { step });
            summary.skipped.push(step);
            continue;
        }
        plans.push(plan_step(spec.src.as_ref(), step, &name)?);
    }
    progress(&planned(&plans));
    for plan in &plans {
        summary.bytes += copy_dir(spec, dst_protocol.as_ref(), plan, progress)?;
        summary.copied.push(plan.step);
    }
    summary.root_metadata_copied = copy_root_metadata(spec.src.as_ref(), spec.dst.as_ref())?;
    if summary.root_metadata_copied {
        progress(&CopyEvent::RootMetadataCopied);
    }
    Ok(summary)
}

/// Copies one committed step (and the root metadata when the destination has none).
///
/// # Errors
/// `NotFound` when the source has no committed `step`; `AlreadyExists` when the destination
/// already holds it committed (nothing is overwritten); `Corrupt` naming the source file whose
/// contents do not match the source's checksum manifest (the destination's working directory is
/// then removed); store errors of either side.
pub fn copy_step(
    spec: &CopySpec,
    step: Step,
    progress: &mut dyn FnMut(&CopyEvent),
) -> Result<CopySummary> {
    let (src_protocol, dst_protocol) = spec.protocols()?;
    let steps = committed_steps(
        spec.src.as_ref(),
        src_protocol.as_ref(),
        spec.format.as_ref(),
    )?;
    let Some(name) = steps.get(&step) else {
        // Checked before the destination is created: a failed copy leaves nothing behind.
        return Err(
            Error::not_found(format!("the source has no committed step {step}"))
                .with_step(step)
                .with_path(spec.src.location("")),
        );
    };
    let _guard = guard_destination(spec)?;
    if committed_at(spec.dst.as_ref(), dst_protocol.as_ref(), name)? {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("the destination already holds step {step}; nothing was copied"),
        )
        .with_step(step)
        .with_path(spec.dst.location(name)));
    }
    let plan = plan_step(spec.src.as_ref(), step, name)?;
    progress(&planned(std::slice::from_ref(&plan)));
    let bytes = copy_dir(spec, dst_protocol.as_ref(), &plan, progress)?;
    let root_metadata_copied = copy_root_metadata(spec.src.as_ref(), spec.dst.as_ref())?;
    if root_metadata_copied {
        progress(&CopyEvent::RootMetadataCopied);
    }
    Ok(CopySummary {
        copied: vec![step],
        skipped: Vec::new(),
        bytes,
        root_metadata_copied,
    })
}

/// The destination root's writer guard (its local lock or writer lease), held for the whole
/// copy, as a manager writing there holds it: a copy into a root a live job writes is `Locked`
/// instead of committing steps under the job's feet. Refuses a destination that is a step
/// directory. Creates the destination root.
fn guard_destination(spec: &CopySpec) -> Result<Option<Box<dyn ckpt_storage::WriterLock>>> {
    crate::open_root::refuse_step_dir_as_root(spec.dst.as_ref())?;
    spec.dst.create_dir("")?;
    let options = crate::CheckpointManagerOptions {
        wait_for_writer_secs: 0,
        ..Default::default()
    };
    crate::open_root::take_writer_guard(&spec.dst, &options)
}

/// Whether `name` exists at the destination and is committed there.
fn committed_at(dst: &dyn Store, protocol: &dyn CommitProtocol, name: &str) -> Result<bool> {
    Ok(dst.stat(name)?.is_some() && protocol.is_committed(dst, "", name)?)
}

/// One step's copy, counted before anything is copied.
struct StepPlan {
    step: Step,
    /// The step directory's name (the same at both ends).
    name: String,
    /// Its files, relative to it, in the order they are copied.
    files: Vec<String>,
    /// Their total size in bytes.
    bytes: u64,
}

/// The [`CopyEvent::Planned`] of `plans`.
fn planned(plans: &[StepPlan]) -> CopyEvent {
    CopyEvent::Planned {
        steps: plans.len(),
        files: plans.iter().map(|p| p.files.len()).sum(),
        bytes: plans.iter().map(|p| p.bytes).sum(),
    }
}

/// Lists step directory `name` of `src` and sizes its files (one listing, one stat per file).
fn plan_step(src: &dyn Store, step: Step, name: &str) -> Result<StepPlan> {
    // The step metadata is not in the checksum manifest: checked here, so that a step whose
    // metadata does not parse is not copied as if it were whole.
    crate::listing::read_step_metadata(src, name).map_err(|e| {
        Error::corrupt(format!(
            "step {step} is not copied: its {STEP_METADATA_FILE} does not parse"
        ))
        .with_step(step)
        .with_path(src.location(&join_path(name, STEP_METADATA_FILE)))
        .with_source(e)
    })?;
    let mut files: Vec<String> = src
        .list_recursive(name)?
        .into_iter()
        .filter(|p| p != COMMIT_SUCCESS_FILE && p != STEP_CLAIM_FILE)
        .collect();
    // Items first, then the step metadata, then the manifest; commit_success.txt by the commit.
    files.sort_by_key(|p| {
        let rank = match p.as_str() {
            STEP_METADATA_FILE => 1,
            MANIFEST_FILE => 2,
            _ => 0,
        };
        (rank, p.clone())
    });
    let mut bytes = 0u64;
    for f in &files {
        if let Some(m) = src.stat(&join_path(name, f))? {
            bytes += m.size;
        }
    }
    Ok(StepPlan {
        step,
        name: name.to_string(),
        files,
        bytes,
    })
}

/// Copies the step directory of `plan`; returns the bytes copied. On failure after `prepare`,
/// the working directory is removed (best effort; a failure to remove it is logged).
fn copy_dir(
    spec: &CopySpec,
    dst_protocol: &dyn CommitProtocol,
    plan: &StepPlan,
    progress: &mut dyn FnMut(&CopyEvent),
) -> Result<u64> {
    let (step, name, files) = (plan.step, plan.name.as_str(), &plan.files);
    let src = spec.src.as_ref();
    let dst = spec.dst.as_ref();
    let manifest = ChecksumManifest::read_from(src, name).map_err(|e| e.with_step(step))?;
    progress(&CopyEvent::StepStarted {
        step,
        files: files.len(),
        bytes: plan.bytes,
    });
    // A copy holds no writer guard of the destination: its claim keeps it apart from a live
    // writer of the same step there, and its failure removes only what it wrote.
    let claim = StepClaim {
        token: ckpt_storage::writer_token(),
        exclusive: false,
    };
    let working = dst_protocol
        .prepare_step(dst, name, &claim)
        .map_err(|e| e.with_step(step))?;
    let copied = (|| -> Result<u64> {
        let mut bytes = 0u64;
        for f in files {
            let from = join_path(name, f);
            let data = src.read(&from)?;
            if let Some(expected) = manifest.as_ref().and_then(|m| m.get(f)) {
                let status = expected.check(&data);
                if status != FileStatus::Ok {
                    let location = src.location(&from);
                    return Err(Error::corrupt(format!(
                        "{location} does not match its checksum ({MANIFEST_FILE}): {status}; \
                         nothing of step {step} was committed at the destination"
                    ))
                    .with_path(location));
                }
            }
            dst.write(&join_path(&working, f), &data)?;
            bytes += data.len() as u64;
            progress(&CopyEvent::FileCopied {
                step,
                path: f.clone(),
                bytes: data.len() as u64,
            });
        }
        dst_protocol.commit_step(dst, &working, name, &claim)?;
        Ok(bytes)
    })();
    match copied {
        Ok(bytes) => {
            progress(&CopyEvent::StepCommitted { step });
            Ok(bytes)
        }
        Err(e) => {
            if let Err(cleanup) = dst_protocol.abandon_step(dst, &working, name, &claim) {
                tracing::warn!(
                    dir = %dst.location(&working),
                    error = %cleanup,
                    "could not remove the working directory of a failed copy"
                );
            }
            Err(e.with_step(step))
        }
    }
}

/// Copies `metadata/_ROOT_METADATA` (or the legacy `metadata/metadata`) when the source has one
/// and the destination has neither; returns whether it did. Never overwrites: a conditional
/// create, so a concurrent writer of the destination's root metadata wins.
fn copy_root_metadata(src: &dyn Store, dst: &dyn Store) -> Result<bool> {
    let names = [ROOT_METADATA_FILE, LEGACY_ROOT_METADATA_FILE];
    for n in names {
        if dst.stat(&join_path(ROOT_METADATA_DIR, n))?.is_some() {
            return Ok(false);
        }
    }
    for n in names {
        let path = join_path(ROOT_METADATA_DIR, n);
        match src.read(&path) {
            Ok(data) => {
                return match dst.write_if_absent(&path, &data) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
