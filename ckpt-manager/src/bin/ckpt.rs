//! `ckpt`: inspect checkpoint roots written by ckpt or by Orbax.
//!
//! ```text
//! ckpt ls ROOT [--json]            the committed steps: commit time, items, metrics; latest marked
//! ckpt show ROOT STEP [--json]     one step's metadata and items (JSON items with their value)
//! ckpt gc ROOT --policy FILE [--dry-run] [--json] [--allow-missing-metric] [--allow-empty]
//!                                  apply a preservation policy (JSON or TOML file): each step
//!                                  kept or deleted, with the policy's reason; a policy ranking
//!                                  by a metric no step has is refused unless
//!                                  --allow-missing-metric, one keeping no step unless
//!                                  --allow-empty
//! ckpt verify ROOT [STEP] [--checksums-only]
//!                                  check every file against the step's checksum manifest and
//!                                  restore each item as `restore` would (not with
//!                                  --checksums-only)
//! ckpt cp SRC DST [--step N]       copy a root (or one step) to another store, each step
//!                                  committed at DST with DST's protocol, checksums verified
//! ckpt rm ROOT STEP... [--yes]     delete steps (asks on a terminal; --yes needed otherwise)
//! ```
//! ROOT, SRC and DST are local paths, `file:///…`, `memory://`, or object-store URIs
//! (`s3://bucket/prefix`, configured from the `AWS_*` environment; `gs://…`, `azblob://…`).
//! `ls`, `show`, `verify` and `gc --dry-run` open the root read-only and change nothing in it;
//! `gc` deletes exactly the steps the policy does not keep (never a directory that is not a
//! step), `rm` exactly the steps named. Every
//! command takes `--step-prefix P` and `--step-format-fixed-length N` for roots whose step
//! directories are named that way. Errors print one line and exit 1.

use ckpt_manager::core::{ErrorKind, Step};
use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Error, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` that ends the program quietly when stdout is closed (`ckpt ls | head`), instead of
/// panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect Orbax-compatible checkpoint roots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the committed steps of a root.
    Ls {
        #[command(flatten)]
        root: RootArgs,
    },
    /// Show one step: its metadata, metrics and items.
    Show {
        #[command(flatten)]
        root: RootArgs,
        /// The step to show.
        #[arg(allow_hyphen_values = true)]
        step: String,
    },
    /// Apply a preservation policy to a root: print each step kept or deleted, with the reason.
    Gc {
        #[command(flatten)]
        root: RootArgs,
        /// The policy, as JSON (a .json file) or TOML (a .toml file), e.g.
        /// {"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}]}.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Only print what the policy decides; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply a policy that ranks by a metric no step has although steps have metrics
        /// (refused by default: a misspelt metric would delete the best steps).
        #[arg(long)]
        allow_missing_metric: bool,
        /// Apply a policy that keeps none of the root's steps (refused by default: it would
        /// delete every step).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Check every file of a step (or of every step) against its recorded checksums, and
    /// restore each item as `restore` would, so that "ok" means the step restores.
    Verify {
        #[command(flatten)]
        root: RootArgs,
        /// Only this step (default: every committed step).
        #[arg(allow_hyphen_values = true)]
        step: Option<String>,
        /// Only check the files against their checksums and the step metadata; do not restore
        /// the items (faster, and reads each file once, but a file whose checksum matches and
        /// that its handler cannot read passes).
        #[arg(long)]
        checksums_only: bool,
    },
    /// Delete steps of a root, through the checkpoint manager (each step hidden, then removed).
    /// On a terminal it asks for each step; otherwise --yes is required.
    Rm {
        #[command(flatten)]
        root: RootArgs,
        /// The steps to delete.
        #[arg(required = true)]
        steps: Vec<String>,
        /// Delete without asking (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Copy a root, or one step, to another store (local disk, S3, ...): each step is committed
    /// at the destination with the destination's commit protocol, and every source file with a
    /// checksum is verified as it is read. Committed destination steps are never overwritten
    /// (skipped for a root copy; an error with --step). The root metadata is copied when the
    /// destination has none.
    Cp {
        #[command(flatten)]
        root: RootArgs,
        /// The destination root: a local path or a URI (s3://bucket/prefix, ...).
        dst: String,
        /// Copy only this step.
        #[arg(long, allow_hyphen_values = true)]
        step: Option<String>,
    },
    /// Write every array of a tensor-holding item (an Orbax pytree in any layout, or a
    /// ckpt.tensors item) into one safetensors file; keys are the key paths joined by `.`
    /// (`params.dense.kernel`), scalars are 0-d tensors.
    Export {
        #[command(flatten)]
        root: RootArgs,
        /// The step to export.
        #[arg(allow_hyphen_values = true)]
        step: String,
        /// The safetensors file to write.
        out: PathBuf,
        /// The item (default: the step's only tensor-holding item).
        #[arg(long)]
        item: Option<String>,
    },
    /// Commit a new step holding the arrays of a safetensors file: as an Orbax pytree (nested
    /// dicts rebuilt from the dotted names; Orbax restores it) or as a ckpt.tensors item.
    Import {
        /// The safetensors file to read.
        input: PathBuf,
        #[command(flatten)]
        root: RootArgs,
        /// The new step.
        step: String,
        /// The item name.
        #[arg(long, default_value = "default")]
        item: String,
        /// How to store the arrays: `orbax` (StandardSave, OCDBT + zarr) or `ckpt`
        /// (ckpt.tensors).
        #[arg(long, default_value = "orbax", value_parser = ["orbax", "ckpt"])]
        format: String,
    },
}

#[derive(Args)]
struct RootArgs {
    /// The checkpoint root: a local path, file:///…, memory://, or s3://bucket/prefix (gs://…,
    /// azblob://…).
    root: String,
    /// Step directories are named `<PREFIX>_<step>`.
    #[arg(long)]
    step_prefix: Option<String>,
    /// Step numbers in directory names are zero-padded to this many digits.
    #[arg(long)]
    step_format_fixed_length: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls { root } => ls(&root),
        Command::Show { root, step } => show(&root, &step),
        Command::Gc {
            root,
            policy,
            dry_run,
            allow_missing_metric,
            allow_empty,
        } => gc(&root, &policy, dry_run, allow_missing_metric, allow_empty),
        Command::Verify {
            root,
            step,
            checksums_only,
        } => verify(&root, step.as_deref(), checksums_only),
        Command::Cp { root, dst, step } => cp(&root, &dst, step.as_deref()),
        Command::Rm { root, steps, yes } => rm(&root, &steps, yes),
        Command::Export {
            root,
            step,
            out,
            item,
        } => export(&root, &step, &out, item.as_deref()),
        Command::Import {
            input,
            root,
            step,
            item,
            format,
        } => import(&input, &root, &step, &item, &format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn parse_step(step: &str) -> Result<Step> {
    let digits_only = !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit());
    digits_only
        .then(|| step.parse().ok())
        .flatten()
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "step must be a non-negative integer (decimal digits only), got {step:?}"
            ))
        })
}

/// What restoring one item of a step as `restore` would gave, for `ckpt verify`.
enum ItemCheck {
    /// The item restores.
    Restores,
    /// It does not: the step is broken.
    Fails(String),
    /// This program cannot restore it (an Orbax tensorstore format, a handler it does not link,
    /// no handler recorded): not checked, not counted as bad.
    NotChecked(String),
}

/// `ckpt verify`: re-reads every file recorded in each step's `_CKPT_CHECKSUMS`, checks the step
/// metadata, and (unless `checksums_only`) restores each item of each step as `restore` would
/// (its handler from the step metadata, checksums verified), one item at a time; prints each bad
/// file and each item that does not restore, and exits 1 (a `Corrupt` error naming them) when
/// there is one. Steps without checksums (written by Orbax) are reported as such and are not
/// errors; items this program cannot restore (`Unsupported`: tensorstore formats, handlers not
/// linked in; or no handler recorded) are reported as not checked.
fn verify(args: &RootArgs, step: Option<&str>, checksums_only: bool) -> Result<()> {
    let mngr = open(args)?;
    let step_given = step;
    let steps = match step {
        Some(s) => vec![parse_step(s)?],
        None => mngr.all_steps(),
    };
    let mut reports = Vec::new();
    let mut bad = Vec::new();
    let mut failed = Vec::new();
    let gone = |step: Step| -> Result<bool> {
        let dir = mngr.step_dir_name(step);
        Ok(mngr.store().stat(&dir)?.is_none())
    };
    let mut deleted = Vec::new();
    'steps: for step in steps {
        let dir = mngr.step_dir_name(step);
        let report = match ckpt_manager::storage::verify_step(mngr.store().as_ref(), &dir) {
            Ok(r) => r,
            // A live writer's retention may delete a listed step while it is being verified.
            Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() => {
                deleted.push(step);
                continue;
            }
            Err(e) => return Err(e.with_step(step)),
        };
        if !report.is_ok() && step_given.is_none() && gone(step)? {
            deleted.push(step);
            continue;
        }
        for (path, status) in report.bad_files() {
            bad.push(format!("{}: {status}", report.location_of(path)));
        }
        // The step metadata and metrics must parse too (they are not handler files), and a
        // step written by ckpt's own handlers must still have its checksum manifest.
        let mut meta_error = None;
        let mut handlers = std::collections::BTreeMap::new();
        match mngr.step_metadata(step) {
            Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() && gone(step)? => {
                deleted.push(step);
                continue;
            }
            Err(e) => meta_error = Some(e.to_string()),
            Ok(meta) => {
                handlers = meta.item_handler_map();
                let ours = handlers.values().any(|h| h.starts_with("ckpt."));
                if ours && !report.has_checksums {
                    meta_error = Some(format!(
                        "written by ckpt, but its checksum manifest {} is missing",
                        ckpt_manager::storage::MANIFEST_FILE
                    ));
                }
            }
        }
        if let Some(e) = &meta_error {
            bad.push(format!("step {step}: {e}"));
        }
        // Each item restored as `restore` would: only for a step whose files and metadata
        // passed (a bad one is reported already, and restore would fail on the same file).
        let mut items: Vec<(String, ItemCheck)> = Vec::new();
        if !checksums_only && report.is_ok() && meta_error.is_none() {
            let names = match mngr.item_names(step) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::NotFound && step_given.is_none() => {
                    deleted.push(step);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for item in names {
                let check = match mngr.restore_items(Some(step), &[item.as_str()]) {
                    Ok(_) => ItemCheck::Restores,
                    Err(e)
                        if e.kind() == ErrorKind::NotFound
                            && step_given.is_none()
                            && gone(step)? =>
                    {
                        deleted.push(step);
                        continue 'steps;
                    }
                    Err(e) if e.kind() == ErrorKind::Unsupported => {
                        ItemCheck::NotChecked(e.to_string())
                    }
                    Err(e)
                        if e.kind() == ErrorKind::InvalidArgument
                            && !handlers.contains_key(&item)
                            && item != ckpt_manager::core::METRICS_ITEM_NAME =>
                    {
                        ItemCheck::NotChecked(format!("the step records no handler for it: {e}"))
                    }
                    Err(e) => {
                        let why = e.to_string().replace('\n', " ");
                        failed.push(format!(
                            "step {step}: item {item:?} does not restore: {why}"
                        ));
                        ItemCheck::Fails(why)
                    }
                };
                items.push((item, check));
            }
        }
        reports.push((step, report, meta_error, items));
    }
    if args.json {
        let out: Vec<Value> = reports
            .iter()
            .map(|(step, r, meta_error, items)| {
                let files: Vec<Value> = r
                    .files
                    .iter()
                    .map(|(p, st)| json!({"path": p, "status": st.to_string(), "bad": st.is_bad()}))
                    .collect();
                let restore: Vec<Value> = items
                    .iter()
                    .map(|(item, c)| match c {
                        ItemCheck::Restores => {
                            json!({"item": item, "restores": true, "checked": true, "error": null})
                        }
                        ItemCheck::Fails(e) => {
                            json!({"item": item, "restores": false, "checked": true, "error": e})
                        }
                        ItemCheck::NotChecked(e) => {
                            json!({"item": item, "restores": null, "checked": false, "error": e})
                        }
                    })
                    .collect();
                let restores = !items.iter().any(|(_, c)| matches!(c, ItemCheck::Fails(_)));
                json!({"step": step, "has_checksums": r.has_checksums,
                       "ok": r.is_ok() && meta_error.is_none() && restores,
                       "metadata_error": meta_error, "files": files,
                       "restore_checked": !checksums_only, "items": restore})
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        for (step, r, meta_error, items) in &reports {
            let checked = r
                .files
                .iter()
                .filter(|(_, st)| !matches!(st, ckpt_manager::storage::FileStatus::Unchecked))
                .count();
            let restored: Vec<&str> = items
                .iter()
                .filter(|(_, c)| matches!(c, ItemCheck::Restores))
                .map(|(i, _)| i.as_str())
                .collect();
            let restores = if checksums_only || restored.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} item(s) restore ({})",
                    restored.len(),
                    restored.join(", ")
                )
            };
            if let Some(e) = meta_error {
                out!("step {step}: BAD metadata: {e}");
            }
            if !r.has_checksums {
                out!("step {step}: no checksums recorded{restores}");
            } else if r.is_ok() {
                if meta_error.is_none() {
                    out!("step {step}: ok ({checked} files){restores}");
                }
            } else {
                out!("step {step}: BAD");
                for (path, status) in r.bad_files() {
                    out!("  {}: {status}", r.location_of(path));
                }
            }
            for (item, c) in items {
                match c {
                    ItemCheck::Restores => {}
                    ItemCheck::Fails(e) => {
                        out!("step {step}: BAD: item {item:?} does not restore: {e}")
                    }
                    ItemCheck::NotChecked(e) => {
                        out!("step {step}: item {item:?} not checked (this program cannot restore it): {e}")
                    }
                }
            }
        }
        for step in &deleted {
            out!("step {step}: deleted while verifying (skipped)");
        }
        if reports.is_empty() && deleted.is_empty() {
            out!("(no committed steps in {})", mngr.directory());
        }
    }
    let mut parts = Vec::new();
    if !bad.is_empty() {
        parts.push(format!("{} bad file(s)", bad.len()));
    }
    if !failed.is_empty() {
        parts.push(format!("{} item(s) that do not restore", failed.len()));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        bad.extend(failed);
        Err(Error::corrupt(format!(
            "{}: {}",
            parts.join(", "),
            bad.join("; ")
        )))
    }
}

/// `ckpt cp`: copies with [`ckpt_manager::copy`]; a progress bar (bytes) on a terminal, one line
/// per step otherwise; a summary line at the end (`--json`: the summary as JSON).
fn cp(args: &RootArgs, dst: &str, step: Option<&str>) -> Result<()> {
    use ckpt_manager::copy::{copy_root, copy_step, CopyEvent, CopySpec};
    use std::io::IsTerminal;
    let step = step.map(parse_step).transpose()?;
    let src = ckpt_manager::storage::open(&args.root)?;
    if src.stat("")?.is_none() && src.list_dir("")?.is_empty() {
        return Err(Error::not_found("no such checkpoint root").with_path(src.location("")));
    }
    let dst_store = ckpt_manager::storage::open(dst)?;
    let format = CheckpointManagerOptions {
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    }
    .name_format()?;
    let mut spec = CopySpec::new(src, dst_store);
    spec.format = format;
    let bar = (std::io::stdout().is_terminal() && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let quiet = args.json;
    let mut on_event = |e: &CopyEvent| match (e, &bar) {
        (CopyEvent::StepStarted { step, bytes, .. }, Some(b)) => {
            b.set_length(b.length().unwrap_or(0) + bytes);
            b.set_message(format!("step {step}"));
        }
        (CopyEvent::FileCopied { bytes, .. }, Some(b)) => b.inc(*bytes),
        (CopyEvent::StepCommitted { step }, Some(b)) => b.println(format!("copied step {step}")),
        (CopyEvent::StepSkipped { step }, Some(b)) => b.println(format!(
            "skipped step {step}: already committed at the destination"
        )),
        (CopyEvent::RootMetadataCopied, Some(b)) => b.println("copied the root metadata"),
        (_, None) if quiet => {}
        (CopyEvent::StepStarted { step, files, bytes }, None) => {
            out!("copying step {step}: {files} files, {bytes} bytes")
        }
        (CopyEvent::StepCommitted { step }, None) => out!("copied step {step}"),
        (CopyEvent::StepSkipped { step }, None) => {
            out!("skipped step {step}: already committed at the destination")
        }
        (CopyEvent::RootMetadataCopied, None) => out!("copied the root metadata"),
        (CopyEvent::FileCopied { .. }, None) => {}
    };
    let result = match step {
        Some(s) => copy_step(&spec, s, &mut on_event),
        None => copy_root(&spec, &mut on_event),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = result?;
    if args.json {
        let out = json!({
            "src": spec.src.location(""),
            "dst": spec.dst.location(""),
            "copied": summary.copied,
            "skipped": summary.skipped,
            "bytes": summary.bytes,
            "root_metadata_copied": summary.root_metadata_copied,
        });
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        out!(
            "{} step(s) copied ({} bytes), {} skipped, to {}",
            summary.copied.len(),
            summary.bytes,
            summary.skipped.len(),
            spec.dst.location("")
        );
    }
    Ok(())
}

fn open(args: &RootArgs) -> Result<CheckpointManager> {
    open_root(args, true, |o| o)
}

/// Opens an existing root (never creating it), read-only or for deleting steps, with the
/// options `adjust` makes of the command's.
fn open_root(
    args: &RootArgs,
    read_only: bool,
    adjust: impl FnOnce(CheckpointManagerOptions) -> CheckpointManagerOptions,
) -> Result<CheckpointManager> {
    let store = ckpt_manager::storage::open(&args.root)?;
    match store.stat("")? {
        Some(_) => {}
        None if !store.list_dir("")?.is_empty() => {}
        None => {
            return Err(Error::not_found("no such checkpoint root").with_path(store.location("")))
        }
    }
    let options = CheckpointManagerOptions {
        read_only,
        create: false,
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    };
    CheckpointManager::builder_with_store(store)
        .options(adjust(options))
        .build()
}

fn ls(args: &RootArgs) -> Result<()> {
    let mngr = open(args)?;
    let latest = mngr.latest_step();
    let mut steps = Vec::new();
    for c in mngr.checkpoints() {
        // A live writer's retention may delete a step between the listing and this read.
        let items: Vec<String> = match mngr.item_handlers(c.step) {
            Ok(h) => h.into_keys().collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        steps.push(json!({
            "step": c.step,
            "name": mngr.step_dir_name(c.step),
            "commit_time": c.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "items": items,
            "metrics": c.metrics.clone().map(Value::Object).unwrap_or(Value::Null),
        }));
    }
    if args.json {
        let out = json!({"root": mngr.directory(), "steps": steps, "latest_step": latest});
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    // One row of cells per step; each column as wide as its widest cell, so that long item
    // lists or step names never push the columns out of line.
    let rows: Vec<[String; 4]> = steps
        .iter()
        .map(|s| {
            let step = s["step"].as_u64().unwrap_or_default();
            let mark = if Some(step) == latest {
                format!("{step} (latest)")
            } else {
                step.to_string()
            };
            let items = s["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let metrics = match &s["metrics"] {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "-".to_string(),
            };
            let time = s["commit_time"].as_str().unwrap_or("-").to_string();
            [mark, time, items, metrics]
        })
        .collect();
    let header = ["STEP", "COMMIT TIME (UTC)", "ITEMS", "METRICS"];
    // Widths in terminal cells (a CJK character takes two), not in chars.
    let cells = |t: &str| unicode_width::UnicodeWidthStr::width(t);
    let width = |col: usize| {
        rows.iter()
            .map(|r| cells(&r[col]))
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |r: [&str; 4]| {
        let mut out = String::new();
        for (col, w) in widths.iter().enumerate() {
            out.push_str(r[col]);
            out.push_str(&" ".repeat(w - cells(r[col]) + 2));
        }
        out.push_str(r[3]);
        out
    };
    out!("{}", line(header));
    for [mark, time, items, metrics] in &rows {
        out!("{}", line([mark, time, items, metrics]));
    }
    if steps.is_empty() {
        out!("(no committed steps in {})", mngr.directory());
    }
    Ok(())
}

fn show(args: &RootArgs, step: &str) -> Result<()> {
    let step = parse_step(step)?;
    let mngr = open(args)?;
    let meta = mngr.step_metadata(step)?;
    let metrics = mngr.metrics(step)?;
    let handlers = mngr.item_handlers(step)?;
    let item_meta = mngr.item_metadata(step)?;
    let mut names: Vec<String> = item_meta.keys().cloned().collect();
    for n in handlers.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    let mut items = serde_json::Map::new();
    for name in &names {
        let handler = handlers.get(name).cloned();
        let is_json = handler.as_deref() == Some(ckpt_manager::handlers::ORBAX_JSON_HANDLER);
        let value = if is_json {
            match mngr.restore_items(Some(step), &[name.as_str()]) {
                Ok(r) => r.json_value(name)?.clone(),
                Err(e) if e.kind() == ErrorKind::NotFound => Value::Null,
                Err(e) => return Err(e),
            }
        } else {
            Value::Null
        };
        let metadata = item_meta
            .get(name)
            .cloned()
            .flatten()
            .unwrap_or(Value::Null);
        items.insert(
            name.clone(),
            json!({"handler": handler, "value": value, "metadata": metadata}),
        );
    }
    let out = json!({
        "step": step,
        "metadata": meta.to_value(),
        "metrics": metrics.map(Value::Object).unwrap_or(Value::Null),
        "items": items,
    });
    if args.json {
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    out!("step {step} ({})", mngr.step_dir_name(step));
    let ts = |v: Option<i64>| {
        v.map(|n| {
            chrono::DateTime::from_timestamp_nanos(n)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|| "-".into())
    };
    out!("  init time:   {}", ts(meta.init_timestamp_nsecs));
    out!("  commit time: {}", ts(meta.commit_timestamp_nsecs));
    out!(
        "  custom metadata: {}",
        Value::Object(meta.custom_metadata.clone())
    );
    out!("  metrics: {}", out["metrics"]);
    out!("  items:");
    for (name, item) in &items {
        out!(
            "    {name}: {}",
            item["handler"].as_str().unwrap_or("(no handler recorded)")
        );
        if !item["value"].is_null() {
            out!("      value: {}", item["value"]);
        }
        for line in array_lines(&item["metadata"]) {
            out!("      {line}");
        }
    }
    Ok(())
}

/// A byte progress bar on a terminal (none when stdout is not one, or with --json).
fn byte_bar(args: &RootArgs) -> Option<indicatif::ProgressBar> {
    (std::io::stdout().is_terminal() && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    })
}

fn export(args: &RootArgs, step: &str, out: &std::path::Path, item: Option<&str>) -> Result<()> {
    let step = parse_step(step)?;
    let mngr = open(args)?;
    let bar = byte_bar(args);
    if let Some(b) = &bar {
        b.set_message("exporting");
    }
    let (name, n) =
        ckpt_manager::export::export_safetensors(&mngr, step, item, out, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if args.json {
        out!(
            "{}",
            json!({"step": step, "item": name, "arrays": n, "out": out.display().to_string()})
        );
    } else {
        out!(
            "exported {n} arrays of item {name:?} of step {step} to {}",
            out.display()
        );
    }
    Ok(())
}

fn import(
    input: &std::path::Path,
    args: &RootArgs,
    step: &str,
    item: &str,
    format: &str,
) -> Result<()> {
    let step = parse_step(step)?;
    let format = match format {
        "ckpt" => ckpt_manager::export::ImportFormat::Ckpt,
        _ => ckpt_manager::export::ImportFormat::Orbax,
    };
    let store = ckpt_manager::storage::open(&args.root)?;
    let options = CheckpointManagerOptions {
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    };
    let mut mngr = CheckpointManager::builder_with_store(store)
        .options(options)
        .build()?;
    let spinner = (std::io::stdout().is_terminal() && !args.json).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("importing {} as step {step}", input.display()));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let n = ckpt_manager::export::import_safetensors(&mut mngr, input, step, item, format)?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    mngr.close()?;
    if args.json {
        out!("{}", json!({"step": step, "item": item, "arrays": n}));
    } else {
        out!(
            "imported {n} arrays from {} as item {item:?} of step {step}",
            input.display()
        );
    }
    Ok(())
}

/// One line per array of an item's metadata: a pytree's leaves (`key dtype[shape] bytes`) or a
/// tensors item's tensors (`name dtype[shape]`); nothing for other items.
fn array_lines(metadata: &Value) -> Vec<String> {
    let dims = |v: &Value| {
        let d: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        d.join(", ")
    };
    let mut out = Vec::new();
    if let Some(leaves) = metadata.get("leaves").and_then(Value::as_array) {
        out.push(format!(
            "layout: {}, {} leaves",
            metadata["layout"].as_str().unwrap_or("?"),
            leaves.len()
        ));
        for l in leaves {
            let key = l["key"].as_str().unwrap_or("?");
            match l.get("dtype").and_then(Value::as_str) {
                Some(dtype) => out.push(format!(
                    "{key}: {dtype}[{}] {} bytes{}",
                    dims(&l["shape"]),
                    l["bytes"],
                    if l["value_type"] == "scalar" {
                        " (scalar)"
                    } else {
                        ""
                    }
                )),
                None => out.push(format!(
                    "{key}: {}",
                    l["value_type"].as_str().unwrap_or("?")
                )),
            }
        }
    } else if let Some(tensors) = metadata.get("tensors").and_then(Value::as_object) {
        for (name, t) in tensors {
            out.push(format!(
                "{name}: {}[{}]",
                t["dtype"].as_str().unwrap_or("?"),
                dims(&t["shape"])
            ));
        }
    }
    out
}

fn gc(
    args: &RootArgs,
    policy_file: &std::path::Path,
    dry_run: bool,
    allow_missing_metric: bool,
    allow_empty: bool,
) -> Result<()> {
    let policy = ckpt_manager::preservation_policy_from_file(policy_file)?;
    let mut mngr = open_root(args, dry_run, |o| CheckpointManagerOptions {
        allow_missing_best_metric: allow_missing_metric,
        ..o
    })?;
    // Decide first, delete exactly what was decided: a policy that keeps none of the steps of
    // a non-empty root is refused before anything is deleted (issue 11, item 9).
    let mut decisions = mngr.apply_preservation(policy.as_ref(), true)?;
    let keeps_none = !decisions.is_empty() && decisions.iter().all(|d| !d.keep);
    let refusal = (keeps_none && !allow_empty).then(|| {
        Error::invalid_config(format!(
            "the policy keeps none of the {} step(s) of {}: it would delete every step; nothing was deleted (pass --allow-empty to delete them all)",
            decisions.len(),
            mngr.directory()
        ))
    });
    if let Some(e) = refusal {
        if !dry_run {
            return Err(e);
        }
        // A dry run still shows what the policy decides, then says that gc would refuse it.
        print_gc(args, &decisions, true, &mngr.directory())?;
        return Err(e);
    }
    if !dry_run {
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            mngr.delete(d.step)?;
            d.deleted = true;
        }
    }
    print_gc(args, &decisions, dry_run, &mngr.directory())?;
    mngr.close()
}

/// Prints `ckpt gc`'s decisions: a table (or `--json`, a list) and a summary line.
fn print_gc(
    args: &RootArgs,
    decisions: &[ckpt_manager::RetentionDecision],
    dry_run: bool,
    root: &str,
) -> Result<()> {
    if args.json {
        let out: Vec<Value> = decisions
            .iter()
            .map(|d| json!({"step": d.step, "keep": d.keep, "reason": d.reason, "deleted": d.deleted}))
            .collect();
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        out!("{:<14} {:<14} REASON", "STEP", "ACTION");
        for d in decisions {
            let action = match (d.keep, d.deleted) {
                (true, _) => "kept",
                (false, true) => "deleted",
                (false, false) => "would delete",
            };
            out!("{:<14} {:<14} {}", d.step, action, d.reason);
        }
        let dropped = decisions.iter().filter(|d| !d.keep).count();
        let kept = decisions.len() - dropped;
        if dry_run {
            out!("dry run: {kept} kept, {dropped} would be deleted in {root}");
        } else {
            out!("{kept} kept, {dropped} deleted in {root}");
        }
    }
    Ok(())
}

/// `ckpt rm`: deletes `steps` (all checked first: each must be a committed step) with
/// [`CheckpointManager::delete`]. Without `yes` it asks `delete step N of ROOT? [y/N]` (on
/// stderr) for each step when stdin is a terminal (anything but `y`/`yes` keeps it), and refuses
/// when it is not; either way nothing is deleted before every step was checked.
fn rm(args: &RootArgs, steps: &[String], yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let mut wanted = Vec::new();
    for s in steps {
        let step = parse_step(s)?;
        if !wanted.contains(&step) {
            wanted.push(step);
        }
    }
    let mut mngr = open_root(args, false, |o| o)?;
    let listed = mngr.all_steps();
    let missing: Vec<Step> = wanted
        .iter()
        .copied()
        .filter(|s| listed.binary_search(s).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(Error::not_found(format!(
            "no step {missing:?} in {}; its steps are {listed:?}; nothing was deleted",
            mngr.directory()
        )));
    }
    if !yes && !std::io::stdin().is_terminal() {
        return Err(Error::invalid_argument(format!(
            "refusing to delete step(s) {wanted:?} of {} without confirmation: stdin is not a terminal; pass --yes to delete them",
            mngr.directory()
        )));
    }
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for step in wanted {
        if !yes {
            eprint!("delete step {step} of {}? [y/N] ", mngr.directory());
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .map_err(|e| Error::invalid_argument("cannot read the answer").with_source(e))?;
            let answer = answer.trim().to_ascii_lowercase();
            if answer != "y" && answer != "yes" {
                if !args.json {
                    out!("kept step {step}");
                }
                kept.push(step);
                continue;
            }
        }
        mngr.delete(step)?;
        if !args.json {
            out!("deleted step {step}");
        }
        deleted.push(step);
    }
    if args.json {
        let out = json!({"root": mngr.directory(), "deleted": deleted, "kept": kept});
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    }
    mngr.close()
}

fn json_err(e: serde_json::Error) -> Error {
    Error::invalid_argument("cannot print JSON").with_source(e)
}
