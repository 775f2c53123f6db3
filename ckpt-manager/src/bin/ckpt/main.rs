//! `ckpt`: inspect and manage checkpoint roots written by ckpt or by Orbax.
//!
//! ```text
//! ckpt ls ROOT [--json] [--best-metric M [--best-mode min|max]]
//!                                  the committed steps: commit time, size, items, metrics;
//!                                  latest (and best, with --best-metric) marked
//! ckpt show ROOT STEP|latest|best [--json] [--best-metric M [--best-mode min|max]]
//!                                  one step's metadata and items (JSON items with their value)
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
//! directories are named that way. Errors print one line on stderr (with `--json`, one JSON
//! object). Exit status (listed by `ckpt --help`): 0 ok, 1 error, 2 usage, 3 `verify` found
//! corrupt data.

use ckpt_manager::core::{ErrorKind, Step};
use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Error, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` that never panics nor stops the command when stdout fails: the first failure is
/// kept ([`STDOUT_FAILURE`]) and later lines are dropped, while the command finishes its work
/// (`ckpt cp … | head -1` still copies every step; `ckpt verify … | head -1` still exits 3 on
/// corrupt data). A closed pipe is no error (exit status as without it); any other failure to
/// write (`> /dev/full`) makes the command exit 1 once done.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if !$crate::stdout_failed() {
            if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
                $crate::record_stdout_failure(e);
            }
        }
    }};
}

/// The first failure to write to stdout, if any.
static STDOUT_FAILURE: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

/// Whether writing to stdout has failed (later output is dropped).
fn stdout_failed() -> bool {
    STDOUT_FAILURE.lock().map(|f| f.is_some()).unwrap_or(true)
}

/// Keeps `e` as the first stdout failure.
fn record_stdout_failure(e: std::io::Error) {
    if let Ok(mut f) = STDOUT_FAILURE.lock() {
        f.get_or_insert(e);
    }
}

/// The stdout failure that must fail the command: any but a closed pipe (a reader that had
/// enough, as `head`).
fn stdout_error() -> Option<Error> {
    use std::io::Write as _;
    // Lines still buffered are written (or fail) now.
    if !stdout_failed() {
        if let Err(e) = std::io::stdout().flush() {
            record_stdout_failure(e);
        }
    }
    let guard = STDOUT_FAILURE.lock().ok()?;
    let e = guard.as_ref()?;
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return None;
    }
    Some(
        Error::storage("cannot write the output to stdout")
            .with_source(std::io::Error::new(e.kind(), e.to_string())),
    )
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

/// The exit statuses, as `ckpt --help` prints them.
const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  error: one line on stderr; with --json one JSON object,
     {\"error\": {\"kind\": \"NotFound\", \"message\": \"...\", \"step\": null, \"path\": \"...\"}}
  2  usage error (a bad command line)
  3  `verify` found corrupt data (a bad file, metadata that does not parse, an item that does
     not restore)";

/// Exit status 3: `verify` found corrupt data (not: verify could not run).
const EXIT_CORRUPT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect and manage Orbax-compatible checkpoint roots: list, show, verify, copy, delete, gc, export, import, watch",
    after_help = EXIT_STATUS
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

// Each subcommand's first doc paragraph is its one-line `about` (the command list of
// `ckpt --help`); the whole comment is its `long_about` (`ckpt CMD --help`).
#[derive(Subcommand)]
enum Command {
    /// List the committed steps of a root (read-only).
    ///
    /// One line per committed step: its commit time, its size (the sum of its files), its items
    /// and metrics; the latest step is marked, and the best one with --best-metric.
    Ls {
        #[command(flatten)]
        root: RootArgs,
        #[command(flatten)]
        best: BestArgs,
    },
    /// Show one step: its metadata, metrics and items (read-only).
    ///
    /// STEP is a step number, `latest` (the largest committed step) or `best` (the best by
    /// --best-metric NAME, --best-mode min|max).
    Show {
        #[command(flatten)]
        root: RootArgs,
        /// The step to show: a number, `latest` or `best`.
        #[arg(allow_hyphen_values = true, value_parser = step_or_alias_arg)]
        step: String,
        #[command(flatten)]
        best: BestArgs,
    },
    /// Apply a preservation policy to a root, deleting the steps it does not keep.
    ///
    /// Prints each step kept or deleted, with the policy's reason; --dry-run deletes nothing.
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
    /// Check a step (or every step) against its checksums and restore each item (read-only).
    ///
    /// Every file of the step is checked against its recorded checksums, and each item is
    /// restored as `restore` would, so that "ok" means the step restores. Exit status 3 when it
    /// finds corrupt data, 1 when it cannot check.
    Verify {
        #[command(flatten)]
        root: RootArgs,
        /// Only this step (default: every committed step).
        #[arg(allow_hyphen_values = true, value_parser = step_number_arg)]
        step: Option<String>,
        /// Only check the files against their checksums and the step metadata; do not restore
        /// the items (faster, and reads each file once, but a file whose checksum matches and
        /// that its handler cannot read passes).
        #[arg(long)]
        checksums_only: bool,
    },
    /// Delete steps of a root (asks first on a terminal; --yes otherwise).
    ///
    /// Deletes through the checkpoint manager (each step hidden, then removed). On a terminal
    /// it asks for each step; otherwise --yes is required.
    Rm {
        #[command(flatten)]
        root: RootArgs,
        /// The steps to delete.
        #[arg(required = true, value_parser = step_number_arg)]
        steps: Vec<String>,
        /// Delete without asking (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Copy a root, or one step, to another store (local disk, S3, ...).
    ///
    /// Each step is committed at the destination with the destination's commit protocol, and
    /// every source file with a checksum is verified as it is read. Committed destination steps
    /// are never overwritten (skipped for a root copy; an error with --step). The root metadata
    /// is copied when the destination has none.
    Cp {
        #[command(flatten)]
        args: CpArgs,
    },
    /// Write the arrays of a step's tensor item into one safetensors file.
    ///
    /// Every array of a tensor-holding item (an Orbax pytree in any layout, or a ckpt.tensors
    /// item) goes into one safetensors file; keys are the key paths joined by `.`
    /// (`params.dense.kernel`), scalars are 0-d tensors.
    Export {
        #[command(flatten)]
        root: RootArgs,
        /// The step to export.
        #[arg(allow_hyphen_values = true, value_parser = step_number_arg)]
        step: String,
        /// The safetensors file to write.
        out: PathBuf,
        /// The item (default: the step's only tensor-holding item).
        #[arg(long)]
        item: Option<String>,
        /// Replace OUT if it exists (refused otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Commit a new step holding the arrays of a safetensors file.
    ///
    /// The arrays are stored as an Orbax pytree (nested dicts rebuilt from the dotted names;
    /// Orbax restores it) or as a ckpt.tensors item.
    Import {
        /// The safetensors file to read.
        input: PathBuf,
        #[command(flatten)]
        root: RootArgs,
        /// The new step.
        #[arg(allow_hyphen_values = true, value_parser = step_number_arg)]
        step: String,
        /// The item name.
        #[arg(long, default_value = "default")]
        item: String,
        /// How to store the arrays: `orbax` (StandardSave, OCDBT + zarr) or `ckpt`
        /// (ckpt.tensors).
        #[arg(long, default_value = "orbax", value_parser = ["orbax", "ckpt"])]
        format: String,
    },
    /// Print each step as it commits (read-only).
    ///
    /// An evaluator's view: first the steps already there (after --after), then each new one,
    /// in order, until --timeout seconds pass without one. --json: one JSON object a line.
    Watch {
        #[command(flatten)]
        root: RootArgs,
        /// Only steps after this one.
        #[arg(long, value_name = "STEP", value_parser = step_number_arg)]
        after: Option<String>,
        /// Stop once a step at or after this one has been printed.
        #[arg(long, value_name = "STEP", value_parser = step_number_arg)]
        until: Option<String>,
        /// Stop after this many seconds without a new step (default: never).
        #[arg(long, value_name = "SECONDS", value_parser = seconds_arg)]
        timeout: Option<f64>,
        /// Seconds between two looks at the root.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = positive_seconds_arg)]
        interval: f64,
    },
}

impl Command {
    /// Whether `--json` was given (errors are then printed as JSON too).
    fn json(&self) -> bool {
        match self {
            Command::Ls { root, .. }
            | Command::Show { root, .. }
            | Command::Gc { root, .. }
            | Command::Verify { root, .. }
            | Command::Rm { root, .. }
            | Command::Export { root, .. }
            | Command::Import { root, .. }
            | Command::Watch { root, .. } => root.json,
            Command::Cp { args } => args.json,
        }
    }
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
    /// Print JSON instead of a table (errors too: one JSON object on stderr).
    #[arg(long)]
    json: bool,
}

/// `ckpt cp`'s arguments: a source and a destination root (`RootArgs` names its root ROOT).
#[derive(Args)]
struct CpArgs {
    /// The source root: a local path or a URI (s3://bucket/prefix, ...).
    #[arg(value_name = "SRC")]
    src: String,
    /// The destination root: a local path or a URI (s3://bucket/prefix, ...).
    #[arg(value_name = "DST")]
    dst: String,
    /// Copy only this step.
    #[arg(long, allow_hyphen_values = true, value_parser = step_number_arg)]
    step: Option<String>,
    /// Step directories (in SRC and DST) are named `<PREFIX>_<step>`.
    #[arg(long)]
    step_prefix: Option<String>,
    /// Step numbers in directory names are zero-padded to this many digits.
    #[arg(long)]
    step_format_fixed_length: Option<usize>,
    /// Print a JSON summary instead of lines (errors too: one JSON object on stderr).
    #[arg(long)]
    json: bool,
    /// When stdout is not a terminal: a progress line (bytes done of the total, rate, time
    /// left) at most every SECS seconds while copying; 0: after every file.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = seconds_arg)]
    progress_every: f64,
}

/// The metric that ranks steps, for marking (`ls`) or picking (`show ROOT best`) the best one:
/// a root does not record the `best_metric` its writer used.
#[derive(Args)]
struct BestArgs {
    /// The metric that ranks the steps (e.g. val_loss): marks the best step (`ls`), or picks it
    /// (`show ROOT best`).
    #[arg(long, value_name = "NAME")]
    best_metric: Option<String>,
    /// Whether the lowest (`min`, e.g. a loss) or the highest (`max`, e.g. an accuracy) value
    /// of --best-metric is best.
    #[arg(long, value_name = "MODE", default_value = "max", value_parser = ["min", "max"], requires = "best_metric")]
    best_mode: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Some(note) = ckpt_manager::logging::init_logging(cli.verbose, cli.quiet) {
        eprintln!("ckpt: {note}");
    }
    let json = cli.command.json();
    let is_verify = matches!(cli.command, Command::Verify { .. });
    let result = match cli.command {
        Command::Ls { root, best } => ls(&root, &best),
        Command::Watch {
            root,
            after,
            until,
            timeout,
            interval,
        } => watch(&root, after.as_deref(), until.as_deref(), timeout, interval),
        Command::Show { root, step, best } => show(&root, &step, &best),
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
        Command::Cp { args } => {
            let root = RootArgs {
                root: args.src,
                step_prefix: args.step_prefix,
                step_format_fixed_length: args.step_format_fixed_length,
                json: args.json,
            };
            cp(&root, &args.dst, args.step.as_deref(), args.progress_every)
        }
        Command::Rm { root, steps, yes } => rm(&root, &steps, yes),
        Command::Export {
            root,
            step,
            out,
            item,
            force,
        } => export(&root, &step, &out, item.as_deref(), force),
        Command::Import {
            input,
            root,
            step,
            item,
            format,
        } => import(&input, &root, &step, &item, &format),
    };
    // The command's own error first (verify's findings keep exit status 3); else a failed
    // stdout.
    let result = result.and_then(|()| stdout_error().map_or(Ok(()), Err));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", json_error(&e));
            } else {
                // the error and its causes, on one line
                eprintln!("ckpt: {}", e.chain().to_string().replace('\n', " "));
            }
            // `verify`'s findings are Corrupt errors; any other failure is exit status 1.
            if is_verify && e.kind() == ErrorKind::Corrupt {
                ExitCode::from(EXIT_CORRUPT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error as one line of JSON: `{"error": {"kind": "NotFound", "message": "…", "step": 7,
/// "path": "…"}}` (the message is the error's own text and its causes, without the kind, step
/// and path, which have their own fields).
fn json_error(e: &Error) -> Value {
    let mut message = e.message().replace('\n', " ");
    if let Some(cause) = std::error::Error::source(e) {
        let causes = ckpt_manager::core::ErrorChain(cause).to_string();
        if !causes.is_empty() && !message.contains(&causes) {
            message.push_str(": ");
            message.push_str(&causes);
        }
    }
    let kind = e.kind().name();
    json!({"error": {"kind": kind, "message": message, "step": e.step(), "path": e.path()}})
}

/// A command line clap rejects: clap's message and exit status 2 (with `--json` on it, one
/// JSON line instead: `{"error": {"kind": "InvalidArgument", "usage": true, "message": …}}`);
/// `--help` and `--version` print as clap prints them, exit status 0.
fn usage_error(e: clap::Error) -> ExitCode {
    let json_asked = std::env::args_os().skip(1).any(|a| a == "--json");
    if !e.use_stderr() || !json_asked {
        e.exit();
    }
    let message = ckpt_manager::cli::usage_error_line(&e);
    eprintln!(
        "{}",
        json!({"error": {"kind": ErrorKind::InvalidArgument.name(), "usage": true, "message": message, "step": null, "path": null}})
    );
    ExitCode::from(2)
}

/// clap's check of a number of seconds, 0 or more (a bad one is a usage error).
fn seconds_arg(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("a number of seconds, 0 or more".to_string()),
    }
}

/// clap's check of a number of seconds above 0.
fn positive_seconds_arg(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("a number of seconds above 0".to_string()),
    }
}

/// clap's check of a STEP argument that must be a step number (a bad one is a usage error,
/// exit status 2).
fn step_number_arg(step: &str) -> std::result::Result<String, String> {
    parse_step(step)
        .map(|_| step.to_string())
        .map_err(|_| "a step is a non-negative integer (decimal digits only)".to_string())
}

/// clap's check of `show`'s STEP: a step number, `latest` or `best`.
fn step_or_alias_arg(step: &str) -> std::result::Result<String, String> {
    match step {
        "latest" | "best" => Ok(step.to_string()),
        _ => parse_step(step).map(|_| step.to_string()).map_err(|_| {
            "a step is a non-negative integer (decimal digits only), `latest` or `best`".to_string()
        }),
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
        Some(m) if m.kind == ckpt_manager::storage::EntryKind::File => {
            return Err(not_a_directory(&args.root).with_path(store.location("")))
        }
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

/// The error for a ROOT that is a file: what it is, and what to pass instead (its step's root
/// when it is a file of a step directory).
fn not_a_directory(root: &str) -> Error {
    use ckpt_manager::core::{COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
    let name = root
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(root);
    let step_dir = parent_of(root);
    let hint = if [
        STEP_METADATA_FILE,
        COMMIT_SUCCESS_FILE,
        ckpt_manager::storage::MANIFEST_FILE,
    ]
    .contains(&name)
    {
        format!(
            "; it is a file of the step directory {step_dir}: list its root with `ckpt ls {}`",
            parent_of(&step_dir)
        )
    } else {
        format!("; pass the directory holding the step directories (is it {step_dir}?)")
    };
    Error::invalid_argument(format!(
        "{root} is a file, not a directory: a checkpoint root is a directory of step directories{hint}"
    ))
}

/// The directory holding `path` (a local path or a URI), `.` for a bare name.
fn parent_of(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((p, _)) if p.ends_with(':') || p.ends_with(":/") => path.to_string(),
        Some((p, _)) => p.to_string(),
        None => ".".to_string(),
    }
}

/// Why a root lists no committed steps, when the cause looks like a mistake on the command
/// line: ROOT is itself a step directory, or its step directories are named in another format
/// (another `--step-prefix`, zero padding) than `args` asks for. Says what it found and what to
/// pass. `None` when nothing there looks like a step.
///
/// `command` is the subcommand asking (`ls`, `show`, `verify`, `cp`, `watch`), for the command
/// line to suggest: `ckpt verify ROOT STEP` for `ckpt verify ROOT/STEP`.
pub(crate) fn why_no_steps(
    store: &dyn ckpt_manager::storage::Store,
    args: &RootArgs,
    command: &str,
) -> Result<Option<String>> {
    use ckpt_manager::core::{NameFormat as _, COMMIT_SUCCESS_FILE, STEP_METADATA_FILE};
    let root = args.root.trim_end_matches('/');
    if store.stat(STEP_METADATA_FILE)?.is_some() {
        let parent = parent_of(root);
        let last = root.rsplit('/').next().unwrap_or(root);
        let suggestion = match command {
            "show" | "verify" => format!("ckpt {command} {parent} {last}"),
            "cp" => format!("ckpt cp {parent} DST --step {last}"),
            _ => format!("ckpt {command} {parent}"),
        };
        return Ok(Some(format!(
            "{root} looks like a step directory (it holds {STEP_METADATA_FILE}); name its root: {suggestion}"
        )));
    }
    let format = ckpt_manager::core::StandardNameFormat::new(
        args.step_prefix.as_deref(),
        args.step_format_fixed_length,
    )?;
    let is_step = |name: &str| -> Result<bool> {
        Ok(store
            .stat(&format!("{name}/{STEP_METADATA_FILE}"))?
            .is_some()
            || store
                .stat(&format!("{name}/{COMMIT_SUCCESS_FILE}"))?
                .is_some())
    };
    // Directories named `<prefix>_<digits>` or `<digits>` that the format asked for does not
    // read, grouped by prefix: (prefix, [(step, name)], zero-padded length).
    type Group = (Option<String>, Vec<(Step, String)>, Option<usize>);
    let mut groups: Vec<Group> = Vec::new();
    for entry in store.list_dir("")? {
        if entry.kind != ckpt_manager::storage::EntryKind::Dir
            || format.parse_name(&entry.name).is_some()
        {
            continue;
        }
        let Some((prefix, digits)) = split_step_name(&entry.name) else {
            continue;
        };
        let Ok(step) = digits.parse::<Step>() else {
            continue;
        };
        let padded = (digits.len() > 1 && digits.starts_with('0')).then_some(digits.len());
        match groups.iter_mut().find(|g| g.0 == prefix) {
            Some(g) => {
                g.1.push((step, entry.name.clone()));
                g.2 = g.2.max(padded);
            }
            None => groups.push((prefix, vec![(step, entry.name.clone())], padded)),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    for (prefix, mut names, padded) in groups {
        names.sort();
        let mut looks_like_steps = false;
        for (_, name) in names.iter().take(3) {
            if is_step(name)? {
                looks_like_steps = true;
                break;
            }
        }
        if !looks_like_steps {
            continue;
        }
        let mut pass = Vec::new();
        match (&prefix, &args.step_prefix) {
            (Some(p), _) => pass.push(format!("--step-prefix {p}")),
            (None, Some(_)) => pass.push("no --step-prefix".to_string()),
            (None, None) => {}
        }
        if let Some(n) = padded {
            pass.push(format!("--step-format-fixed-length {n}"));
        }
        let mut shown: Vec<&str> = names.iter().take(3).map(|(_, n)| n.as_str()).collect();
        if names.len() > 3 {
            shown.push("…");
        }
        return Ok(Some(format!(
            "{root} holds no step directories named as asked (like {}); found {} named {}: pass {}",
            format.build_name(100),
            names.len(),
            shown.join(", "),
            pass.join(" and ")
        )));
    }
    Ok(None)
}

/// A directory name as a step name of some format: `(Some(prefix), digits)` for
/// `<prefix>_<digits>`, `(None, digits)` for `<digits>`; `None` otherwise.
fn split_step_name(name: &str) -> Option<(Option<String>, &str)> {
    let all_digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if all_digits(name) {
        return Some((None, name));
    }
    let (prefix, digits) = name.rsplit_once('_')?;
    (!prefix.is_empty() && all_digits(digits)).then(|| (Some(prefix.to_string()), digits))
}

/// Up to ten steps written out; more as the first five, `…`, the last five and the count.
fn step_list(steps: &[Step]) -> String {
    let join = |s: &[Step]| {
        s.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if steps.len() <= 10 {
        join(steps)
    } else {
        format!(
            "{}, …, {} ({} steps)",
            join(&steps[..5]),
            join(&steps[steps.len() - 5..]),
            steps.len()
        )
    }
}
