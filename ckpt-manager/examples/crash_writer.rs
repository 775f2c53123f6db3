//! The crash writer of the crash-consistency test (issue 4, "What it must show" 1): saves
//! checkpoints in an endless loop into a root until it is killed.
//!
//! ```text
//! cargo run -p ckpt-manager --example crash_writer -- ROOT [--max-steps N]
//! ```
//!
//! It opens `ROOT` with the options of [`manager_builder`] (asynchronous saves, the default;
//! `max_to_keep(3)` + `keep_period(100)`; `cleanup_tmp_directories`), resumes after the latest
//! committed step, and saves one step after another, each with the items of [`items`] (a tensor
//! item, a JSON item, a bytes item) and the metrics of [`metrics`], all derived from the step
//! number so that a reader can tell what every step must hold. It prints to stdout, one line each,
//! flushed:
//!
//! - `OPEN <latest>` (`OPEN none` on an empty root) once the root is open;
//! - `COMMITTED <step>` as soon as it knows that `<step>` is committed and its retention has run:
//!   when `save(step + 1)` returns (that call waits for the save in flight and would return its
//!   error), or after an explicit `wait_until_finished` (every fourth step, so that both ways are
//!   used).
//!
//! With `--max-steps N` it stops after N saves and closes the manager; without, it runs until it
//! is killed. Any error is printed to stderr and ends the program with exit status 1.
//!
//! `tests/crash.rs` includes this file as a module (the functions below are what it checks the
//! restored steps against) and runs [`run`] in a child process that it kills with SIGKILL.

use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, CheckpointManagerBuilder, Composite, Metrics, SaveOptions};
use ckpt_manager::{Result, Step};
use serde_json::{json, Value};
use std::io::Write;

/// `max_to_keep` of the writer's root: the 3 newest steps are always kept, so the latest committed
/// step can only be deleted once 3 newer steps have committed.
pub const MAX_TO_KEEP: u64 = 3;
/// `keep_period` of the writer's root: every step divisible by it is kept for ever.
pub const KEEP_PERIOD: u64 = 100;
/// Rows × columns of the `f32` tensor `params/w` (32 KiB).
pub const PARAM_SHAPE: [usize; 2] = [32, 256];
/// Length of the bytes item `blob`.
pub const BLOB_LEN: usize = 3000;

/// The options every process uses on the crash root (the writer, and the test's fresh managers).
pub fn manager_builder(root: &str) -> CheckpointManagerBuilder {
    CheckpointManager::builder(root)
        .max_to_keep(MAX_TO_KEEP)
        .keep_period(KEEP_PERIOD)
        .cleanup_tmp_directories(true)
}

/// SplitMix64's output function: a well-mixed 64-bit value from `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The tensor item `params` of `step`: `w` (f32, [`PARAM_SHAPE`]) and `b` (i64, 16 values), every
/// element a function of the step and its index.
pub fn params(step: Step) -> TensorMap {
    let n = PARAM_SHAPE[0] * PARAM_SHAPE[1];
    let w: Vec<f32> = (0..n as u64)
        .map(|i| (mix(step.wrapping_mul(1_000_003) ^ i) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    let b: Vec<i64> = (0..16u64)
        .map(|i| (mix(step ^ (i << 48)) as i64) >> 3)
        .collect();
    let mut t = TensorMap::new();
    t.insert(
        "w".to_string(),
        Tensor::from_slice(PARAM_SHAPE.to_vec(), &w).expect("w matches PARAM_SHAPE"),
    );
    t.insert(
        "b".to_string(),
        Tensor::from_slice(vec![16], &b).expect("b has 16 elements"),
    );
    t
}

/// `x` rounded to 12 decimals: at most 13 significant digits, which JSON restores exactly.
///
/// Floats of 16–17 significant digits come back up to 1 ULP off (a reader bug shown by
/// `json_floats_restore_bit_exactly` in tests/crash.rs); the crash test is about crash
/// consistency, so its values stay clear of that bug rather than fail for it.
pub fn short_float(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

/// The JSON item `state` of `step`.
pub fn state(step: Step) -> Value {
    json!({
        "step": step,
        "tag": format!("crash-writer step {step}"),
        "lr": short_float(1.0 / (step as f64 + 3.0)),
        "history": [step.saturating_sub(2), step.saturating_sub(1), step],
        "nested": {"even": step.is_multiple_of(2), "check": mix(step) >> 12},
    })
}

/// The bytes item `blob` of `step` ([`BLOB_LEN`] bytes).
pub fn blob(step: Step) -> Vec<u8> {
    (0..BLOB_LEN as u64)
        .map(|i| mix(step.rotate_left(17) ^ i) as u8)
        .collect()
}

/// The metrics of `step` (written to `<step>/metrics/metrics`).
pub fn metrics(step: Step) -> Metrics {
    let mut m = Metrics::new();
    m.insert(
        "loss".to_string(),
        json!(short_float(1.0 / (step as f64 + 1.0))),
    );
    m.insert("step".to_string(), json!(step));
    m
}

/// The items of `step`, moved in (no copy on the caller's thread).
pub fn items(step: Step) -> Composite<'static> {
    Composite::new()
        .tensors_owned("params", params(step))
        .json_value("state", state(step))
        .bytes_owned("blob", blob(step))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader is gone) is not a reason to stop saving.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Opens `root` and saves steps after its latest committed step: `max_steps` of them, or until
/// the process is killed. See the module docs for what is printed.
///
/// # Errors
/// Any error of opening the root or of a save (the program then exits with status 1).
pub fn run(root: &str, max_steps: Option<u64>) -> Result<()> {
    let mut mngr = manager_builder(root).build()?;
    let latest = mngr.latest_step();
    say(&format!(
        "OPEN {}",
        latest.map_or_else(|| "none".to_string(), |s| s.to_string())
    ));
    let first = latest.map_or(1, |s| s + 1);
    let mut in_flight: Option<Step> = None;
    for step in (first..).take(max_steps.map_or(usize::MAX, |n| n as usize)) {
        let saved = mngr.save(
            step,
            items(step),
            SaveOptions::default().metrics(metrics(step)),
        )?;
        if !saved {
            return Err(ckpt_manager::Error::invalid_argument(format!(
                "the manager declined to save step {step}"
            )));
        }
        // `save(step)` waited for the save in flight and returned its error, if any.
        if let Some(prev) = in_flight.take() {
            say(&format!("COMMITTED {prev}"));
        }
        in_flight = Some(step);
        if step.is_multiple_of(4) {
            mngr.wait_until_finished()?;
            say(&format!("COMMITTED {step}"));
            in_flight = None;
        }
    }
    mngr.wait_until_finished()?;
    if let Some(prev) = in_flight {
        say(&format!("COMMITTED {prev}"));
    }
    mngr.close()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, max_steps) = match args.as_slice() {
        [root] => (root.clone(), None),
        [root, flag, n] if flag == "--max-steps" => match n.parse::<u64>() {
            Ok(n) => (root.clone(), Some(n)),
            Err(_) => {
                eprintln!("crash_writer: --max-steps takes a number, got {n:?}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: crash_writer ROOT [--max-steps N]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&root, max_steps) {
        eprintln!("crash_writer: {}", e.chain());
        std::process::exit(1);
    }
}
