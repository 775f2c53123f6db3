//! The main job: train a small network on real data and checkpoint it with [`CheckpointManager`].
//!
//! ```text
//! cargo run --release --example train -- --dir DIR [--steps N] [--save-every K]
//!     [--max-to-keep M] [--best-n B] [--keep-period P] [--seed S] [--config FILE]
//!     [--resume-from STEP] [--ignore-other-steps] [--processes N] [--etcd URL]
//! ```
//!
//! A one-hidden-layer MLP learns to predict the quality rating of red wines (the UCI Wine
//! Quality data shipped by `linfa-datasets`) with Adam on shuffled mini-batches. Every
//! `--save-every` steps, and at step N, it saves the parameters, Adam's moments and the training
//! state (step, epoch, position in the epoch's order, RNG state, seed) as one checkpoint with the
//! validation loss and accuracy as metrics. Retention is one composed policy: the newest
//! `--max-to-keep`, the best `--best-n` by validation loss, and every multiple of
//! `--keep-period` — so the best step survives and the newest always does. Run it again on the
//! same DIR with a larger N and it resumes from the latest checkpoint, continuing exactly as an
//! uninterrupted run would (bit for bit: see `tests/train_resume.rs`).
//!
//! SIGTERM (what a scheduler sends before preempting a job) does not kill it: the loop saves the
//! current step, prints `preempted: saved step S` and exits 0, and the next run resumes from S
//! (`tests/train_sigterm.rs`). A second SIGTERM ends it at once. `--config FILE` reads a manager
//! config (JSON or TOML, see `ManagerConfig`) whose fields override the options above, e.g. a
//! file holding only a `preservation_policy` replaces the retention.
//!
//! Progress goes to stdout; when stdout is closed (`train … | head -3`), the progress lines stop
//! (one note on stderr) and training and saving go on to the end, exit 0.
//!
//! A DIR holding checkpoints named in another format (`ckpt_200`, written with a config's
//! `step_prefix`) and none named as this run names them is refused (exit 1), naming the format
//! found and the config to pass; `--ignore-other-steps` starts a fresh run beside them.
//!
//! When the latest checkpoint is corrupt, the run stops (exit 1) saying so on stderr and how to
//! go on: `--resume-from STEP` resumes from an older checkpoint (the later ones stay, and saves
//! resume once training passes them), or `ckpt rm DIR STEP` deletes the broken one.
//!
//! `--processes N` (feature `etcd`) trains data-parallel in N processes of this program, which
//! meet on the etcd server of `--etcd URL` (or `CKPT_ETCD_ENDPOINTS`); a launcher that sets
//! `RANK` and `WORLD_SIZE` (and `CKPT_ETCD_ENDPOINTS`) may start the processes instead. Each
//! process computes the gradients of its share of every mini-batch, the processes exchange them
//! and apply the same update, and each saves its rows of every parameter; a SIGTERM reaching
//! any of them makes all save the same step and stop; a rerun with any process count (or
//! none) resumes there, bit-exactly. See `distributed.rs`.
//!
//! [`CheckpointManager`]: ckpt_manager::CheckpointManager

// `pub(crate)`: tests/train_sigterm.rs includes this file as a module and re-exports these at
// its crate root, where the modules' `crate::` paths look for them.
pub(crate) mod checkpoint;
pub(crate) mod data;
pub(crate) mod distributed;
pub(crate) mod launch;
pub(crate) mod model;
pub(crate) mod optim;
pub(crate) mod rng;
pub(crate) mod trainer;

use ckpt_manager::core::ErrorChain;
use ckpt_manager::SigtermPreemption;
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Train an MLP on the red Wine Quality data, checkpointing with ckpt's CheckpointManager.
#[derive(Debug, Parser)]
#[command(name = "train")]
struct Args {
    /// Checkpoint root directory (created if missing; resumed from if it holds checkpoints)
    #[arg(long)]
    dir: String,
    /// Train up to this step (one step = one Adam update on one mini-batch of 32).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Save a checkpoint every this many steps (and always at the last step).
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
    save_every: u64,
    /// Keep the newest this many checkpoints (at least 1: the one a rerun resumes from).
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    max_to_keep: u64,
    /// Also keep the best this many checkpoints by validation loss.
    #[arg(long, default_value_t = 1)]
    best_n: u64,
    /// Also keep every checkpoint whose step is a multiple of this; 0 turns it off.
    #[arg(long, default_value_t = 250)]
    keep_period: u64,
    /// Seed of a fresh run (initial weights and data order); a resumed run keeps its own.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A manager config, JSON (.json) or TOML (.toml), whose fields override the options above.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Resume from this checkpoint instead of the latest (e.g. when the latest is corrupt). The
    /// later checkpoints stay; saves resume once training passes the latest.
    #[arg(long, value_name = "STEP")]
    resume_from: Option<u64>,
    /// Train even though DIR holds checkpoints named in another format (e.g. `ckpt_200`, written
    /// with a `step_prefix`) and none named as this run names them: a fresh run starts beside
    /// them instead of resuming from them.
    #[arg(long)]
    ignore_other_steps: bool,
    /// Train data-parallel in this many processes of this program (1 to 8), started here and
    /// meeting on the etcd server of --etcd; each saves its rows of every parameter. Needs the
    /// `etcd` feature.
    #[arg(long, value_name = "N")]
    processes: Option<usize>,
    /// The etcd server of a multi-process run, e.g. http://127.0.0.1:2379 (comma-separated for
    /// several); default: the CKPT_ETCD_ENDPOINTS environment variable.
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    /// More log output on stderr: -v info (each save, each deletion and why), -vv debug, -vvv
    /// trace. RUST_LOG (e.g. `RUST_LOG=ckpt_manager=debug`) overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log errors only.
    #[arg(short, long)]
    quiet: bool,
}

/// A count flag's value: a whole number, at least 1 (clap's own range check would say "0 is not
/// in 1..18446744073709551615").
fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (a whole number, at least 1)")),
    }
}

/// The progress lines' writer: stdout until a write finds it closed (`train … | head -3`: a
/// broken pipe); from then on the lines are dropped, and training and saving go on. A training
/// job whose log reader went away must not lose its run. One note says so on stderr.
struct ProgressOut<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> ProgressOut<W> {
    /// `result`, unless it is a broken pipe: then stdout counts as closed and the write as done.
    fn unless_closed<T>(&mut self, result: std::io::Result<T>, done: T) -> std::io::Result<T> {
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "train: stdout was closed (broken pipe): training goes on without progress lines, saving checkpoints as before"
                );
                Ok(done)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for ProgressOut<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.unless_closed(r, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.unless_closed(r, ())
    }
}

fn main() -> ExitCode {
    run_main(std::env::args_os())
}

/// The program, given its command line (first the program name).
pub fn run_main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line: clap's message without its usage and tips.
            let first = ckpt_manager::cli::usage_error_line(&e);
            eprintln!("train: error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    if let Some(note) = ckpt_manager::logging::init_logging(args.verbose, args.quiet) {
        eprintln!("train: {note}");
    }
    let role = match launch::role(args.processes, args.etcd.as_deref()) {
        Ok(launch::Role::Single) => launch::Role::Single,
        Ok(_) if !cfg!(feature = "etcd") => {
            eprintln!(
                "train: error: a multi-process run needs the `etcd` feature: build with \
                 `--features etcd` (needs protoc)"
            );
            return ExitCode::from(2);
        }
        Ok(r) => r,
        Err(e) => {
            eprintln!("train: error: {e}");
            return ExitCode::from(2);
        }
    };
    // A worker the launcher started takes a second SIGTERM (one sent to the whole process
    // group, and the launcher's forward of it) as the same preemption.
    let launched = matches!(role, launch::Role::Worker { launched: true, .. });
    // Catch SIGTERM before anything else, so a preemption at any point is a clean stop.
    let installed = SigtermPreemption::install_with(ckpt_manager::SigtermOptions {
        exit_on_second_signal: !launched,
        ..Default::default()
    });
    let preemption = match installed {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("train: error: {}", e.chain());
            return ExitCode::FAILURE;
        }
    };
    let (dp, rank) = match &role {
        launch::Role::Launcher {
            processes,
            endpoints,
        } => {
            let p = Arc::clone(&preemption);
            return launch::launch(*processes, endpoints, &move || p.is_triggered());
        }
        launch::Role::Worker {
            rank,
            size,
            endpoints,
            ..
        } => {
            match distributed::Dp::connect(endpoints, *rank, *size, &launch::job_name(&args.dir)) {
                Ok(dp) => (Some(dp), *rank),
                Err(e) => {
                    eprintln!(
                        "train: error: process {rank} of {size} cannot join the job: {}",
                        ErrorChain(&*e)
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        launch::Role::Single => (None, 0),
    };
    let cfg = checkpoint::RunConfig {
        dir: args.dir,
        steps: args.steps,
        save_every: args.save_every,
        max_to_keep: args.max_to_keep,
        best_n: args.best_n,
        keep_period: (args.keep_period > 0).then_some(args.keep_period),
        seed: args.seed,
        config_file: args.config,
        preemption: Some(preemption),
        resume_from: args.resume_from,
        ignore_other_steps: args.ignore_other_steps,
    };
    let started = std::time::Instant::now();
    let data = data::Data::wine_quality();
    // In a job, the primary prints the progress; the others one line at the end.
    let inner: Box<dyn Write> = if rank == 0 {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::sink())
    };
    let mut out = ProgressOut {
        inner,
        closed: false,
    };
    // Printing the header can only fail if stdout is gone; then there is nobody to tell.
    let _ = writeln!(
        out,
        "data: red Wine Quality, {} training / {} validation wines, {} features, \
         ratings {}..={} as {} classes (training counts {:?})",
        data.n_train(),
        data.x_val.nrows(),
        data.n_features(),
        data.lowest_rating,
        data.lowest_rating + data.n_classes - 1,
        data.n_classes,
        data::class_counts(&data.y_train, data.n_classes),
    );
    match checkpoint::run_in(&cfg, &data, &mut out, dp.as_ref()) {
        Ok(outcome) => {
            if let Some(dp) = dp.as_ref().filter(|d| d.rank != 0) {
                // Only a closed stdout can fail this; then nobody reads it.
                let _ = writeln!(
                    std::io::stdout(),
                    "process {} of {}: {} at step {}",
                    dp.rank,
                    dp.size,
                    match outcome.preempted {
                        Some(_) => "stopped by preemption, saved",
                        None => "done",
                    },
                    outcome.trainer.state.step
                );
            }
            let trained = outcome.trainer.state.step - outcome.resumed_from.unwrap_or(0);
            let _ = match outcome.preempted {
                Some(step) => writeln!(
                    out,
                    "stopped by preemption: {trained} steps trained in {:.2?}; rerun to resume from step {step}",
                    started.elapsed()
                ),
                None => writeln!(
                    out,
                    "done: {trained} steps trained in {:.2?}",
                    started.elapsed()
                ),
            };
            ExitCode::SUCCESS
        }
        Err(e) => {
            drop(out);
            // The error and its causes (`source()`), on one line; in a job, which process.
            let who = dp
                .as_ref()
                .map(|d| format!("process {} of {}: ", d.rank, d.size))
                .unwrap_or_default();
            // One write, so that the lines of a job's processes do not interleave.
            let line = format!("train: {who}error: {}\n", ErrorChain(&*e));
            let _ = std::io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}
