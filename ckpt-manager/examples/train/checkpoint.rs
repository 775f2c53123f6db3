//! The training run as checkpoints: what goes into a step, how a run resumes from one, and the
//! loop that trains and saves through [`CheckpointManager`].
//!
//! Each saved step is a `Composite` of three items:
//! - `params` (tensors): the network's `w1`, `b1`, `w2`, `b2`, `f32`;
//! - `opt_state` (tensors): Adam's moments as `mu.<name>` and `nu.<name>` (optax's names);
//! - `train_state` (JSON): [`TrainState`] — step, epoch, position in the epoch's order, the
//!   data-order RNG state and the seed;
//!
//! and carries the validation metrics (`val_loss`, `val_accuracy`, `train_loss`) as the step's
//! metrics, which the manager ranks by `val_loss` for retention and [`CheckpointManager::best_step`].
//! A step saved by a multi-process job holds each parameter as array shards and `opt_state` as
//! JSON instead ([`crate::distributed`]); a resume reads either layout with any process count.
//!
//! Retention is one composed preservation policy ([`retention_policy`]): the newest
//! `max_to_keep`, the best `best_n` by validation loss, and every `keep_period`-th step. So the
//! best step survives, and the newest step always does, which is where a rerun resumes.
//! A preemption (SIGTERM, through [`RunConfig::preemption`]) makes the loop save the current step
//! and stop; the next run resumes there.

use crate::data::Data;
use crate::distributed::{self, Dp};
use crate::model::Params;
use crate::trainer::{TrainState, Trainer};
use ckpt_handlers::{Tensor, TensorMap};
use ckpt_manager::policy::{
    AnyPreservationPolicy, BestN, EveryNSteps, LatestN, PreservationContext, PreservationPolicy,
};
use ckpt_manager::{
    BestMode, CheckpointInfo, CheckpointManager, CheckpointManagerOptions, Composite, ErrorKind,
    ManagerConfig, Metrics, PreemptionSource, SaveOptions, Step,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Any error of a run: manager errors and messages, shown as one line.
pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Name of the parameters item.
pub const PARAMS: &str = "params";
/// Name of the optimizer-state item.
pub const OPT_STATE: &str = "opt_state";
/// Name of the training-state item.
pub const TRAIN_STATE: &str = "train_state";
/// The metric retention ranks by (lower is better).
pub const BEST_METRIC: &str = "val_loss";

/// How a run checkpoints and how far it trains (the command line, parsed).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The checkpoint root: a local path (or any root URI the manager accepts).
    pub dir: String,
    /// Train up to this step.
    pub steps: Step,
    /// Save every this many steps (the final step is always saved).
    pub save_every: u64,
    /// Keep the newest this many checkpoints.
    pub max_to_keep: u64,
    /// Also keep the best this many checkpoints by validation loss.
    pub best_n: u64,
    /// Also keep every step that is a multiple of this; `None` keeps no such steps.
    pub keep_period: Option<u64>,
    /// Seed of a fresh run (initial parameters, data order). A resumed run keeps its own.
    pub seed: u64,
    /// A manager config (JSON or TOML) whose fields override the options built from the fields
    /// above (see `ManagerConfig::apply_to`).
    pub config_file: Option<PathBuf>,
    /// Where a preemption comes from (the program passes SIGTERM's); when it reports one, the
    /// loop saves the current step and stops.
    pub preemption: Option<Arc<dyn PreemptionSource>>,
    /// Resume from this committed step instead of the latest (`--resume-from`): for a root whose
    /// latest step is broken. The later steps stay in the root; saves resume once training
    /// passes the latest step (a save below it is skipped, as the manager skips any save at or
    /// below its latest step).
    pub resume_from: Option<Step>,
    /// Train even when the root holds checkpoints named in another format and none in the
    /// run's (`--ignore-other-steps`); otherwise [`open_manager`] refuses such a root.
    pub ignore_other_steps: bool,
}

/// What a run did, for the caller to report or check.
#[derive(Debug)]
pub struct RunOutcome<'d> {
    /// The step the run resumed from, if it found a checkpoint.
    pub resumed_from: Option<Step>,
    /// The model as the run left it.
    pub trainer: Trainer<'d>,
    /// The step saved when a preemption stopped the run, if one did.
    pub preempted: Option<Step>,
}

/// The run's retention, one composed policy: the newest `max_to_keep`, the best `best_n` by
/// validation loss (lower is better), and every multiple of `keep_period` (if any).
pub fn retention_policy(cfg: &RunConfig) -> AnyPreservationPolicy {
    let mut policies: Vec<Box<dyn PreservationPolicy>> = vec![
        Box::new(LatestN::new(Some(cfg.max_to_keep))),
        Box::new(BestN::new(BEST_METRIC, BestMode::Min, Some(cfg.best_n))),
    ];
    if let Some(period) = cfg.keep_period {
        policies.push(Box::new(EveryNSteps::new(period)));
    }
    AnyPreservationPolicy::new(policies)
}

/// Opens (creating if needed) the checkpoint root `cfg.dir` with the run's options: save every
/// `save_every` steps, [`retention_policy`], `val_loss` (min) as the best metric, the preemption
/// source; then `cfg.config_file`'s fields over them.
///
/// # Errors
/// From the manager: a root that cannot be created or read, invalid options; a config file that
/// cannot be read (the error names the file).
#[allow(
    dead_code,
    reason = "an entry point of tests/train_resume.rs, which include this file"
)]
pub fn open_manager(cfg: &RunConfig) -> Result<CheckpointManager, AnyError> {
    open_manager_in(cfg, None)
}

/// [`open_manager`] as one process of the data-parallel job `dp` (its coordinator given to the
/// manager), or of no job (`None`).
///
/// # Errors
/// As [`open_manager`]; in a job, a process that fails to open makes every process fail.
pub fn open_manager_in(cfg: &RunConfig, dp: Option<&Dp>) -> Result<CheckpointManager, AnyError> {
    let mut root_metadata = Metrics::new();
    root_metadata.insert("program".into(), "ckpt-manager example `train`".into());
    root_metadata.insert(
        "dataset".into(),
        "Wine Quality (red), linfa-datasets".into(),
    );
    root_metadata.insert(
        "model".into(),
        "MLP, one tanh hidden layer, softmax output; Adam".into(),
    );
    let mut options = CheckpointManagerOptions {
        save_interval_steps: Some(cfg.save_every),
        preservation_policy: Some(Arc::new(retention_policy(cfg))),
        best_metric: Some(BEST_METRIC.to_string()),
        best_mode: BestMode::Min,
        cleanup_tmp_directories: true,
        root_metadata: Some(root_metadata),
        preemption: cfg.preemption.clone(),
        // A rerun right after a run was killed on an object store waits out that run's writer
        // lease (30 s at most) instead of failing with Locked. A local root's lock goes with
        // the process that held it: Locked there means a live run, and waiting would not help.
        wait_for_writer_secs: if ckpt_manager::storage::open_local(&cfg.dir)?.is_some() {
            0
        } else {
            45
        },
        coordinator: dp.map(|d| Arc::clone(&d.coordinator)),
        ..Default::default()
    };
    if let Some(file) = &cfg.config_file {
        options = ManagerConfig::from_file(file)?.apply_to(options)?;
        // The library keeps nothing with max_to_keep = 0 (as Orbax, spec §7.2 M2); this
        // program must keep the step a rerun resumes from, as its --max-to-keep flag does.
        if options.max_to_keep == Some(0) && !options.read_only {
            return Err(format!(
                "{}: max_to_keep = 0 would delete every checkpoint, leaving none to resume from; use 1 or more",
                file.display()
            )
            .into());
        }
        // Likewise for any preservation policy: it must keep a lone newest checkpoint (e.g.
        // LatestN with n = 0 keeps nothing).
        if let Some(policy) = &options.preservation_policy {
            let now = chrono::Utc::now();
            let mut metrics = Metrics::new();
            metrics.insert(BEST_METRIC.into(), 1.0.into());
            let lone = [CheckpointInfo::new(1, now, Some(metrics))];
            let kept = policy.keep_flags(&lone, &PreservationContext { now });
            if kept.first() == Some(&false) && !options.read_only {
                return Err(format!(
                    "{}: the preservation policy would delete the newest checkpoint as soon as it is saved, leaving none to resume from",
                    file.display()
                )
                .into());
            }
        }
    }
    if !cfg.ignore_other_steps {
        refuse_other_step_names(&cfg.dir, &options)?;
    }
    Ok(CheckpointManager::open(&cfg.dir, options)?)
}

/// An error when `dir` holds checkpoints named in another format than `options`' (another
/// step prefix, zero padding) and none named in `options`' format: the run would start from
/// scratch beside them instead of resuming (e.g. a rerun without the `--config` that set
/// `step_prefix`). The error names the format found and what to pass. Nothing is written.
///
/// # Errors
/// That refusal; a root that cannot be listed; bad name options.
pub fn refuse_other_step_names(
    dir: &str,
    options: &CheckpointManagerOptions,
) -> Result<(), AnyError> {
    use ckpt_manager::core::{COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
    let store = ckpt_manager::storage::open(dir)?;
    let format = options.name_format()?;
    let mut ours = false;
    // Step-like directory names the run's format does not read: (prefix, name, zero-padded
    // length).
    let mut others: Vec<(Option<String>, String, Option<usize>)> = Vec::new();
    for entry in store.list_dir("")? {
        if entry.kind != ckpt_manager::storage::EntryKind::Dir {
            continue;
        }
        if format.parse_name(&entry.name).is_some() {
            ours = true;
            break;
        }
        let all_digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        let (prefix, digits) = if all_digits(&entry.name) {
            (None, entry.name.as_str())
        } else {
            match entry.name.rsplit_once('_') {
                Some((p, d)) if !p.is_empty() && all_digits(d) => (Some(p.to_string()), d),
                _ => continue,
            }
        };
        let looks_like_a_step = store
            .stat(&format!("{}/{STEP_METADATA_FILE}", entry.name))?
            .is_some()
            || store
                .stat(&format!("{}/{COMMIT_SUCCESS_FILE}", entry.name))?
                .is_some();
        if looks_like_a_step {
            let padded = (digits.len() > 1 && digits.starts_with('0')).then_some(digits.len());
            others.push((prefix, entry.name.clone(), padded));
        }
    }
    if ours || others.is_empty() {
        return Ok(());
    }
    others.sort_by(|a, b| a.1.cmp(&b.1));
    let (prefix, _, _) = &others[0];
    let padded = others
        .iter()
        .filter(|o| &o.0 == prefix)
        .filter_map(|o| o.2)
        .max();
    let mut names: Vec<&str> = others.iter().take(3).map(|o| o.1.as_str()).collect();
    if others.len() > 3 {
        names.push("…");
    }
    let mut config = Vec::new();
    match prefix {
        Some(p) => config.push(format!("step_prefix = {p:?}")),
        None => config.push("no step_prefix".to_string()),
    }
    if let Some(n) = padded {
        config.push(format!("step_format_fixed_length = {n}"));
    }
    Err(format!(
        "{} holds {} checkpoint(s) named in another format ({}) and none named as this run names them ({}); \
         to resume from them, rerun with the --config FILE that wrote them (a manager config with {}); \
         to start a fresh run beside them, pass --ignore-other-steps",
        store.location(""),
        others.len(),
        names.join(", "),
        format.build_name(100),
        config.join(" and ")
    )
    .into())
}

/// The model of the latest checkpoint in `mngr`, or a fresh one from `seed` when there is none.
/// Returns the step resumed from as well.
///
/// # Errors
/// As [`resume_from`] without a step.
#[allow(
    dead_code,
    reason = "an entry point of tests/train_resume.rs, which include this file"
)]
pub fn resume_or_init<'d>(
    mngr: &CheckpointManager,
    data: &'d Data,
    seed: u64,
) -> Result<(Trainer<'d>, Option<Step>), AnyError> {
    resume_from(mngr, data, seed, None, None)
}

/// The model of checkpoint `step` in `mngr` (the latest when `None`; a fresh one from `seed`
/// when the root has no checkpoint), and the step resumed from, as one process of the
/// data-parallel job `dp` (or of none). Reads either layout: a single process's (items
/// `params`, `opt_state` as tensors) or a job's (array shards `params.<name>.shard-<i>`,
/// `opt_state` as JSON; see [`crate::distributed`]), whatever process count wrote it.
///
/// # Errors
/// When `step` is not a checkpoint of the root (a message listing the steps there are); when the
/// checkpoint cannot be restored or does not hold this program's items (a message naming the
/// item). A latest checkpoint that cannot be resumed from (corrupt, no items, not this
/// program's items) gets a message saying how to resume from the step before it
/// (`--resume-from`) or delete it (`ckpt rm`). In a job, as the exchange of the rows read.
pub fn resume_from<'d>(
    mngr: &CheckpointManager,
    data: &'d Data,
    seed: u64,
    step: Option<Step>,
    dp: Option<&Dp>,
) -> Result<(Trainer<'d>, Option<Step>), AnyError> {
    let steps = mngr.all_steps();
    let latest = match step {
        Some(s) if steps.binary_search(&s).is_err() => {
            return Err(format!(
                "--resume-from {s}: {} holds no checkpoint {s}; its checkpoints are {steps:?}",
                mngr.directory()
            )
            .into())
        }
        Some(s) => s,
        None => match steps.last() {
            Some(&l) => l,
            None => return Ok((Trainer::new(data, seed), None)),
        },
    };
    match restore_trainer(mngr, data, seed, latest, dp) {
        Ok(trainer) => Ok((trainer, Some(latest))),
        // The latest checkpoint cannot be resumed from: its data is damaged, it holds no items
        // or not this program's (an empty or stray directory named as a step, an imported
        // step), its handler is unknown. Not for storage errors: those may pass on a retry.
        Err(e) if step.is_none() && !is_transient(&e) => {
            let before = steps.iter().rev().nth(1);
            let hint = match before {
                Some(p) => format!(
                    "to resume from the checkpoint before it, rerun with --resume-from {p} (the later \
                     checkpoints stay), or delete it first with `ckpt rm {} {latest}`",
                    mngr.directory()
                ),
                None => format!(
                    "it is the only checkpoint: delete it with `ckpt rm {} {latest}` to start afresh",
                    mngr.directory()
                ),
            };
            let what = match e.downcast_ref::<ckpt_manager::Error>() {
                Some(ce) if ce.kind() == ErrorKind::Corrupt => "is corrupt and cannot be restored",
                _ => "cannot be resumed from",
            };
            let cause = match e.downcast_ref::<ckpt_manager::Error>() {
                Some(ce) => ce.chain().to_string(),
                None => e.to_string(),
            };
            Err(format!("the latest checkpoint, step {latest}, {what} ({cause}); {hint}").into())
        }
        Err(e) => Err(e),
    }
}

/// Whether `e` is a storage or timing failure that may pass on a retry (not the checkpoint's
/// fault).
fn is_transient(e: &AnyError) -> bool {
    e.downcast_ref::<ckpt_manager::Error>().is_some_and(|ce| {
        matches!(
            ce.kind(),
            ErrorKind::Storage | ErrorKind::Timeout | ErrorKind::Locked
        )
    })
}

/// Restores checkpoint `latest` into a trainer: its training state, parameters and optimizer
/// state, from either layout (a single process's or a job's), as one process of `dp` or of none.
///
/// # Errors
/// When the checkpoint cannot be restored or does not hold this program's items, or they do
/// not fit the model.
fn restore_trainer<'d>(
    mngr: &CheckpointManager,
    data: &'d Data,
    seed: u64,
    latest: Step,
    dp: Option<&Dp>,
) -> Result<Trainer<'d>, AnyError> {
    let sharded = !mngr
        .item_names(latest)?
        .iter()
        .any(|n| n.as_str() == PARAMS);
    let restored = if sharded {
        mngr.restore_items(Some(latest), &[TRAIN_STATE, OPT_STATE])?
    } else {
        mngr.restore(Some(latest))?
    };
    let state: TrainState = restored.json(TRAIN_STATE)?;
    if state.step != latest {
        return Err(format!(
            "checkpoint {latest} holds a training state for step {}",
            state.step
        )
        .into());
    }
    // A template of the right shapes to read the tensors into.
    let like = Trainer::new(data, seed).params;
    let (params, m, v) = if sharded {
        let opt = restored.json_value(OPT_STATE)?;
        let m = distributed::moments_from_json(&opt["mu"], &like, "mu")?;
        let v = distributed::moments_from_json(&opt["nu"], &like, "nu")?;
        let params = match dp {
            Some(dp) => dp.read_params(mngr, latest, &like)?,
            None => distributed::read_params_whole(mngr, latest, &like)?,
        };
        (params, m, v)
    } else {
        let params = params_from_tensors(restored.tensors(PARAMS)?, &like, PARAMS, "")?;
        let opt = restored.tensors(OPT_STATE)?;
        let m = params_from_tensors(opt, &like, OPT_STATE, "mu.")?;
        let v = params_from_tensors(opt, &like, OPT_STATE, "nu.")?;
        (params, m, v)
    };
    Trainer::from_parts(data, params, m, v, state)
        .map_err(|e| format!("checkpoint {latest}: {e}").into())
}

/// The tensors of `params`, each under `prefix` + its name.
///
/// # Errors
/// None in practice (a tensor's size always matches its shape here).
pub fn params_to_tensors(
    params: &Params,
    prefix: &str,
    into: &mut TensorMap,
) -> Result<(), AnyError> {
    for (name, view) in params.tensors() {
        let values: Vec<f32> = view.iter().copied().collect(); // C order
        into.insert(
            format!("{prefix}{name}"),
            Tensor::from_slice::<f32>(view.shape().to_vec(), &values)?,
        );
    }
    Ok(())
}

/// Parameters read from the tensors `prefix` + name of `map` (item `item`), shaped like `like`.
///
/// # Errors
/// A message naming the item and tensor when one is missing, is not `f32`, or has another shape.
pub fn params_from_tensors(
    map: &TensorMap,
    like: &Params,
    item: &str,
    prefix: &str,
) -> Result<Params, AnyError> {
    let mut out = like.clone();
    for (name, mut dst) in out.tensors_mut() {
        let key = format!("{prefix}{name}");
        let t = map
            .get(&key)
            .ok_or_else(|| format!("item {item:?} has no tensor {key:?}"))?;
        if t.shape() != dst.shape() {
            return Err(format!(
                "item {item:?}: tensor {key:?} has shape {:?}, this model needs {:?}",
                t.shape(),
                dst.shape()
            )
            .into());
        }
        let values = t
            .to_vec::<f32>()
            .map_err(|e| format!("item {item:?}: tensor {key:?}: {e}"))?;
        for (d, v) in dst.iter_mut().zip(values) {
            *d = v;
        }
    }
    Ok(out)
}

/// Saves the trainer's current step through `mngr` if the save interval says so or `force`,
/// with the validation metrics; prints one progress line to `out`. Returns whether it saved.
///
/// As one process of the data-parallel job `dp` (its part of the step, see [`Dp::items`]),
/// or of none.
///
/// # Errors
/// From the manager (writing the step), or writing to `out`; in a job, any process's failure
/// (every process fails the same save).
pub fn save_step(
    mngr: &mut CheckpointManager,
    trainer: &Trainer<'_>,
    train_loss: f32,
    force: bool,
    out: &mut dyn Write,
    dp: Option<&Dp>,
) -> Result<bool, AnyError> {
    let step = trainer.state.step;
    if !force && !mngr.should_save(step) {
        return Ok(false);
    }
    // Resumed from an older step (--resume-from), the root may hold this step already: it is
    // kept as it is, never overwritten.
    if force && mngr.all_steps().binary_search(&step).is_ok() {
        writeln!(
            out,
            "step {step:>6}  not saved: {} already holds a checkpoint {step}, kept as it is",
            mngr.directory()
        )?;
        return Ok(false);
    }
    let (val_loss, val_acc) = trainer.validate();
    let mut metrics = Metrics::new();
    metrics.insert(BEST_METRIC.into(), f64::from(val_loss).into());
    metrics.insert("val_accuracy".into(), f64::from(val_acc).into());
    if train_loss.is_finite() {
        // Not when nothing was trained since the run started (a preemption at its first step).
        metrics.insert("train_loss".into(), f64::from(train_loss).into());
    }

    let items = match dp {
        Some(dp) => dp.items(trainer)?,
        None => {
            let mut params = TensorMap::new();
            params_to_tensors(&trainer.params, "", &mut params)?;
            let mut opt_state = TensorMap::new();
            params_to_tensors(&trainer.adam.m, "mu.", &mut opt_state)?;
            params_to_tensors(&trainer.adam.v, "nu.", &mut opt_state)?;
            // The tensors were just built for this save: move them in (no copy on the
            // caller's thread).
            Composite::new()
                .tensors_owned(PARAMS, params)
                .tensors_owned(OPT_STATE, opt_state)
                .json(TRAIN_STATE, &trainer.state)
        }
    };

    let before = mngr.all_steps();
    let saved = mngr.save(
        step,
        items,
        SaveOptions::default().metrics(metrics).force(force),
    )?;
    // The save commits in the background; wait here so the progress line can report what
    // retention deleted.
    mngr.wait_until_finished()?;
    let after = mngr.all_steps();
    let deleted: Vec<Step> = before
        .iter()
        .chain(saved.then_some(&step))
        .copied()
        .filter(|s| !after.contains(s))
        .collect();

    write!(
        out,
        "step {step:>6}  epoch {:>4}  train_loss {train_loss:.4}  val_loss {val_loss:.4}  val_acc {val_acc:.3}",
        trainer.state.epoch
    )?;
    if saved {
        write!(out, "  saved step {step}")?;
    }
    if !deleted.is_empty() {
        write!(out, "  deleted steps {deleted:?}")?;
    }
    writeln!(out, "  kept {after:?}")?;
    Ok(saved)
}

/// Trains until step `until`, saving at the manager's interval and — when `final_save` — at
/// `until` itself. Progress goes to `out`.
///
/// Before each step it asks `preemption`: once that reports a preemption, the current step is
/// saved (forced, unless it is already the latest checkpoint), `preempted: saved step S` is
/// printed and the loop stops early, returning `Some(S)`. Otherwise it returns `None`.
///
/// # Errors
/// As [`save_step`].
#[allow(
    dead_code,
    reason = "an entry point of tests/train_resume.rs, which include this file"
)]
pub fn train_until(
    mngr: &mut CheckpointManager,
    trainer: &mut Trainer<'_>,
    until: Step,
    final_save: bool,
    preemption: Option<&dyn PreemptionSource>,
    out: &mut dyn Write,
) -> Result<Option<Step>, AnyError> {
    train_until_in(mngr, trainer, until, final_save, preemption, out, None)
}

/// [`train_until`] as one process of the data-parallel job `dp` (or of none): each step's
/// gradient is exchanged ([`Dp::train_step`]), and the preemption asked of the manager, which
/// agrees it between the processes (a SIGTERM reaching any one makes all save the same step
/// and stop).
///
/// # Errors
/// As [`train_until`]; in a job, the gradient exchange.
pub fn train_until_in(
    mngr: &mut CheckpointManager,
    trainer: &mut Trainer<'_>,
    until: Step,
    final_save: bool,
    preemption: Option<&dyn PreemptionSource>,
    out: &mut dyn Write,
    dp: Option<&Dp>,
) -> Result<Option<Step>, AnyError> {
    let (mut loss_sum, mut loss_count) = (0.0_f64, 0_u32);
    let mut last_loss = f32::NAN;
    loop {
        let step = trainer.state.step;
        let preempted = match dp {
            Some(_) => preemption.is_some() && mngr.reached_preemption(step),
            None => preemption.is_some_and(|p| p.reached_preemption(step)),
        };
        if preempted {
            if mngr.latest_step() != Some(step) {
                let mean = if loss_count > 0 {
                    (loss_sum / f64::from(loss_count)) as f32
                } else {
                    last_loss
                };
                save_step(mngr, trainer, mean, true, out, dp)?;
            }
            mngr.wait_until_finished()?;
            writeln!(out, "preempted: saved step {step}")?;
            return Ok(Some(step));
        }
        if step >= until {
            return Ok(None);
        }
        last_loss = match dp {
            Some(dp) => dp.train_step(trainer)?,
            None => trainer.train_step(),
        };
        loss_sum += f64::from(last_loss);
        loss_count += 1;
        let step = trainer.state.step;
        let mean = (loss_sum / f64::from(loss_count)) as f32;
        if save_step(mngr, trainer, mean, final_save && step == until, out, dp)? {
            (loss_sum, loss_count) = (0.0, 0);
            last_loss = mean;
        }
    }
}

/// The whole program: open the root, resume from its latest step or start afresh, train to
/// `cfg.steps`, report the best step by validation loss.
///
/// # Errors
/// As [`open_manager`], [`resume_or_init`], [`train_until`]; closing the manager.
#[allow(
    dead_code,
    reason = "an entry point of tests/train_resume.rs, which include this file"
)]
pub fn run<'d>(
    cfg: &RunConfig,
    data: &'d Data,
    out: &mut dyn Write,
) -> Result<RunOutcome<'d>, AnyError> {
    run_in(cfg, data, out, None)
}

/// [`run`] as one process of the data-parallel job `dp` (or of none).
///
/// # Errors
/// As [`run`]; in a job, any process's failure of a save or an exchange.
pub fn run_in<'d>(
    cfg: &RunConfig,
    data: &'d Data,
    out: &mut dyn Write,
    dp: Option<&Dp>,
) -> Result<RunOutcome<'d>, AnyError> {
    let mut mngr = open_manager_in(cfg, dp)?;
    let (mut trainer, resumed_from) = resume_from(&mngr, data, cfg.seed, cfg.resume_from, dp)?;
    match resumed_from {
        Some(step) => {
            let s = &trainer.state;
            writeln!(
                out,
                "resumed from step {step} (epoch {}, position {} of {}, seed {})",
                s.epoch,
                s.position,
                data.n_train(),
                s.data_seed
            )?;
            let later: Vec<Step> = mngr.all_steps().into_iter().filter(|&l| l > step).collect();
            if !later.is_empty() {
                writeln!(
                    out,
                    "note: resumed from step {step} as asked (--resume-from); the later checkpoints {later:?} stay, and saves resume after step {}",
                    later[later.len() - 1]
                )?;
            }
            if s.data_seed != cfg.seed {
                writeln!(
                    out,
                    "note: the checkpoint's seed {} is kept; --seed {} applies to fresh runs only",
                    s.data_seed, cfg.seed
                )?;
            }
        }
        None => writeln!(
            out,
            "no checkpoint in {}: starting from scratch (seed {})",
            mngr.directory(),
            cfg.seed
        )?,
    }

    let mut preempted = None;
    if trainer.state.step >= cfg.steps {
        match resumed_from {
            Some(latest) => writeln!(
                out,
                "nothing to do: the latest checkpoint is step {latest}, at or past --steps {}",
                cfg.steps
            )?,
            None => writeln!(out, "nothing to do: --steps {}", cfg.steps)?,
        }
    } else {
        preempted = train_until_in(
            &mut mngr,
            &mut trainer,
            cfg.steps,
            true,
            cfg.preemption.as_deref(),
            out,
            dp,
        )?;
    }

    match mngr.best_step() {
        Some(best) => {
            let loss = mngr
                .metrics(best)?
                .and_then(|m| m.get(BEST_METRIC).and_then(serde_json::Value::as_f64));
            match loss {
                Some(loss) => writeln!(
                    out,
                    "best step by {BEST_METRIC}: {best} ({BEST_METRIC} {loss:.4})"
                )?,
                None => writeln!(out, "best step by {BEST_METRIC}: {best}")?,
            }
        }
        None => writeln!(out, "no checkpoint has a {BEST_METRIC}")?,
    }
    let (val_loss, val_acc) = trainer.validate();
    writeln!(
        out,
        "final step {}: val_loss {val_loss:.4}  val_acc {val_acc:.3}  checkpoints {:?}",
        trainer.state.step,
        mngr.all_steps()
    )?;
    mngr.close()?;
    Ok(RunOutcome {
        resumed_from,
        trainer,
        preempted,
    })
}
