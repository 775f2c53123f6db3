//! The main job: train a small network on real data and checkpoint it with [`CheckpointManager`].
//!
//! ```text
//! cargo run --release --example train -- --dir DIR [--steps N] [--save-every K]
//!     [--max-to-keep M] [--keep-period P] [--seed S]
//! ```
//!
//! A one-hidden-layer MLP learns to predict the quality rating of red wines (the UCI Wine
//! Quality data shipped by `linfa-datasets`) with Adam on shuffled mini-batches. Every
//! `--save-every` steps, and at step N, it saves the parameters, Adam's moments and the training
//! state (step, epoch, position in the epoch's order, RNG state, seed) as one checkpoint with the
//! validation loss and accuracy as metrics; the manager keeps the best `--max-to-keep` by
//! validation loss plus every multiple of `--keep-period`. Run it again on the same DIR with a
//! larger N and it resumes from the latest checkpoint, continuing exactly as an uninterrupted run
//! would (bit for bit: see `tests/train_resume.rs`).
//!
//! [`CheckpointManager`]: ckpt_manager::CheckpointManager

mod checkpoint;
mod data;
mod model;
mod optim;
mod rng;
mod trainer;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

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
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    save_every: u64,
    /// Keep the best this many checkpoints by validation loss (the newest is not protected).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    max_to_keep: u64,
    /// Also keep every checkpoint whose step is a multiple of this; 0 turns it off.
    #[arg(long, default_value_t = 250)]
    keep_period: u64,
    /// Seed of a fresh run (initial weights and data order); a resumed run keeps its own.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line: clap's message ("error: ...", possibly over a few lines) without its
            // usage and tips.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let first = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("train: error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let cfg = checkpoint::RunConfig {
        dir: args.dir,
        steps: args.steps,
        save_every: args.save_every,
        max_to_keep: args.max_to_keep,
        keep_period: (args.keep_period > 0).then_some(args.keep_period),
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let data = data::Data::wine_quality();
    let mut out = std::io::stdout().lock();
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
    match checkpoint::run(&cfg, &data, &mut out) {
        Ok(outcome) => {
            let trained = outcome.trainer.state.step - outcome.resumed_from.unwrap_or(0);
            let _ = writeln!(
                out,
                "done: {trained} steps trained in {:.2?}",
                started.elapsed()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            drop(out);
            eprintln!("train: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
