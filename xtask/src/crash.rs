//! `cargo xtask crash [--iterations N] [--seed S]`: the crash-consistency test of issue 4 at
//! scale (2,000 SIGKILLs by default).
//!
//! It runs the same loop as `cargo test -p ckpt-manager --test crash` (the test
//! `crash_kill_loop` in `ckpt-manager/tests/crash.rs`), only longer: a child process saves
//! checkpoints in a loop and is killed with SIGKILL at a random moment, and after every kill a
//! fresh manager must list only steps that restore completely with valid checksums, still hold the
//! latest step reported committed, and leave no tmp directory after cleanup. The test reads the
//! number of kills from `CKPT_CRASH_ITERATIONS`, the seed of the kill delays from
//! `CKPT_CRASH_SEED`, and writes its summary as JSON to `CKPT_CRASH_SUMMARY`, which this task
//! prints. Running the test binary (rather than a copy of its loop) keeps one implementation.
//!
//! The seed defaults to one taken from the clock, printed so that a run can be repeated (the kill
//! delays repeat; where in a save each kill lands depends on timing all the same).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_ITERATIONS: u64 = 2000;

struct Args {
    iterations: u64,
    seed: u64,
}

fn usage() -> ExitCode {
    eprintln!("usage: cargo xtask crash [--iterations N] [--seed S]");
    ExitCode::from(2)
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let clock_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED);
    let mut out = Args {
        iterations: DEFAULT_ITERATIONS,
        seed: clock_seed,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || -> Result<u64, String> {
            let v = match &inline {
                Some(v) => v.clone(),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            parse_u64(&v).ok_or_else(|| format!("{name} takes a number, got {v:?}"))
        };
        match name {
            "--iterations" | "-n" => out.iterations = value()?,
            "--seed" => out.seed = value()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    Ok(out)
}

/// A decimal or `0x` hexadecimal number.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask crash: {e}");
            return usage();
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask crash: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let summary_path = dir.path().join("summary.json");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!(
        "xtask crash: {} iterations, seed {:#x} (repeat with --seed {:#x})",
        args.iterations, args.seed, args.seed
    );
    let test_args = [
        "test",
        "-p",
        "ckpt-manager",
        "--test",
        "crash",
        "--",
        "--exact",
        "crash_kill_loop",
        "--nocapture",
    ];
    eprintln!("xtask: cargo {}", test_args.join(" "));
    let mut cmd = Command::new(&cargo);
    cmd.args(test_args)
        .env("CKPT_CRASH_ITERATIONS", args.iterations.to_string())
        .env("CKPT_CRASH_SEED", args.seed.to_string())
        .env("CKPT_CRASH_SUMMARY", &summary_path);
    crate::run_status(&mut cmd, "the crash test")?;
    let summary = read_summary(&summary_path)?;
    print_summary(&summary, started.elapsed().as_secs_f64())
}

fn read_summary(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "the crash test passed but wrote no summary to {}: {e}",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| format!("the summary in {} is not JSON: {e}", path.display()))
}

fn print_summary(s: &serde_json::Value, total_secs: f64) -> Result<(), String> {
    let num = |key: &str| -> Result<u64, String> {
        s.get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("the summary lacks {key:?}: {s}"))
    };
    let iterations = num("iterations")?;
    let kills = num("kills")?;
    let wall = s
        .get("wall_secs")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("the summary lacks \"wall_secs\": {s}"))?;
    let latest = match s.get("final_latest").and_then(serde_json::Value::as_u64) {
        Some(l) => l.to_string(),
        None => "none".to_string(),
    };
    println!("crash: PASS");
    println!("  iterations            {iterations}");
    println!("  kills (SIGKILL)       {kills}");
    println!("    mid-save (tmp left) {}", num("kills_leaving_tmp")?);
    println!("    before open         {}", num("kills_before_open")?);
    println!("  steps reported        {}", num("steps_reported")?);
    println!("  steps verified        {}", num("steps_verified")?);
    println!(
        "  latest step           {latest} ({} listed at the end)",
        num("final_listed")?
    );
    println!("  seed                  {:#x}", num("seed")?);
    println!(
        "  wall time             {wall:.1} s in the loop ({:.1} ms per kill), {total_secs:.1} s in all",
        wall * 1000.0 / kills.max(1) as f64
    );
    if kills != iterations {
        return Err(format!("{kills} kills in {iterations} iterations"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_arguments() {
        let a = args(&[]).unwrap();
        assert_eq!(a.iterations, 2000);
        let a = args(&["--iterations", "500", "--seed", "0x10"]).unwrap();
        assert_eq!((a.iterations, a.seed), (500, 16));
        let a = args(&["--iterations=7", "--seed=9"]).unwrap();
        assert_eq!((a.iterations, a.seed), (7, 9));
        assert!(args(&["--iterations"]).is_err());
        assert!(args(&["--iterations", "x"]).is_err());
        assert!(args(&["--iterations", "0"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }
}
