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
//! ckpt watch ROOT [--after STEP] [--until STEP] [--timeout S] [--interval S] [--json]
//!                                  print each committed step as it commits (read-only)
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

// One module per group of subcommands (`out!` above is visible in them).
mod prune;
mod show;
mod transfer;
mod verify;
mod watch;
use prune::{gc, rm};
use show::{ls, show};
use transfer::{cp, export, import};
use verify::verify;
use watch::watch;

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect Orbax-compatible checkpoint roots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on stderr: -v info, -vv debug, -vvv trace. RUST_LOG (e.g.
    /// `RUST_LOG=ckpt_storage=debug`) overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log errors only.
    #[arg(short, long, global = true)]
    quiet: bool,
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
    /// Print each committed step as it commits (an evaluator's view; read-only): first those
    /// already there (after --after), then each new one, in order, until --timeout seconds
    /// pass without one. --json: one JSON object a line.
    Watch {
        #[command(flatten)]
        root: RootArgs,
        /// Only steps after this one.
        #[arg(long, value_name = "STEP")]
        after: Option<String>,
        /// Stop once a step at or after this one has been printed.
        #[arg(long, value_name = "STEP")]
        until: Option<String>,
        /// Stop after this many seconds without a new step (default: never).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Seconds between two looks at the root.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
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
    if let Some(note) = ckpt_manager::logging::init_logging(cli.verbose, cli.quiet) {
        eprintln!("ckpt: {note}");
    }
    let result = match cli.command {
        Command::Ls { root } => ls(&root),
        Command::Watch {
            root,
            after,
            until,
            timeout,
            interval,
        } => watch(&root, after.as_deref(), until.as_deref(), timeout, interval),
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
            eprintln!("ckpt: {}", e.chain()); // the error and its causes, on one line
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

fn json_err(e: serde_json::Error) -> Error {
    Error::invalid_argument("cannot print JSON").with_source(e)
}
